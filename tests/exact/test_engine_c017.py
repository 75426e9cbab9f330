"""C017 end to end: the daemon's run with the Exact connector reads ``sync/Deleted``
and, for the deleted account linked to partner 101 (which has two posted
invoices), clears the link and notes "deleted in Exact on 2024-03-15" without
deleting or archiving the partner; a second run processes nothing twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import requests

from sync_daemon.engine import BackendConfig, BackendRun
from sync_daemon.state import StateStore
from sync_daemon.testing.fake_odoo import FakeOdoo
from tests.daemon.conftest import add_accounting, make_gateway, seed_invoice

from .conftest import (
    FakeClock,
    MemoryTokenStore,
    base_settings,
    make_connector,
    scripted_session,
    token_set,
)


@pytest.fixture
def fake_odoo() -> Iterator[FakeOdoo]:
    with FakeOdoo() as fake:
        yield fake


def test_c017_deleted_account_unlinks_and_notes_keeps_partner(
    fake_odoo: FakeOdoo, tmp_path: Path, load_case: Any, clock: FakeClock
) -> None:
    case = load_case("C017_sync_deleted_page.json")
    before = case["odoo_state_before"]
    partner_id, account_id = before["partner_id"], before["x_exact_account_id"]
    backend_id = fake_odoo.add_backend(name="Exact")
    add_accounting(fake_odoo)
    fake_odoo.seed(
        "res.partner",
        {
            "id": partner_id,
            "name": "Atelier Imaginaire SRL",
            "is_company": True,
            "customer_rank": 1,
            "vat": "BE0765881217",
            "country_id": fake_odoo.country_id("BE"),
            "write_date": "2024-01-05 10:00:00",  # untouched in Odoo since
        },
    )
    links = [{"res_model": "res.partner", "res_id": partner_id, "ext": account_id}]
    for n in range(before["posted_invoices"]):
        seed_invoice(fake_odoo, 9001 + n, f"FV-2024-{n:05d}", partner_id)
        links.append(
            {"res_model": "account.move", "res_id": 9001 + n, "ext": f"entry-{n}"}
        )
    fake_odoo._m_crm_sync_link_daemon_upsert_links(
        [
            {
                "backend_id": backend_id,
                "res_model": link["res_model"],
                "res_id": link["res_id"],
                "external_id": link["ext"],
            }
            for link in links
        ]
    )

    deleted_filters: list[str] = []
    writes: list[str] = []
    deleted = {"yet": False}

    def exact(request: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
        url = unquote(str(request.url))
        if request.method != "GET":
            writes.append(f"{request.method} {url}")
            return 500, {"error": {"message": {"value": "unexpected"}}}, {}
        if "sync/Deleted" in url:
            deleted_filters.append(url)
            after = int(url.split("Timestamp gt ", 1)[1].split("&", 1)[0])
            rows = [
                r
                for r in case["d"]["results"]
                if int(r["Timestamp"]) > after and deleted["yet"]
            ]
            return 200, {"d": {"results": rows}}, {}
        if "SyncTimestamp" in url:
            return 200, {"d": {"results": [{"TimeStampAsBigInt": 88213000000}]}}, {}
        return 200, {"d": {"results": []}}, {}

    session, _adapter = scripted_session(exact)
    store = MemoryTokenStore()
    store.tokens["exact:test"] = token_set("AT-1", "RT-1", issued_at=clock.now())
    state = StateStore(tmp_path / "state")

    def run() -> Any:
        gateway = make_gateway(fake_odoo)
        [row] = gateway.call("crm.sync.backend", "daemon_get_config")
        connector = make_connector(
            settings=base_settings(), store=store, clock=clock, session=session
        )
        return BackendRun(
            gateway=gateway,
            state=state,
            backend=BackendConfig.from_odoo(row),
            connector=connector,
        ).run()

    # a first run while the account still exists: linked, nothing to send
    first = run()
    assert first.outcome == "success", first.log
    assert fake_odoo.notes == []
    # the accountant deletes the account in Exact
    deleted["yet"] = True
    result = run()
    assert result.outcome == "success", result.log
    assert writes == []  # nothing re-created, nothing posted
    partner = fake_odoo.data["res.partner"][partner_id]
    assert partner["active"] is True  # neither deleted nor archived
    account_links = [
        link
        for link in fake_odoo.records("crm.sync.link")
        if link["external_id"] == account_id
    ]
    assert [link["state"] for link in account_links] == ["unlinked"]
    assert fake_odoo.notes == [(partner_id, "deleted in Exact on 2024-03-15")]
    invoices = [m for m in fake_odoo.records("account.move") if m["state"] == "posted"]
    assert len(invoices) == before["posted_invoices"]
    assert state.get_cursor(backend_id, "deletions") == str(
        case["expected"]["next_deleted_checkpoint"]
    )

    again = run()
    assert again.outcome == "success", again.log
    assert fake_odoo.notes == [(partner_id, "deleted in Exact on 2024-03-15")]
    assert "Timestamp gt 88213004590" in deleted_filters[-1]
    assert writes == []
