"""Fixtures of the daemon's tests: a fake Odoo on 127.0.0.1 and gateways to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sync_daemon.gateway import OdooGateway
from sync_daemon.retry import RetryPolicy
from sync_daemon.testing.fake_odoo import FakeOdoo


@pytest.fixture
def fake_odoo() -> Iterator[FakeOdoo]:
    with FakeOdoo() as fake:
        yield fake


def make_gateway(fake: FakeOdoo, transport: str = "jsonrpc") -> OdooGateway:
    gateway = OdooGateway(
        fake.url,
        fake.database,
        "sync-bot",
        "secret",
        transport=transport,
        timeout=5,
        retry=RetryPolicy(attempts=3, initial=0.01, maximum=0.05, jitter=0.01),
    )
    return gateway.connect()


@pytest.fixture
def gateway(fake_odoo: FakeOdoo) -> OdooGateway:
    return make_gateway(fake_odoo)


def add_accounting(fake: FakeOdoo) -> None:
    """Declare the accounting models the invoice reader and writer use."""
    from sync_daemon.testing.fake_odoo import _f

    fake.add_model(
        "account.tax",
        {
            "name": _f("char"),
            "amount": _f("float"),
            "amount_type": _f("char"),
            "type_tax_use": _f("char"),
            "company_id": _f("many2one", "res.company"),
        },
    )
    fake.add_model(
        "account.move",
        {
            "name": _f("char"),
            "move_type": _f("char"),
            "state": _f("char"),
            "partner_id": _f("many2one", "res.partner"),
            "commercial_partner_id": _f("many2one", "res.partner"),
            "company_id": _f("many2one", "res.company"),
            "currency_id": _f("many2one", "res.currency"),
            "invoice_date": _f("date"),
            "invoice_date_due": _f("date"),
            "ref": _f("char"),
            "payment_reference": _f("char"),
            "amount_untaxed": _f("float"),
            "amount_tax": _f("float"),
            "amount_total": _f("float"),
            "amount_residual": _f("float"),
            "reversed_entry_id": _f("many2one", "account.move"),
            "narration": _f("html"),
            "invoice_line_ids": _f("one2many", "account.move.line", inverse="move_id"),
            "write_date": _f("datetime"),
        },
    )
    fake.add_model(
        "account.move.line",
        {
            "move_id": _f("many2one", "account.move"),
            "display_type": _f("char"),
            "name": _f("char"),
            "quantity": _f("float"),
            "price_unit": _f("float"),
            "discount": _f("float"),
            "price_subtotal": _f("float"),
            "tax_ids": _f("many2many", "account.tax"),
            "product_id": _f("many2one", "product.product"),
            "product_uom_id": _f("many2one", "uom.uom"),
        },
    )
    fake.add_model(
        "ir.attachment",
        {
            "name": _f("char"),
            "mimetype": _f("char"),
            "datas": _f("binary"),
            "res_model": _f("char"),
            "res_id": _f("integer"),
        },
    )
    fake.seed(
        "account.tax",
        {
            "id": 1,
            "name": "21%",
            "amount": 21.0,
            "amount_type": "percent",
            "type_tax_use": "sale",
            "company_id": 1,
        },
    )
    fake.seed(
        "account.tax",
        {
            "id": 2,
            "name": "21% P",
            "amount": 21.0,
            "amount_type": "percent",
            "type_tax_use": "purchase",
            "company_id": 1,
        },
    )


def seed_invoice(
    fake: FakeOdoo,
    move_id: int,
    name: str,
    partner_id: int,
    *,
    lines: list[tuple[float, float, float]] | None = None,
    ref: str | bool = False,
) -> None:
    """A posted customer invoice: lines are (quantity, price_subtotal, tax %)."""
    lines = lines or [(1.0, 100.0, 21.0)]
    untaxed = sum(sub for _, sub, _ in lines)
    tax = round(sum(sub * pct / 100 for _, sub, pct in lines), 2)
    fake.seed(
        "account.move",
        {
            "id": move_id,
            "name": name,
            "move_type": "out_invoice",
            "state": "posted",
            "partner_id": partner_id,
            "commercial_partner_id": partner_id,
            "company_id": 1,
            "currency_id": 1,
            "invoice_date": "2025-03-14",
            "invoice_date_due": "2025-04-13",
            "ref": ref,
            "amount_untaxed": untaxed,
            "amount_tax": tax,
            "amount_total": untaxed + tax,
            "amount_residual": untaxed + tax,
            "write_date": "2025-03-14 10:00:00",
        },
    )
    for qty, sub, pct in lines:
        fake.seed(
            "account.move.line",
            {
                "move_id": move_id,
                "display_type": "product",
                "name": "Consulting",
                "quantity": qty,
                "price_unit": sub / qty,
                "discount": 0.0,
                "price_subtotal": sub,
                "tax_ids": [1] if pct else [],
            },
        )
