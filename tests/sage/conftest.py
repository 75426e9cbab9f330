"""Fixtures of the Sage connector tests: sandboxes, token store, fake sleep."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.sage.accounting import SageAccountingConnector, load_settings
from connectors.sage.sandbox_accounting import BE_BUSINESS, SageAccountingSandbox
from sync_daemon.state import SqliteTokenStore


class FakeSleep:
    """Records the waits asked for instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def token_store(tmp_path: Path) -> Iterator[SqliteTokenStore]:
    store = SqliteTokenStore(tmp_path / "state.sqlite3")
    yield store
    store.close()


@pytest.fixture
def accounting_sandbox() -> Iterator[SageAccountingSandbox]:
    sandbox = SageAccountingSandbox(customers=25).start()
    yield sandbox
    sandbox.stop()


MakeConnector = Callable[..., SageAccountingConnector]


@pytest.fixture
def make_connector(
    token_store: SqliteTokenStore, fake_sleep: FakeSleep
) -> Iterator[MakeConnector]:
    """Build an authorised connector on a sandbox (consent code exchanged)."""
    built: list[SageAccountingConnector] = []

    def make(
        sandbox: SageAccountingSandbox,
        *,
        business_id: str = BE_BUSINESS,
        authorise: bool = True,
        store: Any = None,
        **settings: Any,
    ) -> SageAccountingConnector:
        connector = SageAccountingConnector(
            load_settings(sandbox.settings(business_id, **settings)),
            tokens=store or token_store,
            clock=sandbox.clock,
            sleep=fake_sleep,
            backend_id=7,
        )
        if authorise:
            connector.exchange_code(code=sandbox.issue_code(business_id))
        built.append(connector)
        return connector

    yield make
    for connector in built:
        connector.close()


@pytest.fixture
def x3_sandbox() -> Iterator[Any]:
    from connectors.sage.sandbox_http import FaultPlan
    from connectors.sage.sandbox_x3 import SageX3Sandbox

    # Timeout faults hold the answer 1.5 s against a 1 s operation timeout: wide
    # enough that a loaded machine does not produce timeouts of its own.
    sandbox = SageX3Sandbox(customers=8, faults=FaultPlan(delay=1.5)).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def make_x3(fake_sleep: FakeSleep) -> Iterator[Callable[..., Any]]:
    """Build an X3 connector pointed at a sandbox."""
    from connectors.sage.x3 import SageX3Connector
    from connectors.sage.x3 import load_settings as load_x3

    built: list[Any] = []

    def make(sandbox: Any, **settings: Any) -> SageX3Connector:
        merged = {"operation_timeout": 1.0, **settings}
        connector = SageX3Connector(
            load_x3(sandbox.settings(**merged)), sleep=fake_sleep
        )
        built.append(connector)
        return connector

    yield make
    for connector in built:
        connector.close()
