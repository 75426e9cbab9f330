"""C012: rotating single-use refresh tokens shared by threads and processes.

One token store (the daemon's SQLite store with its file lock) is shared by two
workers that find the access token expired at the same moment: exactly one refresh
happens, the new pair is saved before use, the other worker re-reads it, and the
old refresh token is never sent twice. ``invalid_grant`` means re-authorisation.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from connectors.exact.errors import ExactNeedsReauthorisation, ExactRateLimited
from sync_daemon.kernel.errors import NeedsReauthorisation
from sync_daemon.kernel.protocol import TokenSet
from sync_daemon.state import SqliteTokenStore

from . import _token_worker
from .conftest import (
    FakeClock,
    MemoryTokenStore,
    base_settings,
    make_connector,
    scripted_session,
    token_set,
)


class RotatingEndpoint:
    """The token endpoint of the C012 fixture: RT-1 works once, then invalid_grant."""

    def __init__(self, case: dict[str, Any], delay: float = 0.05) -> None:
        self.behaviour = case["token_endpoint_behaviour"]
        self.presented: list[str] = []
        self.delay = delay
        self._lock = threading.Lock()

    def answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        time.sleep(self.delay)  # widen the race window
        with self._lock:
            token = form.get("refresh_token", "")
            first_use = token not in self.presented
            self.presented.append(token)
        for step in self.behaviour:
            if (
                step["request_refresh_token"] == token
                and step["first_use"] == first_use
            ):
                return step["response"]["http_status"], step["response"]["body"]
        return 400, {"error": "invalid_grant"}


def _stored_before(case: dict[str, Any], base_url: str) -> TokenSet:
    before = case["stored_before"]
    expires = datetime.fromisoformat(before["expires_at"].replace("Z", "+00:00"))
    return TokenSet(
        access_token=before["access_token"],
        refresh_token=before["refresh_token"],
        issued_at=expires - timedelta(seconds=600),
        expires_at=expires,
        base_url=base_url,
    )


def test_c012_two_threads_refresh_once(
    load_case: Any, sqlite_store: SqliteTokenStore
) -> None:
    case = load_case("C012_token_rotation_sequence.json")
    endpoint = RotatingEndpoint(case)
    api_tokens: list[str] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        if str(request.url).endswith("/api/oauth2/token"):
            form = {k: v[0] for k, v in parse_qs(str(request.body)).items()}
            status, body = endpoint.answer(form)
            return status, body, {}
        api_tokens.append(str(request.headers["Authorization"]))
        return 200, {"d": {"results": []}}, {}

    settings = base_settings(token_key="exact:c012")
    sqlite_store.save("exact:c012", _stored_before(case, settings["base_url"]))
    clock = FakeClock(datetime.fromisoformat("2025-05-02T08:10:30+00:00"))
    connectors = []
    for _ in range(2):
        session, _adapter = scripted_session(handler)
        connectors.append(
            make_connector(
                settings=settings, store=sqlite_store, clock=clock, session=session
            )
        )
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait(5)
            client = connectors[index].client
            client.get(client.url("crm/Accounts", {"$select": "ID"}))
        except BaseException as err:  # re-raised below by the assertion
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    expected = case["expected"]
    assert errors == []
    assert len(endpoint.presented) == expected["token_endpoint_calls"]
    assert endpoint.presented.count("RT-1") == 1
    stored = sqlite_store.load("exact:c012")
    assert stored is not None
    assert (stored.access_token, stored.refresh_token) == ("AT-2", "RT-2")
    assert api_tokens == ["Bearer AT-2", "Bearer AT-2"]


def test_c012_two_processes_refresh_once(load_case: Any, tmp_path: Path) -> None:
    case = load_case("C012_token_rotation_sequence.json")
    endpoint = RotatingEndpoint(case, delay=0.2)

    class TokenHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {
                key: values[0]
                for key, values in parse_qs(self.rfile.read(length).decode()).items()
            }
            status, body = endpoint.answer(form)
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _two_processes(case, endpoint, tmp_path, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _two_processes(
    case: dict[str, Any], endpoint: RotatingEndpoint, tmp_path: Path, port: int
) -> None:
    base_url = f"http://127.0.0.1:{port}"
    settings = base_settings(base_url=base_url, token_key="exact:c012")
    db = tmp_path / "state.sqlite3"
    store = SqliteTokenStore(db)
    store.save("exact:c012", _stored_before(case, base_url))
    store.close()

    context = multiprocessing.get_context("spawn")
    go = context.Event()
    out = context.Queue()
    workers = [
        context.Process(target=_token_worker.run, args=(str(db), settings, go, out))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    ready = [out.get(timeout=60) for _ in workers]
    assert [r[0] for r in ready] == ["ready", "ready"]
    go.set()  # both processes find the expired token at the same moment
    results = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)

    assert [r[0] for r in results] == ["ok", "ok"], results
    assert [r[1] for r in results] == ["AT-2", "AT-2"]
    assert sorted(r[2] for r in results) == [0, 1]  # one process refreshed
    assert endpoint.presented == ["RT-1"]  # RT-1 sent exactly once
    store = SqliteTokenStore(db)
    stored = store.load("exact:c012")
    store.close()
    assert stored is not None
    assert (stored.access_token, stored.refresh_token) == ("AT-2", "RT-2")


def _memory_connector(clock: FakeClock, handler: Any, store: MemoryTokenStore):
    session, adapter = scripted_session(handler)
    return make_connector(
        settings=base_settings(), store=store, clock=clock, session=session
    ), adapter


def test_c012_new_pair_is_saved_before_it_is_used(
    load_case: Any, clock: FakeClock
) -> None:
    case = load_case("C012_token_rotation_sequence.json")
    endpoint = RotatingEndpoint(case, delay=0)
    store = MemoryTokenStore()
    store.tokens["exact:test"] = token_set(
        "AT-1", "RT-1", issued_at=clock.now() - timedelta(seconds=700)
    )

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        if str(request.url).endswith("/api/oauth2/token"):
            form = {k: v[0] for k, v in parse_qs(str(request.body)).items()}
            status, body = endpoint.answer(form)
            store.events.append("token-endpoint")
            return status, body, {}
        store.events.append(f"api:{request.headers['Authorization']}")
        return 200, {"d": {"results": []}}, {}

    connector, _ = _memory_connector(clock, handler, store)
    connector.client.get(connector.client.url("crm/Accounts"))
    events = store.events
    assert events.index("token-endpoint") < events.index("save:AT-2")
    assert events.index("save:AT-2") < events.index("unlock")
    assert events.index("unlock") < events.index("api:Bearer AT-2")
    assert events.index("lock") < events.index("token-endpoint")
    # the store was re-read after taking the lock
    assert events[events.index("lock") + 1] == "load"


def test_c012_a_failed_save_means_the_new_token_is_not_used(
    load_case: Any, clock: FakeClock
) -> None:
    case = load_case("C012_token_rotation_sequence.json")
    endpoint = RotatingEndpoint(case, delay=0)
    store = MemoryTokenStore()
    store.tokens["exact:test"] = token_set(
        "AT-1", "RT-1", issued_at=clock.now() - timedelta(seconds=700)
    )
    store.fail_save = True
    api_calls: list[str] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        if str(request.url).endswith("/api/oauth2/token"):
            form = {k: v[0] for k, v in parse_qs(str(request.body)).items()}
            status, body = endpoint.answer(form)
            return status, body, {}
        api_calls.append(str(request.headers["Authorization"]))
        return 200, {"d": {"results": []}}, {}

    connector, _ = _memory_connector(clock, handler, store)
    with pytest.raises(ExactNeedsReauthorisation) as caught:
        connector.client.get(connector.client.url("crm/Accounts"))
    assert isinstance(caught.value.__cause__, OSError)
    assert api_calls == []


def test_c012_invalid_grant_needs_reauthorisation_without_retry(
    load_case: Any, clock: FakeClock
) -> None:
    case = load_case("C012_token_rotation_sequence.json")
    endpoint = RotatingEndpoint(case, delay=0)
    endpoint.presented.append("RT-1")  # somebody already spent RT-1
    store = MemoryTokenStore()
    store.tokens["exact:test"] = token_set(
        "AT-1", "RT-1", issued_at=clock.now() - timedelta(seconds=700)
    )
    api_calls: list[str] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        if str(request.url).endswith("/api/oauth2/token"):
            form = {k: v[0] for k, v in parse_qs(str(request.body)).items()}
            status, body = endpoint.answer(form)
            return status, body, {}
        api_calls.append("api")
        return 200, {"d": {"results": []}}, {}

    connector, _ = _memory_connector(clock, handler, store)
    with pytest.raises(ExactNeedsReauthorisation) as caught:
        connector.client.get(connector.client.url("crm/Accounts"))
    assert isinstance(caught.value, NeedsReauthorisation)
    assert caught.value.field == "refresh_token"
    assert connector.tokens.token_calls == 1 and clock.sleeps == []
    assert api_calls == []
    report = connector.check()
    assert report.credentials_state == "needs_reauth"
    assert "Old refresh token used" in report.message
    assert connector.tokens.token_calls == 1

    # The refusal is kept with the tokens: the next run (a new connector, maybe
    # another process) does not send the dead refresh token again.
    presented = list(endpoint.presented)
    later, _ = _memory_connector(clock, handler, store)
    clock.advance(3600)
    with pytest.raises(ExactNeedsReauthorisation, match="Old refresh token used"):
        later.client.get(later.client.url("crm/Accounts"))
    assert later.check().credentials_state == "needs_reauth"
    assert later.tokens.token_calls == 0 and endpoint.presented == presented
    assert api_calls == []

    # a new consent (crm-sync auth) stores a fresh pair: work resumes
    store.tokens["exact:test"] = token_set("AT-9", "RT-9", issued_at=clock.now())
    assert later.client.get(later.client.url("crm/Accounts")) == {"d": {"results": []}}
    assert api_calls == ["api"]


def test_refresh_waits_for_570_seconds(clock: FakeClock) -> None:
    calls: list[str] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        if str(request.url).endswith("/api/oauth2/token"):
            calls.append("token")
            body = {
                "access_token": "AT-2",
                "token_type": "bearer",
                "expires_in": "600",
                "refresh_token": "RT-2",
            }
            return 200, body, {}
        return 200, {"d": {"results": []}}, {}

    store = MemoryTokenStore()
    store.tokens["exact:test"] = token_set("AT-1", "RT-1", issued_at=clock.now())
    connector, _ = _memory_connector(clock, handler, store)
    clock.advance(560)  # inside the refresh margin, but younger than 570 s
    assert connector.tokens.access_token() == "AT-1" and calls == []
    clock.advance(15)
    assert connector.tokens.access_token() == "AT-2" and calls == ["token"]
    stored = store.tokens["exact:test"]
    assert stored.expires_at - stored.issued_at == timedelta(seconds=600)


def test_too_early_answer_is_a_retryable_limit(clock: FakeClock) -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        body = {
            "error": "access_denied",
            "error_description": "Rate limit exceeded: access_token not expired",
        }
        return 400, body, {"Reason": "TooEarlyToRefreshTokens"}

    store = MemoryTokenStore()
    store.tokens["exact:test"] = token_set(
        "AT-1", "RT-1", issued_at=clock.now() - timedelta(seconds=700)
    )
    connector, _ = _memory_connector(clock, handler, store)
    with pytest.raises(ExactRateLimited) as caught:
        connector.tokens.access_token()
    assert caught.value.scope == "token_refresh"
    assert store.tokens["exact:test"].refresh_token == "RT-1"  # not spent

    # Due by our clock but not yet expired: Exact's refusal means its clock is
    # behind ours, and the current access token still works there.
    store.tokens["exact:test"] = token_set(
        "AT-1", "RT-1", issued_at=clock.now() - timedelta(seconds=580)
    )
    assert connector.tokens.access_token() == "AT-1"


@pytest.mark.parametrize("value", ["600", 600, " 600 "])
def test_expires_in_string_or_number(clock: FakeClock, value: Any) -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        body = {"access_token": "A", "refresh_token": "R", "expires_in": value}
        return 200, body, {}

    store = MemoryTokenStore()
    connector, _ = _memory_connector(clock, handler, store)
    tokens = connector.exchange_code(code="code-1")
    assert tokens.expires_at == clock.now() + timedelta(seconds=600)
    assert tokens.base_url == connector.settings.host


def test_expires_in_garbage_still_saves_the_pair(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The old refresh token is spent: losing the new pair would force a consent."""

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        body = {"access_token": "A", "refresh_token": "R", "expires_in": "ten min"}
        return 200, body, {}

    store = MemoryTokenStore()
    connector, _ = _memory_connector(clock, handler, store)
    tokens = connector.exchange_code(code="code-1")
    assert store.tokens["exact:test"] == tokens
    assert tokens.expires_at == clock.now() + timedelta(seconds=600)
    assert "expires_in" in caplog.text


def test_tokens_of_another_host_are_refused(clock: FakeClock) -> None:
    store = MemoryTokenStore()
    store.tokens["exact:test"] = token_set(
        "AT-1", "RT-1", issued_at=clock.now(), base_url="https://start.exactonline.be"
    )
    connector, _ = _memory_connector(clock, lambda r: (200, {}, {}), store)
    with pytest.raises(ExactNeedsReauthorisation) as caught:
        connector.tokens.access_token()
    assert caught.value.field == "base_url"
