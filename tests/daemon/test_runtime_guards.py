"""The assembled daemon's guards: Odoo's own Peppol sending (no double send)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync_daemon.config import DaemonSettings
from sync_daemon.kernel.errors import ConfigurationError
from sync_daemon.runtime import Daemon, odoo_sends_peppol
from sync_daemon.testing.fake_odoo import FakeOdoo

from .conftest import make_gateway


def _daemon(fake: FakeOdoo, tmp_path: Path, section: dict[str, Any]) -> Daemon:
    backend_id = fake.add_backend(name="Peppol AP", kind="peppol", company_id=2)
    settings = DaemonSettings(
        odoo={
            "url": fake.url,
            "database": fake.database,
            "login": "sync-bot",
            "api_key": "secret",
        },
        state_dir=tmp_path / "state",
        backends={
            str(backend_id): {
                "transport": "directory",
                "outbox_dir": str(tmp_path / "out"),
                "inbox_dir": str(tmp_path / "in"),
                **section,
            }
        },
    )
    return Daemon(settings)


def _odoo_peppol(fake: FakeOdoo, states: dict[int, str]) -> None:
    """What installing account_peppol does to ``res.company`` (Odoo 18)."""
    fake.add_field("res.company", "account_peppol_proxy_state", "char")
    for company_id, state in states.items():
        fake.data["res.company"][company_id]["account_peppol_proxy_state"] = state


@pytest.mark.parametrize(
    ("state", "sends"),
    [
        ("receiver", True),
        ("sender", True),
        ("smp_registration", True),
        ("not_registered", False),
        ("in_verification", False),
        ("rejected", False),
    ],
)
def test_odoo_sending_states(fake_odoo: FakeOdoo, state: str, sends: bool) -> None:
    _odoo_peppol(fake_odoo, {2: state, 1: "receiver"})
    assert odoo_sends_peppol(make_gateway(fake_odoo), 2) is sends


def test_without_account_peppol_odoo_never_sends(fake_odoo: FakeOdoo) -> None:
    assert odoo_sends_peppol(make_gateway(fake_odoo), 1) is False


def test_backend_refuses_to_start_while_odoo_sends_too(
    fake_odoo: FakeOdoo, tmp_path: Path
) -> None:
    _odoo_peppol(fake_odoo, {2: "receiver", 1: "not_registered"})
    daemon = _daemon(fake_odoo, tmp_path, {})
    [backend] = daemon.backends()
    with pytest.raises(ConfigurationError, match="account_peppol is active") as err:
        daemon.run_backend(backend)
    assert "sending" in str(err.value)
    # nothing ran, nothing was sent; the refusal is on the backend in Odoo
    assert fake_odoo.records("crm.sync.run") == []
    assert list((tmp_path / "out").glob("*")) == []
    record = fake_odoo.data["crm.sync.backend"][backend.id]
    assert record["credentials_state"] == "invalid"
    assert "account_peppol" in record["credentials_message"]
    [result] = daemon.once()
    assert result.outcome == "failed" and "account_peppol" in result.log[0]
    [(_, report)] = daemon.check()
    assert "account_peppol" in report.message


@pytest.mark.parametrize("sending", ["odoo", "daemon"])
def test_backend_starts_once_told_which_side_sends(
    fake_odoo: FakeOdoo, tmp_path: Path, sending: str
) -> None:
    _odoo_peppol(fake_odoo, {2: "receiver"})
    daemon = _daemon(fake_odoo, tmp_path, {"sending": sending})
    [backend] = daemon.backends()
    result = daemon.run_backend(backend)
    assert result.outcome == "success", result.log


def test_other_company_or_no_module_does_not_block(
    fake_odoo: FakeOdoo, tmp_path: Path
) -> None:
    daemon = _daemon(fake_odoo, tmp_path, {})
    [backend] = daemon.backends()
    assert daemon.run_backend(backend).outcome == "success"
    _odoo_peppol(fake_odoo, {1: "receiver", 2: "not_registered"})
    assert daemon.run_backend(backend).outcome == "success"


# -- C005 through a whole run: the backend's company first, its lang and tz -----------


def test_c005_every_call_of_a_run_is_in_the_backends_company(
    fake_odoo: FakeOdoo, tmp_path: Path
) -> None:
    from sync_daemon.engine import BackendConfig, BackendRun
    from sync_daemon.kernel.models import Address, Customer
    from sync_daemon.state import StateStore
    from sync_daemon.testing.double import DoubleConnector, DoubleLedger

    backend_id = fake_odoo.add_backend(
        name="Exact NL", company_id=2, lang="nl_BE", tz="Europe/Brussels"
    )
    ledger = DoubleLedger(tmp_path / "ledger.sqlite3")
    for n in range(3):
        ledger.put_customer(
            Customer(
                external_id=f"N{n}",
                name=f"Klant {n} BV",
                address=Address(country_code="NL"),
            )
        )
    gateway = make_gateway(fake_odoo)
    [row] = [
        r
        for r in gateway.call("crm.sync.backend", "daemon_get_config")
        if r["id"] == backend_id
    ]
    before = len(fake_odoo.calls)
    result = BackendRun(
        gateway=gateway,
        state=StateStore(tmp_path / "state"),
        backend=BackendConfig.from_odoo(row),
        connector=DoubleConnector(ledger),
    ).run()
    assert result.outcome == "success", result.log
    calls = fake_odoo.calls[before:]
    assert calls
    for call in calls:
        assert call.context.get("allowed_company_ids") == [2, 1], call
        assert (call.context.get("lang"), call.context.get("tz")) == (
            "nl_BE",
            "Europe/Brussels",
        ), call
    created = [
        p for p in fake_odoo.records("res.partner") if p["name"].startswith("Klant ")
    ]
    assert len(created) == 3 and {p["company_id"] for p in created} == {2}


# -- cursors move only with what Odoo committed ----------------------------------------


def test_cursor_stays_behind_a_batch_odoo_did_not_take(
    fake_odoo: FakeOdoo, tmp_path: Path
) -> None:
    from sync_daemon.engine import BackendConfig, BackendRun
    from sync_daemon.kernel.models import Address, Customer
    from sync_daemon.state import StateStore
    from sync_daemon.testing.double import DoubleConnector, DoubleLedger

    backend_id = fake_odoo.add_backend(name="Ledger")
    ledger = DoubleLedger(tmp_path / "ledger.sqlite3")
    for n in range(300):
        ledger.put_customer(
            Customer(
                external_id=f"E{n}",
                name=f"C {n:04d}",
                address=Address(country_code="BE"),
            )
        )
    state = StateStore(tmp_path / "state")

    def run() -> Any:
        gateway = make_gateway(fake_odoo)
        [row] = [
            r
            for r in gateway.call("crm.sync.backend", "daemon_get_config")
            if r["id"] == backend_id
        ]
        return BackendRun(
            gateway=gateway,
            state=state,
            backend=BackendConfig.from_odoo(row),
            connector=DoubleConnector(ledger, page_size=50),
            batch_size=100,
        ).run()

    # Odoo is down for the second batch (records 100-199), every retry included
    fake_odoo.inject(
        "http_503",
        model="res.partner",
        method="create",
        times=1000,
        when=lambda call: any(v.get("name") == "C 0150" for v in call.args[0]),
    )
    first = run()
    assert first.outcome == "failed", first.log

    def created() -> list[str]:
        return sorted(
            p["name"]
            for p in fake_odoo.records("res.partner")
            if p["name"].startswith("C ")
        )

    assert created() == [f"C {n:04d}" for n in range(100)]
    assert state.get_cursor(backend_id, "customers") == "100"  # the first batch only
    links = [
        link
        for link in fake_odoo.records("crm.sync.link")
        if link["res_model"] == "res.partner"
    ]
    assert len(links) == 100

    fake_odoo.injections.clear()  # Odoo is back
    second = run()
    assert second.outcome == "success", second.log
    assert created() == [f"C {n:04d}" for n in range(300)]  # none lost, none twice
    assert second.counts.created == 200
    assert state.get_cursor(backend_id, "customers") == "300"
