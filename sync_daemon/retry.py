"""Retry policy: only errors classified retryable, jittered backoff, bounded.

The policy is data (attempts, first wait, ceiling, jitter) and wraps one call with
tenacity. A :class:`~sync_daemon.kernel.errors.RateLimited` error that says when to
come back (``retry_after``) is waited for exactly that long (plus jitter), within the
ceiling; a wait longer than the ceiling is not attempted and the error goes up, so a
daily quota pauses the backend instead of blocking a worker. Permanent errors are
never retried.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from .kernel.errors import RateLimited, RetryableError

__all__ = ["RetryPolicy"]

_logger = logging.getLogger(__name__)

T = TypeVar("T")


def _retryable(err: BaseException) -> bool:
    return isinstance(err, RetryableError)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a retryable call is repeated.

    :param attempts: total attempts, the first one included.
    :param initial: first wait in seconds; doubles each time.
    :param maximum: ceiling of one wait; a ``retry_after`` above it is not waited.
    :param jitter: up to this many seconds added at random to each wait.
    :param sleep: the sleep function (tests pass a fake).
    """

    attempts: int = 4
    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 1.0
    sleep: Callable[[float], None] = field(default=None)  # type: ignore[assignment]

    def _wait(self, state: RetryCallState) -> float:
        err = state.outcome.exception() if state.outcome else None
        if isinstance(err, RetryableError) and err.retry_after is not None:
            return float(err.retry_after) + random.uniform(0, self.jitter)
        backoff = wait_exponential_jitter(
            multiplier=self.initial, max=self.maximum, jitter=self.jitter
        )
        return float(backoff(state))

    def _stop(self, state: RetryCallState) -> bool:
        if stop_after_attempt(self.attempts)(state):
            return True
        err = state.outcome.exception() if state.outcome else None
        return (
            isinstance(err, RateLimited)
            and err.retry_after is not None
            and err.retry_after > self.maximum
        )

    def _before_sleep(self, state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        _logger.warning(
            "retrying after %s (attempt %d of %d, waiting %.1f s)",
            type(err).__name__,
            state.attempt_number,
            self.attempts,
            state.upcoming_sleep,
        )

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn``, repeating it on retryable errors; re-raise the last one."""
        kwargs = {}
        if self.sleep is not None:
            kwargs["sleep"] = self.sleep
        retrying = Retrying(
            retry=retry_if_exception(_retryable),
            stop=self._stop,
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
            **kwargs,
        )
        return retrying(fn)
