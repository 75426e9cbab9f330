"""C019: Sage Accounting v3.1 paging — items_per_page=200, $next under /v3.1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from connectors.sage.accounting import SageAccountingConnector, load_settings
from connectors.sage.accounting_client import SageAccountingClient
from connectors.sage.accounting_mapping import contact_to_customer
from connectors.sage.errors import SageDataError
from sync_daemon.kernel.protocol import TokenSet

from .helpers import ScriptedAdapter, scripted_session

BASE = "https://api.accounting.sage.com/v3.1"
NOW = datetime(2025, 5, 2, 8, 0, tzinfo=UTC)


def _settings() -> dict[str, Any]:
    return {
        "client_id": "app",
        "client_secret": "secret",
        "business_id": "biz-c019",
    }


def _detail(ident: str, index: int) -> dict[str, Any]:
    return {
        "id": ident,
        "displayed_as": f"Fictief Client {index:03d} SRL",
        "name": f"Fictief Client {index:03d} SRL",
        "reference": f"FC{index:03d}",
        "contact_types": [{"id": "CUSTOMER"}],
        "tax_number": "BE0765881217",
        "main_address": {"country": {"id": "BE"}, "city": "Liège"},
        "updated_at": "2025-05-01T10:00:00Z",
    }


@pytest.fixture
def c019(load_case: Any, tmp_path: Path) -> tuple[SageAccountingConnector, Any]:
    page1 = load_case("C019_contacts_page1.json")
    page2 = load_case("C019_contacts_page2.json")
    order = {item["id"]: n for n, item in enumerate(page1["$items"] + page2["$items"])}

    def handler(request: requests.PreparedRequest) -> tuple[int, Any]:
        parts = urlsplit(request.url or "")
        assert parts.hostname == "api.accounting.sage.com"
        if parts.path == "/v3.1/contacts":
            page = parse_qs(parts.query).get("page", ["1"])[0]
            return 200, page2 if page == "2" else page1
        ident = parts.path.rsplit("/", 1)[-1]
        return 200, _detail(ident, order[ident] + 1)

    adapter = ScriptedAdapter(handler)
    from sync_daemon.state import SqliteTokenStore

    store = SqliteTokenStore(tmp_path / "state.sqlite3")
    settings = load_settings(_settings())
    key = f"sage_accounting:1:{settings.business_id}"
    store.save(
        key,
        TokenSet(
            access_token="SAT-1",
            refresh_token="SRT-1",
            issued_at=NOW,
            expires_at=NOW + timedelta(seconds=300),
        ),
    )
    connector = SageAccountingConnector(
        settings,
        tokens=store,
        clock=lambda: NOW,
        sleep=lambda _: None,
        backend_id=1,
        session=scripted_session(adapter),
    )
    return connector, adapter


def test_pages_follow_next_under_the_version_base(c019: Any) -> None:
    connector, adapter = c019
    pages = list(connector.pull_customers(None))
    list_urls = [
        r.url for r in adapter.requests if urlsplit(r.url).path == "/v3.1/contacts"
    ]
    assert len(list_urls) == 2
    first = parse_qs(urlsplit(list_urls[0]).query)
    assert first["items_per_page"] == ["200"]
    assert "name" in first["attributes"][0].split(",")
    assert list_urls[1].startswith(f"{BASE}/contacts?page=2")
    ids = [c.external_id for page in pages for c in page.records]
    assert len(ids) == 205 == len(set(ids))
    assert [page.cursor for page in pages] == [None, "2025-05-01T10:00:00Z"]


def test_bare_list_items_are_fetched_never_read_as_no_vat(c019: Any) -> None:
    connector, adapter = c019
    customers = [c for page in connector.pull_customers(None) for c in page.records]
    details = [r for r in adapter.requests if urlsplit(r.url).path.count("/") == 3]
    assert len(details) == 205
    assert all(c.vat == "BE0765881217" for c in customers)


def test_mapping_refuses_a_bare_list_item(load_case: Any) -> None:
    bare = load_case("C019_contacts_page2.json")["$items"][0]
    with pytest.raises(SageDataError) as caught:
        contact_to_customer(bare)
    assert caught.value.field == "tax_number"
    assert bare["id"] in str(caught.value)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("/contacts?page=2", f"{BASE}/contacts?page=2"),
        ("/v3.1/contacts?page=2", f"{BASE}/contacts?page=2"),
        (f"{BASE}/contacts?page=3", f"{BASE}/contacts?page=3"),
    ],
)
def test_links_resolve_against_the_v31_base(ref: str, expected: str) -> None:
    settings = load_settings(_settings())
    client = SageAccountingClient(
        settings, oauth=None, session=requests.Session(), sleep=lambda _: None
    )  # type: ignore[arg-type]
    assert client.url_for(ref) == expected


def test_links_to_another_host_are_refused() -> None:
    settings = load_settings(_settings())
    client = SageAccountingClient(
        settings, oauth=None, session=requests.Session(), sleep=lambda _: None
    )  # type: ignore[arg-type]
    with pytest.raises(Exception, match="outside the configured API base"):
        client.url_for("https://evil.example/v3.1/contacts")
