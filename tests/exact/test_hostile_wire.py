"""Hostile wire input: odd envelopes, foreign ``__next``, odd headers, odd tokens.

Each test feeds what a broken proxy, a confused tenant or an attacker-controlled
answer could send, and pins what the connector does instead of crashing, looping,
dropping rows without a word or handing the bearer token to another host.
"""

from __future__ import annotations

import logging
import socket
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from connectors.exact.errors import (
    ExactConfigurationError,
    ExactDataError,
    ExactError,
    ExactNotFound,
    ExactPermissionDenied,
    ExactUnavailable,
)
from connectors.exact.ratelimit import epoch_ms, parse_limits
from connectors.exact.settings import ExactSettings

from .conftest import (
    EXACT_NL,
    FakeClock,
    MemoryTokenStore,
    base_settings,
    make_connector,
    scripted_session,
    token_set,
)

_EVIL = "https://evil.example"


def _connector(clock: FakeClock, handler: Any, store: MemoryTokenStore | None = None):
    session, adapter = scripted_session(handler)
    if store is None:
        store = MemoryTokenStore()
        store.tokens["exact:test"] = token_set("AT-1", "RT-1", issued_at=clock.now())
    connector = make_connector(
        settings=base_settings(), store=store, clock=clock, session=session
    )
    return connector, adapter


def _row(n: int) -> dict[str, Any]:
    return {"ID": f"00000000-0000-0000-0000-{n:012d}", "Name": f"Company {n}"}


# ------------------------------------------------------------------ __next


@pytest.mark.parametrize(
    "next_url",
    [
        f"{_EVIL}/api/v1/2999999/crm/Accounts?$skiptoken=guid'x'",
        "http://start.exactonline.nl/api/v1/2999999/crm/Accounts?$skiptoken=guid'x'",
        "https://start.exactonline.nl.evil.example/api/v1/2999999/crm/Accounts",
        "https://user@evil.example/api/v1/2999999/crm/Accounts",
    ],
)
def test_next_off_our_host_is_refused_and_the_token_stays_home(
    clock: FakeClock, next_url: str
) -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        if str(request.url) == next_url:
            return 200, {"d": {"results": []}}, {}
        return 200, {"d": {"results": [_row(1)], "__next": next_url}}, {}

    connector, adapter = _connector(clock, handler)
    url = connector.client.url("crm/Accounts", {"$select": "ID,Name"})
    with pytest.raises(ExactDataError) as caught:
        list(connector.client.pages(url))
    assert caught.value.field == "d.__next"
    assert all(str(r.url).startswith(EXACT_NL + "/") for r in adapter.requests)
    assert len(adapter.requests) == 1


def test_relative_next_is_resolved_on_our_host(clock: FakeClock) -> None:
    relative = "/api/v1/2999999/crm/Accounts?$select=ID,Name&$skiptoken=guid'x'"

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        if "skiptoken" in str(request.url):
            return 200, {"d": {"results": [_row(2)]}}, {}
        return 200, {"d": {"results": [_row(1)], "__next": relative}}, {}

    connector, adapter = _connector(clock, handler)
    url = connector.client.url("crm/Accounts", {"$select": "ID,Name"})
    rows = [row["ID"] for page, _ in connector.client.pages(url) for row in page]
    assert len(rows) == 2
    assert adapter.calls()[1] == EXACT_NL + relative


def test_next_back_to_a_page_already_read_stops_the_loop(clock: FakeClock) -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        if len(adapter.requests) > 3:
            return 200, {"d": {"results": []}}, {}
        return 200, {"d": {"results": [_row(1)], "__next": str(request.url)}}, {}

    connector, adapter = _connector(clock, handler)
    url = connector.client.url("crm/Accounts", {"$select": "ID,Name"})
    with pytest.raises(ExactDataError) as caught:
        list(connector.client.pages(url))
    assert caught.value.field == "d.__next"
    assert len(adapter.requests) == 1


def test_empty_page_with_next_is_followed(clock: FakeClock) -> None:
    second = f"{EXACT_NL}/api/v1/2999999/crm/Accounts?$skiptoken=guid'x'"

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        if "skiptoken" in str(request.url):
            return 200, {"d": {"results": [_row(2)]}}, {}
        return 200, {"d": {"results": [], "__next": second}}, {}

    connector, _ = _connector(clock, handler)
    url = connector.client.url("crm/Accounts", {"$select": "ID"})
    pages = [rows for rows, _ in connector.client.pages(url)]
    assert pages == [[], [_row(2)]]


@pytest.mark.parametrize(
    "body",
    [
        {"d": {"results": {"ID": "x"}}},
        {"d": {"results": "x"}},
        {"d": {"results": [_row(1), 7, None]}},
        {"d": {}},
        {"d": {"__next": EXACT_NL + "/api/v1/2999999/crm/Accounts?$skiptoken=1"}},
        {"d": {"results": [_row(1)], "__next": 42}},
        {"d": None},
        {"results": [_row(1)]},
        [],
        "d",
    ],
)
def test_malformed_envelopes_are_errors_not_silently_fewer_rows(
    clock: FakeClock, body: Any
) -> None:
    connector, _ = _connector(clock, lambda request: (200, body, {}))
    url = connector.client.url("crm/Accounts", {"$select": "ID"})
    with pytest.raises(ExactError) as caught:
        list(connector.client.pages(url))
    assert caught.value.field and caught.value.field.startswith("d")
    assert str(caught.value.record).endswith("crm/Accounts")


# -------------------------------------------------------- error bodies


@pytest.mark.parametrize(
    ("status", "error", "calls"),
    [
        (403, ExactPermissionDenied, 1),
        (404, ExactNotFound, 1),
        (502, ExactUnavailable, 4),
        (200, ExactUnavailable, 4),
    ],
)
def test_html_bodies_are_classified_by_status(
    clock: FakeClock, status: int, error: type[ExactError], calls: int
) -> None:
    html = b"<html><body><h1>Gateway says no</h1>" + b"x" * 5000 + b"</body></html>"
    connector, adapter = _connector(
        clock, lambda request: (status, html, {"Content-Type": "text/html"})
    )
    with pytest.raises(error) as caught:
        connector.client.get(connector.client.url("crm/Accounts"))
    assert len(adapter.requests) == calls
    assert "<html" not in str(caught.value)


def test_long_exact_error_messages_are_cut(clock: FakeClock) -> None:
    body = {"error": {"code": "", "message": {"lang": "", "value": "y" * 20000}}}
    connector, _ = _connector(clock, lambda request: (400, body, {}))
    with pytest.raises(ExactError) as caught:
        connector.client.get(connector.client.url("crm/Accounts"))
    assert len(str(caught.value)) < 1200


def test_latin1_body_without_charset_still_parses(clock: FakeClock) -> None:
    raw = '{"d": {"results": [{"ID": "a", "Name": "Café Noël"}]}}'.encode("latin-1")
    connector, _ = _connector(
        clock, lambda request: (200, raw, {"Content-Type": "application/json"})
    )
    rows, _ = next(connector.client.pages(connector.client.url("crm/Accounts")))
    assert rows[0]["ID"] == "a" and rows[0]["Name"].startswith("Caf")


# ---------------------------------------------------------- rate limits


def test_429_without_headers_honours_retry_after(clock: FakeClock) -> None:
    script = iter([(429, b"", {"Retry-After": "7"}), (200, {"d": {"results": []}}, {})])
    connector, adapter = _connector(clock, lambda request: next(script))
    connector.client.get(connector.client.url("crm/Accounts"))
    assert len(adapter.requests) == 2
    assert clock.sleeps == [7.0]


def test_429_without_any_header_waits_a_minute_once(clock: FakeClock) -> None:
    script = iter([(429, b"", {}), (200, {"d": {"results": []}}, {})])
    connector, adapter = _connector(clock, lambda request: next(script))
    connector.client.get(connector.client.url("crm/Accounts"))
    assert len(adapter.requests) == 2 and clock.sleeps == [60.0]
    assert connector.limiter.paused_until == {}


@pytest.mark.parametrize(
    "reset", ["99999999999999999999999", "32503680000000", "²", "-5", "1e12"]
)
def test_absurd_reset_headers_never_crash_nor_sleep_for_years(
    clock: FakeClock, reset: str
) -> None:
    script = iter(
        [
            (
                429,
                b"",
                {
                    "X-RateLimit-Minutely-Remaining": "0",
                    "X-RateLimit-Minutely-Reset": reset,
                },
            ),
            (200, {"d": {"results": []}}, {}),
        ]
    )
    connector, adapter = _connector(clock, lambda request: next(script))
    connector.client.get(connector.client.url("crm/Accounts"))
    assert len(adapter.requests) == 2
    assert all(0 <= seconds <= 61 for seconds in clock.sleeps), clock.sleeps


def test_header_parsing_is_total() -> None:
    assert epoch_ms("99999999999999999999999") is None
    assert epoch_ms("²") is None
    assert epoch_ms("١٢٣") is None
    minutely, daily = parse_limits({"X-RateLimit-Minutely-Remaining": "²"})
    assert minutely.remaining is None and not daily.known


def test_absurd_daily_reset_pauses_at_most_a_day(clock: FakeClock) -> None:
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "32503680000000"}
    connector, _ = _connector(clock, lambda request: (429, b"", headers))
    with pytest.raises(ExactError):
        connector.client.get(connector.client.url("crm/Accounts"))
    until = connector.limiter.paused_until[connector.settings.division]
    assert until <= clock.now() + timedelta(days=1, minutes=1)


# ---------------------------------------------------------------- tokens


def _token_handler(answer: tuple[int, Any, dict[str, str]], seen: list[dict]) -> Any:
    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        if str(request.url).endswith("/api/oauth2/token"):
            seen.append({k: v[0] for k, v in parse_qs(str(request.body)).items()})
            return answer
        return 200, {"d": {"results": []}}, {}

    return handler


def _expired_store(clock: FakeClock) -> MemoryTokenStore:
    store = MemoryTokenStore()
    store.tokens["exact:test"] = token_set(
        "AT-1", "RT-1", issued_at=clock.now() - timedelta(seconds=700)
    )
    return store


@pytest.mark.parametrize(
    ("expires_in", "seconds"),
    [
        ("600.0", 600),
        (600.0, 600),
        ("599.5", 599),
        (None, 600),
        ("ten minutes", 600),
        ("-1", 600),
        ("0", 600),
        ("99999999999999999999", 600),
        (True, 600),
    ],
)
def test_odd_expires_in_never_loses_the_new_refresh_token(
    clock: FakeClock, expires_in: Any, seconds: int
) -> None:
    body: dict[str, Any] = {"access_token": "AT-2", "refresh_token": "RT-2"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    store = _expired_store(clock)
    connector, _ = _connector(clock, _token_handler((200, body, {}), []), store)
    assert connector.tokens.access_token() == "AT-2"
    stored = store.tokens["exact:test"]
    assert stored.refresh_token == "RT-2"
    assert stored.expires_at - clock.now() == timedelta(seconds=seconds)


def test_refresh_answer_without_refresh_token_keeps_the_old_one(
    clock: FakeClock,
) -> None:
    body = {"access_token": "AT-2", "expires_in": "600"}
    store = _expired_store(clock)
    connector, _ = _connector(clock, _token_handler((200, body, {}), []), store)
    assert connector.tokens.access_token() == "AT-2"
    stored = store.tokens["exact:test"]
    assert (stored.access_token, stored.refresh_token) == ("AT-2", "RT-1")


def test_html_200_from_the_token_endpoint_is_retryable(clock: FakeClock) -> None:
    store = _expired_store(clock)
    answer = (200, b"<html>proxy login</html>", {"Content-Type": "text/html"})
    connector, _ = _connector(clock, _token_handler(answer, []), store)
    with pytest.raises(ExactUnavailable):
        connector.tokens.access_token()
    assert store.tokens["exact:test"].refresh_token == "RT-1"


def test_issued_in_the_future_does_not_block_nor_sleep_for_an_hour(
    clock: FakeClock,
) -> None:
    """Clock skew: a token stamped an hour ahead that Exact already refuses."""
    seen: list[dict] = []
    calls: list[str] = []
    body = {"access_token": "AT-2", "refresh_token": "RT-2", "expires_in": "600"}

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        if str(request.url).endswith("/api/oauth2/token"):
            seen.append({})
            return 200, body, {}
        calls.append(str(request.headers["Authorization"]))
        if request.headers["Authorization"] == "Bearer AT-1":
            return 401, b"", {}
        return 200, {"d": {"results": []}}, {}

    store = MemoryTokenStore()
    store.tokens["exact:test"] = token_set(
        "AT-1", "RT-1", issued_at=clock.now() + timedelta(hours=1)
    )
    connector, _ = _connector(clock, handler, store)
    connector.client.get(connector.client.url("crm/Accounts"))
    assert calls == ["Bearer AT-1", "Bearer AT-2"] and len(seen) == 1
    assert sum(clock.sleeps) < 60


# --------------------------------------------------------------- secrets


def test_secrets_never_reach_logs_or_errors(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = ("AT-1", "RT-1", "secret-1", "AT-2", "RT-2")
    echo = {
        "error": "invalid_grant",
        "error_description": "refresh token RT-1 for client secret-1 is spent",
    }
    store = _expired_store(clock)
    connector, _ = _connector(clock, _token_handler((400, echo, {}), []), store)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ExactError) as caught:
        connector.client.get(connector.client.url("crm/Accounts"))
    texts = [
        str(caught.value),
        repr(caught.value.details),
        caught.value.message,
        caplog.text,
        repr(connector.settings),
    ]
    for text in texts:
        for secret in secrets:
            assert secret not in text, (secret, text)


def test_settings_errors_do_not_carry_the_client_secret() -> None:
    values = base_settings(client_secret="TOPSECRET-9", country="xx")
    values.pop("base_url")
    with pytest.raises(ExactConfigurationError) as caught:
        ExactSettings.from_mapping(values)
    assert "TOPSECRET-9" not in repr(caught.value.details)
    assert "TOPSECRET-9" not in str(caught.value)


# -------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "base_url",
    [
        "http://start.exactonline.nl",
        "https://evil.example",
        "https://start.exactonline.nl.evil.example",
        "https://user:pw@start.exactonline.nl",
        "https://start.exactonline.nl@evil.example",
        "https://start.exactonline.nl:8443",
        "https://start.exactonline.nl/api?x=1",
        "ftp://start.exactonline.nl",
        "http://127.0.0.2:8000",
        "http://localhost.evil.example:8000",
        "start.exactonline.nl",
        "",
    ],
)
def test_base_url_must_be_an_exact_host_or_the_loopback_sandbox(
    base_url: str,
) -> None:
    with pytest.raises(ExactConfigurationError) as caught:
        ExactSettings.from_mapping(base_settings(base_url=base_url))
    assert caught.value.field == "base_url"


@pytest.mark.parametrize(
    ("base_url", "host"),
    [
        ("https://start.exactonline.be/", "https://start.exactonline.be"),
        ("HTTPS://Start.ExactOnline.NL", "https://start.exactonline.nl"),
        ("http://127.0.0.1:8099", "http://127.0.0.1:8099"),
    ],
)
def test_exact_hosts_and_loopback_are_accepted(base_url: str, host: str) -> None:
    assert ExactSettings.from_mapping(base_settings(base_url=base_url)).host == host


def test_country_is_normalised_and_must_agree_with_base_url() -> None:
    values = base_settings(country=" NL ")
    values.pop("base_url")
    assert ExactSettings.from_mapping(values).host == EXACT_NL
    with pytest.raises(ExactConfigurationError) as caught:
        ExactSettings.from_mapping(base_settings(country="be"))
    assert caught.value.field in {"country", "base_url"}


@pytest.mark.parametrize("division", [10**12, "²", "١٢", -1, 0, 1.5, "12 13"])
def test_odd_divisions_are_refused(division: Any) -> None:
    with pytest.raises(ExactConfigurationError) as caught:
        ExactSettings.from_mapping(base_settings(division=division))
    assert caught.value.field == "division"


def test_the_suite_cannot_reach_beyond_loopback(clock: FakeClock) -> None:
    """The guard in conftest refuses a real connection to Exact's host."""
    with pytest.raises(AssertionError, match="test tried to reach"):
        socket.create_connection(("192.0.2.1", 443), timeout=0.5)


@pytest.mark.parametrize(
    "next_path",
    [
        "/api/v1/1234/crm/Accounts?$skiptoken=guid'x'",  # another division
        "/api/v1/2999999/financial/GLAccounts?$skiptoken=guid'x'",
        "/api/oauth2/token",
    ],
)
def test_next_to_another_division_or_entity_is_refused(
    clock: FakeClock, next_path: str
) -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        if "skiptoken" in str(request.url) or "oauth2" in str(request.url):
            return 200, {"d": {"results": [_row(9)]}}, {}
        return 200, {"d": {"results": [_row(1)], "__next": EXACT_NL + next_path}}, {}

    connector, adapter = _connector(clock, handler)
    url = connector.client.url("crm/Accounts", {"$select": "ID,Name"})
    with pytest.raises(ExactDataError) as caught:
        list(connector.client.pages(url))
    assert caught.value.field == "d.__next" and len(adapter.requests) == 1


def test_retry_after_on_503_is_honoured_within_the_backoff_ceiling(
    clock: FakeClock,
) -> None:
    script = iter(
        [
            (503, b"<html>maintenance</html>", {"Retry-After": "20"}),
            (503, b"", {"Retry-After": "999999"}),
            (200, {"d": {"results": []}}, {}),
        ]
    )
    connector, adapter = _connector(clock, lambda request: next(script))
    connector.client.get(connector.client.url("crm/Accounts"))
    assert len(adapter.requests) == 3
    assert clock.sleeps[0] >= 20
    assert clock.sleeps[1] <= connector.settings.max_backoff


def test_a_bulk_cursor_pointing_elsewhere_is_refused(clock: FakeClock) -> None:
    connector, adapter = _connector(clock, lambda r: (200, {"d": {"results": []}}, {}))
    cursor = f"bulk 5 {_EVIL}/api/v1/2999999/bulk/CRM/Accounts?$skiptoken=guid'x'"
    with pytest.raises(ExactDataError) as caught:
        list(connector.pull_customers(cursor))
    assert caught.value.field == "cursor" and adapter.requests == []


def test_no_call_leaves_the_configured_host(clock: FakeClock) -> None:
    connector, adapter = _connector(clock, lambda r: (200, {"d": {"results": []}}, {}))
    with pytest.raises(ExactDataError):
        connector.client.get(f"{_EVIL}/api/v1/2999999/crm/Accounts")
    assert adapter.requests == []


def test_token_endpoint_redirects_are_not_followed(clock: FakeClock) -> None:
    """A 307 would re-send client_secret and refresh token to the new address."""
    seen: list[str] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        seen.append(str(request.url))
        return 307, b"", {"Location": f"{_EVIL}/api/oauth2/token"}

    store = _expired_store(clock)
    connector, _ = _connector(clock, handler, store)
    with pytest.raises(ExactError):
        connector.tokens.access_token()
    assert seen == [f"{EXACT_NL}/api/oauth2/token"]
    assert store.tokens["exact:test"].refresh_token == "RT-1"


def test_naive_stored_times_are_read_as_utc(clock: FakeClock) -> None:
    store = MemoryTokenStore()
    aware = token_set("AT-1", "RT-1", issued_at=clock.now())
    store.tokens["exact:test"] = aware.model_copy(
        update={
            "issued_at": aware.issued_at.replace(tzinfo=None),
            "expires_at": aware.expires_at.replace(tzinfo=None),
        }
    )
    connector, _ = _connector(clock, lambda r: (200, {}, {}), store)
    assert connector.tokens.access_token() == "AT-1"


def test_body_declared_utf8_but_in_cp1252_keeps_its_accents(clock: FakeClock) -> None:
    raw = '{"d": {"results": [{"ID": "a", "Name": "Café Noël – BV"}]}}'
    headers = {"Content-Type": "application/json; charset=utf-8"}
    connector, _ = _connector(
        clock, lambda request: (200, raw.encode("cp1252"), headers)
    )
    rows, _ = next(connector.client.pages(connector.client.url("crm/Accounts")))
    assert rows[0]["Name"] == "Café Noël – BV"


def test_body_with_a_utf8_byte_order_mark_parses(clock: FakeClock) -> None:
    raw = b"\xef\xbb\xbf" + '{"d": {"results": [{"ID": "a", "Name": "Café"}]}}'.encode()
    connector, _ = _connector(clock, lambda request: (200, raw, {}))
    rows, _ = next(connector.client.pages(connector.client.url("crm/Accounts")))
    assert rows[0]["Name"] == "Café"


def test_429_from_the_token_endpoint_is_a_retryable_limit(clock: FakeClock) -> None:
    from sync_daemon.kernel.errors import RateLimited

    store = _expired_store(clock)
    answer = (429, b"Too many requests", {"Retry-After": "40"})
    connector, _ = _connector(clock, _token_handler(answer, []), store)
    with pytest.raises(RateLimited) as caught:
        connector.tokens.access_token()
    assert caught.value.retry_after == 40
    assert store.tokens["exact:test"].refresh_token == "RT-1"
