"""``crm-sync demo``, the main job: offline audit without Odoo, full cycle with it.

The Odoo test runs the real job against a real Odoo 18 (skipped, with the reason,
when none is found) on small seeds with ``--exit-after-cycle``; it checks every
backend's first cycle against the seeds and that nothing listened on anything but
127.0.0.1 while it ran.
"""

from __future__ import annotations

import io
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from connectors import demo_world
from connectors.demo_world import build_world
from connectors.peppol import sandbox as peppol_sandbox
from sync_daemon import cli
from sync_daemon import demo as demo_module
from sync_daemon.cli import build_parser
from sync_daemon.odoo_runtime import OdooNotFound, find_odoo

SMALL = [
    "--accounts", "60", "--exact-invoices", "150", "--customers", "20",
    "--sage-customers", "8", "--invoices", "3",
]  # fmt: skip


def _args(tmp_path: Path, *extra: str) -> Any:
    return build_parser().parse_args(
        ["demo", "--state-dir", str(tmp_path / "state"), *SMALL, *extra]
    )


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=140, highlight=False), out


def _listening() -> set[tuple[str, int, str]]:
    """Every listening TCP socket and bound UDP socket of this machine."""
    found = set()
    for name, state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] != state:
                continue
            address, port = parts[1].split(":")
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little-endian) order
            packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            host = str(ipaddress.ip_address(packed))
            found.add((host, int(port, 16), name))
    return found


def _loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def test_demo_without_odoo_runs_the_offline_audit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_odoo() -> None:
        raise OdooNotFound("no Odoo 18 at /nowhere (no odoo-bin); set ODOO_HOME")

    monkeypatch.setattr(demo_module, "find_odoo", no_odoo)
    console, out = _console()
    result = demo_module.demo(_args(tmp_path), console=console)
    text = out.getvalue()

    assert result.mode == "offline"
    assert "no Odoo 18 here" in text and "ODOO_HOME" in text
    assert "What a first sync would do" in text
    exact = result.reconcile["exact"]["stats"]
    assert exact["external_records"] == 60
    # the Odoo seed is 20 Exact accounts (plus 2 Sage customers): most link
    assert 14 <= exact["links"] <= 20
    assert exact["new"] >= 60 - 20 - 2
    sage = result.reconcile["sage"]["stats"]
    assert sage["external_records"] == 8 and sage["links"] >= 1
    seeds = tmp_path / "state" / "seeds"
    assert {p.name for p in seeds.iterdir()} == {
        "odoo-partners.csv",
        "exact-accounts.json",
        "sage-contacts.json",
    }


def test_demo_help_names_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--help"])
    text = capsys.readouterr().out
    for flag in ("--state-dir", "--exit-after-cycle", "--keep", "--accounts"):
        assert flag in text
    assert "Nothing outside 127.0.0.1 is contacted" in text
    # plain text, not the docstring's reStructuredText markup
    assert "``" not in text
    assert "PEPPOL_RULES_DIR" in text


def test_demo_without_peppol_rules_skips_peppol_with_a_notice(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # a clean clone: no shared folder, so no Peppol validation artefacts
    empty = tmp_path / "no-rules"
    empty.mkdir()
    monkeypatch.setenv("PEPPOL_RULES_DIR", str(empty))

    def no_odoo() -> None:
        raise OdooNotFound("no Odoo 18 at /nowhere (no odoo-bin); set ODOO_HOME")

    monkeypatch.setattr(demo_module, "find_odoo", no_odoo)
    argv = ["demo", "--state-dir", str(tmp_path / "state"), *SMALL]
    assert cli.main(argv) == 0
    text = " ".join(capsys.readouterr().out.split())  # undo the console's wrapping

    assert "Traceback" not in text
    assert text.count("Peppol skipped:") == 1
    assert "Peppol validation artefacts" in text and str(empty) in text
    assert "Peppol validation and the Peppol backend are skipped" in text
    for hint in (
        "PEPPOL_RULES_DIR",
        "ubl-2.1/xsd/",
        "xslt/",
        "OASIS UBL 2.1",
        "OpenPeppol BIS Billing 3.0",
        "CEN-EN16931-UBL.xslt",
        "PEPPOL-EN16931-UBL.xslt",
        "CRM_SHARED_DIR",
        "specs/peppol/",
        "examples/peppol/",
    ):
        assert hint in text, hint
    assert "peppol: skipped in this run" in text
    # Exact and Sage still ran: the offline audit of both ledgers
    assert "What a first sync would do" in text and "sandboxes stopped" in text
    assert "documents in the Peppol inbox" not in text


def test_demo_without_peppol_rules_keeps_exact_and_sage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PEPPOL_RULES_DIR", str(tmp_path))
    world = build_world(
        exact_accounts=10, exact_invoices=5, odoo_customers=5, sage_customers=4
    ).start()
    try:
        assert set(world.skipped) == {"peppol"}
        assert [b.kind for b in world.backends()] == [
            "exact",
            "sage_accounting",
            "sage_x3",
        ]
        assert set(world.urls()) == {"exact", "sage_accounting", "sage_x3"}
        assert world.inbox_size() == 0
        assert all(url.startswith("http://127.0.0.1:") for url in world.urls().values())
    finally:
        world.stop()


def test_demo_says_when_the_peppol_examples_are_missing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    shared_dir: Path,
) -> None:
    rules = shared_dir / "specs" / "peppol"
    if not (rules / "xslt").is_dir():
        pytest.skip(f"no Peppol rules in {rules} (set CRM_SHARED_DIR)")
    monkeypatch.setenv("PEPPOL_RULES_DIR", str(rules))
    for module in (demo_world, peppol_sandbox):
        monkeypatch.setattr(module, "default_examples_dir", lambda: None)

    def no_odoo() -> None:
        raise OdooNotFound("no Odoo 18 at /nowhere (no odoo-bin); set ODOO_HOME")

    monkeypatch.setattr(demo_module, "find_odoo", no_odoo)
    console, out = _console()
    result = demo_module.demo(_args(tmp_path), console=console)
    text = " ".join(out.getvalue().split())

    assert result.skipped == {}
    assert "0 documents in the Peppol inbox" in text
    assert text.count("Peppol example invoices not found") == 1
    assert "the Peppol inbox is seeded empty" in text
    assert "Peppol skipped" not in text


@pytest.mark.odoo
@pytest.mark.slow
def test_demo_with_odoo_runs_one_full_cycle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        find_odoo()
    except OdooNotFound as err:
        pytest.skip(f"skipped: {err}")
    before = _listening()
    during: list[set[tuple[str, int, str]]] = []
    urls: list[str] = []
    original = demo_module._print_summary

    def snapshot(console: Console, rows: Any, server: Any, config: Path) -> None:
        during.append(_listening())
        urls.append(server.url)
        original(console, rows, server, config)

    monkeypatch.setattr(demo_module, "_print_summary", snapshot)
    console, out = _console()
    result = demo_module.demo(_args(tmp_path, "--exit-after-cycle"), console=console)
    text = out.getvalue()

    assert result.mode == "odoo", text
    by_kind = {b.kind: b for b in result.backends}
    assert set(by_kind) == {"exact", "sage_accounting", "sage_x3", "peppol"}
    # without the Peppol artefacts (a clone without the shared folder) Peppol is
    # skipped with a notice and everything else runs
    peppol_skipped = "peppol" in result.skipped
    assert set(result.skipped) <= {"peppol"}
    assert all(
        b.outcome == ("skipped" if b.kind in result.skipped else "success")
        for b in result.backends
    ), text
    assert result.odoo_customers == 22 and result.odoo_invoices == 3

    exact = by_kind["exact"]
    # 20 Odoo customers are Exact accounts: linked ≈ the overlap, created = the rest
    assert 16 <= exact.linked <= 22, text
    assert 60 - 22 <= exact.created <= 60 - 16 + 6, text
    assert exact.invoices_pushed == 3
    # X3 holds the same customers as Sage Accounting: all linked, none created
    assert by_kind["sage_accounting"].linked >= 2
    assert by_kind["sage_x3"].linked >= 8
    assert by_kind["sage_accounting"].invoices_pushed == 3
    assert by_kind["sage_x3"].invoices_pushed == 3
    peppol = by_kind["peppol"]
    if peppol_skipped:
        assert "Peppol skipped" in text and "PEPPOL_RULES_DIR" in text
        assert "peppol: skipped in this run" in text
        assert peppol.einvoices_sent == 0 and result.inbox == 0
    else:
        assert peppol.einvoices_sent == 3
        assert peppol.einvoices_received == result.inbox
    assert "First cycle per backend" in text and "password admin" in text

    # nothing listened outside 127.0.0.1 while the job ran
    [seen] = during
    new = {s for s in seen - before if not _loopback(s[0])}
    assert not new, new
    odoo_port = int(urls[0].rsplit(":", 1)[1])
    assert all(_loopback(host) for host, port, _ in seen if port == odoo_port)
    assert "dropped" in text
