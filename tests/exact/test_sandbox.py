"""The sandbox on its own: envelopes, paging, error shapes, data, command line."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import pytest
import requests

from connectors.exact.sandbox import ExactSandbox, companies, odoo_partners
from sync_daemon.kernel.identifiers import registry_key, vat_key

from .conftest import FakeClock, MemoryTokenStore, sandbox_connector


def test_list_pages_of_60_with_absolute_next(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    sandbox: ExactSandbox = sandbox_factory(accounts=150)
    connector = sandbox_connector(sandbox, memory_store, clock)
    url = connector.client.url(
        "crm/Accounts", {"$select": "ID,Code,Modified", "$filter": "Status ne 'X'"}
    )
    sizes = []
    nexts = []
    for rows, next_url in connector.client.pages(url):
        sizes.append(len(rows))
        nexts.append(next_url)
        assert all(
            row["__metadata"]["type"] == "Exact.Web.Api.Models.Account" for row in rows
        )
        assert all(len(row["Code"]) == 18 for row in rows)
        assert all(row["Modified"].startswith("/Date(") for row in rows)
    assert sizes == [60, 60, 30]
    assert nexts[0].startswith(f"{sandbox.url}/api/v1/2999999/crm/Accounts?")
    assert "$select=ID,Code,Modified" in nexts[0] and "$skiptoken=guid'" in nexts[0]
    assert nexts[-1] is None


def test_error_shapes(sandbox_factory: Any) -> None:
    sandbox = sandbox_factory(accounts=3)
    base = f"{sandbox.url}/api/v1/2999999"
    anonymous = requests.get(f"{base}/crm/Accounts", timeout=5)
    assert anonymous.status_code == 401 and anonymous.content == b""
    token = sandbox.issue_tokens()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    bad = requests.get(
        f"{base}/crm/Accounts?$filter=Name%20like%20'x'", headers=headers, timeout=5
    )
    assert bad.status_code == 400
    assert set(bad.json()["error"]) == {"code", "message"}
    assert set(bad.json()["error"]["message"]) == {"lang", "value"}
    bulk = requests.get(f"{base}/bulk/CRM/Accounts", headers=headers, timeout=5)
    assert bulk.status_code == 400  # $select is mandatory on bulk endpoints
    missing = requests.get(
        f"{base}/crm/Accounts(guid'00000000-0000-0000-0000-000000000000')",
        headers=headers,
        timeout=5,
    )
    assert missing.status_code == 404
    assert bad.headers["X-RateLimit-Minutely-Limit"] == "60"
    assert int(bad.headers["X-RateLimit-Minutely-Reset"]) > 1_600_000_000_000
    me = requests.get(f"{sandbox.url}/api/v1/current/Me", headers=headers, timeout=5)
    assert "X-RateLimit-Minutely-Limit" not in me.headers  # Me is not counted
    assert me.json()["d"]["results"][0]["CurrentDivision"] == 2999999


def test_seed_data_is_deterministic_and_valid() -> None:
    first = companies(42, 300)
    assert first == companies(42, 300)
    assert first != companies(43, 300)
    assert {c.country for c in first} == {"NL", "BE", "FR"}
    typed = [c for c in first if c.vat_typed]
    assert len(typed) > 200
    for company in typed:
        assert vat_key(company.vat_typed, company.country) == company.vat
    messy = [c for c in typed if c.vat_typed != c.vat]
    assert len(messy) > len(typed) // 2
    for company in first:
        if company.registry_typed:
            key = registry_key(company.registry_typed, company.country)
            assert key is not None, company
    partners = odoo_partners(42, 300)
    assert 100 < len(partners) < 260


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_main_serves_until_interrupted(signum: signal.Signals) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from connectors.exact.sandbox import main; "
            "raise SystemExit(main(['--port', '0', '--seed', '3', '--accounts', '20',"
            " '--invoices', '5']))",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first.startswith("Exact sandbox on http://127.0.0.1:")
        url = first.rsplit(" ", 1)[1]
        answer = requests.get(f"{url}/api/v1/current/Me", timeout=5)
        assert answer.status_code == 401
        process.send_signal(signum)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_deleting_between_pages_does_not_derail_paging(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    sandbox: ExactSandbox = sandbox_factory(accounts=150)
    connector = sandbox_connector(sandbox, memory_store, clock)
    pages = connector.client.pages(
        connector.client.url("crm/Accounts", {"$select": "ID"})
    )
    first, _ = next(pages)
    sandbox.delete_account(first[-1]["ID"])  # the row the skip token points at
    rest = [row["ID"] for rows, _ in pages for row in rows]
    assert len(first) + len(rest) == 150
    assert not set(rest) & {row["ID"] for row in first}


def test_connector_settings_and_token_set_drive_a_working_connector(
    sandbox_factory: Any, clock: FakeClock, memory_store: MemoryTokenStore
) -> None:
    from connectors.exact.connector import create
    from sync_daemon.kernel.protocol import ConnectorContext

    sandbox: ExactSandbox = sandbox_factory(accounts=5)
    settings = sandbox.connector_settings()
    memory_store.save("exact:9", sandbox.token_set())
    connector = create(
        ConnectorContext(
            backend_id=9,
            settings=settings,
            tokens=memory_store,
            clock=clock.now,
            sleep=clock.sleep,
        )
    )
    assert connector.check().credentials_state == "valid"  # mappings all exist
    assert connector.mapping_problems() == []
