"""Exact Online rate limits, per division: read the headers, throttle, pause.

Exact allows 60 calls a minute and a daily quota per app and division, and reports
both on every division call (``X-RateLimit-Minutely-*`` and ``X-RateLimit-*``;
resets in UTC epoch **milliseconds**). On a 429 only the headers of the limit that
was hit come back, so a header that is absent means *unknown*, never 0 or 1970.

:class:`RateLimiter` keeps that state per division and decides, before each call,
whether to wait (few calls left this minute, or our own rolling-minute ceiling
reached) or to refuse (the division is paused until its daily reset). Waiting goes
through the injected ``sleep`` so tests and benchmarks can use a fake clock.

The daemon builds a new connector (and limiter) for every run, so what must
outlive one run is handed over through the token store by the connector: a daily
pause (``on_pause`` / :meth:`RateLimiter.restore_pause`), and the calls of the last
minute (:meth:`RateLimiter.minute_snapshot` / :meth:`RateLimiter.restore_minute`),
so that neither a "Run now" right after a run nor the next scheduled run of a
paused division knocks on Exact's door too early.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .errors import ExactRateLimited

__all__ = [
    "LimitState",
    "RateLimiter",
    "epoch_ms",
    "parse_limits",
    "retry_after_seconds",
]

_logger = logging.getLogger(__name__)

_MINUTE = timedelta(minutes=1)
#: A little slack after a reset moment, for clock skew between us and Exact.
RESET_SLACK = timedelta(milliseconds=250)
#: Slack on our rolling minute: a call may reach Exact later than we sent it, so
#: the 61st call waits a second past the minute of the first one.
WINDOW_SLACK = timedelta(seconds=1)
#: A minutely limit resets within a minute: a reset further away is not believed.
MAX_MINUTELY_WAIT = 61.0
#: A daily limit resets within a day: a longer pause is not believed either.
MAX_DAILY_PAUSE = timedelta(days=1)
#: Epoch ms beyond year 9999 cannot be a reset moment.
_MAX_EPOCH_MS = 253402300799999


def _digits(text: str) -> bool:
    """ASCII digits only: ``"²".isdigit()`` is true but ``int("²")`` fails."""
    return text.isascii() and text.isdigit()


def epoch_ms(value: str | None) -> datetime | None:
    """An epoch-milliseconds header as an aware UTC datetime; ``None`` if unusable."""
    if value is None:
        return None
    text = value.strip()
    if not _digits(text) or not 0 < int(text) <= _MAX_EPOCH_MS:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(text))


def _aware(moment: datetime) -> datetime:
    """A stored moment without zone is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    return int(text) if _digits(text.removeprefix("-")) else None


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (number form only); ``None`` if unusable."""
    if value is None:
        return None
    text = value.strip()
    if not _digits(text):
        return None
    return float(min(int(text), 3600))


@dataclass(frozen=True)
class LimitState:
    """One limit as last reported; every part may be unknown (``None``)."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None

    @property
    def known(self) -> bool:
        return self.remaining is not None or self.reset_at is not None


def parse_limits(headers: Mapping[str, str]) -> tuple[LimitState, LimitState]:
    """(minutely, daily) limit states from one response's headers."""
    lower = {key.lower(): value for key, value in headers.items()}
    minutely = LimitState(
        limit=_int(lower.get("x-ratelimit-minutely-limit")),
        remaining=_int(lower.get("x-ratelimit-minutely-remaining")),
        reset_at=epoch_ms(lower.get("x-ratelimit-minutely-reset")),
    )
    daily = LimitState(
        limit=_int(lower.get("x-ratelimit-limit")),
        remaining=_int(lower.get("x-ratelimit-remaining")),
        reset_at=epoch_ms(lower.get("x-ratelimit-reset")),
    )
    return minutely, daily


class RateLimiter:
    """Per-division throttle and pause, shared by every call of one connector.

    :param clock: current UTC time.
    :param sleep: waits that many seconds.
    :param reserve: wait for the minute's reset once this few calls are left.
    :param max_per_minute: our own ceiling of calls in any rolling minute.
    :param on_pause: told of every daily pause (division, until), so that the
        connector can keep it beyond this object's life (later runs, processes).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
        reserve: int = 2,
        max_per_minute: int = 60,
        on_pause: Callable[[int, datetime], None] | None = None,
    ) -> None:
        self._on_pause = on_pause
        self._clock = clock
        self._sleep = sleep
        self._reserve = reserve
        self._max_per_minute = max_per_minute
        self._lock = threading.Lock()
        self.minutely: dict[int, LimitState] = {}
        self.daily: dict[int, LimitState] = {}
        self.paused_until: dict[int, datetime] = {}
        self._calls: dict[int, deque[datetime]] = {}

    def before_call(self, division: int) -> None:
        """Wait or refuse before one call to ``division``."""
        with self._lock:
            now = self._clock()
            paused = self.paused_until.get(division)
            if paused is not None and paused > now:
                raise self._daily_error(division, paused, now)
            wait = self._wait_seconds(division, now)
        if wait > 0:
            _logger.info(
                "Exact division %s: throttling %.1f s before the next call",
                division,
                wait,
            )
            self._sleep(wait)
        with self._lock:
            calls = self._calls.setdefault(division, deque())
            calls.append(self._clock())

    def _wait_seconds(self, division: int, now: datetime) -> float:
        wait = 0.0
        state = self.minutely.get(division)
        if (
            state is not None
            and state.remaining is not None
            and state.remaining <= self._reserve
            and state.reset_at is not None
            and state.reset_at > now
        ):
            wait = (state.reset_at + RESET_SLACK - now).total_seconds()
            wait = min(wait, MAX_MINUTELY_WAIT)
        calls = self._calls.get(division)
        if calls:
            while calls and calls[0] <= now - _MINUTE:
                calls.popleft()
            if len(calls) >= self._max_per_minute:
                window = (calls[0] + _MINUTE + WINDOW_SLACK - now).total_seconds()
                wait = max(wait, window)
        return wait

    def after_response(
        self, division: int, status: int, headers: Mapping[str, str]
    ) -> None:
        """Record the limits a response reported; only known values replace."""
        minutely, daily = parse_limits(headers)
        with self._lock:
            if minutely.known:
                self.minutely[division] = minutely
            elif status != 429 and division in self.minutely:
                # A normal answer without minutely headers: the old values are stale.
                self.minutely.pop(division)
            if daily.known:
                self.daily[division] = daily

    def on_429(
        self, division: int, headers: Mapping[str, str], *, default_wait: float = 60.0
    ) -> float:
        """Classify a 429: return seconds to wait (minutely) or raise (daily).

        A daily 429 pauses the division until its reset and raises
        :class:`ExactRateLimited` with ``scope="daily"``; other divisions go on.
        """
        minutely, daily = parse_limits(headers)
        now = self._clock()
        paused: datetime | None = None
        with self._lock:
            if daily.known and not minutely.known:
                paused = daily.reset_at or now + timedelta(hours=1)
                paused = min(paused, now + MAX_DAILY_PAUSE)
                self.paused_until[division] = paused
                self.daily[division] = daily
            elif minutely.known:
                self.minutely[division] = minutely
        if paused is not None:
            if self._on_pause is not None:
                try:
                    self._on_pause(division, paused)
                except Exception:  # the pause still holds for this object
                    _logger.warning("could not keep the pause of %s", division)
            raise self._daily_error(division, paused, now)
        if minutely.reset_at is not None:
            wait = (minutely.reset_at + RESET_SLACK - now).total_seconds()
            return min(MAX_MINUTELY_WAIT, max(0.0, wait))
        lower = {key.lower(): value for key, value in headers.items()}
        retry_after = retry_after_seconds(lower.get("retry-after"))
        if retry_after is not None:
            return min(MAX_MINUTELY_WAIT, retry_after)
        return default_wait

    def minute_snapshot(self, division: int) -> dict[str, object] | None:
        """This minute's calls and Exact's last minutely report, to hand over to
        the next connector of the division (the next run); ``None`` when stale."""
        with self._lock:
            now = self._clock()
            calls = [
                m.isoformat()
                for m in self._calls.get(division, ())
                if m > now - _MINUTE - WINDOW_SLACK
            ]
            state = self.minutely.get(division)
            reset = state.reset_at if state is not None else None
            if not calls and (reset is None or reset <= now):
                return None
            return {
                "calls": calls,
                "remaining": state.remaining if state is not None else None,
                "reset": reset.isoformat()
                if reset is not None and reset > now
                else None,
            }

    def restore_minute(self, division: int, snapshot: Mapping[str, object]) -> None:
        """Take over :meth:`minute_snapshot` of an earlier connector; odd values
        are dropped (the window then starts empty, as without a snapshot)."""
        now = self._clock()
        try:
            raw_calls = snapshot.get("calls") or []
            calls = sorted(
                moment
                for moment in (
                    _aware(datetime.fromisoformat(str(text)))
                    for text in (raw_calls if isinstance(raw_calls, list) else [])
                )
                if now - _MINUTE - WINDOW_SLACK < moment <= now
            )
            reset_text = snapshot.get("reset")
            reset = (
                _aware(datetime.fromisoformat(str(reset_text))) if reset_text else None
            )
            remaining = snapshot.get("remaining")
        except (TypeError, ValueError):
            return
        with self._lock:
            window = self._calls.setdefault(division, deque())
            window.extendleft(reversed(calls))
            if (
                reset is not None
                and now < reset <= now + timedelta(seconds=MAX_MINUTELY_WAIT)
                and isinstance(remaining, int)
                and division not in self.minutely
            ):
                self.minutely[division] = LimitState(
                    remaining=remaining, reset_at=reset
                )

    def restore_pause(self, division: int, until: datetime) -> None:
        """Take over a daily pause remembered from an earlier run or process."""
        now = self._clock()
        if until > now:
            with self._lock:
                self.paused_until[division] = min(until, now + MAX_DAILY_PAUSE)

    def _daily_error(
        self, division: int, until: datetime, now: datetime
    ) -> ExactRateLimited:
        return ExactRateLimited(
            f"daily call limit of division {division} reached; paused until "
            f"{until.isoformat()}",
            scope="daily",
            retry_after=max(0.0, (until - now).total_seconds()),
            record=f"Exact division {division}",
            details={
                "division": division,
                "reset_epoch_ms": int(until.timestamp() * 1000),
            },
        )

    def peak_per_minute(self, division: int) -> int:
        """Calls in the current rolling minute (for reports and benchmarks)."""
        with self._lock:
            calls = self._calls.get(division, deque())
            now = self._clock()
            return sum(1 for moment in calls if moment > now - _MINUTE)
