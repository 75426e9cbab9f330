"""The connector against the sandbox and a folder; access-point error mapping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from connectors.peppol.build import INVOICE_NS
from connectors.peppol.connector import PeppolConnector, create
from connectors.peppol.discovery import Discovery
from connectors.peppol.errors import (
    AccessPointAuthError,
    AccessPointNetworkError,
    AccessPointRateLimited,
    AccessPointRejected,
    AccessPointUnavailable,
    InvoiceDataError,
    UnsafeDocument,
    ValidationFailed,
)
from connectors.peppol.transport import DirectoryTransport, RestAccessPoint
from sync_daemon.kernel.errors import (
    ConfigurationError,
    PermanentError,
    RetryableError,
)
from sync_daemon.kernel.protocol import (
    Connector,
    ConnectorContext,
    DeliveryTracker,
    EInvoiceSource,
    InvoiceSink,
    ParticipantLookup,
)
from tests.peppol.conftest import make_invoice, make_line

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


class _Tokens:
    def load(self, key: str) -> None:
        return None

    def save(self, key: str, tokens: Any) -> None:
        return None

    def lock(self, key: str) -> Any:
        return nullcontext()


def _context(**settings: Any) -> ConnectorContext:
    return ConnectorContext(
        backend_id=7,
        settings=settings,
        tokens=_Tokens(),
        clock=lambda: NOW,
        sleep=lambda seconds: None,
    )


@pytest.fixture
def box(sandbox_factory, tmp_path: Path, load_case, examples_dir: Path):
    inbox = tmp_path / "seed"
    inbox.mkdir()
    for example in sorted(examples_dir.iterdir()):
        if example.suffix.lower() == ".xml":
            (inbox / example.name).write_bytes(example.read_bytes())
    (inbox / "zz-C025.xml").write_bytes(
        load_case("C025_invoice_no_buyer_or_order_reference_R003_fail.xml")
    )
    (inbox / "zz-evil.xml").write_bytes(
        b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>'
    )
    return sandbox_factory(inbox_dir=inbox)


@pytest.fixture
def connector(box, validator, rules_dir: Path) -> Iterator[PeppolConnector]:
    made = create(_context(**box.connector_settings(), rules_dir=str(rules_dir)))
    yield made
    made.close()


def test_factory_gives_the_kernel_capabilities(connector: PeppolConnector) -> None:
    assert isinstance(connector, Connector)
    assert isinstance(connector, InvoiceSink)
    assert isinstance(connector, EInvoiceSource)
    # the optional capabilities the engine uses for readiness and delivery
    assert isinstance(connector, ParticipantLookup)
    assert isinstance(connector, DeliveryTracker)
    report = connector.check()
    assert report.credentials_state == "valid"


def test_push_sends_once_and_finds_before_resending(connector, box) -> None:
    invoice = make_invoice()
    assert connector.find_invoice(invoice) is None
    ref = connector.push_invoice(invoice, idempotency_key="odoo-9001")
    assert ref.created and ref.external_code == "accepted"
    assert len(box.documents) == 1
    sent = next(iter(box.documents.values()))
    assert sent["recipient"] == "0208:0765881217"
    assert sent["document"].startswith(b"<?xml")
    # a retry after a lost answer: found by number, not sent again
    again = connector.push_invoice(invoice, idempotency_key="odoo-9001-retry")
    assert again.external_id == ref.external_id and not again.created
    assert len(box.documents) == 1
    assert connector.find_invoice(invoice).external_id == ref.external_id
    assert connector.delivery_status(ref.external_id).status == "accepted"
    assert connector.delivery_status(ref.external_id).status == "delivered"


def test_fatal_rules_never_leave_the_building(connector, box) -> None:
    # category O may not be mixed with others (BR-O-11 …)
    invoice = make_invoice(
        number="FV-2025-00050",
        lines=(make_line("1"), make_line("2", category="O", percent="0")),
    )
    with pytest.raises(ValidationFailed) as err:
        connector.push_invoice(invoice, idempotency_key="k")
    assert isinstance(err.value, PermanentError)
    assert any(rule.startswith("BR-O-") for rule in err.value.rules)
    assert err.value.details["rules"] == err.value.rules
    assert err.value.record == "invoice FV-2025-00050"
    assert box.documents == {}


def test_missing_reference_is_refused_before_sending(connector, box) -> None:
    invoice = make_invoice(number="FV-2025-00044", buyer_reference=None)
    with pytest.raises(InvoiceDataError, match="FV-2025-00044: buyer reference"):
        connector.push_invoice(invoice, idempotency_key="k")
    assert box.documents == {}


def test_access_point_validation_error_carries_rules(box, validator) -> None:
    ap = RestAccessPoint(box.url, api_key=box.api_key, timeout=5)
    with pytest.raises(AccessPointRejected) as err:
        ap.submit(
            f"<Invoice xmlns='{INVOICE_NS}'/>".encode(),
            number="X",
            recipient="0208:0765881217",
            kind="invoice",
            idempotency_key="k",
        )
    assert "XSD" in err.value.rules
    ap.close()


def test_odoo_owning_sending_refuses_to_push(box, rules_dir: Path) -> None:
    made = create(
        _context(
            base_url=box.url, api_key="x", rules_dir=str(rules_dir), sending="odoo"
        )
    )
    with pytest.raises(ConfigurationError, match="account_peppol"):
        made.push_invoice(make_invoice(), idempotency_key="k")
    with pytest.raises(ConfigurationError, match="account_peppol is active") as err:
        create(_context(base_url=box.url, api_key="x", odoo_account_peppol=True))
    assert err.value.record == "crm.sync.backend 7"
    decided = create(
        _context(
            base_url=box.url, api_key="x", odoo_account_peppol=True, sending="daemon"
        )
    )
    assert decided.sending == "daemon"
    with pytest.raises(ConfigurationError):
        create(_context(transport="carrier-pigeon"))
    with pytest.raises(ConfigurationError, match="base_url"):
        create(_context(transport="rest"))


def test_inbox_gives_invoices_and_rejects_with_reasons(connector, box) -> None:
    pages = list(connector.pull_einvoices(None))
    records = [r for page in pages for r in page.records]
    rejected = dict(r for page in pages for r in page.rejected)
    assert len(records) == 11
    assert set(rejected) == {"zz-C025.xml", "zz-evil.xml"}
    assert isinstance(rejected["zz-evil.xml"], UnsafeDocument)
    assert rejected["zz-C025.xml"].rules == ["PEPPOL-EN16931-R003"]
    c029_like = next(r for r in records if r.external_id == "base-example.xml")
    filename, mime, content = c029_like.attachments[0]
    assert (filename, mime) == ("Snippet1.xml", "application/xml")
    assert content.startswith(b"<?xml")
    assert pages[-1].cursor == "zz-evil.xml"

    connector.acknowledge(["base-example.xml", "vat-category-O.xml"])
    left = [r for p in connector.pull_einvoices(None) for r in p.records]
    assert len(left) == 9


def test_participant_status_via_connector(connector) -> None:
    status = connector.participant_status(vat="BE0765881217", country="BE")
    assert status.state == "can_receive"
    assert status.checked_at is not None


def test_access_point_decides_when_discovery_is_unknown(box, validator) -> None:
    connector = PeppolConnector(
        access_point=RestAccessPoint(box.url, api_key=box.api_key),
        validator=validator,
        discovery=Discovery(smp_url="http://127.0.0.1:9", timeout=1),
        clock=lambda: NOW,
    )
    status = connector.participant_status("0208:0765881217")
    assert status.state == "can_receive"
    assert status.reason == "answered by the access point"
    connector.close()


def test_directory_transport_round_trip(tmp_path: Path, validator, load_case) -> None:
    transport = DirectoryTransport(tmp_path / "out", tmp_path / "in")
    connector = PeppolConnector(access_point=transport, validator=validator)
    assert connector.check().credentials_state == "valid"
    invoice = make_invoice(number="FV/2025/00042")
    ref = connector.push_invoice(invoice, idempotency_key="k")
    written = tmp_path / "out" / "FV_2025_00042.xml"
    assert written.is_file() and ref.external_id == written.name
    assert connector.push_invoice(invoice, idempotency_key="k").created is False
    assert connector.delivery_status(ref.external_id).status == "delivered"

    (tmp_path / "in" / "C029.xml").write_bytes(
        load_case("C029_invoice_default_ns_cbc_local_ns_cac_valid.xml")
    )
    (tmp_path / "in" / "notes.txt").write_text("ignored")
    [page] = list(connector.pull_einvoices(None))
    assert [r.number for r in page.records] == ["FV-2025-00042"]
    connector.acknowledge(["C029.xml"])
    assert (tmp_path / "in" / "processed" / "C029.xml").is_file()
    assert list(connector.pull_einvoices(None)) == []


# ------------------------------------------------------------ error mapping


def _ap(httpserver: HTTPServer) -> RestAccessPoint:
    return RestAccessPoint(httpserver.url_for("/api"), api_key="secret", timeout=5)


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "retryable"),
    [
        (401, {"message": "bad key"}, {}, AccessPointAuthError, False),
        (429, {}, {"Retry-After": "7"}, AccessPointRateLimited, True),
        (503, {}, {}, AccessPointUnavailable, True),
        (422, {"errors": [{"rule": "BR-CO-15"}]}, {}, AccessPointRejected, False),
    ],
)
def test_http_errors_land_on_the_kernel_tree(
    httpserver: HTTPServer,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    expected: type[Exception],
    retryable: bool,
) -> None:
    httpserver.expect_request("/api/v1/documents", method="POST").respond_with_json(
        body, status=status, headers=headers
    )
    with pytest.raises(expected) as err:
        _ap(httpserver).submit(
            b"<x/>", number="FV-1", recipient="0208:0765881217", kind="invoice",
            idempotency_key="k",
        )  # fmt: skip
    assert isinstance(err.value, RetryableError) is retryable
    assert err.value.record == "invoice FV-1"
    if status == 429:
        assert err.value.retry_after == 7.0
    if status == 422:
        assert err.value.rules == ["BR-CO-15"]
    sent = httpserver.log[0][0]
    assert sent.headers["Idempotency-Key"] == "k"
    assert sent.headers["Authorization"] == "Bearer secret"
    assert "secret" not in str(err.value)


def test_unreachable_access_point_is_retryable() -> None:
    ap = RestAccessPoint("http://127.0.0.1:9/api", api_key="k", timeout=1)
    with pytest.raises(AccessPointNetworkError):
        ap.inbox()
    report = PeppolConnector(access_point=ap).check()
    assert report.credentials_state == "unknown"


def test_invalid_sending_setting(tmp_path: Path) -> None:
    transport = DirectoryTransport(tmp_path / "out", tmp_path / "in")
    with pytest.raises(ConfigurationError, match="sending"):
        PeppolConnector(access_point=transport, sending="both")


def test_directory_refuses_a_different_document_under_a_used_number(
    tmp_path: Path,
) -> None:
    transport = DirectoryTransport(tmp_path / "out", tmp_path / "in")
    first = transport.submit(
        b"<a/>", number="FV-1", recipient="x", kind="invoice", idempotency_key="k"
    )
    assert first.status == "delivered"
    with pytest.raises(AccessPointRejected, match="other content"):
        transport.submit(
            b"<b/>", number="FV-1", recipient="x", kind="invoice", idempotency_key="k"
        )
    transport.mark_read("not-there.xml")  # harmless


def test_inbox_item_that_is_not_base64_is_refused(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v1/inbox").respond_with_json(
        {"items": [{"id": "7", "document": "***"}]}
    )
    with pytest.raises(AccessPointRejected, match="base64") as err:
        _ap(httpserver).inbox()
    assert err.value.record == "7"
