"""State store: cursors, outbox, dead letters, token store locking, instance lock."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sync_daemon.kernel.errors import ConfigurationError
from sync_daemon.kernel.protocol import TokenSet
from sync_daemon.state import (
    InstanceLock,
    SqliteTokenStore,
    StateStore,
    idempotency_key,
)


def _tokens(access: str, refresh: str) -> TokenSet:
    now = datetime.now(UTC)
    return TokenSet(
        access_token=access,
        refresh_token=refresh,
        issued_at=now,
        expires_at=now + timedelta(minutes=10),
    )


def test_cursor_moves_only_with_committed_page(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.get_cursor(1, "customers") is None
    store.commit_page(1, "customers", "c1", {"A": (10, {"legal_name": "A"})})
    assert store.get_cursor(1, "customers") == "c1"
    assert store.snapshot(1, "A") == {"legal_name": "A"}
    with pytest.raises(RuntimeError), store.transaction() as conn:
        conn.execute("UPDATE cursor SET value='c2'")
        raise RuntimeError("crash inside the transaction")
    assert store.get_cursor(1, "customers") == "c1"


def test_outbox_keys_are_stable_and_pending_survives(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    entry = store.outbox_begin(1, "customer", "42")
    assert entry.key == idempotency_key(1, "customer", 42)
    assert entry.state == "new"
    store.outbox_mark_sending(entry.key)
    again = StateStore(tmp_path).outbox_begin(1, "customer", "42")
    assert (again.state, again.attempts) == ("pending", 1)
    store.outbox_done(entry.key, "EXT-1", "1001")
    done = store.outbox_get(entry.key)
    assert done is not None and done.external_id == "EXT-1"


def test_dead_letters_refresh_and_resolve(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.add_dead_letter(1, "customers", "X", "bad vat", field="vat")
    store.add_dead_letter(1, "customers", "X", "bad vat again", field="vat")
    letters = store.dead_letters(1)
    assert [(d.external_id, d.message, d.field) for d in letters] == [
        ("X", "bad vat again", "vat")
    ]
    store.resolve_dead_letter(1, "X")
    assert store.dead_letters(1) == []


def test_state_file_is_private(tmp_path: Path) -> None:
    store = SqliteTokenStore(tmp_path / "state.sqlite3")
    store.save("exact:7", _tokens("AT-1", "RT-1"))
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    loaded = store.load("exact:7")
    assert loaded is not None
    assert (loaded.access_token, loaded.refresh_token) == ("AT-1", "RT-1")
    assert store.load("missing") is None


def test_token_lock_serialises_threads(tmp_path: Path) -> None:
    store = SqliteTokenStore(tmp_path)
    store.save("k", _tokens("AT-1", "RT-1"))
    refreshes: list[str] = []

    def worker() -> None:
        with store.lock("k"):
            current = store.load("k")
            assert current is not None
            if current.access_token == "AT-1":
                time.sleep(0.05)
                refreshes.append(current.refresh_token or "")
                store.save("k", _tokens("AT-2", "RT-2"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert refreshes == ["RT-1"]
    assert store.load("k").access_token == "AT-2"  # type: ignore[union-attr]


def _process_worker(path: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = SqliteTokenStore(path)
    with store.lock("k"):
        current = store.load("k")
        assert current is not None
        if current.access_token == "AT-1":
            time.sleep(0.1)
            out.put(current.refresh_token)
            store.save("k", _tokens("AT-2", "RT-2"))


def test_token_lock_serialises_processes(tmp_path: Path) -> None:
    store = SqliteTokenStore(tmp_path)
    store.save("k", _tokens("AT-1", "RT-1"))
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(str(tmp_path), out)) for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    spent = []
    while not out.empty():
        spent.append(out.get())
    assert spent == ["RT-1"]


def test_one_daemon_per_state_dir(tmp_path: Path) -> None:
    with (
        InstanceLock(tmp_path),
        pytest.raises(ConfigurationError, match="another crm-sync daemon"),
    ):
        InstanceLock(tmp_path).__enter__()
    with InstanceLock(tmp_path):
        pass
