"""Hostile records: odd field types, dates, timestamps, duplicates, bad invoices.

A row that cannot be mapped must land in ``Page.rejected`` with a reason naming the
record and the field; it must never crash the whole pull nor vanish. An invoice that
Exact would refuse (and count against the app's hourly error budget) is refused
here, before any POST, naming the invoice and the field.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
from pydantic import BaseModel, ValidationError

from connectors.exact.errors import ExactDataError
from connectors.exact.mapping import (
    ODataDateTime,
    account_to_customer,
    invoice_to_sales_entry,
    invoice_to_sales_invoice,
)
from sync_daemon.kernel.models import Invoice, InvoiceLine, Party

from .conftest import (
    FakeClock,
    MemoryTokenStore,
    base_settings,
    make_connector,
    scripted_session,
    token_set,
)

_ID = "CD9BA806-C35B-5ADF-AF73-85B3CB90E754"


class _Row(BaseModel):
    when: ODataDateTime


def _account(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"ID": _ID, "Code": "  1005", "Name": "Atelier"}
    row.update(fields)
    return row


def _connector(clock: FakeClock, handler: Any, **settings: Any):
    session, adapter = scripted_session(handler)
    store = MemoryTokenStore()
    store.tokens["exact:test"] = token_set("AT-1", "RT-1", issued_at=clock.now())
    connector = make_connector(
        settings=base_settings(**settings), store=store, clock=clock, session=session
    )
    return connector, adapter


# ------------------------------------------------------------------ dates


def test_offset_dates_are_the_same_utc_instant() -> None:
    """In ``/Date(ms+hhmm)/`` the ms are UTC; the offset only names a zone."""
    plain = _Row(when="/Date(1710460800000)/").when
    assert plain == datetime(2024, 3, 15, tzinfo=UTC)
    assert _Row(when="/Date(1710460800000+0100)/").when == plain
    assert _Row(when="/Date(1710460800000-0530)/").when == plain
    assert _Row(when=r"/Date(-86400000)/").when == datetime(1969, 12, 31, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "/Date(99999999999999999999)/",
        "/Date(-99999999999999999999)/",
        "/Date(253402300800000)/",  # one ms past 9999-12-31T23:59:59.999
        "/Date(١٧١٠٤٦٠٨٠٠٠٠٠)/",
        "/Date(1710460800000+01)/",
        1710460800000,
    ],
)
def test_out_of_range_or_odd_dates_are_validation_errors(value: Any) -> None:
    with pytest.raises(ValidationError):
        _Row(when=value)


def test_account_with_absurd_date_is_a_named_data_error() -> None:
    with pytest.raises(ExactDataError) as caught:
        account_to_customer(_account(Modified="/Date(99999999999999999999)/"))
    assert caught.value.field == "Modified"
    assert caught.value.record == "Exact account 1005"


# ------------------------------------------------------------ field types


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12345678.0, "12345678"),
        (4123456, "4123456"),
        ("  04123456 ", "04123456"),
        (None, None),
        ("", None),
    ],
)
def test_chamber_of_commerce_as_number_or_text(value: Any, expected: Any) -> None:
    customer = account_to_customer(_account(ChamberOfCommerce=value))
    assert customer.company_registry == expected


@pytest.mark.parametrize("value", [1234.5, float("nan"), float("inf"), True, [1]])
def test_chamber_of_commerce_that_is_no_number_is_named(value: Any) -> None:
    with pytest.raises(ExactDataError) as caught:
        account_to_customer(_account(ChamberOfCommerce=value))
    assert caught.value.field == "ChamberOfCommerce"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1001, "1001"),
        ("\t 1001\u00a0", "1001"),
        ("              1001", "1001"),
        ("   ", None),
    ],
)
def test_codes_with_odd_padding_or_type(value: Any, expected: Any) -> None:
    assert account_to_customer(_account(Code=value)).external_code == expected


def test_vat_garbage_is_kept_as_typed_and_numbers_become_text() -> None:
    assert account_to_customer(_account(VATNumber="n.v.t.")).vat == "n.v.t."
    assert account_to_customer(_account(VATNumber=123456789)).vat == "123456789"


# ----------------------------------------------------------- pulling pages


def _page(rows: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    inner: dict[str, Any] = {"results": rows}
    if next_url:
        inner["__next"] = next_url
    return {"d": inner}


def test_unmappable_rows_are_rejected_with_reason_and_the_pull_goes_on(
    clock: FakeClock,
) -> None:
    rows = [
        _account(ID="a1", Timestamp=10),
        _account(ID="a2", Modified="/Date(99999999999999999999)/", Timestamp=11),
        _account(ID="a3", Name=None, Timestamp=12),
        _account(ID="a4", Timestamp="²"),
        _account(ID="a5", Timestamp=13),
    ]
    connector, _ = _connector(clock, lambda request: (200, _page(rows), {}))
    pages = list(connector.pull_customers("5"))
    assert [c.external_id for p in pages for c in p.records] == ["a1", "a5"]
    rejected = {key: err for p in pages for key, err in p.rejected}
    assert set(rejected) == {"a2", "a3", "a4"}
    assert getattr(rejected["a2"], "field", None) == "Modified"
    assert getattr(rejected["a3"], "field", None) == "Name"
    assert getattr(rejected["a4"], "field", None) == "Timestamp"
    assert pages[-1].cursor == "13"


def test_a_timestamp_beyond_int64_never_becomes_the_cursor(clock: FakeClock) -> None:
    rows = [
        _account(ID="a1", Timestamp=10),
        _account(ID="a2", Timestamp=2**70),
    ]
    connector, _ = _connector(clock, lambda request: (200, _page(rows), {}))
    pages = list(connector.pull_customers("5"))
    assert pages[-1].cursor == "10"
    assert [key for p in pages for key, _ in p.rejected] == ["a2"]


def test_a_record_repeated_on_the_next_page_comes_once(clock: FakeClock) -> None:
    second = "https://start.exactonline.nl/api/v1/2999999/sync/CRM/Accounts?$skip=x"
    first_rows = [_account(ID="a1", Timestamp=10), _account(ID="a2", Timestamp=11)]
    second_rows = [
        _account(ID="a2", Timestamp=11),  # the same version again
        _account(ID="A1", Timestamp=14, Name="Atelier renamed"),  # a newer version
    ]

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        if str(request.url) == second:
            return 200, _page(second_rows), {}
        return 200, _page(first_rows, second), {}

    connector, _ = _connector(clock, handler)
    pages = list(connector.pull_customers("5"))
    seen = [(c.external_id, c.name) for p in pages for c in p.records]
    assert seen == [("a1", "Atelier"), ("a2", "Atelier"), ("a1", "Atelier renamed")]
    assert pages[-1].cursor == "14"


def test_deleted_rows_with_odd_types_are_rejected_not_fatal(clock: FakeClock) -> None:
    rows = [
        {"EntityKey": _ID, "EntityType": "²", "Timestamp": 20},
        {"EntityKey": _ID, "EntityType": 2, "Timestamp": 21},
    ]
    connector, _ = _connector(clock, lambda request: (200, _page(rows), {}))
    pages = list(connector.pull_deletions("5"))
    assert len([d for p in pages for d in p.records]) == 1
    assert len([r for p in pages for r in p.rejected]) == 1
    assert pages[-1].cursor == "21"


# --------------------------------------------------------------- invoices


def _line(line_id: str = "1", **fields: Any) -> InvoiceLine:
    values: dict[str, Any] = {
        "line_id": line_id,
        "name": "Consultancy",
        "quantity": Decimal(2),
        "unit_price": Decimal(50),
        "net_amount": Decimal(100),
        "tax_percent": Decimal(21),
        "account_code": "700000",
    }
    values.update(fields)
    return InvoiceLine(**values)


def _invoice(
    *, kind: str = "invoice", lines: tuple[InvoiceLine, ...] | None = None, **fields
) -> Invoice:
    party = Party(name="Atelier Imaginaire SRL", vat="BE0765881217")
    lines = (_line(),) if lines is None else lines
    untaxed = sum((line.net_amount for line in lines), Decimal(0))
    values: dict[str, Any] = {
        "document_type": kind,
        "number": "FV-2025-00042",
        "issue_date": date(2025, 5, 2),
        "seller": party,
        "buyer": party,
        "buyer_external_id": "acc-1",
        "lines": lines,
        "line_extension_amount": untaxed,
        "tax_exclusive_amount": untaxed,
        "tax_amount": untaxed * Decimal("0.21"),
        "tax_inclusive_amount": untaxed * Decimal("1.21"),
        "payable_amount": untaxed * Decimal("1.21"),
    }
    values.update(fields)
    return Invoice(**values)


def _entry(invoice: Invoice) -> dict[str, Any]:
    return invoice_to_sales_entry(
        invoice,
        customer_id="acc",
        journal="70",
        gl_account=lambda line: "gl",
        vat_code=lambda line: "1",
    )


def _sales_invoice(invoice: Invoice) -> dict[str, Any]:
    return invoice_to_sales_invoice(
        invoice, customer_id="acc", journal="70", item_id="i", vat_code=lambda _: "1"
    )


@pytest.mark.parametrize("currency", ["eur", "", "EURO", "€", "E1R"])
def test_invalid_currency_is_refused_before_sending(currency: str) -> None:
    with pytest.raises(ExactDataError) as caught:
        _entry(_invoice(currency=currency))
    assert caught.value.field == "currency"
    assert caught.value.record == "invoice FV-2025-00042"


def test_foreign_currency_is_sent_as_given() -> None:
    assert _entry(_invoice(currency="USD"))["Currency"] == "USD"


@pytest.mark.parametrize("kind", ["invoice", "credit_note"])
def test_negative_totals_mean_the_sign_was_flipped_already(kind: str) -> None:
    lines = (_line(net_amount=Decimal(-100), unit_price=Decimal(-50)),)
    with pytest.raises(ExactDataError) as caught:
        _entry(_invoice(kind=kind, lines=lines))
    assert caught.value.field == "tax_exclusive_amount"


def test_credit_note_with_a_discount_line_keeps_both_signs() -> None:
    lines = (
        _line("1"),
        _line("2", quantity=Decimal(1), unit_price=Decimal(-10), net_amount=-10),
    )
    body = _entry(_invoice(kind="credit_note", lines=lines))
    assert [line["AmountFC"] for line in body["SalesEntryLines"]] == [-100.0, 10.0]


def test_lines_that_do_not_add_up_to_the_total_are_refused() -> None:
    with pytest.raises(ExactDataError) as caught:
        _entry(_invoice(tax_exclusive_amount=Decimal("99.99")))
    assert caught.value.field == "lines"


def test_document_level_allowances_are_refused_not_dropped() -> None:
    from sync_daemon.kernel.models import AllowanceCharge

    invoice = _invoice(
        allowance_charges=(AllowanceCharge(is_charge=False, amount=Decimal(5)),),
        allowance_total_amount=Decimal(5),
        tax_exclusive_amount=Decimal(95),
    )
    with pytest.raises(ExactDataError) as caught:
        _entry(invoice)
    assert caught.value.field == "allowance_charges"


def test_sales_invoice_line_with_a_discount_books_the_net_amount() -> None:
    line = _line(quantity=Decimal(3), unit_price=Decimal(50), net_amount=Decimal(135))
    body = _sales_invoice(_invoice(lines=(line,)))
    sent = body["SalesInvoiceLines"][0]
    assert Decimal(str(sent["Quantity"])) * Decimal(str(sent["NetPrice"])) == 135


def test_sales_invoice_line_whose_net_cannot_be_priced_is_refused() -> None:
    line = _line(quantity=Decimal(300), unit_price=Decimal(1), net_amount=Decimal(100))
    with pytest.raises(ExactDataError) as caught:
        _sales_invoice(_invoice(lines=(line,)))
    assert caught.value.field == "lines[1].net_amount"


def test_zero_line_invoice_is_refused_without_any_post(clock: FakeClock) -> None:
    posts: list[str] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        if request.method == "POST":
            posts.append(str(request.url))
        return 200, _page([]), {}

    connector, _ = _connector(clock, handler)
    invoice = _invoice(lines=(), tax_amount=Decimal(0))
    with pytest.raises(ExactDataError) as caught:
        connector.push_invoice(invoice, idempotency_key="k")
    assert caught.value.field == "lines" and posts == []


def test_missing_vat_mapping_is_refused_without_any_post(clock: FakeClock) -> None:
    posts: list[str] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        if request.method == "POST":
            posts.append(str(request.url))
        if "GLAccounts" in str(request.url):
            return 200, _page([{"ID": "g-1", "Code": "8000"}]), {}
        return 200, _page([]), {}

    connector, _ = _connector(clock, handler)
    invoice = _invoice(lines=(_line(tax_percent=Decimal(6)),))
    with pytest.raises(ExactDataError) as caught:
        connector.push_invoice(invoice, idempotency_key="k")
    assert caught.value.field == "lines[1].tax" and posts == []
    assert "S:6" in caught.value.message


def test_create_answer_without_id_is_looked_up_not_reposted(clock: FakeClock) -> None:
    stored: list[dict[str, Any]] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        url = str(request.url)
        if request.method == "POST":
            body = json.loads(request.body or b"{}")
            stored.append({"EntryID": "E-1", "EntryNumber": 7, **body})
            return 201, {"d": {"Status": "ok"}}, {}
        if "GLAccounts" in url:
            return 200, _page([{"ID": "g-1", "Code": "8000"}]), {}
        rows = [
            {k: r[k] for k in ("EntryID", "EntryNumber", "YourRef")} for r in stored
        ]
        return 200, _page(rows), {}

    connector, _ = _connector(clock, handler)
    ref = connector.push_invoice(_invoice(), idempotency_key="k")
    assert ref.external_id == "e-1" and len(stored) == 1


def test_account_code_longer_than_exact_allows_is_refused_before_sending() -> None:
    from connectors.exact.mapping import customer_to_account
    from sync_daemon.kernel.models import Customer

    with pytest.raises(ExactDataError) as caught:
        customer_to_account(
            Customer(external_id="odoo-1", external_code="X" * 19, name="Jansen")
        )
    assert caught.value.field == "Code"
    assert caught.value.record == "customer Jansen"


@pytest.mark.parametrize("amount", [float("nan"), float("inf"), "12,50"])
def test_receivable_amount_that_is_no_number_is_rejected(
    clock: FakeClock, amount: Any
) -> None:
    rows = [
        {"ID": "R1", "YourRef": "F1", "AmountFC": amount, "Timestamp": 30,
         "TransactionAmountFC": 121.0, "Currency": "EUR"},
        {"ID": "R2", "YourRef": "F2", "AmountFC": 21.0, "Timestamp": 31,
         "TransactionAmountFC": 121.0, "Currency": "EUR"},
    ]  # fmt: skip
    raw = json.dumps(_page(rows)).encode()  # NaN/Infinity as Python's json writes
    connector, _ = _connector(clock, lambda request: (200, raw, {}))
    pages = list(connector.pull_payments("5"))
    assert [p.invoice_number for page in pages for p in page.records] == ["F2"]
    rejected = [(key, err) for page in pages for key, err in page.rejected]
    assert [key for key, _ in rejected] == ["R1"]
    assert getattr(rejected[0][1], "field", None) == "AmountFC"
    assert pages[-1].cursor == "31"


def test_lookup_rows_without_their_key_are_named_errors(clock: FakeClock) -> None:
    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        return 200, _page([{"YourRef": "FV-2025-00042", "EntryNumber": 3}]), {}

    connector, _ = _connector(clock, handler)
    with pytest.raises(ExactDataError) as caught:
        connector.find_invoice(_invoice())
    assert caught.value.field == "EntryID"
    assert caught.value.record == "invoice FV-2025-00042"


def test_account_lookup_row_without_id_is_a_named_error(clock: FakeClock) -> None:
    from sync_daemon.kernel.models import Address, Customer

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        return 200, _page([{"VATNumber": "BE0765881217", "Country": "BE"}]), {}

    connector, _ = _connector(clock, handler)
    customer = Customer(
        external_id="odoo-1",
        name="Atelier",
        vat="BE0765881217",
        address=Address(country_code="BE"),
    )
    with pytest.raises(ExactDataError) as caught:
        connector.find_customer(customer)
    assert caught.value.field == "ID"


def test_invoice_without_number_is_never_looked_up_nor_linked(
    clock: FakeClock,
) -> None:
    """``YourRef eq ''`` would match every entry typed in Exact without a ref."""
    calls: list[str] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, Any, dict]:
        calls.append(str(request.url))
        return 200, _page([{"EntryID": "E-9", "YourRef": ""}]), {}

    connector, _ = _connector(clock, handler)
    invoice = _invoice(number=" ")
    with pytest.raises(ExactDataError) as caught:
        connector.push_invoice(invoice, idempotency_key="k")
    assert caught.value.field == "number" and calls == []
    with pytest.raises(ExactDataError):
        connector.find_invoice(invoice)
    assert calls == []


@pytest.mark.parametrize("external_id", ["x')?$filter=1", "not-a-guid"])
def test_update_with_a_linked_id_that_is_no_guid_is_refused(
    clock: FakeClock, external_id: str
) -> None:
    from sync_daemon.kernel.models import Customer

    calls: list[str] = []
    connector, _ = _connector(
        clock, lambda request: calls.append(str(request.url)) or (204, b"", {})
    )
    customer = Customer(external_id="odoo-1", name="Jansen")
    with pytest.raises(ExactDataError) as caught:
        connector.push_customer(customer, external_id=external_id, idempotency_key="k")
    assert caught.value.field == "external_id" and calls == []
