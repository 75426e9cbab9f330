"""C013: rate-limit headers in epoch ms, minutely vs daily 429s, throttling.

Also the rest of the error table of the client: what is retried and what never is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from connectors.exact.errors import (
    ExactError,
    ExactNotFound,
    ExactRateLimited,
    ExactRejected,
    ExactUnavailable,
)
from connectors.exact.ratelimit import RateLimiter, parse_limits
from sync_daemon.kernel.errors import PermanentError, RateLimited, RetryableError

from .conftest import (
    FakeClock,
    MemoryTokenStore,
    base_settings,
    make_connector,
    scripted_session,
    token_set,
)

_FIXTURE_NOW = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=1709287231500)


@pytest.fixture
def c013(load_case: Any) -> dict[str, Any]:
    return load_case("C013_rate_limit_responses.json")


def _connector(clock: FakeClock, script: list[tuple[int, Any, dict[str, str]]]):
    answers = iter(script)
    session, adapter = scripted_session(lambda request: next(answers))
    store = MemoryTokenStore()
    store.tokens["exact:test"] = token_set("AT-1", "RT-1", issued_at=clock.now())
    connector = make_connector(
        settings=base_settings(), store=store, clock=clock, session=session
    )
    return connector, adapter


def test_c013_minutely_429_waits_for_reset_then_retries_once(
    c013: dict[str, Any],
) -> None:
    clock = FakeClock(_FIXTURE_NOW)
    case = c013["minutely_429"]
    expected = case["expected"]
    ok = (200, {"d": {"results": [{"ID": "x"}]}}, {})
    connector, adapter = _connector(
        clock, [(case["http_status"], case["body"], case["headers"]), ok]
    )
    url = connector.client.url("crm/Accounts", {"$select": "ID"})
    rows = [row for page, _ in connector.client.pages(url) for row in page]

    assert rows == [{"ID": "x"}]
    assert adapter.calls("GET") == [url, url]  # the same GET, once more
    assert len(clock.sleeps) == 1
    assert (
        expected["sleep_seconds_min"]
        <= clock.sleeps[0]
        <= expected["sleep_seconds_max"]
    )
    assert connector.limiter.daily == {}  # unchanged / unknown
    assert connector.limiter.paused_until == {}


def test_c013_daily_429_pauses_only_that_division(c013: dict[str, Any]) -> None:
    clock = FakeClock(_FIXTURE_NOW)
    case = c013["daily_429"]
    connector, adapter = _connector(
        clock, [(case["http_status"], case["body"], case["headers"])]
    )
    url = connector.client.url("crm/Accounts", {"$select": "ID"})
    with pytest.raises(ExactRateLimited) as caught:
        connector.client.get(url)

    err = caught.value
    assert err.scope == "daily" and isinstance(err, RateLimited)
    assert (
        err.details["reset_epoch_ms"]
        == case["expected"]["division_paused_until_epoch_ms"]
    )
    assert len(adapter.calls()) == 1 and clock.sleeps == []  # retry_now: false
    division = connector.settings.division
    paused = connector.limiter.paused_until[division]
    assert int(paused.timestamp() * 1000) == 1709337600000
    with pytest.raises(ExactRateLimited):
        connector.limiter.before_call(division)
    connector.limiter.before_call(division + 1)  # other divisions continue
    assert clock.sleeps == []


def test_c013_low_remaining_throttles_before_next_call(c013: dict[str, Any]) -> None:
    clock = FakeClock(_FIXTURE_NOW)
    case = c013["ok_low_remaining"]
    limiter = RateLimiter(clock=clock.now, sleep=clock.sleep, reserve=2)
    limiter.after_response(7, case["http_status"], case["headers"])
    limiter.before_call(7)
    assert case["expected"]["throttle_before_next_call"]
    assert len(clock.sleeps) == 1 and 28.5 <= clock.sleeps[0] <= 31.0
    assert limiter.daily[7].remaining == 4980


def test_missing_headers_are_unknown_not_zero() -> None:
    minutely, daily = parse_limits({"X-RateLimit-Minutely-Remaining": "0"})
    assert minutely.remaining == 0 and minutely.reset_at is None
    assert daily.limit is None and daily.remaining is None and daily.reset_at is None
    clock = FakeClock(_FIXTURE_NOW)
    limiter = RateLimiter(clock=clock.now, sleep=clock.sleep)
    limiter.after_response(7, 200, {})
    limiter.before_call(7)
    assert clock.sleeps == [] and 7 not in limiter.daily


def test_our_own_ceiling_keeps_any_minute_at_sixty_calls() -> None:
    clock = FakeClock(_FIXTURE_NOW)
    limiter = RateLimiter(clock=clock.now, sleep=clock.sleep, max_per_minute=60)
    moments = []
    for _ in range(150):
        limiter.before_call(1)
        moments.append(clock.now())
        clock.advance(0.1)
    for index, start in enumerate(moments):
        window = [m for m in moments[index:] if m < start + timedelta(minutes=1)]
        assert len(window) <= 60


@pytest.mark.parametrize(
    ("status", "error", "attempts"),
    [
        (400, ExactRejected, 1),
        (404, ExactNotFound, 1),
        (503, ExactUnavailable, 4),
    ],
)
def test_only_retryable_answers_are_retried(
    clock: FakeClock, status: int, error: type[ExactError], attempts: int
) -> None:
    body = {"error": {"code": "", "message": {"lang": "", "value": "Nope"}}}
    connector, adapter = _connector(clock, [(status, body, {})] * 5)
    with pytest.raises(error) as caught:
        connector.client.get(connector.client.url("crm/Accounts"))
    assert len(adapter.calls()) == attempts
    assert caught.value.details["message"] == "Nope"
    assert isinstance(caught.value, RetryableError if attempts > 1 else PermanentError)


def test_truncated_json_and_network_errors_are_retried(clock: FakeClock) -> None:
    script: list[Any] = [
        (200, b'{"d": {"results": [{"ID": ', {}),
        requests.ConnectionError("reset by peer"),
        (200, {"d": {"results": []}}, {}),
    ]
    answers = iter(script)

    def handler(request: requests.PreparedRequest) -> Any:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    session, adapter = scripted_session(handler)
    store = MemoryTokenStore()
    store.tokens["exact:test"] = token_set("AT-1", "RT-1", issued_at=clock.now())
    connector = make_connector(
        settings=base_settings(), store=store, clock=clock, session=session
    )
    assert connector.client.get(connector.client.url("crm/Accounts")) == {
        "d": {"results": []}
    }
    assert len(adapter.requests) == 3 and len(clock.sleeps) == 2


@pytest.mark.parametrize(
    "snapshot",
    [
        {},
        {"calls": "not a list"},
        {"calls": ["yesterday", 12]},
        {"calls": [], "reset": "soon", "remaining": 0},
        {"calls": None, "reset": None, "remaining": "2"},
    ],
)
def test_a_damaged_minute_snapshot_is_dropped(snapshot: dict[str, Any]) -> None:
    clock = FakeClock(_FIXTURE_NOW)
    limiter = RateLimiter(clock=clock.now, sleep=clock.sleep)
    limiter.restore_minute(7, snapshot)
    limiter.before_call(7)
    assert clock.sleeps == []


def test_a_minute_snapshot_carries_calls_and_the_reported_reset() -> None:
    clock = FakeClock(_FIXTURE_NOW)
    first = RateLimiter(clock=clock.now, sleep=clock.sleep, reserve=2)
    for _ in range(10):
        first.before_call(7)
        clock.advance(1)
    first.after_response(
        7,
        200,
        {
            "X-RateLimit-Minutely-Remaining": "1",
            "X-RateLimit-Minutely-Reset": str(
                int((clock.now() + timedelta(seconds=20)).timestamp() * 1000)
            ),
        },
    )
    snapshot = first.minute_snapshot(7)
    assert snapshot is not None and len(snapshot["calls"]) == 10  # type: ignore[arg-type]
    later = RateLimiter(clock=clock.now, sleep=clock.sleep, reserve=2)
    later.restore_minute(7, snapshot)
    later.before_call(7)  # Exact said 1 left: wait for its reset
    assert len(clock.sleeps) == 1 and 19.0 <= clock.sleeps[0] <= 21.0
    clock.advance(120)
    assert first.minute_snapshot(7) is None  # stale: nothing to hand over
