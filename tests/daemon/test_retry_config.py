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


def test_every_error_type_is_either_retryable_or_permanent() -> None:
    import importlib
    import pkgutil

    import connectors
    import sync_daemon
    from sync_daemon.kernel.errors import PermanentError, RetryableError, SyncError

    for package in (sync_daemon, connectors):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if ".sandbox" in info.name or info.name.endswith(("__main__", "cli")):
                continue
            importlib.import_module(info.name)

    def subclasses(cls: type) -> set[type]:
        found = set(cls.__subclasses__())
        for sub in list(found):
            found |= subclasses(sub)
        return found

    # the roots (SyncError, ExactError, SageError, PeppolError) are never raised
    # themselves (grep: no "raise ExactError("); every other class must choose
    roots = set(SyncError.__subclasses__()) - {RetryableError, PermanentError}
    classes = subclasses(SyncError) - {RetryableError, PermanentError} - roots
    assert {r.__name__ for r in roots} >= {"ExactError", "SageError", "PeppolError"}
    assert len(classes) > 40  # the connectors' trees are loaded
    for cls in classes:
        branches = (issubclass(cls, RetryableError), issubclass(cls, PermanentError))
        assert branches in {(True, False), (False, True)}, cls
