"""Pure mapping between Exact Online payloads and the kernel's canonical records.

Nothing here does I/O. Exact rows are first read into small pydantic models (which
parse ``/Date(ms)/`` strings, strip the space-padded ``Code`` and turn JSON numbers
into :class:`~decimal.Decimal`), then turned into kernel records. Records going out
(accounts, sales entries, sales invoices) are plain dicts ready to be sent.

A row that cannot be mapped raises :class:`~connectors.exact.errors.ExactDataError`
naming the Exact record and the field. Invoices going out are checked first
(:func:`check_invoice`): whatever Exact would refuse (and count against the app's
hourly error budget) or book differently from Odoo is refused here, before any call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

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
    "check_invoice",
    "check_invoice_number",
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

# ASCII digits only; in ``/Date(ms+hhmm)/`` the ms are UTC already and the
# offset only names the writer's zone, so it is checked and then ignored.
_ODATA_DATE = re.compile(r"^/Date\((-?[0-9]{1,20})(?:[+-][0-9]{4})?\)/$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: .NET ``DateTime.MinValue`` in epoch ms: Exact's way of writing "no date".
_DOTNET_MIN_MS = -62135596800000
_DAY_MS = 86_400_000
#: .NET ``DateTime.MaxValue`` in epoch ms (9999-12-31T23:59:59.999).
_DOTNET_MAX_MS = 253402300799999
#: Exact's ``Timestamp`` is a SQL rowversion: a signed 64-bit integer.
INT64_MAX = 2**63 - 1
_CURRENCY = re.compile(r"^[A-Z]{3}$")


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
    if abs(millis - _DOTNET_MIN_MS) <= _DAY_MS:
        # MinValue, possibly shifted by the writer's zone: "no date".
        return None
    if not _DOTNET_MIN_MS < millis <= _DOTNET_MAX_MS:
        raise ValueError(f"OData date outside years 1-9999: {value!r}")
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


#: Exact's account codes are right-aligned in this many characters.
_CODE_LENGTH = 18


def pad_code(code: str) -> str:
    """Exact's account codes are right-aligned in 18 characters."""
    return code.strip().rjust(_CODE_LENGTH)


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
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.removeprefix("-").isdigit():
            return int(text)
    return value


def _to_str(value: Any) -> Any:
    """KvK numbers and codes arrive as text or as a number (leading zero lost)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"not a whole number: {value!r}")
        return str(int(value))
    return _blank_to_none(value)


def _code(value: Any) -> Any:
    value = _to_str(value)
    return value.strip() if isinstance(value, str) else value


Text = Annotated[str | None, BeforeValidator(_blank_to_none)]
NumberText = Annotated[str | None, BeforeValidator(_to_str)]
Amount = Annotated[Decimal | None, BeforeValidator(_to_decimal)]
Int64 = Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]
Rowversion = Annotated[Int64 | None, BeforeValidator(_to_int)]


class _ExactRow(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class ExactAccount(_ExactRow):
    """The ``crm/Accounts`` fields the connector reads."""

    ID: str
    Code: Annotated[str | None, BeforeValidator(_code)] = None
    Name: Text = None
    VATNumber: NumberText = None
    ChamberOfCommerce: NumberText = None
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
        if len(customer.external_code.strip()) > _CODE_LENGTH:
            raise ExactDataError(
                f"code {customer.external_code!r} is longer than Exact's "
                f"{_CODE_LENGTH} characters",
                record=f"customer {customer.name}",
                field="Code",
            )
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


def check_invoice_number(invoice: Invoice) -> None:
    """The Odoo number is the ``YourRef`` key: a blank one would match anything."""
    if not invoice.number.strip():
        raise ExactDataError(
            "an invoice without number cannot be booked nor looked up",
            record=_invoice_label(invoice),
            field="number",
        )


def check_invoice(invoice: Invoice) -> None:
    """Refuse, before any call, an invoice Exact would refuse or book differently.

    Every 4xx counts against the app's hourly error budget, and an amount booked
    differently from Odoo's is worse than none: the error names the field.
    """
    label = _invoice_label(invoice)
    check_invoice_number(invoice)
    if not _CURRENCY.match(invoice.currency):
        raise ExactDataError(
            f"currency {invoice.currency!r} is not an ISO 4217 code (EUR, USD…)",
            record=label,
            field="currency",
        )
    if not invoice.lines:
        raise ExactDataError(
            "an invoice needs at least one line", record=label, field="lines"
        )
    if invoice.allowance_charges:
        raise ExactDataError(
            "document-level allowances or charges cannot be booked in Exact; "
            "put them on invoice lines",
            record=label,
            field="allowance_charges",
        )
    if invoice.tax_exclusive_amount < 0 or invoice.payable_amount < 0:
        raise ExactDataError(
            "negative totals: amounts must be positive on invoices and credit "
            "notes alike (the document type gives the direction)",
            record=label,
            field="tax_exclusive_amount",
        )
    cent = Decimal("0.01")
    lines_total = sum((line.net_amount for line in invoice.lines), Decimal(0))
    if lines_total.quantize(cent) != invoice.tax_exclusive_amount.quantize(cent):
        raise ExactDataError(
            f"the lines add up to {lines_total}, the untaxed total is "
            f"{invoice.tax_exclusive_amount}",
            record=label,
            field="lines",
        )


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
    check_invoice(invoice)
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

    Credit notes are Type 8021 with negative quantities. Exact books
    ``Quantity × NetPrice``, so a line whose net amount differs from that (a line
    discount, a price per 100 units) is priced at net ÷ quantity.
    """
    check_invoice(invoice)
    credit = invoice.document_type == "credit_note"
    lines = []
    for line in invoice.lines:
        quantity = -line.quantity if credit else line.quantity
        lines.append(
            {
                "Item": item_id,
                "Description": (line.name or invoice.number)[:60],
                "Quantity": float(quantity),
                "NetPrice": float(_net_price(invoice, line)),
                "VATCode": vat_code(line),
            }
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


def _net_price(invoice: Invoice, line: InvoiceLine) -> Decimal:
    """A 4-decimal unit price with ``quantity × price`` equal to the net amount."""
    places, cent = Decimal("0.0001"), Decimal("0.01")
    net = line.net_amount.quantize(cent)
    base = line.price_base_quantity or Decimal(1)
    candidates = [(line.unit_price / base).quantize(places)]
    if line.quantity:
        candidates.append((line.net_amount / line.quantity).quantize(places))
    for price in candidates:
        if (price * line.quantity).quantize(cent) == net:
            return price
    raise ExactDataError(
        f"{line.quantity} × a 4-decimal price cannot make the net amount "
        f"{line.net_amount}; Exact would book a different amount",
        record=_invoice_label(invoice),
        field=f"lines[{line.line_id}].net_amount",
    )


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
