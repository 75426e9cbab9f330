"""Fixtures of the Exact connector tests: fake clock, scripted HTTP, sandbox.

Nothing here touches the network beyond 127.0.0.1: scripted tests mount a
``requests`` adapter that answers in-process (the Exact host names in the field
cases are never resolved), contract tests run the sandbox on loopback.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from connectors.exact.connector import ExactConnector
from connectors.exact.sandbox import ExactSandbox, FaultPlan
from connectors.exact.settings import ExactSettings
from sync_daemon.kernel.protocol import ConnectorContext, TokenSet
from sync_daemon.state import SqliteTokenStore

EXACT_NL = "https://start.exactonline.nl"
DIVISION = 2999999
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test of this package that opens a socket beyond 127.0.0.1."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def check(address: Any) -> None:
        if isinstance(address, tuple) and str(address[0]) not in _LOOPBACK:
            raise AssertionError(f"test tried to reach {address[0]!r}")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


class FakeClock:
    """A UTC clock that only moves when told to; ``sleep`` moves it."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += timedelta(seconds=max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 5, 2, 8, 0, tzinfo=UTC))


Answer = tuple[int, Any, dict[str, str]]


class ScriptedAdapter(BaseAdapter):
    """Answers requests in-process through ``handler(request) -> Answer``.

    ``handler`` may raise a ``requests`` exception to simulate a broken network.
    Every prepared request is kept, exactly as it would have gone on the wire.
    """

    def __init__(self, handler: Callable[[requests.PreparedRequest], Answer]) -> None:
        super().__init__()
        self.handler = handler
        self.requests: list[requests.PreparedRequest] = []

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        self.requests.append(request)
        status, body, headers = self.handler(request)
        response = requests.Response()
        response.status_code = status
        response.reason = {200: "OK", 201: "Created", 204: "No Content"}.get(
            status, "Error"
        )
        if isinstance(body, bytes):
            response._content = body
        else:
            response._content = b"" if body is None else json.dumps(body).encode()
        response.headers = CaseInsensitiveDict(headers)
        # As requests' own adapter does: the charset the headers declare.
        response.encoding = get_encoding_from_headers(response.headers)
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        """Nothing to release."""

    def calls(self, method: str | None = None, contains: str = "") -> list[str]:
        return [
            str(r.url)
            for r in self.requests
            if (method is None or r.method == method) and contains in str(r.url)
        ]


def scripted_session(
    handler: Callable[[requests.PreparedRequest], Answer],
) -> tuple[requests.Session, ScriptedAdapter]:
    adapter = ScriptedAdapter(handler)
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session, adapter


@dataclass
class MemoryTokenStore:
    """An in-process TokenStore that records what happens, in order."""

    tokens: dict[str, TokenSet] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    fail_save: bool = False
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def load(self, key: str) -> TokenSet | None:
        self.events.append("load")
        return self.tokens.get(key)

    def save(self, key: str, tokens: TokenSet) -> None:
        if self.fail_save:
            raise OSError("disk full")
        self.events.append(f"save:{tokens.access_token}")
        self.tokens[key] = tokens

    def lock(self, key: str) -> AbstractContextManager[None]:
        return self._locked()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            self.events.append("lock")
            yield
            self.events.append("unlock")


def token_set(
    access: str,
    refresh: str,
    *,
    issued_at: datetime,
    lifetime: int = 600,
    base_url: str = EXACT_NL,
) -> TokenSet:
    return TokenSet(
        access_token=access,
        refresh_token=refresh,
        issued_at=issued_at,
        expires_at=issued_at + timedelta(seconds=lifetime),
        base_url=base_url,
    )


def base_settings(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "base_url": EXACT_NL,
        "client_id": "client-1",
        "client_secret": "secret-1",
        "division": DIVISION,
        "redirect_uri": "http://127.0.0.1:8099/callback",
        "journal": "70",
        "vat_codes": {"S:21": "1", "S:9": "2", "AE:0": "4"},
        "gl_accounts": {"700000": "8000"},
        "default_gl_account": "8200",
        "item_code": "DIENST",
        "token_key": "exact:test",
    }
    values.update(overrides)
    return values


def make_connector(
    *,
    settings: dict[str, Any],
    store: Any,
    clock: FakeClock,
    session: requests.Session | None = None,
    backend_id: int = 7,
) -> ExactConnector:
    ctx = ConnectorContext(
        backend_id=backend_id,
        settings=settings,
        tokens=store,
        clock=clock.now,
        sleep=clock.sleep,
    )
    return ExactConnector(
        ctx,
        ExactSettings.from_mapping(settings, backend=str(backend_id)),
        session=session,
    )


@pytest.fixture
def memory_store() -> MemoryTokenStore:
    return MemoryTokenStore()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteTokenStore]:
    store = SqliteTokenStore(tmp_path / "state.sqlite3")
    yield store
    store.close()


@pytest.fixture
def sandbox_factory(clock: FakeClock) -> Iterator[Callable[..., ExactSandbox]]:
    """Start sandboxes sharing the test's fake clock; all stopped afterwards."""
    started: list[ExactSandbox] = []

    def start(**kwargs: Any) -> ExactSandbox:
        kwargs.setdefault("seed", 11)
        kwargs.setdefault("accounts", 150)
        kwargs.setdefault("invoices", 40)
        kwargs.setdefault("client_id", "client-1")
        kwargs.setdefault("client_secret", "secret-1")
        kwargs.setdefault("faults", FaultPlan())
        sandbox = ExactSandbox(clock=clock.now, **kwargs).start()
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


def sandbox_connector(
    sandbox: ExactSandbox,
    store: Any,
    clock: FakeClock,
    **overrides: Any,
) -> ExactConnector:
    """A connector on ``sandbox`` whose tokens come from a fresh consent."""
    settings = base_settings(base_url=sandbox.url, **overrides)
    connector = make_connector(settings=settings, store=store, clock=clock)
    tokens = sandbox.issue_tokens()
    store.save(
        settings["token_key"],
        token_set(
            tokens["access_token"],
            tokens["refresh_token"],
            issued_at=clock.now(),
            lifetime=int(tokens["expires_in"]),
            base_url=sandbox.url,
        ),
    )
    return connector
