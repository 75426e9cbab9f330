"""Exact's mailing opt-out: the connector is the engine's ``MarketingSink``.

Exact keeps it on the account as ``IsMailing`` (a byte, 1 = excluded from mailing
marketing information); a consent withdrawn in Odoo sets it, nothing else of the
account changes, and repeating it is harmless.
"""

from __future__ import annotations

from typing import Any

import pytest

from connectors.exact.errors import ExactDataError
from sync_daemon.kernel.protocol import MarketingSink

from .conftest import FakeClock, MemoryTokenStore, sandbox_connector


def test_withdrawal_sets_is_mailing_and_nothing_else(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    sandbox = sandbox_factory(accounts=3, invoices=0)
    connector = sandbox_connector(sandbox, memory_store, clock)
    assert isinstance(connector, MarketingSink)
    target, other = sandbox.rows("accounts")[:2]
    assert (target["IsMailing"], other["IsMailing"]) == (0, 0)

    for _ in range(2):
        connector.exclude_from_marketing(target["ID"], purpose="newsletter")

    after = {row["ID"]: row for row in sandbox.rows("accounts")}
    assert after[target["ID"]]["IsMailing"] == 1
    assert after[other["ID"]]["IsMailing"] == 0
    unchanged = {k: v for k, v in target.items() if k not in ("IsMailing", "Modified")}
    assert {k: after[target["ID"]][k] for k in unchanged if k != "Timestamp"} == {
        k: v for k, v in unchanged.items() if k != "Timestamp"
    }
    # the change shows in the sync API like any edit
    assert after[target["ID"]]["Timestamp"] > target["Timestamp"]


def test_withdrawal_for_a_link_that_is_no_exact_id_is_refused(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    sandbox = sandbox_factory(accounts=1, invoices=0)
    connector = sandbox_connector(sandbox, memory_store, clock)
    with pytest.raises(ExactDataError) as caught:
        connector.exclude_from_marketing("odoo:42", purpose="newsletter")
    assert caught.value.field == "external_id"
