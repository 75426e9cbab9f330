"""The command line, the Odoo harness and the project layout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sync_daemon import cli
from sync_daemon.odoo_runtime import OdooNotFound, find_odoo, parse_test_log

ROOT = Path(__file__).resolve().parent.parent


def test_crm_sync_help_lists_demo(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert "demo" in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    bindir = Path(sys.executable).parent
    out = subprocess.run(
        [str(bindir / "crm-sync"), "--version"], capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    assert out.stdout.startswith("crm-sync ")


def test_demo_creates_state_folder_and_reports(tmp_path, capsys, monkeypatch) -> None:
    # without Odoo (the path with Odoo is tests/daemon/test_demo.py), small seeds
    def no_odoo() -> None:
        raise OdooNotFound("no Odoo 18 at /nowhere (no odoo-bin)")

    monkeypatch.setattr("sync_daemon.demo.find_odoo", no_odoo)
    state = tmp_path / "state"
    small = ["--accounts", "20", "--exact-invoices", "10", "--customers", "5"]
    assert cli.main(["demo", "--state-dir", str(state), *small]) == 0
    out = capsys.readouterr().out
    assert state.is_dir()
    assert "no Odoo 18 here" in out and "sandboxes stopped" in out


def test_find_odoo_explains_what_is_missing(tmp_path) -> None:
    with pytest.raises(OdooNotFound, match=r"no Odoo 18 at .*odoo-bin.*ODOO_HOME"):
        find_odoo({"ODOO_HOME": str(tmp_path)})
    (tmp_path / "odoo-bin").write_text("")
    (tmp_path / "odoo").mkdir()
    (tmp_path / "odoo" / "release.py").write_text(
        "version_info = (17, 0, 0, 'final', 0)"
    )
    with pytest.raises(OdooNotFound, match=r"is not Odoo 18\.0"):
        find_odoo({"ODOO_HOME": str(tmp_path)})
    (tmp_path / "odoo" / "release.py").write_text(
        "version_info = (18, 0, 0, 'final', 0)"
    )
    with pytest.raises(OdooNotFound, match="no Odoo Python"):
        find_odoo({"ODOO_HOME": str(tmp_path), "ODOO_PYTHON": str(tmp_path / "nope")})


def test_parse_test_log_counts_and_problems() -> None:
    log = (
        "2026-12-03 19:20:01,123 42 INFO t odoo.modules.loading: loading\n"
        "2026-12-03 19:20:02,123 42 ERROR t odoo.addons.crm_module.tests: FAIL: x\n"
        "Traceback (most recent call last):\n"
        "2026-12-03 19:20:03,123 42 INFO t odoo.tests.result: 1 failed, 0 error(s) "
        "of 12 tests when loading database 't'\n"
    )
    summary = parse_test_log(log)
    assert (summary.run, summary.failed, summary.errors) == (12, 1, 0)
    assert len(summary.problems) == 1
    summary.exit_code = 0
    assert not summary.passed
    assert "FAIL" in summary.line()
    clean = parse_test_log(
        "2026-12-03 19:20:03,123 42 INFO t odoo.tests.result: 0 failed, 0 error(s) "
        "of 3 tests when loading database 't'\n"
    )
    assert clean.passed and "PASS — 3 run" in clean.line()


def test_layout_has_the_agreed_packages() -> None:
    for package in ("sync_daemon", "connectors/exact", "connectors/sage",
                    "connectors/peppol"):  # fmt: skip
        assert (ROOT / package / "__init__.py").is_file(), package
    manifest = (ROOT / "crm_module" / "__manifest__.py").read_text()
    for dependency in ("base", "mail", "contacts", "crm", "account",
                       "account_edi_ubl_cii"):  # fmt: skip
        assert f'"{dependency}"' in manifest or f"'{dependency}'" in manifest
