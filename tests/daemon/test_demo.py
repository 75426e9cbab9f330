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
    assert all(b.outcome == "success" for b in result.backends), text
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
