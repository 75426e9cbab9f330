"""The daemon's local state: one SQLite file (WAL) under the state directory.

What lives here, and why it must survive a ``kill -9``:

- **cursors** per (backend, stream): where each pull resumes. A cursor is written
  only after the records before it are committed in Odoo, in the same SQLite
  transaction as the snapshots of those records.
- **snapshots** per (backend, external id): the field-group values both sides agreed
  on at the last sync; a field changed on both sides since then is a conflict.
- **outbox** of outbound creates, keyed by an idempotency key that is derived from
  what is being created (never random), so that a restarted daemon recognises its
  own unfinished work: ``pending`` means "sent, answer unknown" and forces a remote
  lookup before any re-send.
- **dead letters**: records that failed permanently, with record, field and message.
- **tombstones**: external records that must never be re-created (erased persons).
- **backend runs**: when each backend last started, for the scheduler.
- **tokens**: OAuth tokens per backend (:class:`SqliteTokenStore`), guarded by a file
  lock shared across processes; the database file is created with mode 0600.

A second daemon on the same state directory is refused by :class:`InstanceLock`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .kernel.errors import ConfigurationError
from .kernel.protocol import TokenSet

__all__ = [
    "DeadLetter",
    "InstanceLock",
    "OutboxEntry",
    "SqliteTokenStore",
    "StateStore",
    "idempotency_key",
]

_logger = logging.getLogger(__name__)

#: File name of the state database inside the state directory.
STATE_FILE = "state.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cursor (
    backend_id INTEGER NOT NULL,
    stream TEXT NOT NULL,
    value TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (backend_id, stream)
);
CREATE TABLE IF NOT EXISTS snapshot (
    backend_id INTEGER NOT NULL,
    external_id TEXT NOT NULL,
    res_id INTEGER,
    data TEXT NOT NULL,
    PRIMARY KEY (backend_id, external_id)
);
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY,
    backend_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    local_ref TEXT NOT NULL,
    state TEXT NOT NULL,
    external_id TEXT,
    external_code TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (backend_id, state);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    backend_id INTEGER NOT NULL,
    stream TEXT NOT NULL,
    external_id TEXT NOT NULL,
    record TEXT,
    field TEXT,
    message TEXT NOT NULL,
    payload TEXT,
    retryable INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    resolved_at TEXT,
    UNIQUE (backend_id, stream, external_id)
);
CREATE TABLE IF NOT EXISTS tombstone (
    backend_id INTEGER NOT NULL,
    external_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (backend_id, external_id)
);
CREATE TABLE IF NOT EXISTS backend_run (
    backend_id INTEGER PRIMARY KEY,
    last_started TEXT,
    last_finished TEXT,
    last_outcome TEXT,
    failures INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS token (
    key TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def idempotency_key(backend_id: int, kind: str, local_ref: str | int) -> str:
    """A stable key for one outbound create: same inputs, same key, any process.

    >>> idempotency_key(3, "customer", 42)
    'crm-sync-3-customer-42-6478cde4'
    """
    digest = hashlib.sha256(f"{backend_id}|{kind}|{local_ref}".encode()).hexdigest()
    return f"crm-sync-{backend_id}-{kind}-{local_ref}-{digest[:8]}"


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating with mode 0600) the SQLite file in WAL mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    os.chmod(path, 0o600)
    try:
        conn = sqlite3.connect(
            path, timeout=30, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.executescript(_SCHEMA)
    except sqlite3.DatabaseError as err:
        # a damaged or foreign file where the state belongs: say which, no trace
        raise ConfigurationError(
            f"not a usable SQLite state file ({err}); move it away or set "
            "state_dir to another folder",
            record=str(path),
            field="state_dir",
        ) from err
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.chmod(side, 0o600)
    return conn


@dataclass(frozen=True)
class OutboxEntry:
    """One outbound create and what is known about its outcome."""

    key: str
    backend_id: int
    kind: str
    local_ref: str
    state: str  # pending | done
    external_id: str | None
    external_code: str | None
    attempts: int


@dataclass(frozen=True)
class DeadLetter:
    """A record that failed permanently and waits for a person."""

    id: int
    backend_id: int
    stream: str
    external_id: str
    record: str | None
    field: str | None
    message: str
    payload: str | None
    retryable: bool
    created_at: str
    resolved_at: str | None


class StateStore:
    """The state database of one daemon; safe to share between threads.

    :param path: the SQLite file, or a directory in which ``state.sqlite3`` is used.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        target = Path(path)
        if target.is_dir() or not target.suffix:
            target = target / STATE_FILE
        self.path = target
        self._conn = _connect(target)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together or not at all."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._conn.execute(sql, params)
            return list(cur.fetchall())

    # -- cursors ----------------------------------------------------------------

    def get_cursor(self, backend_id: int, stream: str) -> str | None:
        rows = self._query(
            "SELECT value FROM cursor WHERE backend_id=? AND stream=?",
            (backend_id, stream),
        )
        return rows[0][0] if rows else None

    def commit_page(
        self,
        backend_id: int,
        stream: str,
        cursor: str | None,
        snapshots: Mapping[str, tuple[int | None, Mapping[str, Any]]] | None = None,
    ) -> None:
        """Store the snapshots of a committed page, then move its cursor."""
        with self.transaction() as conn:
            for external_id, (res_id, data) in (snapshots or {}).items():
                conn.execute(
                    "INSERT OR REPLACE INTO snapshot VALUES (?, ?, ?, ?)",
                    (backend_id, external_id, res_id, json.dumps(data, default=str)),
                )
            if cursor is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO cursor VALUES (?, ?, ?, ?)",
                    (backend_id, stream, cursor, _now()),
                )

    def set_cursor(self, backend_id: int, stream: str, cursor: str) -> None:
        self.commit_page(backend_id, stream, cursor)

    def cursors(self, backend_id: int) -> dict[str, str]:
        rows = self._query(
            "SELECT stream, value FROM cursor WHERE backend_id=?", (backend_id,)
        )
        return {row[0]: row[1] for row in rows}

    # -- snapshots ---------------------------------------------------------------

    def snapshot(self, backend_id: int, external_id: str) -> dict[str, Any] | None:
        rows = self._query(
            "SELECT data FROM snapshot WHERE backend_id=? AND external_id=?",
            (backend_id, external_id),
        )
        return json.loads(rows[0][0]) if rows else None

    # -- outbox ------------------------------------------------------------------

    def outbox_begin(self, backend_id: int, kind: str, local_ref: str) -> OutboxEntry:
        """Record the intent to create ``local_ref`` remotely; return its entry.

        An existing entry is returned as it is, with ``attempts`` incremented: a
        ``pending`` one means an earlier attempt may have reached the remote.
        """
        key = idempotency_key(backend_id, kind, local_ref)
        now = _now()
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO outbox (key, backend_id, kind, local_ref, "
                "state, attempts, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'new', 0, ?, ?)",
                (key, backend_id, kind, str(local_ref), now, now),
            )
        entry = self.outbox_get(key)
        assert entry is not None
        return entry

    def outbox_mark_sending(self, key: str) -> None:
        """The request is about to leave: from now on its outcome is unknown."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET state='pending', attempts=attempts+1, "
                "updated_at=? WHERE key=?",
                (_now(), key),
            )

    def outbox_done(
        self, key: str, external_id: str, external_code: str | None = None
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET state='done', external_id=?, external_code=?, "
                "updated_at=? WHERE key=?",
                (external_id, external_code, _now(), key),
            )

    def intents_pending(self, backend_id: int, external_ids: list[str]) -> None:
        """Journal Odoo partner creates before they are sent (one transaction)."""
        now = _now()
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO outbox (key, backend_id, kind, local_ref, state, "
                "attempts, created_at, updated_at) "
                "VALUES (?, ?, 'odoo_partner', ?, 'pending', 1, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET state='pending', "
                "attempts=attempts+1, updated_at=excluded.updated_at",
                [
                    (
                        idempotency_key(backend_id, "odoo_partner", e),
                        backend_id,
                        e,
                        now,
                        now,
                    )
                    for e in external_ids
                ],
            )

    def intents_done(self, backend_id: int, done: list[tuple[str, int]]) -> None:
        """Mark journalled partner creates as linked (external id, partner id)."""
        now = _now()
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE outbox SET state='done', external_id=?, updated_at=? "
                "WHERE key=?",
                [
                    (str(res_id), now, idempotency_key(backend_id, "odoo_partner", e))
                    for e, res_id in done
                ],
            )

    def outbox_get(self, key: str) -> OutboxEntry | None:
        rows = self._query(
            "SELECT key, backend_id, kind, local_ref, state, external_id, "
            "external_code, attempts FROM outbox WHERE key=?",
            (key,),
        )
        return OutboxEntry(*rows[0]) if rows else None

    def outbox_entries(
        self, backend_id: int, kind: str | None = None, state: str | None = None
    ) -> list[OutboxEntry]:
        sql = (
            "SELECT key, backend_id, kind, local_ref, state, external_id, "
            "external_code, attempts FROM outbox WHERE backend_id=?"
        )
        params: list[Any] = [backend_id]
        if kind:
            sql += " AND kind=?"
            params.append(kind)
        if state:
            sql += " AND state=?"
            params.append(state)
        return [OutboxEntry(*row) for row in self._query(sql, tuple(params))]

    # -- dead letters --------------------------------------------------------------

    def add_dead_letter(
        self,
        backend_id: int,
        stream: str,
        external_id: str,
        message: str,
        *,
        record: str | None = None,
        field: str | None = None,
        payload: str | None = None,
        retryable: bool = False,
    ) -> None:
        """File (or refresh) the dead letter of one record."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO dead_letter (backend_id, stream, external_id, record, "
                "field, message, payload, retryable, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (backend_id, stream, external_id) DO UPDATE SET "
                "record=excluded.record, field=excluded.field, "
                "message=excluded.message, payload=excluded.payload, "
                "retryable=excluded.retryable, resolved_at=NULL",
                (
                    backend_id,
                    stream,
                    external_id,
                    record,
                    field,
                    message,
                    payload,
                    int(retryable),
                    _now(),
                ),
            )

    def dead_letters(
        self, backend_id: int | None = None, *, open_only: bool = True
    ) -> list[DeadLetter]:
        sql = "SELECT * FROM dead_letter WHERE 1=1"
        params: list[Any] = []
        if backend_id is not None:
            sql += " AND backend_id=?"
            params.append(backend_id)
        if open_only:
            sql += " AND resolved_at IS NULL"
        rows = self._query(sql + " ORDER BY id", tuple(params))
        return [
            DeadLetter(
                id=row[0],
                backend_id=row[1],
                stream=row[2],
                external_id=row[3],
                record=row[4],
                field=row[5],
                message=row[6],
                payload=row[7],
                retryable=bool(row[8]),
                created_at=row[9],
                resolved_at=row[10],
            )
            for row in rows
        ]

    def resolve_dead_letter(self, backend_id: int, external_id: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE dead_letter SET resolved_at=? WHERE backend_id=? "
                "AND external_id=? AND resolved_at IS NULL",
                (_now(), backend_id, external_id),
            )

    # -- tombstones ------------------------------------------------------------------

    def add_tombstone(self, backend_id: int, external_id: str, reason: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO tombstone VALUES (?, ?, ?, ?)",
                (backend_id, external_id, reason, _now()),
            )

    def tombstones(self, backend_id: int) -> set[str]:
        rows = self._query(
            "SELECT external_id FROM tombstone WHERE backend_id=?", (backend_id,)
        )
        return {row[0] for row in rows}

    # -- backend runs -----------------------------------------------------------------

    def run_started(self, backend_id: int, at: datetime) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO backend_run (backend_id, last_started) VALUES (?, ?) "
                "ON CONFLICT (backend_id) DO UPDATE SET last_started=excluded."
                "last_started",
                (backend_id, at.isoformat()),
            )

    def run_finished(self, backend_id: int, at: datetime, outcome: str) -> None:
        failed = outcome == "failed"
        with self.transaction() as conn:
            conn.execute(
                "UPDATE backend_run SET last_finished=?, last_outcome=?, "
                "failures=CASE WHEN ? THEN failures+1 ELSE 0 END WHERE backend_id=?",
                (at.isoformat(), outcome, failed, backend_id),
            )

    def last_started(self, backend_id: int) -> datetime | None:
        rows = self._query(
            "SELECT last_started FROM backend_run WHERE backend_id=?", (backend_id,)
        )
        if not rows or not rows[0][0]:
            return None
        return datetime.fromisoformat(rows[0][0])

    def backend_runs(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM backend_run ORDER BY backend_id")
        keys = ("backend_id", "last_started", "last_finished", "outcome", "failures")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # -- tokens -----------------------------------------------------------------------

    def load_token(self, key: str) -> str | None:
        rows = self._query("SELECT data FROM token WHERE key=?", (key,))
        return rows[0][0] if rows else None

    def save_token(self, key: str, data: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO token VALUES (?, ?, ?)", (key, data, _now())
            )


class SqliteTokenStore:
    """:class:`~sync_daemon.kernel.protocol.TokenStore` on the state database.

    ``lock(key)`` is a file lock next to the database, so threads *and* processes
    sharing the state directory take turns around read-refresh-save; ``save``
    commits before it returns. Connectors' tests build one with
    ``SqliteTokenStore(tmp_path / "state.sqlite3")``.

    :param path: the SQLite file (or a directory holding ``state.sqlite3``).
    :param lock_timeout: seconds to wait for the lock before giving up.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, lock_timeout: float = 60.0
    ) -> None:
        self._store = StateStore(path)
        self._lock_dir = self._store.path.parent
        self._lock_timeout = lock_timeout
        self._thread_locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    @property
    def path(self) -> Path:
        return self._store.path

    def load(self, key: str) -> TokenSet | None:
        data = self._store.load_token(key)
        return TokenSet.model_validate_json(data) if data else None

    def save(self, key: str, tokens: TokenSet) -> None:
        self._store.save_token(key, tokens.model_dump_json())

    def lock(self, key: str) -> AbstractContextManager[None]:
        return self._locked(key)

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        safe = hashlib.sha256(key.encode()).hexdigest()[:16]
        with self._guard:
            thread_lock = self._thread_locks.setdefault(safe, threading.RLock())
        lock_path = self._lock_dir / f"token-{safe}.lock"
        # filelock is re-entrant per object, not across threads: serialise threads
        # of this process first, then processes through the file.
        with thread_lock:
            file_lock = FileLock(lock_path, timeout=self._lock_timeout, mode=0o600)
            try:
                with file_lock:
                    yield
            except Timeout as err:
                raise ConfigurationError(
                    f"token store lock {lock_path} held by another process for "
                    f"more than {self._lock_timeout:.0f} s",
                    record=f"token {key}",
                ) from err

    def close(self) -> None:
        self._store.close()


class InstanceLock:
    """At most one daemon per state directory.

    >>> # with InstanceLock(state_dir): run the daemon
    """

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / "daemon.lock"
        self._lock = FileLock(self.path, timeout=0, mode=0o600)

    def __enter__(self) -> InstanceLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout as err:
            raise ConfigurationError(
                f"another crm-sync daemon already uses the state directory "
                f"{self.path.parent} (lock {self.path})"
            ) from err
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
