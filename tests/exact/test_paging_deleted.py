"""C015 (``__next`` followed verbatim) and C017 (``sync/Deleted`` incrementally)."""

from __future__ import annotations

from typing import Any

import requests

from sync_daemon.kernel.identifiers import vat_key

from .conftest import (
    DIVISION,
    EXACT_NL,
    FakeClock,
    MemoryTokenStore,
    base_settings,
    make_connector,
    scripted_session,
    token_set,
)

_OK_HEADERS = {
    "X-RateLimit-Minutely-Limit": "60",
    "X-RateLimit-Minutely-Remaining": "50",
    "X-RateLimit-Minutely-Reset": "1746172860000",
}


def _store(clock: FakeClock) -> MemoryTokenStore:
    store = MemoryTokenStore()
    store.tokens["exact:test"] = token_set("AT-1", "RT-1", issued_at=clock.now())
    return store


def test_c015_follows_next_verbatim_and_strips_codes(
    load_case: Any, clock: FakeClock
) -> None:
    page1 = load_case("C015_accounts_page1_with_next.json")
    page2 = load_case("C015_accounts_page2_last.json")
    next_url = page1["d"]["__next"]

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        return 200, page2 if request.url == next_url else page1, _OK_HEADERS

    session, adapter = scripted_session(handler)
    connector = make_connector(
        settings=base_settings(), store=_store(clock), clock=clock, session=session
    )
    first = connector.client.url(
        "crm/Accounts",
        {
            "$select": "ID,Code,Name,VATNumber,ChamberOfCommerce,Country,Status,"
            "Modified",
            "$filter": "Status eq 'C'",
        },
    )
    rows = [row for page, _ in connector.client.pages(first) for row in page]

    gets = adapter.calls("GET")
    assert len(gets) == 2
    assert gets[1] == next_url  # verbatim: nothing re-appended, nothing re-encoded
    assert "$skip=" not in gets[1]
    assert len({row["ID"] for row in rows}) == 63

    from connectors.exact.mapping import account_to_customer

    customers = [account_to_customer(row) for row in rows]
    assert customers[0].external_code == "1001"
    atelier = customers[4]
    assert atelier.name == "Atelier Imaginaire"
    # Odoo partner 101 "Atelier Imaginaire SRL" has VAT BE0765881217.
    assert vat_key(atelier.vat, atelier.country_code) == "BE0765881217"
    assert vat_key("BE0765881217") == vat_key(atelier.vat, atelier.country_code)


def test_c017_deletions_are_read_incrementally(
    load_case: Any, clock: FakeClock
) -> None:
    case = load_case("C017_sync_deleted_page.json")
    page = {"d": case["d"]}
    seen_filters: list[str] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        url = str(request.url)
        seen_filters.append(url)
        after = int(url.split("Timestamp%20gt%20", 1)[1].split("&", 1)[0])
        rows = [row for row in page["d"]["results"] if int(row["Timestamp"]) > after]
        return 200, {"d": {"results": rows}}, _OK_HEADERS

    session, _adapter = scripted_session(handler)
    connector = make_connector(
        settings=base_settings(), store=_store(clock), clock=clock, session=session
    )
    pages = list(connector.pull_deletions(None))
    deletions = [d for p in pages for d in p.records]
    assert pages[-1].cursor == str(case["expected"]["next_deleted_checkpoint"])
    account = next(d for d in deletions if d.entity == "account")
    assert account.external_id == case["odoo_state_before"]["x_exact_account_id"]
    assert account.deleted_at is not None
    assert account.deleted_at.date().isoformat() == "2024-03-15"
    assert {d.entity for d in deletions} == {"account", "contact"}
    assert "Timestamp%20gt%201" in seen_filters[0]

    again = list(connector.pull_deletions(pages[-1].cursor))
    assert [d for p in again for d in p.records] == []
    assert again[-1].cursor == pages[-1].cursor


def test_c017_entity_types_come_from_configuration(
    load_case: Any, clock: FakeClock
) -> None:
    case = load_case("C017_sync_deleted_page.json")

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        return 200, {"d": case["d"]}, _OK_HEADERS

    session, _ = scripted_session(handler)
    connector = make_connector(
        settings=base_settings(deleted_entity_types={"2": "customer"}),
        store=_store(clock),
        clock=clock,
        session=session,
    )
    pages = list(connector.pull_deletions("5"))
    assert [(d.entity, d.external_id[:8]) for p in pages for d in p.records] == [
        ("customer", "cd9ba806")
    ]
    assert pages[-1].cursor == "88213004590"  # the skipped contact still counts


def test_url_building_uses_the_configured_division(clock: FakeClock) -> None:
    session, _ = scripted_session(lambda r: (200, {"d": {"results": []}}, {}))
    connector = make_connector(
        settings=base_settings(), store=_store(clock), clock=clock, session=session
    )
    url = connector.client.url("sync/Deleted", {"$filter": "Timestamp gt 1"})
    assert (
        url == f"{EXACT_NL}/api/v1/{DIVISION}/sync/Deleted?$filter=Timestamp%20gt%201"
    )
