"""Reading Odoo invoices as canonical ones: the buyer reference's source order
(C025: sale order customer reference, then the invoice's ``ref``, then the
partner's default) against the fake Odoo."""

from __future__ import annotations

from typing import Any

from sync_daemon.invoices import InvoiceReader
from sync_daemon.kernel.models import Invoice
from sync_daemon.partners import OdooLookups
from sync_daemon.testing.fake_odoo import FakeOdoo, _f

from .conftest import add_accounting, make_gateway, seed_invoice


def _with_sales(fake: FakeOdoo) -> None:
    """The Sales app's models, as far as the reader reads them."""
    fake.add_model("sale.order", {"client_order_ref": _f("char")})
    fake.add_model("sale.order.line", {"order_id": _f("many2one", "sale.order")})
    fake.add_field("account.move.line", "sale_line_ids", "many2many", "sale.order.line")
    fake.add_field("res.partner", "crm_buyer_reference", "char")


def _read(fake: FakeOdoo) -> dict[str, Invoice]:
    gateway = make_gateway(fake)
    reader = InvoiceReader(gateway, OdooLookups(gateway))
    found: dict[str, Invoice] = {}
    for page in reader.posted_customer_invoices(1):
        for _move_id, _partner_id, invoice in page:
            assert isinstance(invoice, Invoice), invoice
            found[invoice.number] = invoice
    return found


def test_c025_buyer_reference_source_order(fake_odoo: FakeOdoo) -> None:
    add_accounting(fake_odoo)
    _with_sales(fake_odoo)
    be = fake_odoo.country_id("BE")
    partner: dict[str, Any] = {
        "id": 101,
        "name": "Atelier Imaginaire SRL",
        "is_company": True,
        "vat": "BE0765881217",
        "country_id": be,
    }
    fake_odoo.seed("res.partner", {**partner, "crm_buyer_reference": "DEFAULT-7"})
    fake_odoo.seed("sale.order", {"id": 31, "client_order_ref": "PO-4471"})
    fake_odoo.seed("sale.order.line", {"id": 41, "order_id": 31})
    seed_invoice(fake_odoo, 9001, "FV-2025-00041", 101, ref="INV-REF")
    seed_invoice(fake_odoo, 9002, "FV-2025-00042", 101, ref="INV-REF")
    seed_invoice(fake_odoo, 9003, "FV-2025-00043", 101, ref=False)
    # the first invoice comes from a sale order with a customer reference
    [line] = [
        row
        for row in fake_odoo.data["account.move.line"].values()
        if row["move_id"] == 9001
    ]
    line["sale_line_ids"] = [41]
    invoices = _read(fake_odoo)
    assert invoices["FV-2025-00041"].buyer_reference == "PO-4471"
    assert invoices["FV-2025-00042"].buyer_reference == "INV-REF"
    assert invoices["FV-2025-00043"].buyer_reference == "DEFAULT-7"


def test_c025_no_source_leaves_the_reference_empty(fake_odoo: FakeOdoo) -> None:
    add_accounting(fake_odoo)
    fake_odoo.seed(
        "res.partner",
        {"id": 101, "name": "Atelier Imaginaire SRL", "is_company": True},
    )
    seed_invoice(fake_odoo, 9044, "FV-2025-00044", 101, ref=False)
    # no sale order, no ref, no partner default: the builder refuses it later
    assert _read(fake_odoo)["FV-2025-00044"].buyer_reference is None
