"""A test-double connector: a whole "ledger" in one SQLite file.

It implements every capability of the connector protocol (customers, deletions,
customer and invoice sinks, payments, incoming e-invoices) over a file, so the
engine can be tested end to end without Exact or Sage, and so that the ledger
survives a ``kill -9`` of the process using it (the crash test). Changes carry a
sequence number; a cursor is the last sequence number seen.

Faults for one process are injected with :meth:`DoubleLedger.fail_next`
(``store_then_reset``: the remote stores the record, then the connection drops —
field case C032).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..kernel.errors import DataError, NetworkError
from ..kernel.identifiers import compact_vat
from ..kernel.models import Customer, Deletion, Invoice, PaymentStatus, RemoteRef
from ..kernel.protocol import ConnectorContext, HealthReport, Page

__all__ = ["DoubleConnector", "DoubleLedger", "create"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customer (
    external_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, data TEXT NOT NULL,
    vat TEXT, origin TEXT, broken TEXT
);
CREATE TABLE IF NOT EXISTS deletion (
    seq INTEGER PRIMARY KEY, external_id TEXT NOT NULL, entity TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS invoice (
    external_id TEXT PRIMARY KEY, number TEXT UNIQUE NOT NULL, data TEXT NOT NULL,
    idempotency_key TEXT
);
CREATE TABLE IF NOT EXISTS payment (
    seq INTEGER PRIMARY KEY, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS einvoice (
    seq INTEGER PRIMARY KEY, data TEXT NOT NULL, taken INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS post_log (op TEXT NOT NULL, key TEXT);
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class DoubleLedger:
    """The remote system of the double: customers, invoices, payments, inbox."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.RLock()
        self._faults: list[tuple[str, str]] = []

    def _next(self, name: str) -> int:
        self._conn.execute(
            "INSERT INTO counter VALUES (?, 1) ON CONFLICT (name) "
            "DO UPDATE SET value = value + 1",
            (name,),
        )
        return int(
            self._conn.execute(
                "SELECT value FROM counter WHERE name=?", (name,)
            ).fetchone()[0]
        )

    def fail_next(self, op: str, fault: str = "store_then_reset") -> None:
        """Make the next ``op`` (``push_customer``/``push_invoice``) misbehave."""
        self._faults.append((op, fault))

    def _fault(self, op: str) -> str | None:
        for index, (name, fault) in enumerate(self._faults):
            if name == op:
                del self._faults[index]
                return fault
        return None

    # -- seeding and inspection ---------------------------------------------------

    def put_customer(self, customer: Customer, *, broken: str | None = None) -> None:
        """Create or change a customer remotely (a new change for the cursor)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            seq = self._next("seq")
            self._conn.execute(
                "INSERT INTO customer (external_id, seq, data, vat, broken) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (external_id) DO UPDATE SET "
                "seq=excluded.seq, data=excluded.data, vat=excluded.vat, "
                "broken=excluded.broken",
                (
                    customer.external_id,
                    seq,
                    customer.model_dump_json(),
                    compact_vat(customer.vat, customer.country_code) or None,
                    broken,
                ),
            )
            self._conn.execute("COMMIT")

    def delete_customer(self, external_id: str) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            seq = self._next("seq")
            self._conn.execute(
                "DELETE FROM customer WHERE external_id=?", (external_id,)
            )
            self._conn.execute(
                "INSERT INTO deletion VALUES (?, ?, 'customer')", (seq, external_id)
            )
            self._conn.execute("COMMIT")

    def put_payment(self, status: PaymentStatus) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            seq = self._next("seq")
            self._conn.execute(
                "INSERT INTO payment VALUES (?, ?)", (seq, status.model_dump_json())
            )
            self._conn.execute("COMMIT")

    def put_einvoice(self, invoice: Invoice) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            seq = self._next("seq")
            self._conn.execute(
                "INSERT INTO einvoice (seq, data) VALUES (?, ?)",
                (seq, invoice.model_dump_json()),
            )
            self._conn.execute("COMMIT")

    def customers(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT external_id, data, origin FROM customer ORDER BY seq"
        ).fetchall()
        return [{**json.loads(r[1]), "external_id": r[0], "origin": r[2]} for r in rows]

    def invoices(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT external_id, number, data FROM invoice"
        ).fetchall()
        return [{**json.loads(r[2]), "external_id": r[0], "number": r[1]} for r in rows]

    def posts(self, op: str) -> int:
        return int(
            self._conn.execute(
                "SELECT count(*) FROM post_log WHERE op=?", (op,)
            ).fetchone()[0]
        )

    # -- what the connector calls ------------------------------------------------------

    def page(self, table: str, after: int, size: int) -> list[tuple[int, str, Any]]:
        if table == "customer":
            sql = (
                "SELECT seq, data, broken FROM customer WHERE seq > ? "
                "ORDER BY seq LIMIT ?"
            )
        elif table == "deletion":
            sql = (
                "SELECT seq, external_id, entity FROM deletion WHERE seq > ? "
                "ORDER BY seq LIMIT ?"
            )
        else:
            sql = (
                f"SELECT seq, data, NULL FROM {table} WHERE seq > ? "
                "ORDER BY seq LIMIT ?"
            )
        return list(self._conn.execute(sql, (after, size)).fetchall())

    def find_customer(self, customer: Customer) -> str | None:
        vat = compact_vat(customer.vat, customer.country_code) or None
        row = self._conn.execute(
            "SELECT external_id FROM customer WHERE origin=? OR (vat IS NOT NULL "
            "AND vat=?) ORDER BY seq LIMIT 1",
            (customer.external_id, vat),
        ).fetchone()
        return row[0] if row else None

    def store_customer(
        self, customer: Customer, external_id: str | None, key: str
    ) -> str:
        with self._lock:
            fault = self._fault("push_customer")
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("INSERT INTO post_log VALUES ('customer', ?)", (key,))
            seq = self._next("seq")
            new_id = external_id or f"C{self._next('customer_id'):06d}"
            data = customer.model_copy(update={"external_id": new_id})
            self._conn.execute(
                "INSERT INTO customer (external_id, seq, data, vat, origin) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (external_id) DO UPDATE SET "
                "data=excluded.data, vat=excluded.vat",
                (
                    new_id,
                    seq,
                    data.model_dump_json(),
                    compact_vat(customer.vat, customer.country_code) or None,
                    customer.external_id,
                ),
            )
            self._conn.execute("COMMIT")
            if fault == "store_then_reset":
                raise NetworkError("connection reset by the double after storing")
            return new_id

    def find_invoice(self, number: str) -> str | None:
        row = self._conn.execute(
            "SELECT external_id FROM invoice WHERE number=?", (number,)
        ).fetchone()
        return row[0] if row else None

    def store_invoice(self, invoice: Invoice, key: str) -> str:
        with self._lock:
            fault = self._fault("push_invoice")
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("INSERT INTO post_log VALUES ('invoice', ?)", (key,))
            new_id = f"I{self._next('invoice_id'):06d}"
            try:
                self._conn.execute(
                    "INSERT INTO invoice VALUES (?, ?, ?, ?)",
                    (new_id, invoice.number, invoice.model_dump_json(), key),
                )
            except sqlite3.IntegrityError as err:
                self._conn.execute("ROLLBACK")
                raise DataError(
                    f"invoice {invoice.number} already exists in the ledger",
                    record=f"invoice {invoice.number}",
                    field="number",
                ) from err
            self._conn.execute("COMMIT")
            if fault == "store_then_reset":
                raise NetworkError("connection reset by the double after storing")
            return new_id

    def take_einvoices(self, ids: list[str]) -> None:
        with self._lock:
            self._conn.executemany(
                "UPDATE einvoice SET taken=1 WHERE seq=?", [(int(i),) for i in ids]
            )

    def close(self) -> None:
        self._conn.close()


class DoubleConnector:
    """The connector over a :class:`DoubleLedger` (all capabilities)."""

    def __init__(
        self, ledger: DoubleLedger, *, kind: str = "double", page_size: int = 100
    ):
        self.kind = kind
        self.ledger = ledger
        self.page_size = page_size

    def check(self) -> HealthReport:
        return HealthReport("valid", f"ledger file {self.ledger.path.name} reachable")

    def close(self) -> None:
        pass

    def _pages(
        self, table: str, cursor: str | None
    ) -> Iterator[list[tuple[int, str, Any]]]:
        after = int(cursor or 0)
        while True:
            rows = self.ledger.page(table, after, self.page_size)
            if not rows:
                return
            yield rows
            after = rows[-1][0]

    def pull_customers(self, cursor: str | None) -> Iterator[Page[Customer]]:
        for rows in self._pages("customer", cursor):
            records, rejected = [], []
            for _seq, data, broken in rows:
                customer = Customer.model_validate_json(data)
                if broken:
                    rejected.append(
                        (
                            customer.external_id,
                            DataError(
                                broken,
                                record=f"customer {customer.external_id}",
                                field="vat",
                            ),
                        )
                    )
                else:
                    records.append(customer)
            yield Page(records, str(rows[-1][0]), rejected)

    def pull_deletions(self, cursor: str | None) -> Iterator[Page[Deletion]]:
        for rows in self._pages("deletion", cursor):
            yield Page(
                [Deletion(external_id=r[1], entity=r[2]) for r in rows],
                str(rows[-1][0]),
            )

    def find_customer(self, customer: Customer) -> RemoteRef | None:
        found = self.ledger.find_customer(customer)
        return RemoteRef(external_id=found) if found else None

    def push_customer(
        self, customer: Customer, *, external_id: str | None, idempotency_key: str
    ) -> RemoteRef:
        new_id = self.ledger.store_customer(customer, external_id, idempotency_key)
        return RemoteRef(external_id=new_id, created=external_id is None)

    def find_invoice(self, invoice: Invoice) -> RemoteRef | None:
        found = self.ledger.find_invoice(invoice.number)
        return RemoteRef(external_id=found) if found else None

    def push_invoice(self, invoice: Invoice, *, idempotency_key: str) -> RemoteRef:
        return RemoteRef(
            external_id=self.ledger.store_invoice(invoice, idempotency_key),
            created=True,
        )

    def pull_payments(self, cursor: str | None) -> Iterator[Page[PaymentStatus]]:
        for rows in self._pages("payment", cursor):
            yield Page(
                [PaymentStatus.model_validate_json(r[1]) for r in rows],
                str(rows[-1][0]),
            )

    def pull_einvoices(self, cursor: str | None) -> Iterator[Page[Invoice]]:
        for rows in self._pages("einvoice", cursor):
            invoices = [
                Invoice.model_validate_json(r[1]).model_copy(
                    update={"external_id": str(r[0])}
                )
                for r in rows
            ]
            yield Page(invoices, str(rows[-1][0]))

    def acknowledge(self, external_ids: list[str]) -> None:
        self.ledger.take_einvoices(external_ids)


def create(context: ConnectorContext) -> DoubleConnector:
    """Factory: ``settings["ledger"]`` is the ledger file."""
    ledger = DoubleLedger(context.settings["ledger"])
    return DoubleConnector(
        ledger,
        kind=str(context.settings.get("kind", "double")),
        page_size=int(context.settings.get("page_size", 100)),
    )
