"""Retry policy (only retryable errors, bounded, Retry-After honoured) and logging."""

from __future__ import annotations

import json
import logging

import pytest

from sync_daemon.config import configure_logging
from sync_daemon.kernel.errors import (
    DataError,
    NetworkError,
    RateLimited,
    RemoteUnavailable,
)
from sync_daemon.retry import RetryPolicy


def _flaky(errors: list[Exception]):
    calls = {"n": 0}

    def call() -> str:
        calls["n"] += 1
        if errors:
            raise errors.pop(0)
        return "ok"

    return call, calls


def test_retryable_errors_are_retried_with_backoff() -> None:
    waits: list[float] = []
    policy = RetryPolicy(
        attempts=4, initial=1, maximum=10, jitter=0, sleep=waits.append
    )
    call, calls = _flaky([NetworkError("reset"), RemoteUnavailable("503")])
    assert policy.call(call) == "ok"
    assert calls["n"] == 3 and len(waits) == 2 and waits[1] >= waits[0] > 0


def test_permanent_errors_are_not_retried() -> None:
    policy = RetryPolicy(sleep=lambda s: None)
    call, calls = _flaky([DataError("bad vat", field="vat")])
    with pytest.raises(DataError):
        policy.call(call)
    assert calls["n"] == 1


def test_attempts_are_bounded() -> None:
    policy = RetryPolicy(attempts=3, jitter=0, sleep=lambda s: None)
    call, calls = _flaky([NetworkError("x")] * 10)
    with pytest.raises(NetworkError):
        policy.call(call)
    assert calls["n"] == 3


def test_rate_limit_waits_for_its_reset_or_gives_up() -> None:
    waits: list[float] = []
    policy = RetryPolicy(maximum=60, jitter=0, sleep=waits.append)
    call, _ = _flaky([RateLimited("429", retry_after=30, scope="minutely")])
    assert policy.call(call) == "ok" and waits == [30]
    daily, calls = _flaky([RateLimited("429", retry_after=8 * 3600, scope="daily")])
    with pytest.raises(RateLimited):
        policy.call(daily)
    assert calls["n"] == 1


def test_json_log_format(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("INFO", "json")
    try:
        logging.getLogger("sync_daemon.test").info("backend %s done", 3)
        line = capsys.readouterr().err.strip().splitlines()[-1]
        data = json.loads(line)
        assert data["message"] == "backend 3 done" and data["level"] == "INFO"
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
