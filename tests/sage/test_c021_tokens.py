"""C021 (and the C012 locking rule): Sage token expiry, rotation, re-authorisation."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.sage.accounting import SageAccountingConnector, load_settings
from connectors.sage.errors import SageNeedsReauthorisation
from connectors.sage.oauth import SageOAuth
from connectors.sage.sandbox_accounting import (
    BE_BUSINESS,
    LEAD_BUSINESS,
    SageAccountingSandbox,
)
from sync_daemon.kernel.errors import NeedsReauthorisation
from sync_daemon.kernel.protocol import TokenSet
from sync_daemon.state import SqliteTokenStore

from .conftest import MakeConnector
from .helpers import ScriptedAdapter, scripted_session


class RecordingStore:
    """Wraps a token store and logs saves, for the persist-before-use rule."""

    def __init__(self, inner: SqliteTokenStore, events: list[tuple[str, str]]) -> None:
        self.inner = inner
        self.events = events

    def load(self, key: str) -> TokenSet | None:
        return self.inner.load(key)

    def save(self, key: str, tokens: TokenSet) -> None:
        self.inner.save(key, tokens)
        self.events.append(("save", tokens.access_token))

    def lock(self, key: str) -> Any:
        return self.inner.lock(key)


def test_proactive_refresh_persists_rotated_token_before_use(
    accounting_sandbox: SageAccountingSandbox,
    make_connector: MakeConnector,
    token_store: SqliteTokenStore,
) -> None:
    events: list[tuple[str, str]] = []
    connector = make_connector(
        accounting_sandbox, store=RecordingStore(token_store, events)
    )
    before = connector.oauth.stored()
    assert before is not None
    real_send = connector._session.request

    def spying_request(method: str, url: str, **kwargs: Any) -> Any:
        token = kwargs["headers"]["Authorization"].removeprefix("Bearer ")
        events.append(("use", token))
        return real_send(method, url, **kwargs)

    connector._session.request = spying_request  # type: ignore[method-assign]
    accounting_sandbox.advance(245)  # 55 s left: under the 60 s margin
    assert connector.check().credentials_state == "valid"

    after = connector.oauth.stored()
    assert after is not None and after.access_token != before.access_token
    assert after.refresh_token != before.refresh_token
    assert events.index(("save", after.access_token)) < events.index(
        ("use", after.access_token)
    )
    assert accounting_sandbox.refresh_log == [before.refresh_token]


def test_refresh_token_lifetime_is_stored(load_case: Any, tmp_path: Path) -> None:
    case = load_case("C021_token_responses.json")
    now = datetime(2025, 5, 2, 8, 0, tzinfo=UTC)
    adapter = ScriptedAdapter(lambda _: (200, case["ok"]["body"]))
    store = SqliteTokenStore(tmp_path / "state.sqlite3")
    settings = load_settings(
        {
            "client_id": "app",
            "client_secret": "s",
            "business_id": "biz",
            "redirect_uri": "http://127.0.0.1/cb",
        }
    )
    oauth = SageOAuth(
        settings,
        store=store,
        key="k",
        clock=lambda: now,
        sleep=lambda _: None,
        session_factory=lambda: scripted_session(adapter),
    )
    tokens = oauth.exchange_code(code="CODE-1")
    assert tokens.access_token == "SAT-1"
    assert tokens.expires_at == now + timedelta(seconds=300)
    assert tokens.refresh_expires_at == now + timedelta(seconds=2678400)
    stored = store.load("k")
    assert stored == tokens
    assert stored is not None and stored.extra["refresh_token_expires_in"] == 2678400


def test_warning_five_days_before_refresh_token_expiry(
    load_case: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    case = load_case("C021_token_responses.json")
    days = case["expected"]["proactive_warning_when_refresh_expires_within_days"]
    moment = [datetime(2025, 5, 2, 8, 0, tzinfo=UTC)]
    adapter = ScriptedAdapter(lambda _: (200, case["ok"]["body"]))
    store = SqliteTokenStore(tmp_path / "state.sqlite3")
    settings = load_settings(
        {"client_id": "a", "client_secret": "s", "business_id": "biz"}
    )
    oauth = SageOAuth(
        settings,
        store=store,
        key="k",
        clock=lambda: moment[0],
        sleep=lambda _: None,
        session_factory=lambda: scripted_session(adapter),
    )
    tokens = oauth.exchange_code(code="CODE-1", redirect_uri="http://127.0.0.1/cb")
    assert tokens.refresh_expires_at is not None

    moment[0] = tokens.refresh_expires_at - timedelta(days=days, minutes=1)
    oauth.check_refresh_expiry(tokens)
    assert oauth.warning is None

    moment[0] = tokens.refresh_expires_at - timedelta(days=days) + timedelta(minutes=1)
    with caplog.at_level(logging.WARNING, logger="connectors.sage.oauth"):
        oauth.check_refresh_expiry(tokens)
        oauth.check_refresh_expiry(tokens)
    assert oauth.warning and "expires on" in oauth.warning
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # raised once, not on every call
    assert "SRT-1" not in caplog.text and "SAT-1" not in caplog.text


def test_short_lived_refresh_token_shows_in_health_report(
    make_connector: MakeConnector,
) -> None:
    with SageAccountingSandbox(customers=2, refresh_ttl=3 * 86400) as sandbox:
        connector = make_connector(sandbox)
        report = connector.check()
    assert report.credentials_state == "valid"
    assert "expires on" in report.details["warning"]


def test_invalid_grant_needs_reauthorisation_for_that_business_only(
    accounting_sandbox: SageAccountingSandbox,
    make_connector: MakeConnector,
    token_store: SqliteTokenStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    be = make_connector(accounting_sandbox, business_id=BE_BUSINESS)
    fr = make_connector(accounting_sandbox, business_id=LEAD_BUSINESS)
    key = f"sage_accounting:7:{BE_BUSINESS}"
    stored = token_store.load(key)
    assert stored is not None
    # The BE business holds a refresh token Sage no longer knows.
    token_store.save(key, stored.model_copy(update={"refresh_token": "SRT-revoked"}))
    accounting_sandbox.advance(400)  # both access tokens expired

    with caplog.at_level(logging.ERROR):
        with pytest.raises(SageNeedsReauthorisation) as caught:
            list(be.pull_customers(None))
        assert isinstance(caught.value, NeedsReauthorisation)
        assert BE_BUSINESS in str(caught.value)
        with pytest.raises(SageNeedsReauthorisation):
            list(be.pull_customers(None))
        assert be.check().credentials_state == "needs_reauth"

    assert accounting_sandbox.refresh_log.count("SRT-revoked") == 1  # no retries
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1  # one alert
    customers = [c for page in fr.pull_customers(None) for c in page.records]
    assert len(customers) == 25  # the other business carries on

    # The next run (a new connector, maybe another process) reads the refusal
    # from the store and does not present the dead refresh token again.
    later = make_connector(accounting_sandbox, business_id=BE_BUSINESS, authorise=False)
    accounting_sandbox.advance(3600)
    with pytest.raises(SageNeedsReauthorisation, match="invalid_grant"):
        list(later.pull_customers(None))
    assert later.check().credentials_state == "needs_reauth"
    assert accounting_sandbox.refresh_log.count("SRT-revoked") == 1
    # a new consent clears it
    later.exchange_code(code=accounting_sandbox.issue_code(BE_BUSINESS))
    assert [c for page in later.pull_customers(None) for c in page.records]


def test_refresh_does_not_depend_on_cookies(
    accounting_sandbox: SageAccountingSandbox, make_connector: MakeConnector
) -> None:
    connector = make_connector(accounting_sandbox)
    list(connector.pull_customers(None))
    assert connector._session.cookies.get("sage_session") == "sandbox"
    accounting_sandbox.advance(400)
    list(connector.pull_customers(None))
    grants = [r["grant_type"] for r in accounting_sandbox.token_requests]
    assert grants == ["authorization_code", "refresh_token"]
    assert not any(r["cookie"] for r in accounting_sandbox.token_requests)


def test_two_workers_spend_the_refresh_token_once(
    accounting_sandbox: SageAccountingSandbox,
    make_connector: MakeConnector,
    token_store: SqliteTokenStore,
    load_case: Any,
) -> None:
    expected = load_case("C012_token_rotation_sequence.json")["expected"]
    first = make_connector(accounting_sandbox)
    second = make_connector(accounting_sandbox, authorise=False)
    accounting_sandbox.advance(400)
    barrier = threading.Barrier(2)
    tokens: list[str] = []
    errors: list[BaseException] = []

    def work(connector: SageAccountingConnector) -> None:
        barrier.wait()
        try:
            tokens.append(connector.oauth.access_token())
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(c,)) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors
    refreshes = [
        r
        for r in accounting_sandbox.token_requests
        if r["grant_type"] == "refresh_token"
    ]
    assert len(refreshes) == expected["token_endpoint_calls"]
    assert len(set(tokens)) == 1
    assert len(set(accounting_sandbox.refresh_log)) == len(
        accounting_sandbox.refresh_log
    )


def test_fresh_session_per_token_request(tmp_path: Path) -> None:
    made: list[requests.Session] = []
    body = {"access_token": "A", "expires_in": 300, "refresh_token": "R"}

    def factory() -> requests.Session:
        session = scripted_session(ScriptedAdapter(lambda _: (200, body)))
        made.append(session)
        return session

    store = SqliteTokenStore(tmp_path / "state.sqlite3")
    oauth = SageOAuth(
        load_settings({"client_id": "a", "client_secret": "s", "business_id": "b"}),
        store=store,
        key="k",
        clock=lambda: datetime(2025, 1, 1, tzinfo=UTC),
        sleep=lambda _: None,
        session_factory=factory,
    )
    oauth.exchange_code(code="C", redirect_uri="http://127.0.0.1/cb")
    store.save(
        "k",
        store.load("k").model_copy(  # type: ignore[union-attr]
            update={"expires_at": datetime(2024, 1, 1, tzinfo=UTC)}
        ),
    )
    oauth.access_token()
    assert len(made) == 2 and made[0] is not made[1]
