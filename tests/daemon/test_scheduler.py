"""The daemon loop: field case C031, schedules, run-now, one job per backend."""

from __future__ import annotations

import itertools
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from sync_daemon.engine import BackendConfig
from sync_daemon.scheduler import Scheduler, next_due

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _backend(backend_id: int, **extra: Any) -> BackendConfig:
    return BackendConfig(
        id=backend_id, name=f"B{backend_id}", kind="exact", company_id=1, **extra
    )


def test_c031_failing_job_neither_stops_others_nor_hammers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    backends = [_backend(1, interval_minutes=10), _backend(2, interval_minutes=10)]
    ran: dict[int, list[datetime]] = {1: [], 2: []}

    def run(backend: BackendConfig) -> None:
        ran[backend.id].append(clock())
        if backend.id == 1:
            raise requests.ConnectionError("exact unreachable")

    scheduler = Scheduler(
        load_backends=lambda: backends,
        run_backend=run,
        clock=clock,
        sleep=clock.sleep,
        tick_seconds=1.0,
        workers=0,
    )
    caplog.set_level(logging.ERROR)
    # three intervals of fake time, ticking every second
    scheduler.run_forever(max_ticks=30 * 60)
    assert len(ran[2]) == 3
    assert len(ran[1]) == 3
    assert [t - T0 for t in ran[1]] == [
        timedelta(0),
        timedelta(minutes=10),
        timedelta(minutes=20),
    ]
    assert scheduler.stats[1].failures == 3
    assert "ConnectionError" in caplog.text and "Traceback" in caplog.text


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_c031_keyboard_interrupt_still_stops(stop: type[BaseException]) -> None:
    clock = FakeClock()

    def run(backend: BackendConfig) -> None:
        raise stop

    scheduler = Scheduler(
        load_backends=lambda: [_backend(1)],
        run_backend=run,
        clock=clock,
        sleep=clock.sleep,
        workers=0,
    )
    with pytest.raises(stop):
        scheduler.run_forever(max_ticks=10)


def test_long_job_does_not_skip_a_period() -> None:
    clock = FakeClock()
    starts: list[datetime] = []

    def run(backend: BackendConfig) -> None:
        starts.append(clock())
        clock.sleep(15 * 60)  # the job takes one and a half intervals

    scheduler = Scheduler(
        load_backends=lambda: [_backend(1, interval_minutes=10)],
        run_backend=run,
        clock=clock,
        sleep=clock.sleep,
        workers=0,
    )
    scheduler.run_forever(max_ticks=3)
    # each run starts within one tick of the previous one's end
    gaps = [b - a - timedelta(minutes=15) for a, b in itertools.pairwise(starts)]
    assert len(starts) == 3 and all(
        timedelta(0) <= g <= timedelta(seconds=1) for g in gaps
    )


def test_run_now_is_acknowledged_and_one_job_per_backend() -> None:
    clock = FakeClock()
    release = threading.Event()
    started = threading.Event()
    calls: list[int] = []
    acked: list[list[int]] = []
    backend = _backend(1, interval_minutes=60, run_requested=True)

    def run(b: BackendConfig) -> None:
        calls.append(b.id)
        started.set()
        release.wait(5)

    scheduler = Scheduler(
        load_backends=lambda: [backend],
        run_backend=run,
        ack_requests=acked.append,
        clock=clock,
        sleep=clock.sleep,
        workers=2,
        last_started=lambda _id: clock(),
    )
    assert scheduler.tick() == [1]
    started.wait(5)
    assert scheduler.tick() == []  # still running: not started twice
    release.set()
    scheduler.join()
    assert calls == [1] and acked == [[1]]


def test_refresh_failure_keeps_last_schedules(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    answers: list[Any] = [[_backend(1, interval_minutes=1)], RuntimeError("odoo down")]

    def load() -> Any:
        answer = answers.pop(0) if answers else RuntimeError("still down")
        if isinstance(answer, Exception):
            raise answer
        return answer

    ran: list[datetime] = []
    scheduler = Scheduler(
        load_backends=load,
        run_backend=lambda b: ran.append(clock()),
        clock=clock,
        sleep=clock.sleep,
        poll_seconds=60,
        workers=0,
    )
    scheduler.run_forever(max_ticks=181)
    assert len(ran) == 4


def test_next_due_daily_in_backend_time_zone() -> None:
    backend = _backend(1, schedule_type="daily", daily_time=2.5, tz="Europe/Brussels")
    last = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    assert next_due(backend, last) == datetime(2026, 3, 3, 1, 30, tzinfo=UTC)
    summer = datetime(2026, 7, 2, 10, 0, tzinfo=UTC)
    assert next_due(backend, summer) == datetime(2026, 7, 3, 0, 30, tzinfo=UTC)
    never = _backend(2, next_run="2026-03-02 12:00:00")
    assert next_due(never, None) == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert next_due(_backend(3), None) is None


def test_schedules_are_read_from_odoo_every_poll() -> None:
    clock = FakeClock()
    loads: list[datetime] = []
    backend = {"b": _backend(1, interval_minutes=60)}

    def load() -> list[BackendConfig]:
        loads.append(clock())
        return [backend["b"]]

    ran: list[datetime] = []
    scheduler = Scheduler(
        load_backends=load,
        run_backend=lambda b: ran.append(clock()),
        clock=clock,
        sleep=clock.sleep,
        poll_seconds=60,
        workers=0,
    )
    scheduler.run_forever(max_ticks=90)  # 90 s of one-second ticks
    assert [t - T0 for t in loads] == [timedelta(0), timedelta(seconds=60)]
    assert ran == [T0]
    # an admin sets "every minute" in Odoo: followed from the next read on
    backend["b"] = _backend(1, interval_minutes=1)
    scheduler.run_forever(max_ticks=200)
    assert len(loads) == 5 and len(ran) >= 3
    assert ran[1] - T0 == timedelta(seconds=120)  # read at 120 s, due since 60 s


def test_c031_in_worker_threads_as_the_daemon_runs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    backends = [_backend(1, interval_minutes=10), _backend(2, interval_minutes=10)]
    ran: dict[int, list[datetime]] = {1: [], 2: []}
    holder: dict[str, Scheduler] = {}

    def run(backend: BackendConfig) -> None:
        ran[backend.id].append(clock())
        if backend.id == 1:
            raise requests.ConnectionError("exact unreachable")

    def sleep(seconds: float) -> None:
        # let this tick's jobs finish in their threads, then move fake time on
        for future in list(holder["s"]._running.values()):
            if future is not None:
                future.exception(timeout=5)
        clock.sleep(seconds)

    scheduler = Scheduler(
        load_backends=lambda: backends,
        run_backend=run,
        clock=clock,
        sleep=sleep,
        tick_seconds=1.0,
        workers=2,
    )
    holder["s"] = scheduler
    caplog.set_level(logging.ERROR)
    scheduler.run_forever(max_ticks=30 * 60)
    assert [len(ran[1]), len(ran[2])] == [3, 3]
    assert scheduler.stats[1].failures == 3 and scheduler.stats[2].failures == 0
    assert "ConnectionError" in caplog.text and "Traceback" in caplog.text
