"""Benchmark: Odoo RPC calls per 1,000 records synced, against a real Odoo 18.

Starts a throw-away Odoo 18 with crm_module on 127.0.0.1 (``ODOO_HOME`` /
``ODOO_PYTHON``, see the README), creates the daemon user and a backend, and runs
the engine with the test-double ledger in three scenarios:

1. **create**: ``--records`` new remote customers (a third with a valid VAT, all
   with contacts' e-mail, postcode and a tag) into an Odoo that does not know them;
2. **rerun**: the same run again with nothing changed;
3. **link**: ``--records`` remote customers that Odoo already has (same VAT,
   written differently) into a fresh backend: matched and linked, not created.

Every HTTP request the gateway sends is counted, connection and bookkeeping
included (version, login, fields_get, run start/finish, links, issues).
Target: ≤ 3 calls per 1,000 records synced.

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


def run(
    server: OdooServer, backend_id: int, ledger: DoubleLedger, state: StateStore
) -> tuple[Any, int, float]:
    gateway = OdooGateway(server.url, server.db, "sync-bench", PASSWORD, timeout=600)
    started = time.perf_counter()
    gateway.connect()
    [row] = [
        r
        for r in gateway.call("crm.sync.backend", "daemon_get_config")
        if r["id"] == backend_id
    ]
    result = BackendRun(
        gateway=gateway,
        state=state,
        backend=BackendConfig.from_odoo(row),
        connector=DoubleConnector(ledger, page_size=200),
        batch_size=1000,
    ).run()
    return result, gateway.calls, time.perf_counter() - started


def report(name: str, records: int, result: Any, calls: int, seconds: float) -> float:
    per_thousand = calls / records * 1000 if records else float("nan")
    print(
        f"{name:<8} {records:>6} records  {calls:>4} RPC calls  "
        f"{per_thousand:6.2f} per 1,000  {seconds:7.1f} s  outcome {result.outcome}  "
        f"(created {result.counts.created}, linked {result.counts.linked}, "
        f"unchanged {result.counts.unchanged})"
    )
    return per_thousand


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
        created = run(server, backend, ledger, state)
        report("create", n, *created)
        rerun = run(server, backend, ledger, state)
        report("rerun", n, *rerun)
        overhead = rerun[1]

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
        linked = run(server, backend2, ledger2, state)
        report("link", n, *linked)
    marginal = [(calls - overhead) / n * 1000 for _, calls, _ in (created, linked)]
    total = [calls / n * 1000 for _, calls, _ in (created, linked)]
    print(
        f"\nfixed cost of a run (connection, schema, bookkeeping; the rerun): "
        f"{overhead} calls"
    )
    print(
        f"per 1,000 records on top of it: create {marginal[0]:.2f}, link "
        f"{marginal[1]:.2f}; all calls included: create {total[0]:.2f}, link "
        f"{total[1]:.2f}"
    )
    ok = max(marginal) <= 3
    print(f"target ≤ 3 calls per 1,000 records: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
