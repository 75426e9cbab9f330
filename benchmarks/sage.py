"""Benchmark: the Sage connectors against their local sandboxes.

Sage Accounting v3.1: initial pull of N customer contacts (``items_per_page=200``
with attributes, so one call per 200 contacts) and booking of M invoices (each a
lookup by reference, then one POST). Sage X3: pull of N customers (one ``query``
then one ``read`` per customer, the classic SOAP API has no bulk read) and
creation of M customers (lookup by VAT, then ``save``). Real clock, 127.0.0.1 only.

    .venv/bin/python benchmarks/sage.py
    .venv/bin/python benchmarks/sage.py --customers 5000 --writes 200
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

from connectors.sage.accounting import SageAccountingConnector
from connectors.sage.accounting import load_settings as load_accounting
from connectors.sage.sandbox_accounting import BE_BUSINESS, SageAccountingSandbox
from connectors.sage.sandbox_x3 import SageX3Sandbox
from connectors.sage.seed import seed_customers
from connectors.sage.x3 import SageX3Connector
from connectors.sage.x3 import load_settings as load_x3
from sync_daemon.kernel.models import Address, Customer, Invoice, InvoiceLine, Party
from sync_daemon.state import SqliteTokenStore


def make_invoice(number: str, buyer_external_id: str) -> Invoice:
    net, tax = Decimal("100.00"), Decimal("21.00")
    return Invoice(
        number=number,
        issue_date=date(2025, 3, 14),
        seller=Party(name="Fictief Advies BV"),
        buyer=Party(name="Buyer"),
        buyer_external_id=buyer_external_id,
        lines=(
            InvoiceLine(
                line_id="1",
                name="Conseil",
                quantity=Decimal(1),
                unit_price=net,
                net_amount=net,
                tax_percent=Decimal(21),
            ),
        ),
        line_extension_amount=net,
        tax_exclusive_amount=net,
        tax_amount=tax,
        tax_inclusive_amount=net + tax,
        payable_amount=net + tax,
    )


def _customer(index: int, seed: int) -> Customer:
    spec = seed_customers(index + 1, seed=seed)[index]
    return Customer(
        external_id=f"bench-{index}",
        name=spec.name,
        vat=spec.vat,
        company_registry=spec.registry,
        address=Address(city=spec.city, zip=spec.zip, country_code=spec.country),
    )


def accounting(customers: int, writes: int) -> dict[str, object]:
    sandbox = SageAccountingSandbox(customers=customers).start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            store = SqliteTokenStore(Path(folder) / "state.sqlite3")
            connector = SageAccountingConnector(
                load_accounting(sandbox.settings(BE_BUSINESS)),
                tokens=store,
                clock=sandbox.clock,
                sleep=time.sleep,
            )
            connector.exchange_code(code=sandbox.issue_code())
            start = time.perf_counter()
            pulled = sum(len(p.records) for p in connector.pull_customers(None))
            pull_s = time.perf_counter() - start
            pull_calls = len(sandbox.requests)
            buyer = connector.push_customer(
                _customer(0, 999), external_id=None, idempotency_key="bench"
            )
            before = len(sandbox.requests)
            start = time.perf_counter()
            for n in range(writes):
                invoice = make_invoice(f"FV-B-{n:05d}", buyer.external_id)
                connector.push_invoice(invoice, idempotency_key=invoice.number)
            write_s = time.perf_counter() - start
            connector.close()
            store.close()
            return {
                "customers_pulled": pulled,
                "pull_calls": pull_calls,
                "pull_seconds": round(pull_s, 3),
                "contacts_per_second": round(pulled / pull_s),
                "invoices_booked": writes,
                "calls_per_invoice": (len(sandbox.requests) - before) / writes,
                "ms_per_invoice": round(1000 * write_s / writes, 2),
            }
    finally:
        sandbox.stop()


def x3(customers: int, writes: int) -> dict[str, object]:
    sandbox = SageX3Sandbox(customers=customers).start()
    try:
        connector = SageX3Connector(
            load_x3(sandbox.settings(query_list_size=max(customers + 1, 10))),
            sleep=time.sleep,
        )
        start = time.perf_counter()
        pulled = sum(len(p.records) for p in connector.pull_customers(None))
        pull_s = time.perf_counter() - start
        pull_calls = len(sandbox.calls)
        start = time.perf_counter()
        for n in range(writes):
            connector.push_customer(
                _customer(n, 4242), external_id=None, idempotency_key=f"b{n}"
            )
        write_s = time.perf_counter() - start
        connector.close()
        return {
            "customers_pulled": pulled,
            "pull_calls": pull_calls,
            "pull_seconds": round(pull_s, 3),
            "customers_per_second": round(pulled / pull_s),
            "customers_created": writes,
            "ms_per_customer_create": round(1000 * write_s / writes, 2),
        }
    finally:
        sandbox.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--writes", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    report = {
        "sage_accounting": accounting(args.customers, args.writes),
        "sage_x3": x3(args.customers // 4, args.writes),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
