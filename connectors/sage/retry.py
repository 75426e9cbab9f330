"""The retry policy of both Sage connectors, as data next to the calls it guards.

Only :class:`~sync_daemon.kernel.errors.RetryableError` is retried; attempts are
bounded; waits are jittered exponential and never shorter than a ``retry_after`` the
remote announced (an announced pause longer than the back-off ceiling is not waited
out here: the error goes up so the backend can be paused). Non-idempotent calls
(a POST, an X3 ``save``) are never wrapped here: their callers look the record up
before any second attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from sync_daemon.kernel.errors import RetryableError

__all__ = ["call_with_retry"]

_logger = logging.getLogger(__name__)

T = TypeVar("T")


class _WaitAtLeastRetryAfter:
    """Jittered exponential wait, raised to the remote's ``retry_after`` if longer."""

    def __init__(self, base: float, ceiling: float) -> None:
        self._jitter = wait_random_exponential(multiplier=base, max=ceiling)

    def __call__(self, state: RetryCallState) -> float:
        wait = self._jitter(state)
        outcome = state.outcome
        err = outcome.exception() if outcome is not None else None
        announced = getattr(err, "retry_after", None)
        if announced is not None:
            wait = max(wait, float(announced))
        return wait


def _worth_waiting(err: BaseException, ceiling: float) -> bool:
    """Retry a retryable error, unless the remote asks for a longer pause.

    A ``retry_after`` beyond the back-off ceiling (a daily quota, a long
    maintenance) is left to the caller, who pauses the backend instead of
    blocking a worker.
    """
    if not isinstance(err, RetryableError):
        return False
    return err.retry_after is None or err.retry_after <= ceiling


def call_with_retry(
    func: Callable[[], T],
    *,
    attempts: int,
    backoff: float,
    ceiling: float,
    sleep: Callable[[float], None],
    what: str,
) -> T:
    """Run ``func``; repeat it on a retryable error, at most ``attempts`` times.

    The last error is re-raised unchanged, so callers see the typed exception.
    """

    def log_retry(state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        _logger.warning(
            "%s failed (attempt %d of %d), retrying: %s",
            what,
            state.attempt_number,
            attempts,
            err,
        )

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=_WaitAtLeastRetryAfter(backoff, ceiling),
        retry=retry_if_exception(lambda err: _worth_waiting(err, ceiling)),
        sleep=sleep,
        reraise=True,
        before_sleep=log_retry,
    )
    return retrying(func)
