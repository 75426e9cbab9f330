"""Fixtures of the daemon's tests: a fake Odoo on 127.0.0.1 and gateways to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sync_daemon.gateway import OdooGateway
from sync_daemon.retry import RetryPolicy
from sync_daemon.testing.fake_odoo import FakeOdoo


@pytest.fixture
def fake_odoo() -> Iterator[FakeOdoo]:
    with FakeOdoo() as fake:
        yield fake


def make_gateway(fake: FakeOdoo, transport: str = "jsonrpc") -> OdooGateway:
    gateway = OdooGateway(
        fake.url,
        fake.database,
        "sync-bot",
        "secret",
        transport=transport,
        timeout=5,
        retry=RetryPolicy(attempts=3, initial=0.01, maximum=0.05, jitter=0.01),
    )
    return gateway.connect()


@pytest.fixture
def gateway(fake_odoo: FakeOdoo) -> OdooGateway:
    return make_gateway(fake_odoo)
