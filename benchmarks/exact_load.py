"""Benchmark: initial load of N Exact accounts from the sandbox.

Starts the Exact sandbox on 127.0.0.1 with N accounts, stores a fresh token pair,
and runs the connector's initial customer load (``bulk/CRM/Accounts``, 1,000 rows
a call, plus one ``SyncTimestamp`` call for the follow-up cursor) on the real clock.
Reports the API calls used against the target ``ceil(N/1000) + 2``, the peak calls
in any rolling minute as the sandbox saw them (Exact allows 60), token endpoint
calls and wall time.

    .venv/bin/python benchmarks/exact_load.py            # 50,000 accounts
    .venv/bin/python benchmarks/exact_load.py --accounts 120000 --check
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.exact.connector import ExactConnector
from connectors.exact.sandbox import ExactSandbox
from connectors.exact.settings import ExactSettings
from sync_daemon.kernel.protocol import ConnectorContext, TokenSet
from sync_daemon.state import SqliteTokenStore


def run(accounts: int, seed: int, with_check: bool) -> dict[str, object]:
    seeding = time.perf_counter()
    sandbox = ExactSandbox(seed=seed, accounts=accounts, invoices=0).start()
    seeded_in = time.perf_counter() - seeding
    try:
        with tempfile.TemporaryDirectory() as folder:
            store = SqliteTokenStore(Path(folder) / "state.sqlite3")
            issued = sandbox.issue_tokens()
            now = datetime.now(UTC)
            store.save(
                "exact:bench",
                TokenSet(
                    access_token=issued["access_token"],
                    refresh_token=issued["refresh_token"],
                    issued_at=now,
                    expires_at=now + timedelta(seconds=int(issued["expires_in"])),
                    base_url=sandbox.url,
                ),
            )
            settings = {
                "base_url": sandbox.url,
                "client_id": sandbox.client_id,
                "client_secret": sandbox.client_secret,
                "division": sandbox.division_numbers[0],
                "token_key": "exact:bench",
            }
            ctx = ConnectorContext(
                backend_id=1,
                settings=settings,
                tokens=store,
                clock=lambda: datetime.now(UTC),
                sleep=time.sleep,
            )
            connector = ExactConnector(ctx, ExactSettings.from_mapping(settings))
            started = time.perf_counter()
            if with_check:
                connector.check()
            loaded = 0
            rejected = 0
            distinct: set[str] = set()
            for page in connector.pull_customers(None):
                loaded += len(page.records)
                rejected += len(page.rejected)
                distinct.update(c.external_id for c in page.records)
            wall = time.perf_counter() - started
            connector.close()
            store.close()
    finally:
        sandbox.stop()
    stats = sandbox.stats
    return {
        "accounts": accounts,
        "loaded": loaded,
        "distinct": len(distinct),
        "rejected": rejected,
        "api_calls": connector.client.stats.calls,
        "target_calls": math.ceil(accounts / 1000) + 2,
        "token_endpoint_calls": stats.token_calls,
        "peak_calls_rolling_minute": stats.peak_rolling_minute(),
        "sandbox_429s": stats.rate_limited,
        "wall_seconds": round(wall, 2),
        "accounts_per_second": round(loaded / wall) if wall else None,
        "sandbox_seed_seconds": round(seeded_in, 2),
        "included_check": with_check,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--check", action="store_true", help="also run check() (Me + Divisions + maps)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    result = run(args.accounts, args.seed, args.check)
    ok = (
        result["api_calls"] <= result["target_calls"]
        and result["peak_calls_rolling_minute"] <= 60
        and result["distinct"] == args.accounts
    )
    if args.json:
        print(json.dumps({**result, "within_targets": ok}))
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")
        print(f"{'within targets':28} {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
