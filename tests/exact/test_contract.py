"""Contract tests: the connector against the Exact sandbox on 127.0.0.1.

The sandbox and the connector share one fake clock, so token ageing, minute
windows and back-off waits take no real time.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from connectors.exact.errors import ExactConfigurationError, ExactNeedsReauthorisation
from connectors.exact.sandbox import ExactSandbox, FaultPlan
from sync_daemon.kernel.models import Address, Customer, Invoice, InvoiceLine, Party

from .conftest import (
    FakeClock,
    MemoryTokenStore,
    base_settings,
    make_connector,
    sandbox_connector,
)


def _invoice(number: str, buyer_id: str, amount: str = "100.00") -> Invoice:
    party = Party(name="Koper BV")
    net = Decimal(amount)
    return Invoice(
        number=number,
        issue_date=date(2025, 5, 2),
        due_date=date(2025, 6, 1),
        seller=party,
        buyer=party,
        buyer_external_id=buyer_id,
        lines=(
            InvoiceLine(
                line_id="1",
                name="Advies",
                quantity=Decimal(1),
                unit_price=net,
                net_amount=net,
                tax_category="S",
                tax_percent=Decimal(21),
                account_code="700000",
            ),
        ),
        line_extension_amount=net,
        tax_exclusive_amount=net,
        tax_amount=(net * Decimal("0.21")).quantize(Decimal("0.01")),
        tax_inclusive_amount=(net * Decimal("1.21")).quantize(Decimal("0.01")),
        payable_amount=(net * Decimal("1.21")).quantize(Decimal("0.01")),
    )


def test_consent_flow_then_check(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    sandbox: ExactSandbox = sandbox_factory()
    connector = make_connector(
        settings=base_settings(base_url=sandbox.url), store=memory_store, clock=clock
    )
    assert connector.check().credentials_state == "needs_reauth"
    url = connector.authorization_url(state="xyz")
    answer = requests.get(url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    query = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert query["state"] == ["xyz"]
    tokens = connector.exchange_code(code=query["code"][0])
    assert memory_store.tokens["exact:test"] == tokens
    report = connector.check()
    assert report.credentials_state == "valid", report
    with pytest.raises(ExactNeedsReauthorisation):
        connector.exchange_code(code=query["code"][0])  # codes are single-use
    connector.close()


def test_check_names_every_unknown_mapping(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    sandbox = sandbox_factory()
    connector = sandbox_connector(
        sandbox,
        memory_store,
        clock,
        vat_codes={"S:21": "1", "S:19": "9", "S:7": "77"},
        gl_accounts={"700000": "9999"},
        journal="90",
    )
    with pytest.raises(ExactConfigurationError) as caught:
        connector.check()
    problems = caught.value.details["problems"]
    assert any("vat_codes.S:19" in p and "blocked" in p for p in problems)
    assert any("vat_codes.S:7" in p and "does not exist" in p for p in problems)
    assert any("gl_accounts.700000" in p for p in problems)
    assert any(p.startswith("journal:") for p in problems)


def test_check_refuses_an_unreachable_division(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    sandbox = sandbox_factory(divisions=(2999999, 3000001))
    connector = sandbox_connector(sandbox, memory_store, clock, division=1234567)
    with pytest.raises(ExactConfigurationError) as caught:
        connector.check()
    assert caught.value.field == "division"
    ok = sandbox_connector(sandbox, MemoryTokenStore(), clock, division=3000001)
    assert ok.check().credentials_state == "valid"


def test_bulk_initial_load_then_sync_and_deletions(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    sandbox = sandbox_factory(accounts=2500)
    connector = sandbox_connector(sandbox, memory_store, clock)
    pages = list(connector.pull_customers(None))
    customers = [c for page in pages for c in page.records]
    assert len({c.external_id for c in customers}) == 2500
    assert connector.client.stats.calls == math.ceil(2500 / 1000) + 1
    assert pages[0].cursor and pages[0].cursor.startswith("bulk ")
    assert all(
        c.external_code and not c.external_code.startswith(" ") for c in customers
    )

    # A crash after page 1: resuming from its cursor reads only the rest.
    resumed = [c for p in connector.pull_customers(pages[0].cursor) for c in p.records]
    assert len(resumed) == 1500

    cursor = pages[-1].cursor
    assert cursor is not None and cursor.isdigit()
    first = sandbox.rows("accounts")[0]["ID"]
    clock.advance(3600)
    sandbox.update_account(first, Name="Nieuwe Naam BV")
    changed = [c for p in connector.pull_customers(cursor) for c in p.records]
    assert [c.name for c in changed] == ["Nieuwe Naam BV"]

    sandbox.delete_account(first)
    deleted_pages = list(connector.pull_deletions(None))
    assert [(d.external_id, d.entity) for p in deleted_pages for d in p.records] == [
        (first, "account")
    ]
    again = list(connector.pull_deletions(deleted_pages[-1].cursor))
    assert [d for p in again for d in p.records] == []


def test_customers_out_create_find_update(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    sandbox = sandbox_factory()
    connector = sandbox_connector(sandbox, memory_store, clock)
    customer = Customer(
        external_id="res.partner,501",
        name="Brouwerij Claes NV",
        vat="BE 0447.123.478",
        company_registry="0447123478",
        address=Address(street="Markt 1", zip="9000", city="Gent", country_code="BE"),
        email="boekhouding@claes.example",
    )
    assert connector.find_customer(customer) is None
    created = connector.push_customer(customer, external_id=None, idempotency_key="c1")
    assert created.created and created.external_code
    found = connector.find_customer(customer.model_copy(update={"vat": "BE0447123478"}))
    assert found is not None and found.external_id == created.external_id
    updated = connector.push_customer(
        customer.model_copy(update={"email": "finance@claes.example"}),
        external_id=created.external_id,
        idempotency_key="c1",
    )
    assert not updated.created
    row = next(r for r in sandbox.rows("accounts") if r["ID"] == created.external_id)
    assert row["Email"] == "finance@claes.example"
    assert row["Code"] == created.external_code.rjust(18)


@pytest.mark.parametrize("mode", ["sales_entries", "sales_invoices"])
def test_invoices_out_and_payment_status_back(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore, mode: str
) -> None:
    sandbox = sandbox_factory(invoices=5)
    connector = sandbox_connector(sandbox, memory_store, clock, invoice_mode=mode)
    assert connector.check().credentials_state == "valid"
    start = list(connector.pull_payments(None))
    assert len([s for p in start for s in p.records]) == 5
    buyer = sandbox.rows("accounts")[3]["ID"]
    invoice = _invoice("FV-2025-00100", buyer)
    ref = connector.push_invoice(invoice, idempotency_key="i1")
    again = connector.push_invoice(invoice, idempotency_key="i1")
    assert ref.created and not again.created and again.external_id == ref.external_id
    table = "entries" if mode == "sales_entries" else "invoices"
    assert [r["YourRef"] for r in sandbox.rows(table)].count("FV-2025-00100") == 1
    if mode == "sales_invoices":
        return  # receivables appear once Exact processes the invoice
    cursor = start[-1].cursor
    sandbox.pay("FV-2025-00100", Decimal("21.00"))
    statuses = [s for p in connector.pull_payments(cursor) for s in p.records]
    assert [(s.invoice_number, s.state, s.amount_residual) for s in statuses] == [
        ("FV-2025-00100", "partial", Decimal("100.0"))
    ]
    assert statuses[0].customer_external_id == buyer
    cursor = list(connector.pull_payments(cursor))[-1].cursor
    sandbox.pay("FV-2025-00100", Decimal("100.00"))
    statuses = [s for p in connector.pull_payments(cursor) for s in p.records]
    assert statuses[0].state == "paid" and statuses[0].amount_residual == 0


def test_tokens_refresh_only_when_due_against_the_sandbox(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    sandbox = sandbox_factory()
    connector = sandbox_connector(sandbox, memory_store, clock)
    url = connector.client.url("crm/Accounts", {"$select": "ID", "$top": "1"})
    for _ in range(25):  # one call a minute for 24 minutes
        connector.client.get(url)
        clock.advance(60)
    stats = sandbox.stats
    assert stats.too_early_refusals == 0 and stats.refresh_token_reuse == 0
    assert stats.refreshes == 2  # at minutes 10 and 20, never earlier
    assert all(count == 1 for count in stats.refresh_tokens_presented.values())
    # The sandbox itself refuses a refresh younger than 570 s.
    token = memory_store.tokens["exact:test"]
    answer = requests.post(
        f"{sandbox.url}/api/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token.refresh_token,
            "client_id": "client-1",
            "client_secret": "secret-1",
        },
        timeout=5,
    )
    assert answer.status_code == 400
    assert answer.headers["Reason"] == "TooEarlyToRefreshTokens"
    assert answer.json()["error"] == "access_denied"


def test_client_stays_under_the_minute_limit(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    sandbox = sandbox_factory()
    connector = sandbox_connector(sandbox, memory_store, clock)
    url = connector.client.url("crm/Accounts", {"$select": "ID", "$top": "1"})
    for _ in range(130):
        connector.client.get(url)
    assert sandbox.stats.rate_limited == 0
    assert sandbox.stats.as_dict()["peak_calls_per_minute"] <= 60


def test_back_to_back_runs_share_the_minute(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    # "Run now" right after a run: the next run's connector still counts the
    # calls the last one made this minute (kept with the tokens at close).
    sandbox = sandbox_factory()
    settings = base_settings(base_url=sandbox.url, minutely_reserve=0)
    first = sandbox_connector(sandbox, memory_store, clock, minutely_reserve=0)
    url = first.client.url("crm/Accounts", {"$select": "ID", "$top": "1"})
    for _ in range(60):  # the whole minute's budget
        first.client.get(url)
        clock.advance(0.2)
    first.close()
    for _ in range(3):  # runs in quick succession
        run = make_connector(settings=settings, store=memory_store, clock=clock)
        for _ in range(20):
            run.client.get(url)
            clock.advance(0.2)
        run.close()
    stats = sandbox.stats
    assert stats.division_calls == 120
    assert stats.rate_limited == 0
    assert stats.as_dict()["peak_calls_per_minute"] <= 60


def test_minutely_429_from_the_sandbox_is_waited_out(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    # Two workers on one division: neither limiter sees the other's calls, so
    # Exact's minute budget runs out under them and 429s come back.
    sandbox = sandbox_factory(minutely_limit=10)
    first = sandbox_connector(sandbox, memory_store, clock, minutely_reserve=0)
    second = make_connector(
        settings=base_settings(base_url=sandbox.url, minutely_reserve=0),
        store=memory_store,
        clock=clock,
    )
    url = first.client.url("crm/Accounts", {"$select": "ID", "$top": "1"})
    for _ in range(25):
        first.client.get(url)
        second.client.get(url)
    assert sandbox.stats.rate_limited >= 1
    assert sandbox.stats.division_calls == 50
    assert max(sandbox.stats.calls_per_minute.values()) <= 10


def test_daily_quota_pauses_the_division(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    sandbox = sandbox_factory(daily_limit=5)
    connector = sandbox_connector(sandbox, memory_store, clock)
    url = connector.client.url("crm/Accounts", {"$select": "ID", "$top": "1"})
    for _ in range(5):
        connector.client.get(url)
    from connectors.exact.errors import ExactRateLimited

    with pytest.raises(ExactRateLimited) as caught:
        connector.client.get(url)
    assert caught.value.scope == "daily"
    calls = sandbox.stats.api_calls
    with pytest.raises(ExactRateLimited):
        connector.client.get(url)
    assert sandbox.stats.api_calls == calls  # paused: not even sent
    # The next run builds a new connector: the pause is kept with the tokens,
    # so that run does not knock on Exact's door again either.
    later = make_connector(
        settings=base_settings(base_url=sandbox.url), store=memory_store, clock=clock
    )
    clock.advance(3600)
    with pytest.raises(ExactRateLimited) as caught:
        later.client.get(url)
    assert caught.value.scope == "daily"
    assert sandbox.stats.api_calls == calls and sandbox.stats.token_calls == 0
    # once the day has turned, work resumes (with refreshed tokens)
    clock.advance(timedelta(days=1).total_seconds())
    assert make_connector(
        settings=base_settings(base_url=sandbox.url), store=memory_store, clock=clock
    ).client.get(url)
    assert sandbox.stats.api_calls == calls + 1


@pytest.mark.parametrize("fault_seed", [5, 17])
def test_ten_percent_faults_end_state_is_exact(
    sandbox_factory: Any,
    clock: FakeClock,
    memory_store: MemoryTokenStore,
    fault_seed: int,
) -> None:
    sandbox = sandbox_factory(
        accounts=1200,
        invoices=10,
        faults=FaultPlan(rate=0.10, timeout_seconds=0.6, seed=fault_seed),
    )
    connector = sandbox_connector(
        sandbox, memory_store, clock, read_timeout=0.3, max_attempts=6
    )
    accounts = sandbox.rows("accounts")

    pulled = {c.external_id for p in connector.pull_customers(None) for c in p.records}
    assert pulled == {row["ID"] for row in accounts}

    created = []
    for index in range(15):
        customer = Customer(
            external_id=f"res.partner,{900 + index}",
            name=f"Storingsproef {index:02d} BV",
            address=Address(country_code="NL"),
        )
        created.append(
            connector.push_customer(
                customer, external_id=None, idempotency_key=f"c{index}"
            )
        )
        clock.advance(45)
    names = [r["Name"] for r in sandbox.rows("accounts")]
    for index in range(15):
        assert names.count(f"Storingsproef {index:02d} BV") == 1

    for index in range(40):
        buyer = accounts[index]["ID"]
        connector.push_invoice(
            _invoice(f"FV-F-{index:03d}", buyer), idempotency_key=str(index)
        )
        clock.advance(40)  # ~27 minutes in all: several refreshes on the way
    refs = [r["YourRef"] for r in sandbox.rows("entries")]
    for index in range(40):
        assert refs.count(f"FV-F-{index:03d}") == 1

    stats = sandbox.stats
    assert sum(stats.faults.values()) >= 5, stats.faults
    assert stats.refreshes >= 2
    assert stats.refresh_token_reuse == 0
    assert all(count == 1 for count in stats.refresh_tokens_presented.values())

    after = [s for p in connector.pull_payments(None) for s in p.records]
    assert {s.invoice_number for s in after} >= {f"FV-F-{i:03d}" for i in range(40)}
    assert clock.now() - timedelta(hours=1) < clock.now()


@pytest.mark.parametrize("kind", ["reset", "timeout", "5xx", "truncated"])
def test_every_post_fails_after_commit_yet_nothing_is_duplicated(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore, kind: str
) -> None:
    sandbox = sandbox_factory(
        invoices=0,
        faults=FaultPlan(
            rate=1.0, kinds=(kind,), methods=("POST",), timeout_seconds=0.4
        ),
    )
    connector = sandbox_connector(sandbox, memory_store, clock, read_timeout=0.2)
    buyer = sandbox.rows("accounts")[0]["ID"]
    refs = [
        connector.push_invoice(_invoice(f"FV-R-{i}", buyer), idempotency_key=str(i))
        for i in range(3)
    ]
    assert sandbox.stats.posts == {"salesentry/SalesEntries": 3}  # one POST each
    assert sorted(r["YourRef"] for r in sandbox.rows("entries")) == [
        "FV-R-0",
        "FV-R-1",
        "FV-R-2",
    ]
    assert [r.external_id for r in refs] == [
        next(
            e["EntryID"] for e in sandbox.rows("entries") if e["YourRef"] == f"FV-R-{i}"
        )
        for i in range(3)
    ]


def test_initial_load_through_the_sync_api(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    sandbox = sandbox_factory(accounts=1500)
    connector = sandbox_connector(sandbox, memory_store, clock, initial_load="sync")
    pages = list(connector.pull_customers(None))
    assert sum(len(p.records) for p in pages) == 1500
    assert [p.cursor for p in pages][-1] == str(
        max(row["Timestamp"] for row in sandbox.rows("accounts"))
    )
    assert all("sync/CRM/Accounts" in url for url in connector.client.stats.urls)
    assert "Timestamp%20gt%201" in connector.client.stats.urls[0]


def test_refresh_token_unused_for_30_days_needs_a_new_consent(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    sandbox = sandbox_factory()
    connector = sandbox_connector(sandbox, memory_store, clock)
    clock.advance(timedelta(days=31).total_seconds())
    with pytest.raises(ExactNeedsReauthorisation) as caught:
        connector.client.get(connector.client.url("crm/Accounts", {"$top": "1"}))
    assert "expired" in caught.value.message
    assert sandbox.stats.token_calls == 1  # asked once, not in a loop
