"""A Peppol run against a real Odoo 18 with crm_module and the Peppol sandbox.

The real Peppol connector talks to :class:`connectors.peppol.sandbox.PeppolSandbox`
on 127.0.0.1 (access point, SMP and SML DNS); the engine writes the readiness it
finds on real partners and the Peppol state on real invoices (skipped without Odoo
or without the shared Peppol rules).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.peppol.connector import create
from connectors.peppol.sandbox import PeppolSandbox
from connectors.peppol.validate import get_validator
from sync_daemon.engine import BackendConfig, BackendRun
from sync_daemon.gateway import OdooGateway
from sync_daemon.kernel.protocol import ConnectorContext
from sync_daemon.state import StateStore
from sync_daemon.testing.odoo_setup import make_backend, make_daemon_user

pytestmark = pytest.mark.odoo

PASSWORD = "sync-bot-pw"
#: invented Belgian numbers with valid check digits, used by no other test
SELLER_VAT = "BE0403170701"
READY_VAT = "BE0885111241"
NOT_READY_VAT = "BE0410901205"
PROSPECT_VAT = "BE0798015436"


class _Tokens:
    def load(self, key: str) -> None:
        return None

    def save(self, key: str, tokens: Any) -> None:
        return None

    def lock(self, key: str) -> Any:
        return nullcontext()


@pytest.fixture
def sandbox(shared_dir: Path, tmp_path: Path) -> Iterator[PeppolSandbox]:
    rules = shared_dir / "specs" / "peppol"
    (tmp_path / "inbox").mkdir()
    box = PeppolSandbox(
        inbox_dir=tmp_path / "inbox",
        participants=[f"0208:{READY_VAT[2:]}", f"0208:{PROSPECT_VAT[2:]}"],
        validator=get_validator(rules),
    ).start()
    box.rules_dir = rules  # type: ignore[attr-defined]
    yield box
    box.stop()


@pytest.fixture(autouse=True)
def _cancel_posted(odoo_admin: Any) -> Iterator[None]:
    """Cancel this module's invoices afterwards: the database is shared by the
    session, and other backends' tests push every posted invoice they find."""
    yield
    moves = odoo_admin.env["account.move"]
    ids = moves.search([("ref", "=like", "PO-PEPPOL-%"), ("state", "=", "posted")])
    if ids:
        moves.button_draft(ids)
        moves.button_cancel(ids)


@pytest.fixture
def seller(odoo_admin: Any) -> Iterator[int]:
    """The company's partner gets what a Peppol seller needs, then is restored."""
    company = odoo_admin.env.user.company_id
    partner = company.partner_id
    fields = ["vat", "country_id", "street", "city", "zip"]
    [before] = odoo_admin.env["res.partner"].read([partner.id], fields)
    be = odoo_admin.env["res.country"].search([("code", "=", "BE")])[0]
    odoo_admin.env["res.partner"].write(
        [partner.id],
        {
            "vat": SELLER_VAT,
            "country_id": be,
            "street": "Veldstraat 12",
            "city": "Gent",
            "zip": "9000",
        },
    )
    yield partner.id
    restore = {k: before[k] for k in fields}
    restore["country_id"] = before["country_id"] and before["country_id"][0]
    odoo_admin.env["res.partner"].write([partner.id], restore)


def _accounting(admin: Any) -> int:
    company = admin.env.user.company_id
    if not company.chart_template:
        admin.execute_kw(
            "account.chart.template", "try_loading", ["generic_coa", company.id]
        )
    found = admin.env["account.tax"].search(
        [
            ("type_tax_use", "=", "sale"),
            ("amount", "=", 21.0),
            ("amount_type", "=", "percent"),
            ("price_include", "=", False),
            ("company_id", "=", company.id),
        ],
        limit=1,
    )
    if found:
        return int(found[0])
    return int(
        admin.env["account.tax"].create(
            {
                "name": "VAT 21% peppol",
                "amount": 21.0,
                "amount_type": "percent",
                "type_tax_use": "sale",
                "company_id": company.id,
            }
        )
    )


def _post(admin: Any, partner_id: int, ref: str, taxes: list[list[int]]) -> int:
    move = admin.env["account.move"].create(
        {
            "move_type": "out_invoice",
            "partner_id": partner_id,
            "invoice_date": "2026-12-01",
            "ref": ref,
            "invoice_line_ids": [
                (
                    0,
                    0,
                    {
                        "name": f"Consulting {index}",
                        "quantity": 2.0,
                        "price_unit": 50.0,
                        "tax_ids": [(6, 0, tax_ids)],
                    },
                )
                for index, tax_ids in enumerate(taxes)
            ],
        }
    )
    admin.execute_kw("account.move", "action_post", [[move]])
    return int(move)


def _run(server: Any, backend_id: int, box: PeppolSandbox, state: StateStore) -> Any:
    gateway = OdooGateway(
        server.url, server.db, "sync-bot", PASSWORD, timeout=120
    ).connect()
    [row] = [
        r
        for r in gateway.call("crm.sync.backend", "daemon_get_config")
        if r["id"] == backend_id
    ]
    connector = create(
        ConnectorContext(
            backend_id=backend_id,
            settings={
                **box.connector_settings(),
                "rules_dir": str(box.rules_dir),  # type: ignore[attr-defined]
            },
            tokens=_Tokens(),
            clock=lambda: datetime.now(UTC),
            sleep=lambda seconds: None,
        )
    )
    try:
        return BackendRun(
            gateway=gateway,
            state=state,
            backend=BackendConfig.from_odoo(row),
            connector=connector,
        ).run()
    finally:
        connector.close()


def test_real_odoo_peppol_run_writes_readiness_and_invoice_states(
    odoo_server: Any,
    odoo_admin: Any,
    sandbox: PeppolSandbox,
    seller: int,
    tmp_path: Path,
) -> None:
    make_daemon_user(odoo_admin, "sync-bot", PASSWORD)
    tax = _accounting(odoo_admin)
    partners = odoo_admin.env["res.partner"]
    be = odoo_admin.env["res.country"].search([("code", "=", "BE")])[0]
    ready = partners.create(
        {
            "name": "Peppol Klant NV",
            "is_company": True,
            "vat": READY_VAT,
            "country_id": be,
            "street": "Markt 1",
            "city": "Brugge",
            "zip": "8000",
            "customer_rank": 1,
        }
    )
    not_ready = partners.create(
        {
            "name": "Papieren Klant BV",
            "is_company": True,
            "vat": NOT_READY_VAT,
            "country_id": be,
            "customer_rank": 1,
        }
    )
    # a prospect, not yet a customer, with an opportunity on one of its contacts
    prospect = partners.create(
        {
            "name": "Toekomstige Klant NV",
            "is_company": True,
            "vat": PROSPECT_VAT,
            "country_id": be,
        }
    )
    prospect_contact = partners.create({"name": "Jan Koper", "parent_id": prospect})
    prospect_lead = odoo_admin.env["crm.lead"].create(
        {
            "name": "Prospect deal",
            "type": "opportunity",
            "partner_id": prospect_contact,
        }
    )
    good = _post(odoo_admin, ready, "PO-PEPPOL-1", [[tax]])
    # a taxed and an untaxed line: category O mixed with S breaks BR-O-*
    bad = _post(odoo_admin, ready, "PO-PEPPOL-2", [[tax], []])
    paper = _post(odoo_admin, not_ready, "PO-PEPPOL-3", [[tax]])
    opportunity = odoo_admin.env["crm.lead"].create(
        {"name": "Peppol deal", "type": "opportunity", "partner_id": ready}
    )
    backend_id = make_backend(odoo_admin, "E2E Peppol", kind="peppol")
    state = StateStore(tmp_path / "state")

    result = _run(odoo_server, backend_id, sandbox, state)
    assert result.outcome in ("success", "partial"), result.log

    readiness = {
        row["id"]: row
        for row in partners.read(
            [ready, not_ready],
            [
                "crm_peppol_readiness",
                "crm_peppol_participant_id",
                "crm_peppol_checked_at",
            ],
        )
    }
    assert readiness[ready]["crm_peppol_readiness"] == "can_receive"
    assert readiness[ready]["crm_peppol_participant_id"] == f"0208:{READY_VAT[2:]}"
    assert readiness[ready]["crm_peppol_checked_at"]
    assert readiness[not_ready]["crm_peppol_readiness"] == "cannot"
    [lead] = odoo_admin.env["crm.lead"].read(
        [opportunity], ["customer_peppol_readiness"]
    )
    assert lead["customer_peppol_readiness"] == "can_receive"
    [lead] = odoo_admin.env["crm.lead"].read(
        [prospect_lead], ["customer_peppol_readiness", "customer_peppol_participant_id"]
    )
    assert lead["customer_peppol_readiness"] == "can_receive"
    assert lead["customer_peppol_participant_id"] == f"0208:{PROSPECT_VAT[2:]}"

    moves = {
        row["id"]: row
        for row in odoo_admin.env["account.move"].read(
            [good, bad, paper],
            ["name", "crm_peppol_state", "crm_peppol_rules", "crm_peppol_message"],
        )
    }
    assert moves[good]["crm_peppol_state"] == "sent", (moves, result.log)
    assert moves[paper]["crm_peppol_state"] == "not_applicable"
    assert moves[bad]["crm_peppol_state"] == "to_fix", (moves, result.log)
    assert "BR-O-" in moves[bad]["crm_peppol_rules"]
    # only the valid invoice left the building
    sent = [doc["number"] for doc in sandbox.documents.values()]
    assert sent == [moves[good]["name"]]
    issues = odoo_admin.env["crm.sync.issue"].search_read(
        [("backend_id", "=", backend_id), ("res_id", "=", bad)], ["message"]
    )
    assert issues and "BR-O-" in issues[0]["message"]

    # later runs poll the access point (the sandbox reports "accepted" once, then
    # "delivered"): the delivery is written back, nothing is sent again
    for _ in range(2):
        again = _run(odoo_server, backend_id, sandbox, state)
        assert again.outcome in ("success", "partial"), again.log
    [delivered] = odoo_admin.env["account.move"].read([good], ["crm_peppol_state"])
    assert delivered["crm_peppol_state"] == "delivered"
    assert len(sandbox.documents) == 1
