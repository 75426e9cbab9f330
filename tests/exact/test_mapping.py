"""Pure mapping: /Date(ms)/ parsing (C014), account rows, deletions, invoices."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from connectors.exact.errors import ExactDataError
from connectors.exact.mapping import (
    ODataDateTime,
    account_to_customer,
    customer_to_account,
    deleted_to_deletion,
    invoice_to_sales_entry,
    invoice_to_sales_invoice,
    receivables_to_payments,
)
from sync_daemon.kernel.errors import DataError
from sync_daemon.kernel.models import Address, Customer, Invoice, InvoiceLine, Party


class _Row(BaseModel):
    when: ODataDateTime


def test_c014_odata_dates_parse_to_utc(load_case: Any) -> None:
    case = load_case("C014_json_date_values.json")
    for item in case["cases"]:
        if item["out"] == "error":
            with pytest.raises(ValidationError, match="OData date"):
                _Row(when=item["in"])
            continue
        parsed = _Row(when=item["in"]).when
        if item["out"] is None:
            assert parsed is None, item
        else:
            assert parsed == datetime.fromisoformat(item["out"]), item
            assert parsed.utcoffset().total_seconds() == 0


def test_c014_dates_never_use_the_local_zone(
    load_case: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    try:
        case = load_case("C014_json_date_values.json")
        first = case["cases"][0]
        assert _Row(when=first["in"]).when.isoformat() == first["out"]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def _account(**fields: Any) -> dict[str, Any]:
    row = {
        "__metadata": {"uri": "x", "type": "Exact.Web.Api.Models.Account"},
        "ID": "CD9BA806-C35B-5ADF-AF73-85B3CB90E754",
        "Code": "              1005",
        "Name": "Atelier Imaginaire",
        "VATNumber": "BE 0765.881.217",
        "ChamberOfCommerce": "",
        "Country": "BE",
        "Status": "C",
        "Modified": "/Date(1709287500000)/",
    }
    row.update(fields)
    return row


def test_account_maps_to_customer_with_stripped_code_and_utc_date() -> None:
    customer = account_to_customer(_account())
    assert customer.external_id == "cd9ba806-c35b-5adf-af73-85b3cb90e754"
    assert customer.external_code == "1005"
    assert customer.vat == "BE 0765.881.217"  # kept as typed; matching normalises
    assert customer.company_registry is None
    assert customer.country_code == "BE"
    assert customer.updated_at == datetime(2024, 3, 1, 10, 5, tzinfo=UTC)


def test_kvk_number_that_lost_its_zero_stays_text() -> None:
    customer = account_to_customer(_account(ChamberOfCommerce=4123456, Country="NL"))
    assert customer.company_registry == "4123456"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"Name": "  "}, "Name"),
        ({"Country": "Belgium"}, "Country"),
        ({"Modified": "2024-03-01T10:00:00"}, "Modified"),
    ],
)
def test_bad_account_names_record_and_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ExactDataError) as caught:
        account_to_customer(_account(**fields))
    assert caught.value.field == field
    assert caught.value.record == "Exact account 1005"
    assert isinstance(caught.value, DataError)


def test_customer_to_account_pads_code_and_leaves_out_unknowns() -> None:
    body = customer_to_account(
        Customer(
            external_id="odoo-1",
            external_code="25",
            name="Bakkerij Jansen B.V.",
            vat="NL123456782B01",
            company_registry="04123456",
            address=Address(city="Utrecht", country_code="NL"),
            lang="nl_NL",
        )
    )
    assert body["Code"] == " " * 16 + "25"
    assert body["ChamberOfCommerce"] == "04123456"
    assert body["Language"] == "NL"
    assert "Email" not in body and "Phone" not in body


def test_deleted_rows_map_through_configured_types() -> None:
    row = {
        "EntityKey": "CD9BA806-C35B-5ADF-AF73-85B3CB90E754",
        "EntityType": "2",
        "DeletedDate": "/Date(1710495000000)/",
        "Timestamp": "88213004511",
    }
    deletion = deleted_to_deletion(row, {2: "account"})
    assert deletion is not None and deletion.entity == "account"
    assert deletion.deleted_at is not None
    assert deletion.deleted_at.date() == date(2024, 3, 15)
    assert deleted_to_deletion(row, {5: "contact"}) is None


def _invoice(kind: str = "invoice") -> Invoice:
    party = Party(name="Atelier Imaginaire SRL", vat="BE0765881217")
    return Invoice(
        document_type=kind,  # type: ignore[arg-type]
        number="FV-2025-00042",
        issue_date=date(2025, 5, 2),
        due_date=date(2025, 6, 1),
        seller=party,
        buyer=party,
        lines=(
            InvoiceLine(
                line_id="1",
                name="Consultancy",
                quantity=Decimal(2),
                unit_price=Decimal("50.1250"),
                net_amount=Decimal("100.25"),
                tax_category="S",
                tax_percent=Decimal("21.00"),
                account_code="700000",
            ),
        ),
        line_extension_amount=Decimal("100.25"),
        tax_exclusive_amount=Decimal("100.25"),
        tax_amount=Decimal("21.05"),
        tax_inclusive_amount=Decimal("121.30"),
        payable_amount=Decimal("121.30"),
    )


def test_sales_entry_body_and_credit_note_sign() -> None:
    body = invoice_to_sales_entry(
        _invoice(),
        customer_id="acc",
        journal="70",
        gl_account=lambda line: "gl-" + str(line.account_code),
        vat_code=lambda line: "1",
    )
    assert body["Type"] == 20 and body["YourRef"] == "FV-2025-00042"
    assert body["SalesEntryLines"] == [
        {
            "GLAccount": "gl-700000",
            "AmountFC": 100.25,
            "VATCode": "1",
            "Description": "Consultancy",
        }
    ]
    credit = invoice_to_sales_entry(
        _invoice("credit_note"),
        customer_id="acc",
        journal="70",
        gl_account=lambda line: "gl",
        vat_code=lambda line: "1",
    )
    assert credit["Type"] == 21 and credit["SalesEntryLines"][0]["AmountFC"] == -100.25


def test_sales_invoice_body_keeps_four_decimals() -> None:
    body = invoice_to_sales_invoice(
        _invoice(),
        customer_id="acc",
        journal="70",
        item_id="item",
        vat_code=lambda _: "1",
    )
    assert body["OrderedBy"] == "acc" and body["Type"] == 8020
    assert body["SalesInvoiceLines"][0]["NetPrice"] == 50.125
    assert body["SalesInvoiceLines"][0]["Quantity"] == 2.0


def test_receivables_give_payment_state_per_invoice() -> None:
    base = {
        "Account": "A1",
        "Currency": "EUR",
        "TransactionAmountFC": 121.0,
        "Modified": "/Date(1709287200000)/",
    }
    rows = [
        {**base, "ID": "1", "YourRef": "F1", "TransactionEntryID": "E1",
         "AmountFC": 121.0, "IsFullyPaid": False},
        {**base, "ID": "2", "YourRef": "F2", "TransactionEntryID": "E2",
         "AmountFC": 21.0, "IsFullyPaid": False},
        {**base, "ID": "3", "YourRef": "F3", "TransactionEntryID": "E3",
         "AmountFC": 0.0, "IsFullyPaid": True,
         "LastPaymentDate": "/Date(1709337600000)/"},
    ]  # fmt: skip
    states = {p.invoice_number: p for p in receivables_to_payments(rows)}
    assert states["F1"].state == "not_paid"
    assert states["F1"].amount_residual == Decimal("121.0")
    assert states["F2"].state == "partial"
    assert states["F3"].state == "paid" and states["F3"].paid_on == date(2024, 3, 2)
    assert states["F1"].customer_external_id == "a1"


def test_every_exact_error_is_on_the_kernel_tree() -> None:
    from connectors.exact import errors
    from sync_daemon.kernel.errors import PermanentError, RetryableError

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.ExactError)
        if cls is errors.ExactError:
            continue
        assert issubclass(cls, RetryableError) != issubclass(cls, PermanentError), name


def test_bad_receivable_names_record_and_field() -> None:
    with pytest.raises(ExactDataError) as caught:
        receivables_to_payments(
            [{"ID": "R1", "YourRef": "F1", "AmountFC": 1.0, "Currency": "EUR",
              "Modified": "yesterday"}]
        )  # fmt: skip
    assert caught.value.record == "Exact receivable R1"
    assert caught.value.field == "Modified"
