"""Benchmark: Odoo RPC calls per 1,000 records synced, against a real Odoo 18.

Starts a throw-away Odoo 18 with crm_module on 127.0.0.1 (``ODOO_HOME`` /
``ODOO_PYTHON``, see the README), creates the daemon user and a backend, and runs
the engine with the test-double ledger in four scenarios:

1. **create**: ``--records`` new remote customers (a third with a valid VAT, all
   with an e-mail, a postcode and a tag) into an Odoo that does not know them;
2. **rerun**: the same run again with nothing changed;
3. **update**: every remote customer changed (another city, a different one per
   record), so every partner gets its own values (batched ``load``);
4. **link**: ``--records`` remote customers that Odoo already has (same VAT,
   written differently, legal form added to the name) into a fresh backend:
   matched, renamed (the ledger owns the name) and linked, not created. That
   backend also pushes the customers of scenario 1 out: they count as synced.

Records synced = records pulled from the ledger + Odoo customers pushed to it.
Every HTTP request the gateway sends is counted and split into three kinds:
*per-record* calls (create, write, load, read of partners to update, link
upserts, issues: they grow with the records synced), *reads* (``search_read`` and
link pages of at most 500 rows: they grow with what Odoo already holds, plus the
contacts and pages of Odoo customers read per batch), and the *fixed* cost of a
run (connection, version, fields_get, run start/finish, lookups of countries,
tags and payment terms, the erased partners). The target (≤ 3 calls per 1,000
records synced) is checked on the per-record calls; per-record + reads and the
all-included totals are printed next to it.

    .venv/bin/python benchmarks/odoo_roundtrips.py --records 2000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import odoorpc  # noqa: E402

from sync_daemon.engine import BackendConfig, BackendRun  # noqa: E402
from sync_daemon.gateway import OdooGateway  # noqa: E402
from sync_daemon.kernel.models import Address, Customer  # noqa: E402
from sync_daemon.odoo_runtime import OdooNotFound, OdooServer, find_odoo  # noqa: E402
from sync_daemon.state import StateStore  # noqa: E402
from sync_daemon.testing.double import DoubleConnector, DoubleLedger  # noqa: E402
from sync_daemon.testing.odoo_setup import make_backend, make_daemon_user  # noqa: E402

PASSWORD = "bench-pw"


def be_vat(n: int) -> str:
    base = f"0{n + 2_000_000:07d}"
    return f"BE{base}{97 - int(base) % 97:02d}"


#: Calls whose number grows with the records synced in the run.
PER_RECORD = {
    "res.partner.create",
    "res.partner.write",
    "res.partner.load",
    "res.partner.read",
    "crm.sync.link.daemon_upsert_links",
    "crm.sync.issue.daemon_raise_issues",
}
#: Pages of at most 500 rows: what Odoo already holds, contacts, Odoo customers.
PER_DATABASE = {
    "res.partner.search_read",
    "crm.sync.link.daemon_read_links",
    "account.move.search_read",
}


def run(
    server: OdooServer, backend_id: int, ledger: DoubleLedger, state: StateStore
) -> tuple[Any, Any, float, int]:
    gateway = OdooGateway(server.url, server.db, "sync-bench", PASSWORD, timeout=600)
    started = time.perf_counter()
    gateway.connect()
    [row] = [
        r
        for r in gateway.call("crm.sync.backend", "daemon_get_config")
        if r["id"] == backend_id
    ]
    pushed: dict[str, int] = {}
    result = BackendRun(
        gateway=gateway,
        state=state,
        backend=BackendConfig.from_odoo(row),
        connector=DoubleConnector(ledger, page_size=200),
        batch_size=1000,
        progress=lambda stream, done: pushed.__setitem__(stream, done),
    ).run()
    counts = dict(gateway.call_counts)
    counts["(connection: version, login)"] = gateway.calls - sum(
        gateway.call_counts.values()
    )
    synced = result.counts.pulled + pushed.get("odoo customers", 0)
    return result, counts, time.perf_counter() - started, synced


def report(
    name: str, result: Any, counts: Any, seconds: float, synced: int
) -> float | None:
    total = sum(counts.values())
    per_record = sum(v for k, v in counts.items() if k in PER_RECORD)
    per_db = sum(v for k, v in counts.items() if k in PER_DATABASE)
    fixed = total - per_record - per_db
    print(
        f"{name:<7} {synced:>5} records synced {seconds:6.1f} s {result.outcome:<8} "
        f"calls: total {total:>3} = per-record {per_record:>2} + reads "
        f"{per_db:>2} + fixed {fixed:>2}"
    )
    print("        " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if not synced:
        print("        nothing to sync: fixed cost only")
        return None
    marginal = per_record / synced * 1000
    print(
        f"        per 1,000 records synced: {marginal:.2f} per-record, "
        f"{(per_record + per_db) / synced * 1000:.2f} with reads, "
        f"{total / synced * 1000:.2f} all included"
    )
    return marginal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    args = parser.parse_args(argv)
    try:
        runtime = find_odoo()
    except OdooNotFound as err:
        print(f"skipped: {err}")
        return 3
    n = args.records
    print(f"starting a throw-away Odoo 18 with crm_module ({runtime.home}) …")
    with OdooServer(runtime) as server, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        host_port = server.url.rsplit(":", 1)[1]
        admin = odoorpc.ODOO("127.0.0.1", port=int(host_port), timeout=600)
        admin.login(server.db, "admin", "admin")
        make_daemon_user(admin, "sync-bench", PASSWORD)
        be = admin.env["res.country"].search([("code", "=", "BE")])[0]

        ledger = DoubleLedger(folder / "create.sqlite3")
        for i in range(n):
            ledger.put_customer(
                Customer(
                    external_id=f"C{i}",
                    name=f"Bench Client {i:05d}",
                    vat=be_vat(i) if i % 3 == 0 else None,
                    email=f"client{i}@example.com",
                    address=Address(country_code="BE", zip=f"{1000 + i % 8000}"),
                    tags=("bench",),
                )
            )
        state = StateStore(folder / "state")
        backend = make_backend(admin, "Bench create")
        figures = [report("create", *run(server, backend, ledger, state))]
        report("rerun", *run(server, backend, ledger, state))

        # every remote customer changed, each one differently
        for i in range(n):
            ledger.put_customer(
                Customer(
                    external_id=f"C{i}",
                    name=f"Bench Client {i:05d}",
                    vat=be_vat(i) if i % 3 == 0 else None,
                    email=f"client{i}@example.com",
                    address=Address(
                        country_code="BE", zip=f"{1000 + i % 8000}", city=f"City {i}"
                    ),
                    tags=("bench",),
                )
            )
        figures.append(report("update", *run(server, backend, ledger, state)))

        # Odoo already has the customers: the run links them
        partners = admin.env["res.partner"]
        chunk = 500
        for start in range(0, n, chunk):
            partners.create(
                [
                    {
                        "name": f"Known Customer {i:05d}",
                        "is_company": True,
                        "vat": be_vat(100_000 + i),
                        "country_id": be,
                    }
                    for i in range(start, min(n, start + chunk))
                ]
            )
        ledger2 = DoubleLedger(folder / "link.sqlite3")
        for i in range(n):
            vat = be_vat(100_000 + i)
            ledger2.put_customer(
                Customer(
                    external_id=f"K{i}",
                    name=f"Known Customer {i:05d} BV",
                    vat=f"{vat[:2]} {vat[2:6]}.{vat[6:9]}.{vat[9:]}",
                    address=Address(country_code="BE"),
                )
            )
        backend2 = make_backend(admin, "Bench link")
        figures.append(report("link", *run(server, backend2, ledger2, state)))
    figures = [f for f in figures if f is not None]
    ok = max(figures) <= 3
    print(
        f"\nper-record calls per 1,000 records synced, worst case {max(figures):.2f} "
        f"(target ≤ 3): {'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
