"""Canonical records: what every connector maps to and from.

A connector turns remote payloads into these models (and back); the engine only ever
sees these. Money and quantities are :class:`~decimal.Decimal`, never float; dates are
timezone-aware UTC datetimes or plain dates; country codes are ISO 3166 alpha-2.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Address",
    "AllowanceCharge",
    "ContactPerson",
    "Customer",
    "Deletion",
    "Invoice",
    "InvoiceLine",
    "Party",
    "PaymentStatus",
    "RemoteRef",
    "TaxCategory",
    "TaxSubtotal",
]

#: UNCL5305 VAT category codes used by EN 16931 / Peppol BIS Billing 3.0.
TaxCategory = Literal["S", "Z", "E", "AE", "K", "G", "O", "L", "M"]

Money = Annotated[Decimal, Field(max_digits=20, decimal_places=6)]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # PostgreSQL cannot store U+0000: one such name would fail a whole batch
        # write in Odoo with a message naming neither the record nor the field
        texts = value if isinstance(value, tuple) else (value,)
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            raise ValueError(
                "contains a NUL character (\\x00), which Odoo cannot store"
            )
        return value


def _country_code(value: str | None) -> str | None:
    if value is None:
        return None
    code = value.strip().upper()
    if not code:
        return None
    if len(code) != 2 or not code.isalpha():
        raise ValueError(f"country code must be ISO 3166 alpha-2, got {value!r}")
    return code


class Address(_Record):
    """A postal address."""

    street: str | None = None
    street2: str | None = None
    zip: str | None = None
    city: str | None = None
    state: str | None = None
    country_code: str | None = None

    _check_country = field_validator("country_code")(_country_code)


class ContactPerson(_Record):
    """A person at a customer (Odoo child contact, Exact contact…)."""

    external_id: str | None = None
    name: str
    email: str | None = None
    phone: str | None = None
    mobile: str | None = None
    function: str | None = None


class Customer(_Record):
    """A commercial entity as one system knows it, before matching.

    ``external_id`` is the remote's stable key (a GUID for Exact, an id for Sage);
    ``external_code`` the human-visible code when there is one. Identifiers are kept as
    the remote wrote them; matching normalises them (see ``identifiers``).
    """

    external_id: str
    external_code: str | None = None
    name: str
    is_company: bool = True
    vat: str | None = None
    company_registry: str | None = None
    peppol_id: str | None = None
    email: str | None = None
    phone: str | None = None
    website: str | None = None
    lang: str | None = None
    payment_term_days: int | None = None
    currency: str | None = None
    address: Address = Address()
    contacts: tuple[ContactPerson, ...] = ()
    tags: tuple[str, ...] = ()
    is_customer: bool = True
    is_supplier: bool = False
    blocked: bool = False
    marketing_allowed: bool | None = None
    updated_at: datetime | None = None

    @property
    def country_code(self) -> str | None:
        return self.address.country_code


class Deletion(_Record):
    """A record the remote reports as deleted since the last cursor."""

    external_id: str
    entity: str
    deleted_at: datetime | None = None


class Party(_Record):
    """Seller or buyer on an invoice, with the identifiers an e-invoice needs."""

    name: str
    vat: str | None = None
    company_registry: str | None = None
    registry_scheme: str | None = None
    endpoint_id: str | None = None
    endpoint_scheme: str | None = None
    address: Address = Address()
    contact_name: str | None = None
    email: str | None = None
    phone: str | None = None


class TaxSubtotal(_Record):
    """One line of the tax breakdown: one (category, rate) pair."""

    category: TaxCategory
    percent: Money
    taxable_amount: Money
    tax_amount: Money
    exemption_reason: str | None = None
    exemption_reason_code: str | None = None


class AllowanceCharge(_Record):
    """A document-level allowance (discount) or charge."""

    is_charge: bool
    amount: Money
    base_amount: Money | None = None
    percent: Money | None = None
    reason: str | None = None
    reason_code: str | None = None
    tax_category: TaxCategory = "S"
    tax_percent: Money = Decimal(0)


class InvoiceLine(_Record):
    """One invoice line; ``net_amount`` is quantity × price minus line allowances."""

    line_id: str
    name: str
    description: str | None = None
    quantity: Money
    unit_code: str = "C62"
    unit_price: Money
    price_base_quantity: Money | None = None
    net_amount: Money
    tax_category: TaxCategory = "S"
    tax_percent: Money = Decimal(0)
    exemption_reason: str | None = None
    exemption_reason_code: str | None = None
    seller_item_id: str | None = None
    account_code: str | None = None
    allowance_charges: tuple[AllowanceCharge, ...] = ()


class Invoice(_Record):
    """A customer invoice or credit note, as Odoo posts it or an e-invoice carries it.

    Amounts are positive on both invoices and credit notes; ``document_type`` gives
    the direction. Totals follow EN 16931: line total, allowances and charges, tax
    exclusive, tax, tax inclusive, prepaid, rounding, payable.
    """

    document_type: Literal["invoice", "credit_note"] = "invoice"
    number: str
    issue_date: date
    due_date: date | None = None
    tax_point_date: date | None = None
    #: Actual delivery date and deliver-to address (needed for intra-EU supplies, K).
    delivery_date: date | None = None
    delivery_address: Address | None = None
    currency: str = "EUR"
    type_code: str | None = None
    buyer_reference: str | None = None
    order_reference: str | None = None
    contract_reference: str | None = None
    billing_reference: str | None = None
    billing_reference_date: date | None = None
    note: str | None = None
    seller: Party
    buyer: Party
    lines: tuple[InvoiceLine, ...]
    allowance_charges: tuple[AllowanceCharge, ...] = ()
    tax_subtotals: tuple[TaxSubtotal, ...] = ()
    line_extension_amount: Money
    allowance_total_amount: Money = Decimal(0)
    charge_total_amount: Money = Decimal(0)
    tax_exclusive_amount: Money
    tax_amount: Money
    tax_inclusive_amount: Money
    prepaid_amount: Money = Decimal(0)
    payable_rounding_amount: Money = Decimal(0)
    payable_amount: Money
    payment_means_code: str | None = None
    payment_iban: str | None = None
    payment_bic: str | None = None
    payment_reference: str | None = None
    payment_terms: str | None = None
    odoo_id: int | None = None
    external_id: str | None = None
    #: The buyer's id in the target system when the customer is already linked.
    buyer_external_id: str | None = None
    attachments: tuple[tuple[str, str, bytes], ...] = Field(
        default=(), description="(filename, mime type, content) of embedded files"
    )


class PaymentStatus(_Record):
    """How far an invoice is paid, as the ledger sees it."""

    invoice_number: str
    external_id: str | None = None
    #: The customer's id in the remote, so open amounts can be summed per customer.
    customer_external_id: str | None = None
    state: Literal["not_paid", "partial", "paid", "reversed"]
    amount_residual: Money
    currency: str = "EUR"
    paid_on: date | None = None
    updated_at: datetime | None = None


class RemoteRef(_Record):
    """What the remote answered after a create or lookup."""

    external_id: str
    external_code: str | None = None
    created: bool = False
