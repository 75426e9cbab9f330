"""A worker process for the C012 test: one daemon process needing a token."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import requests

from connectors.exact.auth import TokenManager
from connectors.exact.settings import ExactSettings
from sync_daemon.state import SqliteTokenStore


def run(db_path: str, settings: dict[str, Any], go: Event, out: Queue) -> None:
    """Say ready, wait for ``go``, then ask for an access token and report it."""
    store = SqliteTokenStore(db_path)
    session = requests.Session()
    manager = TokenManager(
        settings=ExactSettings.model_validate(settings),
        store=store,
        key="exact:c012",
        session=session,
        clock=lambda: datetime.now(UTC),
        sleep=time.sleep,
    )
    out.put(("ready", "", 0))
    go.wait(30)
    try:
        out.put(("ok", manager.access_token(), manager.token_calls))
    except Exception as err:  # reported to the test, which fails on it
        out.put(("error", repr(err), manager.token_calls))
    finally:
        session.close()
        store.close()
