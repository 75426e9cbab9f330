"""Peppol readiness and invoice states written back to (fake) Odoo by the engine."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sync_daemon.engine import BackendConfig, BackendRun
from sync_daemon.kernel.errors import DataError, NetworkError, RemoteRejected
from sync_daemon.kernel.models import Invoice, RemoteRef
from sync_daemon.kernel.protocol import (
    DeliveryTracker,
    HealthReport,
    InvoiceSink,
    ParticipantLookup,
)
from sync_daemon.state import StateStore
from sync_daemon.testing.fake_odoo import FakeOdoo

from .conftest import add_accounting, make_gateway, seed_invoice

NOW = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)


class Refused(DataError):
    """Stands for the connector's ValidationFailed (rule ids on the error)."""

    def __init__(self, message: str, *, rules: Iterable[str], **kwargs: Any) -> None:
        self.rules = list(rules)
        super().__init__(message, **kwargs)


@dataclass(frozen=True)
class Answer:
    state: str
    checked_at: datetime
    participant_id: str | None = None


@dataclass(frozen=True)
class Delivery:
    status: str
    message: str = ""


class StubPeppol:
    """A Peppol-like connector: invoice sink, participant lookup, delivery."""

    kind = "peppol"

    def __init__(self) -> None:
        self.ready: dict[str, str] = {}
        self.sent: dict[str, str] = {}
        self.delivery: dict[str, str] = {}
        self.lookups: list[str | None] = []
        self.recipients: dict[str, str] = {}

    def check(self) -> HealthReport:
        return HealthReport("valid", "stub")

    def close(self) -> None:
        return None

    def participant_status(
        self,
        peppol_id: str | None = None,
        *,
        vat: str | None = None,
        company_registry: str | None = None,
        country: str | None = None,
    ) -> Answer:
        self.lookups.append(vat)
        if vat == "BE0000000097":
            raise NetworkError("SMP unreachable")
        state = self.ready.get(vat or "", "cannot")
        participant = f"0208:{(vat or '')[2:]}" if state == "can_receive" else None
        return Answer(state, NOW, participant)

    def find_invoice(self, invoice: Invoice) -> RemoteRef | None:
        found = self.sent.get(invoice.number)
        return RemoteRef(external_id=found, external_code="accepted") if found else None

    def push_invoice(self, invoice: Invoice, *, idempotency_key: str) -> RemoteRef:
        if invoice.number.startswith("AP"):
            # the access point's own validation (HTTP 422 with its rule ids)
            err = RemoteRejected("HTTP 422 recipient refused", record=invoice.number)
            err.rules = ["PEPPOL-EN16931-R010"]  # type: ignore[attr-defined]
            raise err
        if invoice.number.startswith("BAD"):
            raise Refused(
                "2 fatal Peppol rule(s) failed: BR-O-11, BR-CO-10",
                rules=["BR-O-11", "BR-CO-10"],
                record=f"invoice {invoice.number}",
            )
        external_id = f"doc-{invoice.number}"
        buyer = invoice.buyer
        self.recipients[invoice.number] = f"{buyer.endpoint_scheme}:{buyer.endpoint_id}"
        self.sent[invoice.number] = external_id
        self.delivery[external_id] = "accepted"
        return RemoteRef(
            external_id=external_id, external_code="accepted", created=True
        )

    def delivery_status(self, external_id: str) -> Delivery:
        status = self.delivery[external_id]
        return Delivery(status, "no AS4 receipt" if status == "failed" else "")


class Env:
    def __init__(self, fake: FakeOdoo, tmp_path: Path) -> None:
        self.fake = fake
        self.backend_id = fake.add_backend(kind="peppol", name="Peppol")
        self.state = StateStore(tmp_path / "state")
        self.connector = StubPeppol()

    def run(self, **kwargs: Any) -> Any:
        gateway = make_gateway(self.fake)
        [config] = [
            BackendConfig.from_odoo(row)
            for row in gateway.call("crm.sync.backend", "daemon_get_config")
            if row["id"] == self.backend_id
        ]
        return BackendRun(
            gateway=gateway,
            state=self.state,
            backend=config,
            connector=self.connector,
            clock=lambda: NOW,
            **kwargs,
        ).run()

    def partner(self, partner_id: int) -> dict[str, Any]:
        return self.fake.data["res.partner"][partner_id]

    def move(self, move_id: int) -> dict[str, Any]:
        return self.fake.data["account.move"][move_id]

    def calls(self, method: str) -> list[Any]:
        return [c for c in self.fake.calls if c.method == method]


@pytest.fixture
def env(fake_odoo: FakeOdoo, tmp_path: Path) -> Env:
    add_accounting(fake_odoo)
    be = fake_odoo.country_id("BE")
    for partner_id, name, vat in (
        (101, "Atelier Imaginaire SRL", "BE0765881217"),
        (102, "Papier Papier BV", "BE0447123478"),
        (103, "Onbekend NV", "BE0000000097"),
        (104, "Geen Nummer", False),
    ):
        fake_odoo.seed(
            "res.partner",
            {
                "id": partner_id,
                "name": name,
                "is_company": True,
                "vat": vat,
                "customer_rank": 1,
                "country_id": be,
            },
        )
    seed_invoice(fake_odoo, 9001, "FV-2025-00001", 101, ref="PO-1")
    seed_invoice(fake_odoo, 9002, "FV-2025-00002", 102, ref="PO-2")
    seed_invoice(fake_odoo, 9003, "FV-2025-00003", 103, ref="PO-3")
    seed_invoice(fake_odoo, 9004, "BAD-2025-00004", 101, ref="PO-4")
    return Env(fake_odoo, tmp_path)


def test_connector_stub_has_the_optional_capabilities() -> None:
    stub = StubPeppol()
    assert isinstance(stub, ParticipantLookup)
    assert isinstance(stub, DeliveryTracker)
    assert isinstance(stub, InvoiceSink)


def test_readiness_gates_invoices_and_states_are_written_back(env: Env) -> None:
    env.fake.add_peppol_fields()
    env.connector.ready = {"BE0765881217": "can_receive"}
    result = env.run()
    assert result.outcome == "partial", result.log

    # readiness: one batched write for the customers with identifiers
    [write] = env.calls("daemon_set_peppol_readiness")
    assert sorted(row["partner_id"] for row in write.args[0]) == [101, 102, 103]
    assert env.partner(101)["crm_peppol_readiness"] == "can_receive"
    assert env.partner(101)["crm_peppol_participant_id"] == "0208:0765881217"
    assert env.partner(101)["crm_peppol_checked_at"] == "2026-12-04 02:00:00"
    assert env.partner(102)["crm_peppol_readiness"] == "cannot"
    assert env.partner(103)["crm_peppol_readiness"] == "unknown"
    assert env.partner(104)["crm_peppol_readiness"] == "unknown"

    # only the buyer that can receive gets its invoice; the others are marked
    assert set(env.connector.sent) == {"FV-2025-00001"}
    # addressed to the participant id the directory answered for
    assert env.connector.recipients["FV-2025-00001"] == "0208:0765881217"
    assert env.move(9001)["crm_peppol_state"] == "sent"
    assert env.move(9002)["crm_peppol_state"] == "not_applicable"
    assert env.move(9003)["crm_peppol_state"] == "to_send"
    # the refused invoice: to fix with its rules, and an issue listing them
    bad = env.move(9004)
    assert bad["crm_peppol_state"] == "to_fix"
    assert bad["crm_peppol_rules"] == "BR-O-11, BR-CO-10"
    [issue] = env.fake.records("crm.sync.issue")
    assert issue["res_id"] == 9004 and "BR-O-11" in issue["message"]
    assert len(env.calls("daemon_set_peppol_status")) == 1

    # next run: the directory answers for 103, the access point delivered 9001
    env.connector.ready["BE0000000097"] = "can_receive"
    env.connector.lookups.clear()
    env.connector.delivery["doc-FV-2025-00001"] = "delivered"
    second = env.run()
    assert env.move(9001)["crm_peppol_state"] == "delivered"
    # 103 raised a network error before; now still unknown (same stub error)
    assert env.partner(103)["crm_peppol_readiness"] == "unknown"
    # only the unknown one was asked again; the others are fresh
    assert env.connector.lookups == ["BE0000000097"]
    # the to-fix invoice is not sent again, nothing was sent twice
    assert set(env.connector.sent) == {"FV-2025-00001"}
    assert "Peppol delivery status changed for 1 invoices" in "\n".join(second.log)


def test_pending_invoice_is_sent_once_the_buyer_can_receive(env: Env) -> None:
    env.fake.add_peppol_fields()
    env.connector.ready = {"BE0765881217": "can_receive"}
    env.run()
    assert env.move(9003)["crm_peppol_state"] == "to_send"
    # the buyer registers on Peppol (a later check finds it)
    env.fake.data["res.partner"][103]["vat"] = "BE0765881217"
    env.fake.data["res.partner"][103]["crm_peppol_readiness"] = "unknown"
    env.run()
    assert env.partner(103)["crm_peppol_readiness"] == "can_receive"
    assert env.move(9003)["crm_peppol_state"] == "sent"
    assert "FV-2025-00003" in env.connector.sent


def test_failed_delivery_is_an_issue(env: Env) -> None:
    env.fake.add_peppol_fields()
    env.connector.ready = {"BE0765881217": "can_receive"}
    env.run()
    env.connector.delivery["doc-FV-2025-00001"] = "failed"
    env.run()
    assert env.move(9001)["crm_peppol_state"] == "failed"
    assert env.move(9001)["crm_peppol_message"] == "no AS4 receipt"
    assert any(
        i["kind"] == "remote_error" and i["res_id"] == 9001
        for i in env.fake.records("crm.sync.issue")
    )


def test_readiness_checks_are_bounded_per_run(env: Env) -> None:
    env.fake.add_peppol_fields()
    env.run(readiness_batch=2)
    [write] = env.calls("daemon_set_peppol_readiness")
    assert len(write.args[0]) == 2


def test_server_without_the_peppol_fields_still_runs(env: Env) -> None:
    result = env.run()
    assert not env.calls("daemon_set_peppol_readiness")
    assert not env.calls("daemon_set_peppol_status")
    # as before the add-on had the fields: every invoice is offered to the sink
    assert set(env.connector.sent) == {
        "FV-2025-00001",
        "FV-2025-00002",
        "FV-2025-00003",
    }
    assert result.counts.errors == 1


def test_access_point_refusal_with_rules_is_to_fix(env: Env) -> None:
    env.fake.add_peppol_fields()
    seed_invoice(env.fake, 9005, "AP-2025-00005", 101, ref="PO-5")
    env.connector.ready = {"BE0765881217": "can_receive"}
    env.run()
    refused = env.move(9005)
    assert refused["crm_peppol_state"] == "to_fix"
    assert refused["crm_peppol_rules"] == "PEPPOL-EN16931-R010"
    assert "AP-2025-00005" not in env.connector.sent


class ReferenceCheckingPeppol(StubPeppol):
    """The stub, refusing like the real builder when no buyer reference exists."""

    def push_invoice(self, invoice: Invoice, *, idempotency_key: str) -> RemoteRef:
        from connectors.peppol.build import resolve_buyer_reference

        resolve_buyer_reference(
            invoice.number,
            invoice_ref=invoice.buyer_reference,
            order_reference=invoice.order_reference,
        )
        return super().push_invoice(invoice, idempotency_key=idempotency_key)


def test_c025_invoice_without_reference_is_to_fix_not_sent(env: Env) -> None:
    env.fake.add_peppol_fields()
    seed_invoice(env.fake, 9044, "FV-2025-00044", 101, ref=False)
    env.connector = ReferenceCheckingPeppol()
    env.connector.ready = {"BE0765881217": "can_receive"}
    env.run()
    held = env.move(9044)
    assert held["crm_peppol_state"] == "to_fix"
    assert (
        "FV-2025-00044: buyer reference or order reference required"
        in (held["crm_peppol_message"])
    )
    assert "FV-2025-00044" not in env.connector.sent
    [issue] = [
        i
        for i in env.fake.records("crm.sync.issue")
        if "FV-2025-00044" in (i.get("message") or "")
    ]
    assert "buyer reference or order reference required" in issue["message"]
    # the others, with their reference, went out
    assert env.connector.sent.get("FV-2025-00001")
