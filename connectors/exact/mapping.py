"""Pure mapping between Exact Online payloads and the kernel's canonical records.

Nothing here does I/O. Exact rows are first read into small pydantic models (which
parse ``/Date(ms)/`` strings, strip the space-padded ``Code`` and turn JSON numbers
into :class:`~decimal.Decimal`), then turned into kernel records. Records going out
(accounts, sales entries, sales invoices) are plain dicts ready to be sent.

A row that cannot be mapped raises :class:`~connectors.exact.errors.ExactDataError`
naming the Exact record and the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from sync_daemon.kernel.models import (
    Address,
    Customer,
    Deletion,
    Invoice,
    InvoiceLine,
    PaymentStatus,
)

from .errors import ExactDataError

__all__ = [
    "ExactAccount",
    "ExactDeleted",
    "ExactReceivable",
    "ODataDateTime",
    "account_to_customer",
    "customer_to_account",
    "deleted_to_deletion",
    "format_odata_datetime",
    "invoice_to_sales_entry",
    "invoice_to_sales_invoice",
    "odata_quote",
    "pad_code",
    "parse_odata_date",
    "receivables_to_payments",
    "vat_key_of_line",
]

_ODATA_DATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: .NET ``DateTime.MinValue`` in epoch ms: Exact's way of writing "no date".
_DOTNET_MIN_MS = -62135596800000


def parse_odata_date(value: object) -> datetime | None:
    """Read an OData v2 ``/Date(ms)/`` literal as an aware UTC datetime.

    ``None``, ``""`` and .NET ``DateTime.MinValue`` mean "no date". Any other text
    is refused rather than guessed at (a bare ISO string is not what Exact sends).

    >>> parse_odata_date("/Date(946684799000)/").isoformat()
    '1999-12-31T23:59:59+00:00'
    >>> parse_odata_date("/Date(-62135596800000)/") is None
    True
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a datetime without time zone is ambiguous")
        return value.astimezone(UTC)
    if not isinstance(value, str):
        raise ValueError(f"expected an OData date literal, got {value!r}")
    match = _ODATA_DATE.match(value.strip())
    if match is None:
        raise ValueError(f"not an OData date literal /Date(ms)/: {value!r}")
    millis = int(match.group(1))
    if millis <= _DOTNET_MIN_MS:
        return None
    # timedelta keeps the milliseconds exact and never consults the local zone.
    return _EPOCH + timedelta(milliseconds=millis)


#: A pydantic field type for Exact's dates: aware UTC datetime or ``None``.
ODataDateTime = Annotated[datetime | None, BeforeValidator(parse_odata_date)]


def format_odata_datetime(moment: datetime) -> str:
    """``datetime'2024-03-01T10:00:00'`` (UTC) for use inside ``$filter``."""
    utc = moment.astimezone(UTC).replace(tzinfo=None, microsecond=0)
    return f"datetime'{utc.isoformat()}'"


def odata_quote(text: str) -> str:
    """A string literal for ``$filter``: single quotes doubled."""
    return "'" + text.replace("'", "''") + "'"


def pad_code(code: str) -> str:
    """Exact's account codes are right-aligned in 18 characters."""
    return code.strip().rjust(18)


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _to_decimal(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, float):
        # repr gives the shortest text that reads back as the same float.
        return Decimal(repr(value))
    return value


def _to_int(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return value


def _to_str(value: Any) -> Any:
    """KvK numbers arrive as text or as a number that lost its leading zero."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    return _blank_to_none(value)


Text = Annotated[str | None, BeforeValidator(_blank_to_none)]
Amount = Annotated[Decimal | None, BeforeValidator(_to_decimal)]
Rowversion = Annotated[int | None, BeforeValidator(_to_int)]


class _ExactRow(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class ExactAccount(_ExactRow):
    """The ``crm/Accounts`` fields the connector reads."""

    ID: str
    Code: Annotated[str | None, BeforeValidator(_strip)] = None
    Name: Text = None
    VATNumber: Text = None
    ChamberOfCommerce: Annotated[str | None, BeforeValidator(_to_str)] = None
    Email: Text = None
    Phone: Text = None
    Website: Text = None
    AddressLine1: Text = None
    AddressLine2: Text = None
    AddressLine3: Text = None
    Postcode: Text = None
    City: Text = None
    State: Text = None
    Country: Text = None
    Language: Text = None
    Status: Text = None
    IsSales: bool | None = None
    IsSupplier: bool | None = None
    Blocked: bool | None = None
    PeppolIdentifier: Text = None
    PeppolIdentifierType: Rowversion = None
    PaymentConditionSales: Text = None
    SalesCurrency: Text = None
    Modified: ODataDateTime = None
    Timestamp: Rowversion = None


class ExactDeleted(_ExactRow):
    """A ``sync/Deleted`` row."""

    EntityKey: str
    EntityType: Rowversion
    DeletedDate: ODataDateTime = None
    Timestamp: Rowversion


class ExactReceivable(_ExactRow):
    """A ``cashflow/Receivables`` row (one open or settled item of an invoice)."""

    ID: str
    Account: Text = None
    YourRef: Text = None
    InvoiceNumber: Rowversion = None
    TransactionEntryID: Text = None
    AmountFC: Amount = None
    TransactionAmountFC: Amount = None
    Currency: Text = None
    IsFullyPaid: bool = False
    TransactionIsReversal: bool = False
    LastPaymentDate: ODataDateTime = None
    Modified: ODataDateTime = None
    Timestamp: Rowversion = None


def _row_label(row: Mapping[str, Any], kind: str) -> str:
    code = str(row.get("Code") or "").strip()
    return f"Exact {kind} {code or row.get('ID') or row.get('EntityKey') or '?'}"


def _validate(model: type[_ExactRow], row: Mapping[str, Any], kind: str) -> Any:
    try:
        return model.model_validate(row)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ExactDataError(
            first["msg"], record=_row_label(row, kind), field=field
        ) from err


# ----------------------------------------------------------------- accounts in


def account_to_customer(row: Mapping[str, Any]) -> Customer:
    """An Exact account row as a canonical :class:`Customer`."""
    account: ExactAccount = _validate(ExactAccount, row, "account")
    label = _row_label(row, "account")
    if not account.Name:
        raise ExactDataError("an account needs a name", record=label, field="Name")
    street2 = " ".join(
        part for part in (account.AddressLine2, account.AddressLine3) if part
    )
    try:
        address = Address(
            street=account.AddressLine1,
            street2=street2 or None,
            zip=account.Postcode,
            city=account.City,
            state=account.State,
            country_code=account.Country,
        )
        return Customer(
            external_id=account.ID.lower(),
            external_code=account.Code or None,
            name=account.Name,
            vat=account.VATNumber,
            company_registry=account.ChamberOfCommerce,
            peppol_id=account.PeppolIdentifier,
            email=account.Email,
            phone=account.Phone,
            website=account.Website,
            lang=account.Language,
            currency=account.SalesCurrency,
            address=address,
            is_customer=account.Status == "C" or bool(account.IsSales),
            is_supplier=bool(account.IsSupplier),
            blocked=bool(account.Blocked),
            updated_at=account.Modified,
        )
    except ValidationError as err:
        first = err.errors()[0]
        field = _ACCOUNT_FIELD.get(str(first["loc"][0]), str(first["loc"][0]))
        raise ExactDataError(first["msg"], record=label, field=field) from err


_ACCOUNT_FIELD = {"country_code": "Country", "name": "Name", "currency": "Currency"}


# ---------------------------------------------------------------- accounts out


def customer_to_account(customer: Customer) -> dict[str, Any]:
    """The ``crm/Accounts`` body for a customer finance needs in Exact.

    Only fields Odoo owns for finance are sent; ``None`` values are left out so an
    update never blanks a field typed by the accountant.
    """
    address = customer.address
    body: dict[str, Any] = {
        "Name": customer.name,
        "Status": "C" if customer.is_customer else "A",
        "IsSales": customer.is_customer,
        "IsSupplier": customer.is_supplier,
        "VATNumber": customer.vat,
        "ChamberOfCommerce": customer.company_registry,
        "PeppolIdentifier": customer.peppol_id,
        "Email": customer.email,
        "Phone": customer.phone,
        "Website": customer.website,
        "AddressLine1": address.street,
        "AddressLine2": address.street2,
        "Postcode": address.zip,
        "City": address.city,
        "State": address.state,
        "Country": address.country_code,
        "Language": (customer.lang or "")[:2].upper() or None,
        "Blocked": customer.blocked,
    }
    if customer.external_code:
        body["Code"] = pad_code(customer.external_code)
    return {key: value for key, value in body.items() if value is not None}


# ------------------------------------------------------------------- deletions


def deleted_to_deletion(
    row: Mapping[str, Any], entity_types: Mapping[int, str]
) -> Deletion | None:
    """A ``sync/Deleted`` row as a :class:`Deletion`; ``None`` for unmapped types."""
    deleted: ExactDeleted = _validate(ExactDeleted, row, "deletion")
    entity = entity_types.get(int(deleted.EntityType or 0))
    if entity is None:
        return None
    return Deletion(
        external_id=deleted.EntityKey.lower(),
        entity=entity,
        deleted_at=deleted.DeletedDate,
    )


# -------------------------------------------------------------------- invoices


def vat_key_of_line(line: InvoiceLine) -> str:
    """The ``vat_codes`` settings key of a line: ``S:21``, ``AE:0``, ``S:5.5``."""
    percent = line.tax_percent.normalize()
    text = format(percent, "f")
    return f"{line.tax_category}:{text}"


def _money(amount: Decimal, places: str = "0.01") -> float:
    """A JSON number for Exact; ``float`` of a quantized Decimal keeps its digits."""
    return float(amount.quantize(Decimal(places)))


def _invoice_label(invoice: Invoice) -> str:
    return f"invoice {invoice.number}"


def invoice_to_sales_entry(
    invoice: Invoice,
    *,
    customer_id: str,
    journal: str,
    gl_account: Callable[[InvoiceLine], str],
    vat_code: Callable[[InvoiceLine], str],
) -> dict[str, Any]:
    """A ``salesentry/SalesEntries`` body: a ledger posting, Exact computes VAT.

    Credit notes are Type 21 with negative line amounts; ``YourRef`` carries the
    Odoo invoice number, the key looked up before any re-send.
    """
    sign = Decimal(-1) if invoice.document_type == "credit_note" else Decimal(1)
    lines = [
        {
            "GLAccount": gl_account(line),
            "AmountFC": _money(sign * line.net_amount),
            "VATCode": vat_code(line),
            "Description": (line.name or invoice.number)[:60],
        }
        for line in invoice.lines
    ]
    if not lines:
        raise ExactDataError(
            "an invoice needs at least one line",
            record=_invoice_label(invoice),
            field="lines",
        )
    body: dict[str, Any] = {
        "Customer": customer_id,
        "Journal": journal,
        "Type": 21 if invoice.document_type == "credit_note" else 20,
        "EntryDate": invoice.issue_date.isoformat(),
        "YourRef": invoice.number,
        "Description": invoice.number,
        "Currency": invoice.currency,
        "SalesEntryLines": lines,
    }
    if invoice.due_date:
        body["DueDate"] = invoice.due_date.isoformat()
    if invoice.payment_reference:
        body["PaymentReference"] = invoice.payment_reference[:50]
    return body


def invoice_to_sales_invoice(
    invoice: Invoice,
    *,
    customer_id: str,
    journal: str,
    item_id: str,
    vat_code: Callable[[InvoiceLine], str],
) -> dict[str, Any]:
    """A ``salesinvoice/SalesInvoices`` body (item-based, Exact numbers it).

    Credit notes are Type 8021 with negative quantities.
    """
    credit = invoice.document_type == "credit_note"
    lines = []
    for line in invoice.lines:
        quantity = -line.quantity if credit else line.quantity
        lines.append(
            {
                "Item": item_id,
                "Description": (line.name or invoice.number)[:60],
                "Quantity": float(quantity),
                "NetPrice": _money(line.unit_price, "0.0001"),
                "VATCode": vat_code(line),
            }
        )
    if not lines:
        raise ExactDataError(
            "an invoice needs at least one line",
            record=_invoice_label(invoice),
            field="lines",
        )
    return {
        "OrderedBy": customer_id,
        "InvoiceTo": customer_id,
        "Journal": journal,
        "Type": 8021 if credit else 8020,
        "InvoiceDate": invoice.issue_date.isoformat(),
        "YourRef": invoice.number,
        "Description": invoice.number,
        "Currency": invoice.currency,
        "SalesInvoiceLines": lines,
    }


# ------------------------------------------------------------------- payments


def receivables_to_payments(rows: Iterable[Mapping[str, Any]]) -> list[PaymentStatus]:
    """Payment status per invoice from ``cashflow/Receivables`` rows.

    Rows of one invoice (same ``TransactionEntryID``, else same ``YourRef``) are
    summed: the open amount is the sum of ``AmountFC`` over rows not fully paid.
    """
    groups: dict[str, list[ExactReceivable]] = {}
    for row in rows:
        item: ExactReceivable = _validate(ExactReceivable, row, "receivable")
        key = item.TransactionEntryID or item.YourRef or item.ID
        groups.setdefault(key.lower(), []).append(item)
    statuses = []
    for key, items in groups.items():
        first = items[0]
        number = first.YourRef or (
            str(first.InvoiceNumber) if first.InvoiceNumber else None
        )
        if number is None:
            raise ExactDataError(
                "a receivable needs YourRef or InvoiceNumber",
                record=f"Exact receivable {first.ID}",
                field="YourRef",
            )
        residual = sum(
            (
                abs(item.AmountFC or Decimal(0))
                for item in items
                if not item.IsFullyPaid
            ),
            Decimal(0),
        )
        total = abs(first.TransactionAmountFC or Decimal(0))
        if any(item.TransactionIsReversal for item in items):
            state = "reversed"
        elif residual == 0:
            state = "paid"
        elif total and residual < total:
            state = "partial"
        else:
            state = "not_paid"
        paid_dates = [item.LastPaymentDate for item in items if item.LastPaymentDate]
        modified = [item.Modified for item in items if item.Modified]
        paid_on: date | None = max(paid_dates).date() if paid_dates else None
        try:
            status = PaymentStatus(
                invoice_number=number,
                external_id=first.TransactionEntryID.lower()
                if first.TransactionEntryID
                else key,
                customer_external_id=first.Account.lower() if first.Account else None,
                state=state,
                amount_residual=residual,
                currency=first.Currency or "EUR",
                paid_on=paid_on if state == "paid" else None,
                updated_at=max(modified) if modified else None,
            )
        except ValidationError as err:
            first_error = err.errors()[0]
            raise ExactDataError(
                first_error["msg"],
                record=f"Exact receivable {first.ID}",
                field=str(first_error["loc"][0]),
            ) from err
        statuses.append(status)
    return statuses
