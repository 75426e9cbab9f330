"""C032 (no duplicate after a reset POST) and the settings' start-up checks."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
import requests

from connectors.exact.connector import create
from connectors.exact.errors import ExactConfigurationError, ExactDataError
from connectors.exact.settings import ExactSettings
from sync_daemon.kernel.errors import ConfigurationError
from sync_daemon.kernel.models import Invoice, InvoiceLine, Party
from sync_daemon.kernel.protocol import (
    AuthorizationCodeFlow,
    Connector,
    ConnectorContext,
    CustomerSink,
    CustomerSource,
    DeletionSource,
    InvoiceSink,
    PaymentSource,
)

from .conftest import (
    FakeClock,
    MemoryTokenStore,
    base_settings,
    make_connector,
    scripted_session,
    token_set,
)

_ITEM = "7350081a-b305-596d-a991-eaa545d8b0f4"


def _c032_invoice(case: dict[str, Any]) -> Invoice:
    odoo = case["odoo_invoice"]
    party = Party(name="Fictief Klant BV")
    return Invoice(
        number=odoo["name"],
        issue_date=date(2025, 5, 2),
        seller=party,
        buyer=party,
        buyer_external_id=odoo["partner_exact_id"],
        odoo_id=odoo["id"],
        lines=(
            InvoiceLine(
                line_id="1",
                name="Service",
                quantity=Decimal(1),
                unit_price=Decimal(100),
                net_amount=Decimal(100),
                tax_percent=Decimal(21),
            ),
        ),
        line_extension_amount=Decimal(100),
        tax_exclusive_amount=Decimal(100),
        tax_amount=Decimal(21),
        tax_inclusive_amount=Decimal(odoo["amount_total"]).quantize(Decimal("0.01")),
        payable_amount=Decimal("121.00"),
    )


class FakeExactInvoices:
    """Stores POSTed invoices; can reset the connection after storing."""

    def __init__(self, case: dict[str, Any], *, reset_first_post: bool) -> None:
        self.case = case
        self.reset_first_post = reset_first_post
        self.stored: list[dict[str, Any]] = []
        self.posts: list[dict[str, Any]] = []

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        url = str(request.url)
        if request.method == "POST":
            body = json.loads(request.body or b"{}")
            self.posts.append(body)
            invoice_id = self.case["fake_server"][0]["server_effect"].split("=")[1][:-1]
            if len(self.stored) >= 1:
                invoice_id = f"00000000-0000-0000-0000-00000000000{len(self.stored)}"
            self.stored.append({"InvoiceID": invoice_id, **body})
            if self.reset_first_post and len(self.posts) == 1:
                raise requests.ConnectionError(ConnectionResetError(104, "reset"))
            return 201, {"d": {"InvoiceID": invoice_id, "InvoiceNumber": 1}}, {}
        if "logistics/Items" in url:
            return 200, {"d": {"results": [{"ID": _ITEM, "Code": "DIENST"}]}}, {}
        # GET SalesInvoices?$filter=YourRef eq '…'
        ref = url.split("YourRef%20eq%20'", 1)[1].split("'", 1)[0]
        rows = [
            {"InvoiceID": row["InvoiceID"], "YourRef": row["YourRef"]}
            for row in self.stored
            if row["YourRef"] == ref
        ]
        return 200, {"d": {"results": rows}}, {}


def _invoice_connector(clock: FakeClock, fake: FakeExactInvoices):
    session, adapter = scripted_session(fake)
    store = MemoryTokenStore()
    store.tokens["exact:test"] = token_set("AT-1", "RT-1", issued_at=clock.now())
    connector = make_connector(
        settings=base_settings(invoice_mode="sales_invoices"),
        store=store,
        clock=clock,
        session=session,
    )
    return connector, adapter


def test_c032_reset_after_commit_links_instead_of_reposting(
    load_case: Any, clock: FakeClock
) -> None:
    case = load_case("C032_post_invoice_reset_after_commit.json")
    fake = FakeExactInvoices(case, reset_first_post=True)
    connector, adapter = _invoice_connector(clock, fake)

    ref = connector.push_invoice(_c032_invoice(case), idempotency_key="inv-9001")

    expected = case["expected"]
    assert len(fake.posts) == expected["post_attempts"]
    assert [row["YourRef"] for row in fake.stored].count("FV-2025-00042") == (
        expected["invoices_in_exact_with_yourref"]
    )
    assert ref.external_id == expected["odoo_invoice_9001_linked_to"]
    assert not ref.created
    posted = fake.posts[0]
    for key in ("OrderedBy", "YourRef", "Journal"):
        assert posted[key] == case["posted_body"][key]
    assert posted["SalesInvoiceLines"][0]["Item"] == _ITEM
    assert posted["SalesInvoiceLines"][0]["NetPrice"] == 100.0
    # The lookup before the POST and the lookup after the reset.
    lookups = adapter.calls("GET", "salesinvoice/SalesInvoices")
    assert len(lookups) == 2
    assert "$filter=YourRef%20eq%20'FV-2025-00042'" in lookups[0]


def test_c032_negative_lookup_allows_one_more_post(
    load_case: Any, clock: FakeClock
) -> None:
    case = load_case("C032_post_invoice_reset_after_commit.json")
    fake = FakeExactInvoices(case, reset_first_post=True)
    connector, _ = _invoice_connector(clock, fake)
    invoice = _c032_invoice(case)

    original = fake.__call__

    def lose_first_store(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        answer = None
        try:
            answer = original(request)
        except requests.ConnectionError:
            fake.stored.clear()  # the reset happened before Exact committed
            raise
        return answer

    connector.session.adapters["https://"].handler = lose_first_store  # type: ignore[attr-defined]
    ref = connector.push_invoice(invoice, idempotency_key="inv-9001")
    assert len(fake.posts) == 2 and len(fake.stored) == 1
    assert ref.created


def test_c032_already_booked_invoice_is_never_posted(
    load_case: Any, clock: FakeClock
) -> None:
    case = load_case("C032_post_invoice_reset_after_commit.json")
    fake = FakeExactInvoices(case, reset_first_post=False)
    fake.stored.append({"InvoiceID": "d4be11f0-c9d7-5bc0-9f43-e63e2f6e1a49",
                        "YourRef": "FV-2025-00042"})  # fmt: skip
    connector, _ = _invoice_connector(clock, fake)
    ref = connector.push_invoice(_c032_invoice(case), idempotency_key="inv-9001")
    assert fake.posts == [] and ref.external_id.startswith("d4be11f0")


def test_missing_vat_mapping_names_invoice_and_line(
    load_case: Any, clock: FakeClock
) -> None:
    case = load_case("C032_post_invoice_reset_after_commit.json")
    fake = FakeExactInvoices(case, reset_first_post=False)
    session, _ = scripted_session(fake)
    store = MemoryTokenStore()
    store.tokens["exact:test"] = token_set("AT-1", "RT-1", issued_at=clock.now())
    connector = make_connector(
        settings=base_settings(invoice_mode="sales_invoices", vat_codes={}),
        store=store,
        clock=clock,
        session=session,
    )
    with pytest.raises(ExactDataError) as caught:
        connector.push_invoice(_c032_invoice(case), idempotency_key="k")
    assert caught.value.record == "invoice FV-2025-00042"
    assert caught.value.field == "lines[1].tax"
    assert fake.posts == []


# ----------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "division", [None, "", "2999999,3000000", [2999999, 3000000], "current", 0, True]
)
def test_missing_or_ambiguous_division_stops_start_up(
    division: Any, clock: FakeClock
) -> None:
    values = base_settings()
    if division is None:
        values.pop("division")
    else:
        values["division"] = division
    ctx = ConnectorContext(
        backend_id=3,
        settings=values,
        tokens=MemoryTokenStore(),
        clock=clock.now,
        sleep=clock.sleep,
    )
    with pytest.raises(ExactConfigurationError) as caught:
        create(ctx)
    assert caught.value.field == "division"
    assert caught.value.record == "backend 3"
    assert isinstance(caught.value, ConfigurationError)


def test_division_as_digits_text_and_country_host() -> None:
    settings = ExactSettings.from_mapping(
        {**base_settings(base_url=None), "country": "be", "division": " 2999999 "}
    )
    assert settings.division == 2999999
    assert settings.host == "https://start.exactonline.be"
    with pytest.raises(ExactConfigurationError):
        ExactSettings.from_mapping({**base_settings(base_url=None), "country": "xx"})
    with pytest.raises(ExactConfigurationError) as caught:
        ExactSettings.from_mapping({**base_settings(), "unknown_key": 1})
    assert caught.value.field == "unknown_key"


def test_connector_implements_the_kernel_protocols(clock: FakeClock) -> None:
    ctx = ConnectorContext(
        backend_id=3,
        settings=base_settings(),
        tokens=MemoryTokenStore(),
        clock=clock.now,
        sleep=clock.sleep,
    )
    connector = create(ctx)
    try:
        for protocol in (
            Connector,
            CustomerSource,
            DeletionSource,
            CustomerSink,
            InvoiceSink,
            PaymentSource,
            AuthorizationCodeFlow,
        ):
            assert isinstance(connector, protocol), protocol
        url = connector.authorization_url(state="state-1")
        assert url.startswith("https://start.exactonline.nl/api/oauth2/auth?")
        assert "response_type=code" in url and "state=state-1" in url
    finally:
        connector.close()
