"""End to end with a real Odoo 18 (crm_module installed) and the Sage sandboxes.

Skipped, with the reason, when no Odoo 18 is found (see ``tests/odoo_fixtures``).
The daemon's engine runs one backend against the real Odoo: Sage customers become
linked partners, an Odoo-only customer and a posted Odoo invoice reach Sage (the
invoice by reference, with its tax and ledger mapping), and a second run changes
nothing on either side.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectors.sage.sandbox_accounting import BE_BUSINESS, SageAccountingSandbox
from connectors.sage.sandbox_x3 import SageX3Sandbox
from sync_daemon.engine import BackendConfig, BackendRun
from sync_daemon.gateway import OdooGateway
from sync_daemon.kernel.protocol import Connector
from sync_daemon.retry import RetryPolicy
from sync_daemon.state import StateStore

from .conftest import MakeConnector

pytestmark = pytest.mark.odoo

NAME = "Société d'Électricité Fictive de Liège"


def _prepare(odoo_admin: Any, kind: str, suffix: str) -> tuple[int, int, int, str]:
    """A backend, an Odoo-only customer and its posted invoice; returns their ids."""
    env = odoo_admin.env
    daemon = env.ref("crm_module.crm_module_group_sync_admin")
    env["res.users"].write([env.uid], {"groups_id": [(4, daemon.id)]})
    company_id = env.user.company_id.id
    backend_id = env["crm.sync.backend"].create(
        {"name": f"Sage {kind} e2e", "kind": kind, "company_id": company_id}
    )
    partner_id = env["res.partner"].create(
        {
            "name": f"{NAME} {suffix}",
            "is_company": True,
            "vat": "BE0812345603" if suffix == "A" else "BE0412345614",
            "city": "Liège",
            "country_id": env.ref("base.be").id,
            "customer_rank": 1,
        }
    )
    if not env["account.journal"].search_count(
        [("type", "=", "sale"), ("company_id", "=", company_id)]
    ):
        pytest.skip("skipped: the e2e database has no sales journal (no chart)")
    tax_id = env["account.tax"].create(
        {
            "name": f"TVA 21 % e2e {suffix}",
            "amount": 21.0,
            "amount_type": "percent",
            "type_tax_use": "sale",
            "company_id": company_id,
        }
    )
    move_id = env["account.move"].create(
        {
            "move_type": "out_invoice",
            "partner_id": partner_id,
            "invoice_date": "2025-03-14",
            "invoice_line_ids": [
                (
                    0,
                    0,
                    {
                        "name": "Conseil",
                        "quantity": 1,
                        "price_unit": 100.0,
                        "tax_ids": [(6, 0, [tax_id])],
                    },
                )
            ],
        }
    )
    # A model-level call: odoorpc's record proxy sends a context Odoo refuses here.
    odoo_admin.execute_kw("account.move", "action_post", [[move_id]])
    [move] = env["account.move"].read([move_id], ["name", "state"])
    assert move["state"] == "posted"
    name = move["name"]
    return backend_id, partner_id, move_id, name


def _run(server: Any, backend_id: int, state: StateStore, connector: Connector) -> Any:
    gateway = OdooGateway(
        server.url,
        server.db,
        "admin",
        "admin",
        timeout=120,
        retry=RetryPolicy(attempts=3, initial=0.05, maximum=0.5, jitter=0.05),
    ).connect()
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


def _links(odoo_admin: Any, backend_id: int, model: str) -> dict[str, int]:
    rows = odoo_admin.env["crm.sync.link"].search_read(
        [("backend_id", "=", backend_id), ("res_model", "=", model)],
        ["external_id", "res_id", "state"],
    )
    return {r["external_id"]: r["res_id"] for r in rows if r["state"] != "unlinked"}


def test_sage_accounting_with_real_odoo(
    odoo_server: Any, odoo_admin: Any, make_connector: MakeConnector, tmp_path: Path
) -> None:
    backend_id, partner_id, move_id, number = _prepare(
        odoo_admin, "sage_accounting", "A"
    )
    with SageAccountingSandbox(customers=6) as sage:
        connector = make_connector(sage)
        state = StateStore(tmp_path / "state")
        result = _run(odoo_server, backend_id, state, connector)
        assert result.outcome == "success", result.log
        business = sage.businesses[BE_BUSINESS]
        partners = _links(odoo_admin, backend_id, "res.partner")
        [pushed] = [
            c for c in business.contacts.values() if c["tax_number"] == "BE0812345603"
        ]
        assert partners[pushed["id"]] == partner_id
        assert pushed["name"] == f"{NAME} A"
        assert len(partners) >= 7
        [invoice] = [
            d for d in business.sales_invoices.values() if d["reference"] == number
        ]
        assert invoice["contact"]["id"] == pushed["id"]
        assert invoice["total_amount"] == "121.00"
        links = _links(odoo_admin, backend_id, "account.move")
        assert links[invoice["id"]] == move_id
        references = [d["reference"] for d in business.sales_invoices.values()]
        assert len(references) == len(set(references)) == len(links)
        again = _run(odoo_server, backend_id, state, connector)
        assert again.outcome == "success", again.log
        assert again.counts.created == 0
        assert len(business.sales_invoices) == len(references)


def test_sage_x3_with_real_odoo(
    odoo_server: Any,
    odoo_admin: Any,
    make_x3: Callable[..., Any],
    tmp_path: Path,
) -> None:
    backend_id, partner_id, move_id, number = _prepare(odoo_admin, "sage_x3", "B")
    with SageX3Sandbox(customers=4) as x3:
        connector = make_x3(x3, operation_timeout=10)
        state = StateStore(tmp_path / "state")
        result = _run(odoo_server, backend_id, state, connector)
        assert result.outcome == "success", result.log
        [code] = [
            c["BPCNUM"]
            for c in x3.customers.values()
            if c.get("EECNUM") == "BE0412345614"
        ]
        assert _links(odoo_admin, backend_id, "res.partner")[code] == partner_id
        assert x3.customers[code]["BPCNAM"] == f"{NAME} B"
        [invoice] = [i for i in x3.invoices.values() if i["BPRVCR"] == number]
        assert invoice["BPCINV"] == code and invoice["AMTATI"] == "121.00"
        # Every posted invoice of the company goes out (also the one of the other
        # test, same database), each exactly once and linked to its move.
        links = _links(odoo_admin, backend_id, "account.move")
        assert links[invoice["NUM"]] == move_id
        references = [i["BPRVCR"] for i in x3.invoices.values()]
        assert len(references) == len(set(references)) == len(links)
        again = _run(odoo_server, backend_id, state, connector)
        assert again.outcome == "success", again.log
        assert len(x3.invoices) == len(references)
