"""The daemon loop: when each backend runs, and how the loop survives failures.

Schedules live in Odoo (``crm.sync.backend``: every N minutes, or daily at a local
time in the backend's time zone); the loop re-reads them every ``poll_seconds``.
A backend is due when:

- an admin pressed **Run now** (``run_requested``), acknowledged once started;
- *interval*: ``interval_minutes`` have passed since its last start;
- *daily*: the daily time (in the backend's ``tz``) has come since its last start.

The last start is kept in the state store, so a restarted daemon keeps the rhythm;
for a backend never started here, Odoo's ``next_run`` decides.

Rules the loop keeps (field case C031 and friends):

- **one job per backend at a time**; backends run in parallel threads, so a slow
  one never delays the others;
- a job that **raises** is logged with its traceback, counted, and scheduled like
  any other run: it runs again one period later, not on every tick, and the other
  backends are not affected;
- a **long job** never makes a period be skipped: when it ends after its next due
  time, the backend is due at once; and since every pull resumes from its cursor,
  no time range is left unsynced;
- ``KeyboardInterrupt``/``SystemExit`` stop the loop; :meth:`Scheduler.stop` (the
  SIGTERM handler) lets running jobs finish their current page, then returns.

The clock and the sleep are injected, so tests move time without waiting. The
``schedule`` library is not used for the timing: it reads the wall clock inside
``Job.should_run`` and keeps a job that raised due on every pass, which is the
exact failure C031 describes; the due rule above is small enough to own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .engine import BackendConfig

__all__ = ["Scheduler", "next_due"]

_logger = logging.getLogger(__name__)


def _parse_utc(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)
    except ValueError:
        return None


def next_due(backend: BackendConfig, last_started: datetime | None) -> datetime | None:
    """When ``backend`` is next due after a start at ``last_started`` (UTC).

    ``None`` for a last start means "never started here": Odoo's ``next_run`` is
    used, else the backend is due at once (returned as ``None``).
    """
    if last_started is None:
        return _parse_utc(backend.next_run)
    if backend.schedule_type == "daily":
        try:
            zone = ZoneInfo(backend.tz or "UTC")
        except ZoneInfoNotFoundError:
            zone = ZoneInfo("UTC")
        minutes = round(backend.daily_time * 60)
        at = time(min(minutes // 60, 23), minutes % 60)
        local = last_started.astimezone(zone)
        candidate = datetime.combine(local.date(), at, tzinfo=zone)
        if candidate <= local:
            candidate = datetime.combine(
                local.date() + timedelta(days=1), at, tzinfo=zone
            )
        return candidate.astimezone(UTC)
    return last_started + timedelta(minutes=max(1, backend.interval_minutes))


@dataclass
class _Stats:
    runs: int = 0
    failures: int = 0
    last_error: str | None = None


@dataclass
class Scheduler:
    """Runs due backends; see the module docstring for the rules.

    :param load_backends: reads the backends and their schedules (from Odoo).
    :param run_backend: runs one backend once; may raise.
    :param ack_requests: acknowledges "Run now" requests of started backends.
    :param last_started: the persisted last start of a backend (or ``None``).
    :param clock: the current UTC time.
    :param sleep: waits a number of seconds (tests advance the fake clock).
    :param workers: backends run in parallel at most (0: run inline, for tests).
    """

    load_backends: Callable[[], Sequence[BackendConfig]]
    run_backend: Callable[[BackendConfig], object]
    ack_requests: Callable[[list[int]], None] = lambda ids: None
    last_started: Callable[[int], datetime | None] = lambda backend_id: None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    sleep: Callable[[float], None] | None = None
    poll_seconds: float = 60.0
    tick_seconds: float = 1.0
    workers: int = 4
    stats: dict[int, _Stats] = field(default_factory=dict)
    backends: list[BackendConfig] = field(default_factory=list)
    _started: dict[int, datetime] = field(default_factory=dict)
    _running: dict[int, Future[object] | None] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last_poll: datetime | None = None
    _pool: ThreadPoolExecutor | None = None

    # -- control ----------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to end; running jobs finish their current page first."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _wait(self, seconds: float) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
        else:
            self._stop.wait(seconds)

    # -- one pass ---------------------------------------------------------------------

    def refresh(self, now: datetime) -> None:
        """Re-read the backends; on failure keep the previous list."""
        try:
            self.backends = list(self.load_backends())
        except Exception:  # Odoo down: keep going on the last known schedules
            _logger.warning("could not read the backends from Odoo", exc_info=True)
        self._last_poll = now

    def is_due(self, backend: BackendConfig, now: datetime) -> bool:
        if backend.run_requested:
            return True
        last = self._started.get(backend.id) or self.last_started(backend.id)
        due = next_due(backend, last)
        return due is None or now >= due

    def tick(self, now: datetime | None = None) -> list[int]:
        """Start every due backend that is not running; return their ids."""
        now = now or self.clock()
        if self._last_poll is None or (now - self._last_poll).total_seconds() >= (
            self.poll_seconds
        ):
            self.refresh(now)
        started: list[int] = []
        for backend in self.backends:
            with self._lock:
                future = self._running.get(backend.id)
                if backend.id in self._running and (
                    future is None or not future.done()
                ):
                    continue
                if not self.is_due(backend, now):
                    continue
                self._started[backend.id] = now
                self._running[backend.id] = None
            started.append(backend.id)
            if backend.run_requested:
                try:
                    self.ack_requests([backend.id])
                except Exception:
                    _logger.warning("could not acknowledge run request", exc_info=True)
            if self.workers <= 0:
                self._job(backend)
                with self._lock:
                    self._running.pop(backend.id, None)
            else:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        max_workers=self.workers, thread_name_prefix="crm-sync"
                    )
                future = self._pool.submit(self._job, backend)
                with self._lock:
                    self._running[backend.id] = future
        return started

    def _job(self, backend: BackendConfig) -> None:
        stats = self.stats.setdefault(backend.id, _Stats())
        stats.runs += 1
        try:
            self.run_backend(backend)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:
            stats.failures += 1
            stats.last_error = f"{type(err).__name__}: {err}"
            _logger.exception(
                "backend %s (%s): run raised; next run as scheduled",
                backend.id,
                backend.name,
            )

    # -- the loop ---------------------------------------------------------------------

    def run_forever(self, *, max_ticks: int | None = None) -> None:
        """Tick until :meth:`stop`; then wait for running jobs."""
        _logger.info("scheduler started (poll every %.0f s)", self.poll_seconds)
        ticks = 0
        try:
            while not self._stop.is_set():
                self.tick(self.clock())
                ticks += 1
                if max_ticks is not None and ticks >= max_ticks:
                    break
                self._wait(self.tick_seconds)
        finally:
            self.join()
            _logger.info("scheduler stopped")

    def join(self) -> None:
        """Wait for running jobs to finish."""
        with self._lock:
            futures = [f for f in self._running.values() if f is not None]
        for future in futures:
            future.exception()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            self._running.clear()
