"""Workbench decisions on conflicts, as the engine reads them (no Odoo needed).

A conflict issue keeps the remote record and its field group in its payload, so
that *Retry* ("take the accounting system's value") can be carried out by the next
run; older payloads (a bare remote record, or no record) keep working.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

from sync_daemon.engine import BackendConfig, BackendRun
from sync_daemon.gateway import OdooGateway
from sync_daemon.kernel.models import Address, Customer
from sync_daemon.state import StateStore
from sync_daemon.testing.double import DoubleConnector, DoubleLedger

CUSTOMER = Customer(
    external_id="G7",
    name="Brouwerij Claes NV",
    email="ledger@claes.example",
    address=Address(city="Gent", zip="9000", country_code="BE"),
)


def _run(tmp_path: Path, ownership: dict[str, str]) -> BackendRun:
    return BackendRun(
        gateway=cast(OdooGateway, None),  # _decide never calls Odoo
        state=StateStore(tmp_path / "state"),
        backend=BackendConfig(
            id=1, name="Exact", kind="exact", company_id=1, ownership=ownership
        ),
        connector=DoubleConnector(DoubleLedger(tmp_path / "ledger.sqlite3")),
    )


def test_conflict_payload_gives_back_the_record_and_its_group() -> None:
    payload = json.dumps(
        {
            "group": "emails",
            "odoo": ["odoo@claes.example"],
            "remote": ["ledger@claes.example"],
            "record": json.loads(CUSTOMER.model_dump_json()),
        }
    )
    assert BackendRun._payload_customer(payload) == CUSTOMER
    assert BackendRun._payload_conflict_group(payload) == "emails"
    # a duplicate issue carries the bare record: no group, same record
    bare = CUSTOMER.model_dump_json()
    assert BackendRun._payload_customer(bare) == CUSTOMER
    assert BackendRun._payload_conflict_group(bare) is None
    # what the daemon cannot use is no decision
    for junk in (None, "", "not json", json.dumps({"group": "nonsense"})):
        assert BackendRun._payload_customer(junk) is None
        assert BackendRun._payload_conflict_group(junk) is None


def test_retry_of_a_conflict_takes_the_remote_value_whoever_owns_it(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path, {"emails": "sales", "billing_address": "finance"})
    remote = {"emails": ["ledger@x.example"], "billing_address": ["Ledgerstad"]}
    odoo = {"emails": ["odoo@x.example"], "billing_address": ["Odoo-stad"]}
    base = {"emails": ["old@x.example"], "billing_address": ["Oudstad"]}
    groups = {g: [] for g in ("legal_name", "vat", "registry", "phones", "tags")}
    remote, odoo, base = (
        {**groups, "payment_terms": None, "contacts": [], **d}
        for d in (remote, odoo, base)
    )
    write, agreed, conflicts = run._decide(remote, odoo, base)
    assert sorted(g for g, _, _ in conflicts) == ["billing_address", "emails"]
    assert write == []
    write, agreed, conflicts = run._decide(remote, odoo, base, ["emails"])
    assert [g for g, _, _ in conflicts] == ["billing_address"]
    assert write == ["emails"] and agreed["emails"] == ["ledger@x.example"]
