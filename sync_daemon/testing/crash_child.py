"""One engine run in a child process, for the crash test (``kill -9`` at random).

``python -m sync_daemon.testing.crash_child URL DB STATE_DIR LEDGER BACKEND_ID
[LOGIN PASSWORD]`` runs one full run of the backend against the (fake or real)
Odoo at URL with the double ledger, then exits 0 (login ``sync-bot``/``secret``
unless given; ``CRASH_CHILD_BATCH`` sets the engine's batch size). The parent
kills it at random points and checks that after a final clean run nothing is
duplicated and nothing is lost.
"""

from __future__ import annotations

import os
import sys

from ..engine import BackendConfig, BackendRun
from ..gateway import OdooGateway
from ..retry import RetryPolicy
from ..state import StateStore
from .double import DoubleConnector, DoubleLedger


def main(argv: list[str]) -> int:
    url, database, state_dir, ledger_path, backend_id, *login = argv
    user, password = login if login else ("sync-bot", "secret")
    gateway = OdooGateway(
        url, database, user, password, timeout=60, retry=RetryPolicy(attempts=2)
    ).connect()
    [row] = [
        r
        for r in gateway.call("crm.sync.backend", "daemon_get_config")
        if r["id"] == int(backend_id)
    ]
    result = BackendRun(
        gateway=gateway,
        state=StateStore(state_dir),
        backend=BackendConfig.from_odoo(row),
        connector=DoubleConnector(DoubleLedger(ledger_path), page_size=100),
        page_size=500,
        batch_size=int(os.environ.get("CRASH_CHILD_BATCH", "1000")),
    ).run()
    print(result.outcome, vars(result.counts), flush=True)
    return 0 if result.outcome == "success" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
