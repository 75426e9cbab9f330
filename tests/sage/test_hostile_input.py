"""Hostile Sage Accounting records found by a tester.

Objects or lists where Sage sends text were stored as their Python repr (a
customer called ``{'x': 1}``), a country written as a plain code was dropped, a
contact type list given as text made a customer a non-customer, and an amount of
``NaN`` escaped as a pydantic error that stopped the whole payments pull. Each must
be a :class:`SageDataError` naming the record and the field, so the record becomes
a dead letter and the pull goes on.
"""

from __future__ import annotations

from typing import Any

import pytest

from connectors.sage.accounting_mapping import (
    contact_to_customer,
    invoice_to_payment_status,
)
from connectors.sage.errors import SageDataError
from connectors.sage.x3_payloads import (
    bpc_to_customer,
    parse_object_xml,
    parse_query_lines,
)


def _contact(**fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "c1",
        "name": "Atelier",
        "tax_number": "",
        "contact_types": [{"id": "CUSTOMER"}],
    }
    item.update(fields)
    return item


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": {"x": 1}}, "name", "must be text, found dict"),
        ({"email": ["a@example.com"]}, "email", "must be text, found list"),
        ({"tax_number": {"id": "BE"}}, "tax_number", "must be text"),
        ({"id": {"a": 1}}, "id", "must be text, found dict"),
        ({"main_address": [1]}, "main_address", "must be an object, found list"),
        ({"main_address": "Rue 1"}, "main_address", "must be an object"),
        ({"contact_types": "CUSTOMER"}, "contact_types", "must be a list"),
        ({"name": None}, "name", "a contact needs a name"),
        ({"name": "  "}, "name", "a contact needs a name"),
        ({"name": "A\x00B"}, "name", "NUL character"),
    ],
)
def test_odd_contact_shapes_name_record_and_field(
    fields: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(SageDataError) as caught:
        contact_to_customer(_contact(**fields))
    assert caught.value.field == field
    assert message in caught.value.message
    assert caught.value.record.startswith("Sage contact")


def test_plain_values_are_still_read() -> None:
    customer = contact_to_customer(
        _contact(
            id=42,
            name=None,
            displayed_as="Atelier (AT01)",
            tax_number=447123478,
            main_address={"country": "be", "postal_code": 1000},
        )
    )
    assert customer.external_id == "42"
    assert customer.name == "Atelier (AT01)"
    assert customer.vat == "447123478"
    assert customer.country_code == "BE"  # a bare code used to be dropped
    assert customer.is_customer


def _invoice(**fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "i1",
        "invoice_number": "SI-1",
        "outstanding_amount": "5.00",
        "status": {"id": "PART_PAID"},
    }
    item.update(fields)
    return item


@pytest.mark.parametrize(
    "amount", ["NaN", "Infinity", "-Infinity", "sNaN", "1e999", [5], True, {}]
)
def test_an_amount_that_is_no_amount_names_record_and_field(amount: Any) -> None:
    with pytest.raises(SageDataError) as caught:
        invoice_to_payment_status(_invoice(outstanding_amount=amount))
    assert caught.value.field == "outstanding_amount"
    assert caught.value.record == "Sage sales document i1"


# -- Sage X3 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        # the field used to be "BPC" with pydantic's multi-line text
        ({"CRY": "Netherlands"}, "CRY", "ISO 3166 alpha-2"),
        ({"BPCNAM": "A\x00B"}, "BPCNAM", "NUL character"),
        # an empty name went to Odoo, which refused the whole batch
        ({"BPCNAM": "  "}, "BPCNAM", "a customer needs a name"),
    ],
)
def test_x3_customer_values_name_their_x3_field(
    fields: dict[str, str], field: str, message: str
) -> None:
    row = {"BPCNUM": "C1", "BPCNAM": "Atelier", **fields}
    with pytest.raises(SageDataError) as caught:
        bpc_to_customer(row, record="X3 customer C1")
    assert caught.value.field == field
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_x3_answers_with_a_doctype_are_refused_not_read_empty() -> None:
    evil = '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><RESULT>&x;</RESULT>'
    for parse in (parse_object_xml, parse_query_lines):
        with pytest.raises(SageDataError, match="DOCTYPE"):
            parse(evil)
