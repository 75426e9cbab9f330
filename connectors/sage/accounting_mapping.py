"""Pure mapping between Sage Accounting v3.1 payloads and the kernel records.

No I/O here: each function takes plain dicts or kernel models and returns the other
side, raising :class:`~connectors.sage.errors.SageDataError` with the record and the
field named when the input cannot be mapped.

List endpoints of Sage return only ``id``, ``displayed_as`` and ``$path`` unless
attributes are asked for; :func:`has_details` tells a full contact from such a bare
list item, and :func:`contact_to_customer` refuses a bare item instead of concluding
that the customer has no VAT number.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from sync_daemon.kernel.models import (
    Address,
    ContactPerson,
    Customer,
    Deletion,
    Invoice,
    PaymentStatus,
)

from .errors import SageDataError
from .settings import SageAccountingSettings, tax_key

__all__ = [
    "CONTACT_ATTRIBUTES",
    "INVOICE_ATTRIBUTES",
    "contact_to_customer",
    "customer_to_contact",
    "deleted_item_to_deletion",
    "has_details",
    "invoice_to_payment_status",
    "invoice_to_sales_document",
    "parse_datetime",
]

#: Attributes asked of ``/contacts`` so that one list call carries what we map.
CONTACT_ATTRIBUTES = (
    "name",
    "reference",
    "contact_types",
    "tax_number",
    "registered_number",
    "email",
    "locale",
    "currency",
    "credit_days",
    "main_address",
    "main_contact_person",
    "updated_at",
    "deleted_at",
)

#: Attributes asked of ``/sales_invoices`` and ``/sales_credit_notes``.
INVOICE_ATTRIBUTES = (
    "contact",
    "reference",
    "invoice_number",
    "credit_note_number",
    "status",
    "total_amount",
    "outstanding_amount",
    "currency",
    "last_paid",
    "updated_at",
)

#: Sage artefact status id -> kernel payment state.
_PAYMENT_STATES = {
    "UNPAID": "not_paid",
    "DRAFT": "not_paid",
    "PRO_FORMA": "not_paid",
    "DISPUTED": "not_paid",
    "PART_PAID": "partial",
    "PAID": "paid",
    "VOID": "reversed",
}


def parse_datetime(value: object, *, record: str, field: str) -> datetime | None:
    """An ISO 8601 timestamp from Sage as an aware datetime; ``None`` when empty."""
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as err:
        raise SageDataError(
            f"not an ISO 8601 timestamp: {value!r}", record=record, field=field
        ) from err
    if parsed.tzinfo is None:
        raise SageDataError(
            f"timestamp without time zone: {value!r}", record=record, field=field
        )
    return parsed


def has_details(item: Mapping[str, Any]) -> bool:
    """True when a contact carries its attributes, not only the list basics."""
    return "name" in item and "tax_number" in item and "contact_types" in item


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _text_only(value: object) -> str | None:
    return _text(value) if isinstance(value, str) else None


def _nested_id(value: object) -> str | None:
    if isinstance(value, Mapping):
        return _text(value.get("id"))
    return None


def _check_shapes(item: Mapping[str, Any], record: str) -> None:
    """Refuse objects or lists where Sage sends text, and the reverse.

    ``str()`` of them would be stored as a name (``"{'x': 1}"``), an empty
    address or no customer type, silently.
    """
    for key in _TEXT_FIELDS:
        value = item.get(key)
        if value is not None and not isinstance(value, str | int | float):
            raise SageDataError(
                f"must be text, found {type(value).__name__}", record=record, field=key
            )
    for key in ("main_address", "main_contact_person", "currency"):
        value = item.get(key)
        if value is not None and not isinstance(value, Mapping):
            raise SageDataError(
                f"must be an object, found {type(value).__name__}",
                record=record,
                field=key,
            )
    kinds = item.get("contact_types")
    if kinds is not None and not isinstance(kinds, list):
        raise SageDataError(
            f"must be a list, found {type(kinds).__name__}",
            record=record,
            field="contact_types",
        )


#: Contact fields that hold text (numbers are read as written).
_TEXT_FIELDS = (
    "id",
    "name",
    "reference",
    "tax_number",
    "registered_number",
    "email",
    "locale",
)


def contact_to_customer(item: Mapping[str, Any]) -> Customer:
    """A Sage contact (with attributes) as a kernel :class:`Customer`."""
    raw_id = item.get("id")
    contact_id = _text(raw_id) if isinstance(raw_id, str | int) else None
    record = f"Sage contact {contact_id or item.get('displayed_as') or '?'}"
    if raw_id is not None and not isinstance(raw_id, str | int):
        raise SageDataError(
            f"must be text, found {type(raw_id).__name__}", record=record, field="id"
        )
    if not contact_id:
        raise SageDataError("contact without id", record=record, field="id")
    if not has_details(item):
        raise SageDataError(
            "list item without attributes; fetch the contact before mapping it",
            record=record,
            field="tax_number",
        )
    _check_shapes(item, record)
    name = _text(item.get("name")) or _text_only(item.get("displayed_as"))
    if not name:
        raise SageDataError("a contact needs a name", record=record, field="name")
    types = {_nested_id(kind) for kind in item.get("contact_types") or () if kind} - {
        None
    }
    address = item.get("main_address") or {}
    person = item.get("main_contact_person") or {}
    contacts: tuple[ContactPerson, ...] = ()
    if isinstance(person, Mapping) and _text(person.get("name")):
        contacts = (
            ContactPerson(
                external_id=_text(person.get("id")),
                name=str(person["name"]).strip(),
                email=_text(person.get("email")),
                phone=_text(person.get("telephone")),
                mobile=_text(person.get("mobile")),
            ),
        )
    main_address = _address(address, record=record)
    try:
        return Customer(
            external_id=contact_id,
            external_code=_text(item.get("reference")),
            name=name,
            vat=_text(item.get("tax_number")),
            company_registry=_text(item.get("registered_number")),
            email=_text(item.get("email"))
            or (_text(person.get("email")) if isinstance(person, Mapping) else None),
            phone=_text(person.get("telephone"))
            if isinstance(person, Mapping)
            else None,
            lang=_text(item.get("locale")),
            payment_term_days=item.get("credit_days"),
            currency=_nested_id(item.get("currency")),
            address=main_address,
            contacts=contacts,
            is_customer="CUSTOMER" in types,
            is_supplier="VENDOR" in types,
            updated_at=parse_datetime(
                item.get("updated_at"), record=record, field="updated_at"
            ),
        )
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise SageDataError(first["msg"], record=record, field=field) from err


def _address(address: object, *, record: str) -> Address:
    if not isinstance(address, Mapping):
        return Address()
    try:
        return Address(
            street=_text(address.get("address_line_1")),
            street2=_text(address.get("address_line_2")),
            zip=_text(address.get("postal_code")),
            city=_text(address.get("city")),
            state=_text(address.get("region")),
            country_code=_nested_id(address.get("country"))
            or _text_only(address.get("country")),
        )
    except ValidationError as err:
        first = err.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        field = "main_address.country" if name == "country_code" else name
        raise SageDataError(
            first["msg"], record=record, field=field or "main_address"
        ) from err


def customer_to_contact(
    customer: Customer, *, reference: str | None, contact_type_id: str = "CUSTOMER"
) -> dict[str, Any]:
    """The ``{"contact": {...}}`` body that creates or updates ``customer``.

    ``reference`` ``None`` leaves the contact's reference untouched (updates).
    """
    record = f"customer {customer.external_id}"
    if not customer.name:
        raise SageDataError("a Sage contact needs a name", record=record, field="name")
    address = customer.address
    body: dict[str, Any] = {
        "name": customer.name,
        "contact_type_ids": [contact_type_id],
    }
    if reference is not None:
        body["reference"] = reference
    optional = {
        "tax_number": customer.vat,
        "registered_number": customer.company_registry,
        "email": customer.email,
        "locale": customer.lang,
        "credit_days": customer.payment_term_days,
        "currency_id": customer.currency,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if any((address.street, address.zip, address.city, address.country_code)):
        body["main_address"] = {
            key: value
            for key, value in {
                "address_line_1": address.street,
                "address_line_2": address.street2,
                "postal_code": address.zip,
                "city": address.city,
                "region": address.state,
                "country_id": address.country_code,
            }.items()
            if value is not None
        }
    if customer.contacts or customer.phone:
        person = customer.contacts[0] if customer.contacts else None
        body["main_contact_person"] = {
            key: value
            for key, value in {
                "name": person.name if person else customer.name,
                "email": (person.email if person else None) or customer.email,
                "telephone": (person.phone if person else None) or customer.phone,
                "mobile": person.mobile if person else None,
            }.items()
            if value is not None
        }
    return {"contact": body}


def _money(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.01")), "f")


def _quantity(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if "." not in text else text.rstrip("0").rstrip(".")


def invoice_to_sales_document(
    invoice: Invoice,
    *,
    contact_id: str,
    settings: SageAccountingSettings,
) -> tuple[str, dict[str, Any]]:
    """The Sage endpoint and body that book a posted Odoo invoice or credit note.

    Lines get their ledger account from ``settings.ledger_accounts`` (by Odoo account
    code, else the default) and their tax rate from ``settings.tax_rates`` (by VAT
    category and percentage). Every unmapped line is reported in one error.
    """
    record = f"invoice {invoice.number}"
    problems: list[tuple[str, str]] = []
    lines: list[dict[str, Any]] = []
    for index, line in enumerate(invoice.lines):
        where = f"lines[{index}]"
        ledger = (
            settings.ledger_accounts.get(line.account_code or "")
            or settings.default_ledger_account_id
        )
        if not ledger:
            problems.append(
                (
                    f"{where}.account_code",
                    f"no Sage ledger account for account {line.account_code!r}",
                )
            )
        key = tax_key(line.tax_category, line.tax_percent)
        tax_rate = settings.tax_rates.get(key)
        if not tax_rate:
            problems.append((f"{where}.tax", f"no Sage tax rate mapped for {key}"))
        lines.append(
            {
                "description": line.name
                + (f" — {line.description}" if line.description else ""),
                "quantity": _quantity(line.quantity),
                "unit_price": format(line.unit_price.normalize(), "f"),
                "net_amount": _money(line.net_amount),
                "ledger_account_id": ledger,
                "tax_rate_id": tax_rate,
            }
        )
    if problems:
        raise SageDataError(
            "; ".join(f"{field}: {text}" for field, text in problems),
            record=record,
            field=problems[0][0],
            details={"problems": problems},
        )
    header: dict[str, Any] = {
        "contact_id": contact_id,
        "date": invoice.issue_date.isoformat(),
        "reference": invoice.number,
        "currency_id": invoice.currency,
        "total_amount": _money(invoice.payable_amount),
    }
    if invoice.due_date:
        header["due_date"] = invoice.due_date.isoformat()
    if invoice.note:
        header["notes"] = invoice.note
    if invoice.document_type == "credit_note":
        header["credit_note_lines"] = lines
        if invoice.billing_reference:
            header["original_invoice_number"] = invoice.billing_reference
        return "/sales_credit_notes", {"sales_credit_note": header}
    header["invoice_lines"] = lines
    return "/sales_invoices", {"sales_invoice": header}


def _decimal(value: object, *, record: str, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float | None):
        raise SageDataError(f"not an amount: {value!r}", record=record, field=field)
    try:
        amount = Decimal(str(value if value not in (None, "") else "0"))
    except InvalidOperation as err:
        raise SageDataError(
            f"not an amount: {value!r}", record=record, field=field
        ) from err
    if not amount.is_finite():
        raise SageDataError(f"not an amount: {value!r}", record=record, field=field)
    return amount


def invoice_to_payment_status(item: Mapping[str, Any]) -> PaymentStatus:
    """A Sage sales invoice or credit note as a kernel :class:`PaymentStatus`."""
    record = f"Sage sales document {item.get('id', '?')}"
    number = _text(item.get("reference")) or _text(item.get("invoice_number"))
    number = number or _text(item.get("credit_note_number"))
    if not number:
        raise SageDataError(
            "sales document without reference or number",
            record=record,
            field="reference",
        )
    status = _nested_id(item.get("status")) or ""
    state = _PAYMENT_STATES.get(status)
    if state is None:
        raise SageDataError(f"unknown status {status!r}", record=record, field="status")
    paid_on: date | None = None
    if item.get("last_paid"):
        try:
            paid_on = date.fromisoformat(str(item["last_paid"])[:10])
        except ValueError as err:
            raise SageDataError(
                f"not a date: {item['last_paid']!r}", record=record, field="last_paid"
            ) from err
    amount = _decimal(
        item.get("outstanding_amount"), record=record, field="outstanding_amount"
    )
    try:
        return _payment_status(item, number, state, amount, paid_on, record)
    except ValidationError as err:
        # e.g. an amount of 1e999 (more digits than money has)
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        if field == "amount_residual":
            field = "outstanding_amount"
        raise SageDataError(first["msg"], record=record, field=field) from err


def _payment_status(
    item: Mapping[str, Any],
    number: str,
    state: str,
    amount: Decimal,
    paid_on: date | None,
    record: str,
) -> PaymentStatus:
    return PaymentStatus(
        invoice_number=number,
        external_id=_text(item.get("id")),
        customer_external_id=_nested_id(item.get("contact")),
        state=state,  # type: ignore[arg-type]
        amount_residual=amount,
        currency=_nested_id(item.get("currency")) or "EUR",
        paid_on=paid_on,
        updated_at=parse_datetime(
            item.get("updated_at"), record=record, field="updated_at"
        ),
    )


def deleted_item_to_deletion(item: Mapping[str, Any], *, entity: str) -> Deletion:
    """An item of a ``deleted_since`` list as a kernel :class:`Deletion`."""
    record = f"Sage {entity} {item.get('id', '?')}"
    ident = _text(item.get("id"))
    if not ident:
        raise SageDataError("deleted item without id", record=record, field="id")
    return Deletion(
        external_id=ident,
        entity=entity,
        deleted_at=parse_datetime(
            item.get("deleted_at"), record=record, field="deleted_at"
        ),
    )
