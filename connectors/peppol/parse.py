"""Parse a UBL 2.1 Invoice or CreditNote into the canonical :class:`Invoice`.

Namespace-agnostic: every lookup goes through an explicit map of namespace URIs, so
the prefixes a sender chose (``cbc``, ``agg``, the default namespace, declarations
on inner elements) do not matter. Parsing is hardened (:mod:`.safexml`): no DTD, no
entities, no network, bounded size.

Canonical amounts are positive on invoices and credit notes alike; the sign lives
in ``document_type``. A UBL Invoice whose payable total is negative (a correction,
as in the official ``base-negative-inv-correction`` example) therefore becomes a
credit note with every amount negated, and a negative CreditNote an invoice. Lines
with their own negative quantity keep it.
"""

from __future__ import annotations

import base64
import binascii
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, cast, get_args

from lxml import etree
from pydantic import ValidationError

from sync_daemon.kernel.models import (
    Address,
    AllowanceCharge,
    Invoice,
    InvoiceLine,
    Party,
    TaxCategory,
    TaxSubtotal,
)

from .build import CREDIT_NOTE_NS, INVOICE_NS, NS
from .errors import DocumentError
from .safexml import DEFAULT_MAX_BYTES, parse_xml

__all__ = ["parse_document", "parse_tree"]

_Q6 = Decimal("0.000001")
_CATEGORIES = frozenset(get_args(TaxCategory))
_ROOTS = {
    f"{{{INVOICE_NS}}}Invoice": "invoice",
    f"{{{CREDIT_NOTE_NS}}}CreditNote": "credit_note",
}


class _Reader:
    """Small lookups on one element, all namespace-URI based."""

    def __init__(self, element: etree._Element, source: str) -> None:
        self.element = element
        self.source = source

    def at(self, path: str) -> _Reader | None:
        found = self.element.find(path, NS)
        return _Reader(found, self.source) if found is not None else None

    def all(self, path: str) -> list[_Reader]:
        return [_Reader(e, self.source) for e in self.element.findall(path, NS)]

    def text(self, path: str) -> str | None:
        value = self.element.findtext(path, None, NS)
        value = value.strip() if value else ""
        return value or None

    def attr(self, path: str, name: str) -> str | None:
        found = self.element.find(path, NS)
        return (found.get(name) or "").strip() or None if found is not None else None

    def decimal(self, path: str, *, default: Decimal | None = None) -> Decimal | None:
        value = self.text(path)
        if value is None:
            return default
        try:
            number = Decimal(value)
            if not number.is_finite():  # NaN, Infinity: no amount, and they
                raise InvalidOperation(value)  # break every comparison later
            return number.quantize(_Q6)
        except InvalidOperation as err:
            raise DocumentError(
                f"{path} is not a number: {value!r}", record=self.source, field=path
            ) from err

    def decimal_or_zero(self, path: str) -> Decimal:
        value = self.decimal(path)
        return Decimal(0) if value is None else value

    def category(self, path: str) -> TaxCategory:
        """A UNCL5305 VAT category code; S when absent."""
        value = (self.text(path) or "S").upper()
        if value not in _CATEGORIES:
            raise DocumentError(
                f"{path} is not a known VAT category: {value!r}",
                record=self.source,
                field=path,
            )
        return cast(TaxCategory, value)

    def required_decimal(self, path: str) -> Decimal:
        value = self.decimal(path)
        if value is None:
            raise DocumentError(f"{path} is missing", record=self.source, field=path)
        return value

    def date(self, path: str) -> date | None:
        value = self.text(path)
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError as err:
            raise DocumentError(
                f"{path} is not a YYYY-MM-DD date: {value!r}",
                record=self.source,
                field=path,
            ) from err


def _address(node: _Reader | None) -> Address:
    if node is None:
        return Address()
    return Address(
        street=node.text("cbc:StreetName"),
        street2=node.text("cbc:AdditionalStreetName"),
        city=node.text("cbc:CityName"),
        zip=node.text("cbc:PostalZone"),
        state=node.text("cbc:CountrySubentity"),
        country_code=node.text("cac:Country/cbc:IdentificationCode"),
    )


def _party(node: _Reader | None, role: str) -> Party:
    if node is None:
        raise DocumentError(f"the {role} party is missing", record=role, field=role)
    vat = None
    for scheme in node.all("cac:PartyTaxScheme"):
        if (scheme.text("cac:TaxScheme/cbc:ID") or "").upper() == "VAT":
            vat = scheme.text("cbc:CompanyID")
            break
    name = node.text("cac:PartyLegalEntity/cbc:RegistrationName") or node.text(
        "cac:PartyName/cbc:Name"
    )
    if not name:
        raise DocumentError(
            f"the {role} has no name", record=node.source, field=f"{role}.name"
        )
    return Party(
        name=name,
        vat=vat,
        company_registry=node.text("cac:PartyLegalEntity/cbc:CompanyID"),
        registry_scheme=node.attr("cac:PartyLegalEntity/cbc:CompanyID", "schemeID"),
        endpoint_id=node.text("cbc:EndpointID"),
        endpoint_scheme=node.attr("cbc:EndpointID", "schemeID"),
        address=_address(node.at("cac:PostalAddress")),
        contact_name=node.text("cac:Contact/cbc:Name"),
        email=node.text("cac:Contact/cbc:ElectronicMail"),
        phone=node.text("cac:Contact/cbc:Telephone"),
    )


def _allowance(node: _Reader, *, sign: int) -> AllowanceCharge:
    is_charge = (node.text("cbc:ChargeIndicator") or "").lower() == "true"
    base = node.decimal("cbc:BaseAmount")
    return AllowanceCharge(
        is_charge=is_charge,
        amount=sign * node.required_decimal("cbc:Amount"),
        base_amount=sign * base if base is not None else None,
        percent=node.decimal("cbc:MultiplierFactorNumeric"),
        reason=node.text("cbc:AllowanceChargeReason"),
        reason_code=node.text("cbc:AllowanceChargeReasonCode"),
        tax_category=node.category("cac:TaxCategory/cbc:ID"),
        tax_percent=node.decimal_or_zero("cac:TaxCategory/cbc:Percent"),
    )


def _line(node: _Reader, *, credit: bool, sign: int) -> InvoiceLine:
    quantity_path = "cbc:CreditedQuantity" if credit else "cbc:InvoicedQuantity"
    name = node.text("cac:Item/cbc:Name")
    line_id = node.text("cbc:ID") or ""
    if not name:
        raise DocumentError(
            f"line {line_id} has no item name", record=node.source, field="Item/Name"
        )
    return InvoiceLine(
        line_id=line_id,
        name=name,
        description=node.text("cac:Item/cbc:Description"),
        quantity=sign * node.required_decimal(quantity_path),
        unit_code=node.attr(quantity_path, "unitCode") or "C62",
        unit_price=node.required_decimal("cac:Price/cbc:PriceAmount"),
        price_base_quantity=node.decimal("cac:Price/cbc:BaseQuantity"),
        net_amount=sign * node.required_decimal("cbc:LineExtensionAmount"),
        tax_category=node.category("cac:Item/cac:ClassifiedTaxCategory/cbc:ID"),
        tax_percent=node.decimal_or_zero(
            "cac:Item/cac:ClassifiedTaxCategory/cbc:Percent"
        ),
        seller_item_id=node.text("cac:Item/cac:SellersItemIdentification/cbc:ID"),
        account_code=node.text("cbc:AccountingCost"),
        allowance_charges=tuple(
            _allowance(a, sign=sign) for a in node.all("cac:AllowanceCharge")
        ),
    )


def _tax_total(doc: _Reader, currency: str) -> _Reader | None:
    """The TaxTotal in the document currency (a second one may be in tax currency)."""
    totals = doc.all("cac:TaxTotal")
    for total in totals:
        if total.attr("cbc:TaxAmount", "currencyID") == currency:
            return total
    with_subtotals = [t for t in totals if t.at("cac:TaxSubtotal") is not None]
    chosen = with_subtotals or totals
    return chosen[0] if chosen else None


def _attachments(doc: _Reader) -> tuple[tuple[str, str, bytes], ...]:
    found = []
    for ref in doc.all("cac:AdditionalDocumentReference"):
        obj = ref.at("cac:Attachment/cbc:EmbeddedDocumentBinaryObject")
        if obj is None or not (obj.element.text or "").strip():
            continue
        try:
            content = base64.b64decode(obj.element.text or "", validate=False)
        except (binascii.Error, ValueError) as err:
            raise DocumentError(
                "an embedded attachment is not valid base64",
                record=doc.source,
                field="EmbeddedDocumentBinaryObject",
            ) from err
        filename = obj.element.get("filename") or ref.text("cbc:ID") or "attachment"
        found.append(
            (
                filename,
                obj.element.get("mimeCode") or "application/octet-stream",
                content,
            )
        )
    return tuple(found)


def parse_tree(tree: etree._ElementTree, *, source: str = "document") -> Invoice:
    """Map a parsed UBL document to the canonical invoice.

    :raises DocumentError: naming the document and the field, also for a value
        refused by a nested model (a line's quantity, an address's country).
    """
    try:
        return _parse_tree(tree, source)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        number = tree.getroot().findtext("cbc:ID", None, NS)
        record = f"{source} ({number.strip()})" if number else source
        raise DocumentError(
            f"cannot map the document: {err.title}.{where}: {first['msg']}",
            record=record,
            field=f"{err.title}.{where}",
        ) from err


def _parse_tree(tree: etree._ElementTree, source: str) -> Invoice:
    root = tree.getroot()
    kind = _ROOTS.get(root.tag)
    if kind is None:
        raise DocumentError(
            f"not a UBL 2.1 Invoice or CreditNote (root {root.tag})",
            record=source,
            field="root",
        )
    doc = _Reader(root, source)
    number = doc.text("cbc:ID")
    if not number:
        raise DocumentError("the document has no ID", record=source, field="ID")
    doc.source = f"{source} ({number})"
    currency = doc.text("cbc:DocumentCurrencyCode") or "EUR"
    credit = kind == "credit_note"
    payable = doc.required_decimal("cac:LegalMonetaryTotal/cbc:PayableAmount")
    tax_exclusive = doc.required_decimal(
        "cac:LegalMonetaryTotal/cbc:TaxExclusiveAmount"
    )
    # A negative total turns the direction around; amounts become positive.
    flip = payable < 0 or (payable == 0 and tax_exclusive < 0)
    sign = -1 if flip else 1
    document_type = kind
    if flip:
        document_type = "invoice" if credit else "credit_note"

    total = _tax_total(doc, currency)
    subtotals = []
    for sub in total.all("cac:TaxSubtotal") if total else []:
        subtotals.append(
            TaxSubtotal(
                category=sub.category("cac:TaxCategory/cbc:ID"),
                percent=sub.decimal_or_zero("cac:TaxCategory/cbc:Percent"),
                taxable_amount=sign * sub.required_decimal("cbc:TaxableAmount"),
                tax_amount=sign * sub.required_decimal("cbc:TaxAmount"),
                exemption_reason=sub.text("cac:TaxCategory/cbc:TaxExemptionReason"),
                exemption_reason_code=sub.text(
                    "cac:TaxCategory/cbc:TaxExemptionReasonCode"
                ),
            )
        )

    def money(path: str) -> Decimal:
        value = doc.decimal(f"cac:LegalMonetaryTotal/cbc:{path}", default=Decimal(0))
        return sign * (value or Decimal(0))

    line_path = "cac:CreditNoteLine" if credit else "cac:InvoiceLine"
    means = doc.at("cac:PaymentMeans")
    values: dict[str, Any] = {
        "document_type": document_type,
        "number": number,
        "issue_date": doc.date("cbc:IssueDate"),
        "due_date": doc.date("cbc:DueDate")
        or doc.date("cac:PaymentMeans/cbc:PaymentDueDate"),
        "tax_point_date": doc.date("cbc:TaxPointDate"),
        "delivery_date": doc.date("cac:Delivery/cbc:ActualDeliveryDate"),
        "delivery_address": _address(
            doc.at("cac:Delivery/cac:DeliveryLocation/cac:Address")
        )
        if doc.at("cac:Delivery/cac:DeliveryLocation/cac:Address") is not None
        else None,
        "currency": currency,
        "type_code": doc.text(
            "cbc:CreditNoteTypeCode" if credit else "cbc:InvoiceTypeCode"
        ),
        "buyer_reference": doc.text("cbc:BuyerReference"),
        "order_reference": doc.text("cac:OrderReference/cbc:ID"),
        "contract_reference": doc.text("cac:ContractDocumentReference/cbc:ID"),
        "billing_reference": doc.text(
            "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID"
        ),
        "billing_reference_date": doc.date(
            "cac:BillingReference/cac:InvoiceDocumentReference/cbc:IssueDate"
        ),
        "note": doc.text("cbc:Note"),
        "seller": _party(doc.at("cac:AccountingSupplierParty/cac:Party"), "seller"),
        "buyer": _party(doc.at("cac:AccountingCustomerParty/cac:Party"), "buyer"),
        "lines": tuple(
            _line(node, credit=credit, sign=sign) for node in doc.all(line_path)
        ),
        "allowance_charges": tuple(
            _allowance(a, sign=sign) for a in doc.all("cac:AllowanceCharge")
        ),
        "tax_subtotals": tuple(subtotals),
        "line_extension_amount": money("LineExtensionAmount"),
        "allowance_total_amount": money("AllowanceTotalAmount"),
        "charge_total_amount": money("ChargeTotalAmount"),
        "tax_exclusive_amount": sign * tax_exclusive,
        "tax_amount": sign * (total.decimal("cbc:TaxAmount") or 0) if total else 0,
        "tax_inclusive_amount": money("TaxInclusiveAmount"),
        "prepaid_amount": money("PrepaidAmount"),
        "payable_rounding_amount": money("PayableRoundingAmount"),
        "payable_amount": sign * payable,
        "payment_means_code": means.text("cbc:PaymentMeansCode") if means else None,
        "payment_iban": means.text("cac:PayeeFinancialAccount/cbc:ID")
        if means
        else None,
        "payment_bic": means.text(
            "cac:PayeeFinancialAccount/cac:FinancialInstitutionBranch/cbc:ID"
        )
        if means
        else None,
        "payment_reference": means.text("cbc:PaymentID") if means else None,
        "payment_terms": doc.text("cac:PaymentTerms/cbc:Note"),
        "attachments": _attachments(doc),
    }
    if values["issue_date"] is None:
        raise DocumentError(
            "IssueDate is missing", record=doc.source, field="IssueDate"
        )
    try:
        return Invoice(**values)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DocumentError(
            f"cannot map the document: {where}: {first['msg']}",
            record=doc.source,
            field=where,
        ) from err


def parse_document(
    data: bytes | str,
    *,
    source: str = "document",
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Invoice:
    """Parse untrusted UBL bytes into the canonical invoice.

    :raises UnsafeDocument: DTD/entity declarations or more than ``max_bytes``.
    :raises DocumentError: not XML, not UBL, or a required value is missing.
    """
    return parse_tree(
        parse_xml(data, source=source, max_bytes=max_bytes), source=source
    )
