"""The daemon against a real Odoo 18 with crm_module (skipped without Odoo).

Uses the session fixtures of tests/odoo_fixtures.py: one throw-away database per
test session, a daemon user in the add-on's technical group, and the test-double
ledger in place of Exact/Sage.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sync_daemon.engine import BackendConfig, BackendRun
from sync_daemon.gateway import OdooGateway
from sync_daemon.invoices import InvoiceReader
from sync_daemon.kernel.errors import AuthError
from sync_daemon.kernel.models import (
    Address,
    Customer,
    Invoice,
    InvoiceLine,
    Party,
    PaymentStatus,
)
from sync_daemon.partners import OdooLookups
from sync_daemon.state import StateStore
from sync_daemon.testing.double import DoubleConnector, DoubleLedger
from sync_daemon.testing.odoo_setup import make_backend, make_daemon_user

pytestmark = pytest.mark.odoo

PASSWORD = "sync-bot-pw"


@pytest.fixture(scope="module")
def daemon_user(odoo_admin: Any) -> str:
    make_daemon_user(odoo_admin, "sync-bot", PASSWORD)
    return "sync-bot"


def _gateway(server: Any, login: str, transport: str = "jsonrpc") -> OdooGateway:
    return OdooGateway(
        server.url, server.db, login, PASSWORD, transport=transport, timeout=120
    ).connect()


def _run(
    server: Any, login: str, backend_id: int, ledger: DoubleLedger, state: StateStore
) -> Any:
    gateway = _gateway(server, login)
    [row] = [
        r
        for r in gateway.call("crm.sync.backend", "daemon_get_config")
        if r["id"] == backend_id
    ]
    result = BackendRun(
        gateway=gateway,
        state=state,
        backend=BackendConfig.from_odoo(row),
        connector=DoubleConnector(ledger),
    ).run()
    return result, gateway


def test_real_odoo_sync_cycle(
    odoo_server: Any, odoo_admin: Any, daemon_user: str, tmp_path: Path
) -> None:
    backend_id = make_backend(odoo_admin, "E2E Exact")
    ledger = DoubleLedger(tmp_path / "ledger.sqlite3")
    state = StateStore(tmp_path / "state")
    partners = odoo_admin.env["res.partner"]
    be = odoo_admin.env["res.country"].search([("code", "=", "BE")])[0]
    existing = partners.create(
        {
            "name": "Fictief Software",
            "is_company": True,
            "vat": "BE0447123478",
            "country_id": be,
        }
    )
    ledger.put_customer(
        Customer(
            external_id="G1",
            name="Fictief Software BV",
            vat="BE 0447.123.478",
            address=Address(country_code="BE"),
        )
    )
    for n in range(25):
        ledger.put_customer(
            Customer(
                external_id=f"N{n}",
                name=f"E2E Client {n}",
                email=f"client{n}@example.com",
                address=Address(country_code="BE", zip="1000", city="Brussel"),
                tags=("ledger",),
            )
        )
    result, gateway = _run(odoo_server, daemon_user, backend_id, ledger, state)
    assert result.outcome == "success", result.log
    assert (result.counts.created, result.counts.linked) == (25, 1)
    created = partners.search_read(
        [("name", "like", "E2E Client")], ["company_id", "category_id", "customer_rank"]
    )
    assert len(created) == 25
    assert all(
        r["company_id"] and r["customer_rank"] == 1 and r["category_id"]
        for r in created
    )
    links = gateway.call(
        "crm.sync.link", "daemon_read_links", backend_id, "res.partner"
    )
    assert {link["external_id"]: link["res_id"] for link in links}["G1"] == existing
    assert partners.read([existing], ["vat"])[0]["vat"] == "BE0447123478"

    again, _ = _run(odoo_server, daemon_user, backend_id, ledger, state)
    assert (again.counts.created, again.counts.pulled) == (0, 0)

    # both sides change the e-mail of one client: a conflict issue, Odoo keeps its value
    [target] = partners.search([("name", "=", "E2E Client 3")])
    partners.write([target], {"email": "odoo-side@example.com"})
    ledger.put_customer(
        Customer(
            external_id="N3",
            name="E2E Client 3",
            email="ledger-side@example.com",
            address=Address(country_code="BE", zip="1000", city="Brussel"),
            tags=("ledger",),
        )
    )
    third, _ = _run(odoo_server, daemon_user, backend_id, ledger, state)
    assert third.counts.conflicts == 1, third.log
    issues = odoo_admin.env["crm.sync.issue"].search_read(
        [("backend_id", "=", backend_id), ("kind", "=", "conflict")],
        ["res_id", "field_name"],
    )
    assert [(i["res_id"], i["field_name"]) for i in issues] == [(target, "emails")]
    assert partners.read([target], ["email"])[0]["email"] == "odoo-side@example.com"
    runs = odoo_admin.env["crm.sync.run"].search_read(
        [("backend_id", "=", backend_id)], ["outcome", "count_created"]
    )
    assert sorted(r["count_created"] for r in runs) == [0, 0, 25]


def test_real_odoo_session_expiry_is_recovered(
    odoo_server: Any, daemon_user: str
) -> None:
    gateway = _gateway(odoo_server, daemon_user, transport="session")
    assert gateway._odoo is not None
    gateway._odoo.json("/web/session/destroy", {})
    assert gateway.call("res.partner", "search_count", []) > 0
    bad = OdooGateway(odoo_server.url, odoo_server.db, daemon_user, "wrong")
    with pytest.raises(AuthError):
        bad.connect()


def _accounting(admin: Any) -> None:
    """A chart of accounts and 21 % sale/purchase taxes in the admin's company."""
    company = admin.env.user.company_id
    if not company.chart_template:
        admin.execute_kw(
            "account.chart.template", "try_loading", ["generic_coa", company.id]
        )
    for use in ("sale", "purchase"):
        found = admin.env["account.tax"].search(
            [
                ("type_tax_use", "=", use),
                ("amount", "=", 21.0),
                ("amount_type", "=", "percent"),
                ("company_id", "=", company.id),
            ]
        )
        if not found:
            admin.env["account.tax"].create(
                {
                    "name": f"VAT 21% {use}",
                    "amount": 21.0,
                    "amount_type": "percent",
                    "type_tax_use": use,
                    "company_id": company.id,
                }
            )


def _post_invoice(admin: Any, partner_id: int, lines: list[tuple[float, float]]) -> int:
    """Post an invoice whose prices include 21 % VAT (field case C024's shape)."""
    company = admin.env.user.company_id.id
    tax = admin.env["account.tax"].search(
        [("name", "=", "VAT 21% incl"), ("company_id", "=", company)]
    ) or [
        admin.env["account.tax"].create(
            {
                "name": "VAT 21% incl",
                "amount": 21.0,
                "amount_type": "percent",
                "type_tax_use": "sale",
                "price_include_override": "tax_included",
                "company_id": company,
            }
        )
    ]
    move = admin.env["account.move"].create(
        {
            "move_type": "out_invoice",
            "partner_id": partner_id,
            "invoice_date": "2025-03-14",
            "ref": "PO-4471",
            "invoice_line_ids": [
                (
                    0,
                    0,
                    {
                        "name": "Consulting",
                        "quantity": qty,
                        "price_unit": price,
                        "tax_ids": [(6, 0, tax)],
                    },
                )
                for qty, price in lines
            ],
        }
    )
    admin.execute_kw("account.move", "action_post", [[move]])
    return int(move)


def test_real_odoo_invoices_out_payments_and_bills_in(
    odoo_server: Any, odoo_admin: Any, daemon_user: str, tmp_path: Path
) -> None:
    _accounting(odoo_admin)
    be = odoo_admin.env["res.country"].search([("code", "=", "BE")])[0]
    buyer = odoo_admin.env["res.partner"].create(
        {
            "name": "Atelier Imaginaire SRL",
            "is_company": True,
            "vat": "BE0765881217",
            "country_id": be,
            "customer_rank": 1,
        }
    )
    move_id = _post_invoice(odoo_admin, buyer, [(40.0, 12.95)])
    gateway = _gateway(odoo_server, daemon_user)
    company = odoo_admin.env.user.company_id.id
    gateway.use_company(company)
    reader = InvoiceReader(gateway, OdooLookups(gateway))
    [(_move, buyer_id, invoice)] = [
        item
        for page in reader.posted_customer_invoices(company)
        for item in page
        if item[0] == move_id
    ]
    assert isinstance(invoice, Invoice), invoice
    assert buyer_id == buyer
    assert invoice.buyer.vat == "BE0765881217"
    assert invoice.buyer_reference == "PO-4471"
    assert invoice.line_extension_amount == Decimal("428.10")
    assert invoice.tax_amount == Decimal("89.90")
    assert invoice.tax_inclusive_amount == Decimal("518.00")
    [line] = invoice.lines
    assert line.unit_price == Decimal("10.7025")
    assert abs(line.quantity * line.unit_price - line.net_amount) <= Decimal("0.02")
    assert invoice.tax_amount == sum(s.tax_amount for s in invoice.tax_subtotals)
    assert invoice.payable_amount == invoice.tax_inclusive_amount

    backend_id = make_backend(odoo_admin, "E2E Ledger invoices")
    ledger = DoubleLedger(tmp_path / "ledger.sqlite3")
    state = StateStore(tmp_path / "state")
    ledger.fail_next("push_invoice", "store_then_reset")
    result, _ = _run(odoo_server, daemon_user, backend_id, ledger, state)
    assert result.outcome in ("success", "partial"), result.log
    numbers = [i["number"] for i in ledger.invoices()]
    assert numbers.count(invoice.number) == 1
    assert ledger.posts("invoice") == len(numbers)

    # the ledger reports the invoice paid: Odoo registers the payment
    ledger.put_payment(
        PaymentStatus(
            invoice_number=invoice.number, state="paid", amount_residual=Decimal(0)
        )
    )
    # a payment of an invoice Odoo never had (the ledger's own history) is skipped,
    # not a dead letter: the run below stays a success
    ledger.put_payment(
        PaymentStatus(
            invoice_number="LEDGER/2019/0042", state="paid", amount_residual=Decimal(0)
        )
    )
    # an incoming e-invoice becomes a draft vendor bill, once
    bill = Invoice(
        number="SUP-2025-9",
        issue_date="2025-03-10",
        seller=Party(
            name="Leverancier Papier BV",
            vat="NL807654322B01",
            address=Address(country_code="NL"),
        ),
        buyer=Party(name="us"),
        lines=(
            InvoiceLine(
                line_id="1",
                name="Paper",
                quantity=Decimal(2),
                unit_price=Decimal(50),
                net_amount=Decimal(100),
                tax_percent=Decimal(21),
            ),
        ),
        line_extension_amount=Decimal(100),
        tax_exclusive_amount=Decimal(100),
        tax_amount=Decimal(21),
        tax_inclusive_amount=Decimal(121),
        payable_amount=Decimal(121),
        attachments=(("SUP-2025-9.pdf", "application/pdf", b"%PDF-1.4 test"),),
    )
    ledger.put_einvoice(bill)
    ledger.put_einvoice(bill)
    result, _ = _run(odoo_server, daemon_user, backend_id, ledger, state)
    assert result.outcome == "success", result.log
    [paid] = odoo_admin.env["account.move"].read([move_id], ["payment_state"])
    assert paid["payment_state"] in ("paid", "in_payment")
    bills = odoo_admin.env["account.move"].search_read(
        [("move_type", "=", "in_invoice"), ("ref", "=", "SUP-2025-9")],
        ["state", "partner_id"],
    )
    assert len(bills) == 1 and bills[0]["state"] == "draft"
    attachments = odoo_admin.env["ir.attachment"].search(
        [("res_model", "=", "account.move"), ("res_id", "=", bills[0]["id"])]
    )
    assert attachments


def test_real_odoo_erasure_is_never_undone_by_the_ledger(
    odoo_server: Any, odoo_admin: Any, daemon_user: str, tmp_path: Path
) -> None:
    """C033 across both sides: the add-on erases, the daemon respects it."""
    backend_id = make_backend(odoo_admin, "E2E erasure")
    ledger = DoubleLedger(tmp_path / "ledger.sqlite3")
    state = StateStore(tmp_path / "state")
    env = odoo_admin.env
    marie = Customer(
        external_id="M1",
        name="Marie Exemple",
        is_company=False,
        email="marie.exemple@example.com",
        phone="+32 470 12 34 56",
        address=Address(country_code="BE", zip="4000", city="Liège"),
    )
    ledger.put_customer(marie)
    first, _ = _run(odoo_server, daemon_user, backend_id, ledger, state)
    assert first.outcome == "success", first.log
    [partner_id] = env["res.partner"].search([("name", "=", "Marie Exemple")])

    # a privacy officer processes her erasure request in Odoo
    officer = env.ref("crm_module.crm_module_group_privacy_officer")
    env["res.users"].write([env.uid], {"groups_id": [(4, officer.id)]})
    requests = env["crm.privacy.request"]
    request_id = requests.create({"request_type": "erasure", "partner_id": partner_id})
    requests.action_verify_identity([request_id])
    requests.action_process([request_id])
    [erased] = (
        env["res.partner"]
        .with_context(active_test=False)
        .read([partner_id], ["crm_erased", "name", "email", "phone"])
    )
    assert erased["crm_erased"] and "Marie" not in erased["name"]
    assert not erased["email"] and not erased["phone"]
    issues = env["crm.sync.issue"].search_read(
        [("backend_id", "=", backend_id), ("kind", "=", "erasure")], ["external_id"]
    )
    assert [issue["external_id"] for issue in issues] == ["M1"]

    # the ledger still holds her (bookkeeping law) and changes her phone
    ledger.put_customer(marie.model_copy(update={"phone": "+32 470 99 99 99"}))
    again, _ = _run(odoo_server, daemon_user, backend_id, ledger, state)
    assert again.outcome == "success", again.log
    assert (
        env["res.partner"]
        .with_context(active_test=False)
        .search([("name", "ilike", "Marie Exemple")])
        == []
    )
    [after] = (
        env["res.partner"]
        .with_context(active_test=False)
        .read([partner_id], ["name", "email", "phone"])
    )
    assert (after["name"], after["email"], after["phone"]) == (
        erased["name"],
        erased["email"],
        erased["phone"],
    )
    # nothing anonymised was pushed back: the ledger keeps its own record
    [kept] = [c for c in ledger.customers() if c["external_id"] == "M1"]
    assert "Marie Exemple" in str(kept)
