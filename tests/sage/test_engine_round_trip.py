"""The daemon's engine with the real Sage connectors and a fake Odoo on 127.0.0.1.

Customers flow Sage → Odoo (partners created and linked), an Odoo-only customer
and a posted invoice flow Odoo → Sage, and a second run changes nothing; the Sage
Accounting round trip also runs with faults injected into the sandbox.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectors.sage.sandbox_accounting import BE_BUSINESS, SageAccountingSandbox
from connectors.sage.sandbox_http import FaultPlan
from connectors.sage.sandbox_x3 import SageX3Sandbox
from sync_daemon.engine import BackendConfig, BackendRun
from sync_daemon.kernel.protocol import Connector
from sync_daemon.retry import RetryPolicy
from sync_daemon.state import StateStore
from sync_daemon.testing.fake_odoo import FakeOdoo
from tests.daemon.conftest import add_accounting, make_gateway, seed_invoice

from .conftest import MakeConnector


def _run(
    fake: FakeOdoo, backend_id: int, state: StateStore, connector: Connector
) -> Any:
    gateway = make_gateway(fake)
    [config] = [
        BackendConfig.from_odoo(row)
        for row in gateway.call("crm.sync.backend", "daemon_get_config")
        if row["id"] == backend_id
    ]
    return BackendRun(
        gateway=gateway,
        state=state,
        backend=config,
        connector=connector,
        retry=RetryPolicy(attempts=4, initial=0.01, maximum=0.05, jitter=0.01),
    ).run()


def _seed_odoo(fake: FakeOdoo) -> None:
    add_accounting(fake)
    fake.seed(
        "res.partner",
        {
            "id": 300,
            "name": "Société d'Électricité Fictive de Liège",
            "is_company": True,
            "customer_rank": 1,
            "vat": "BE0812345603",
            "city": "Liège",
            "country_id": fake.country_id("BE"),
        },
    )
    seed_invoice(fake, 9001, "FV-2025-00042", 300)


def _links(fake: FakeOdoo, model: str) -> dict[str, int]:
    return {
        link["external_id"]: link["res_id"]
        for link in fake.records("crm.sync.link")
        if link["res_model"] == model and link["state"] != "unlinked"
    }


@pytest.mark.parametrize("fault_rate", [0.0, 0.10])
def test_sage_accounting_round_trip(
    fault_rate: float, make_connector: MakeConnector, tmp_path: Path
) -> None:
    faults = FaultPlan(rate=fault_rate, delay=0.3, seed=3)
    with FakeOdoo() as fake, SageAccountingSandbox(customers=12, faults=faults) as sage:
        _seed_odoo(fake)
        backend_id = fake.add_backend(kind="sage_accounting")
        state = StateStore(tmp_path / "state")
        connector = make_connector(sage, read_timeout=0.15)
        if fault_rate:
            # Besides the random faults, lose the answers of both writes after
            # they were committed: the contact POST, then the invoice POST.
            faults.force("reset", "POST")
            faults.force("reset", "POST")
        result = _run(fake, backend_id, state, connector)
        if result.outcome != "success":  # a fault the engine defers to the next run
            result = _run(fake, backend_id, state, connector)
        assert result.outcome == "success", result.log

        business = sage.businesses[BE_BUSINESS]
        partner_links = _links(fake, "res.partner")
        assert len(partner_links) == 13  # 12 pulled + the Odoo-only customer
        pushed = [
            c for c in business.contacts.values() if c["tax_number"] == "BE0812345603"
        ]
        assert len(pushed) == 1 and partner_links[pushed[0]["id"]] == 300
        assert pushed[0]["name"] == "Société d'Électricité Fictive de Liège"
        [invoice] = business.sales_invoices.values()
        assert invoice["reference"] == "FV-2025-00042"
        assert invoice["contact"]["id"] == pushed[0]["id"]
        assert invoice["total_amount"] == "121.00"
        assert _links(fake, "account.move") == {invoice["id"]: 9001}

        again = _run(fake, backend_id, state, connector)
        assert again.outcome == "success", again.log
        assert again.counts.created == 0
        assert len(business.contacts) == 13 and len(business.sales_invoices) == 1
        assert len(set(sage.refresh_log)) == len(sage.refresh_log)
        if fault_rate:
            assert faults.injected["reset"] >= 2


def test_sage_x3_round_trip(make_x3: Callable[..., Any], tmp_path: Path) -> None:
    with FakeOdoo() as fake, SageX3Sandbox(customers=6) as x3:
        _seed_odoo(fake)
        backend_id = fake.add_backend(kind="sage_x3")
        state = StateStore(tmp_path / "state")
        connector = make_x3(x3)
        result = _run(fake, backend_id, state, connector)
        assert result.outcome == "success", result.log
        partner_links = _links(fake, "res.partner")
        assert len(partner_links) == 7
        [code] = [
            c["BPCNUM"]
            for c in x3.customers.values()
            if c.get("EECNUM") == "BE0812345603"
        ]
        assert partner_links[code] == 300
        assert x3.customers[code]["BPCNAM"] == "Société d'Électricité Fictive de Liège"
        [invoice] = x3.invoices.values()
        assert invoice["BPRVCR"] == "FV-2025-00042" and invoice["BPCINV"] == code
        assert invoice["AMTATI"] == "121.00"
        again = _run(fake, backend_id, state, connector)
        assert again.outcome == "success", again.log
        assert len(x3.customers) == 7 and len(x3.invoices) == 1
