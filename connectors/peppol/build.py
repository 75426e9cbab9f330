"""Build Peppol BIS Billing 3.0 UBL documents from a canonical invoice.

The document is assembled in two stages, as in most UBL exporters:

1. small builder functions, one per document part (``party_vals``,
   ``tax_total_vals``, ``line_vals``…), each returning plain data: a dict whose keys
   are UBL element names (``"cbc:ID"``) in schema order and whose values are text,
   ``(text, attributes)`` pairs, nested dicts or lists of repeated elements;
2. one renderer (:func:`render`) that turns that data into lxml elements, leaving out
   empty values so no empty element is ever written (PEPPOL-EN16931-R008).

Amounts are recomputed from the lines, per (VAT category, rate), and rounded once
per group, so the totals rules hold whatever the ledger's rounding setting was
(BR-CO-10, -13, -14, -15, -16, BR-S-08). When the ledger's tax for a group is within
the tolerance of BR-S-09 / BR-CO-17, the ledger's figure is kept so the payable
amount equals what the customer owes in the books (Odoo "round per line").

Participant identifiers follow the partner's country: Belgium 0208 (enterprise
number, 10 digits) or 9925 (VAT); the Netherlands 0106 (KvK) or 0190 (OIN); France
0009 (SIRET) or 0002 (SIREN); Norway 0192; Sweden 0007; Denmark 0184; GLN 0088.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from lxml import etree
from stdnum import ean

from sync_daemon.kernel.identifiers import (
    InvalidIdentifier,
    compact_registry,
    compact_vat,
    validate_peppol_id,
    validate_registry,
)
from sync_daemon.kernel.models import (
    Address,
    AllowanceCharge,
    Invoice,
    InvoiceLine,
    Party,
    TaxSubtotal,
)

from .errors import InvoiceDataError

__all__ = [
    "CREDIT_NOTE_NS",
    "CUSTOMIZATION_ID",
    "INVOICE_NS",
    "NS",
    "PROFILE_ID",
    "PartyIds",
    "TaxGroup",
    "Totals",
    "build_document",
    "document_vals",
    "line_net_price",
    "party_identifiers",
    "render",
    "resolve_buyer_reference",
    "tax_breakdown",
]

_logger = logging.getLogger(__name__)

CUSTOMIZATION_ID = (
    "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
)
PROFILE_ID = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
INVOICE_NS = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
CREDIT_NOTE_NS = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
NS = {
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
}

CENT = Decimal("0.01")
#: Half a cent: the largest gap allowed between quantity × price and a line net.
_PRICE_SLACK = Decimal("0.005")
#: Largest gap between the ledger's group tax and ours that we still keep (BR-S-09
#: tolerates less than 1 unit; half of it leaves room for the validator's rounding).
_LEDGER_TAX_SLACK = Decimal("0.50")

#: Default exemption reason (code, text) per category; E needs the invoice's own.
_EXEMPTION_DEFAULTS: dict[str, tuple[str, str]] = {
    "AE": ("VATEX-EU-AE", "Reverse charge"),  # BR-AE-10, PEPPOL-EN16931-P0107
    "K": ("VATEX-EU-IC", "Intra-Community supply"),  # BR-IC-10, P0106
    "G": ("VATEX-EU-G", "Export outside the EU"),  # BR-G-10, P0104
    "O": ("VATEX-EU-O", "Not subject to VAT"),  # BR-O-10
}
#: Categories whose rate is always 0 (BR-Z-05, BR-E-05, BR-AE-05, BR-IC-05, BR-G-05).
_ZERO_RATED = {"Z", "E", "AE", "K", "G"}

#: EAS code of the VAT-number scheme per country (the 99xx block of the EAS list).
VAT_SCHEME_BY_COUNTRY = {
    "AT": "9914",
    "BE": "9925",
    "BG": "9926",
    "CY": "9928",
    "CZ": "9929",
    "DE": "9930",
    "EE": "9931",
    "ES": "9920",
    "GB": "9932",
    "GR": "9933",
    "HR": "9934",
    "HU": "9910",
    "IE": "9935",
    "LT": "9937",
    "LU": "9938",
    "LV": "9939",
    "MT": "9943",
    "NL": "9944",
    "PL": "9945",
    "PT": "9946",
    "RO": "9947",
    "SI": "9949",
    "SK": "9950",
    "FR": "9957",
}

Vals = dict[str, Any]


# ------------------------------------------------------------------ small helpers


def _round(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _num(value: Decimal) -> str:
    """A decimal as plain text, without exponent or trailing zeros (``21``, ``0.5``)."""
    text = format(value.normalize(), "f")
    return "0" if text in {"-0", ""} else text


def _amount(value: Decimal, currency: str) -> tuple[str, dict[str, str]]:
    """An amount with exactly two decimals and its currency (BR-DEC-*, R051)."""
    return (str(_round(value)), {"currencyID": currency})


def _record(invoice: Invoice) -> str:
    return f"invoice {invoice.number}"


def _exemption(category: str, code: str | None, text: str | None) -> tuple[str, str]:
    """The exemption (code, text) a category must or must not carry."""
    if category in {"S", "Z"}:
        return ("", "")  # BR-S-10, BR-Z-10: no exemption reason at all
    default_code, default_text = _EXEMPTION_DEFAULTS.get(category, ("", ""))
    return (code or default_code, text or ("" if code else default_text))


# ----------------------------------------------------------------- buyer reference


def resolve_buyer_reference(
    number: str,
    *,
    sale_order_ref: str | None = None,
    invoice_ref: str | None = None,
    partner_default: str | None = None,
    order_reference: str | None = None,
) -> str:
    """The buyer reference (BT-10) from the first source that has one.

    Sources in order: the sale order's customer reference, the invoice's own
    reference, the partner's default. PEPPOL-EN16931-R003 accepts an order reference
    instead, so with ``order_reference`` set an empty string is returned; with none
    of them the invoice is refused, naming it.
    """
    for candidate in (sale_order_ref, invoice_ref, partner_default):
        if candidate and str(candidate).strip():
            return str(candidate).strip()
    if order_reference and order_reference.strip():
        return ""
    raise InvoiceDataError(
        f"{number}: buyer reference or order reference required",
        record=f"invoice {number}",
        field="buyer_reference",
        details={"rule": "PEPPOL-EN16931-R003"},
    )


# ------------------------------------------------------------------ identifiers


@dataclass(frozen=True)
class PartyIds:
    """The identifiers written for one party."""

    endpoint_scheme: str
    endpoint_id: str
    legal_scheme: str | None
    legal_id: str | None
    vat: str | None

    @property
    def participant_id(self) -> str:
        return f"{self.endpoint_scheme}:{self.endpoint_id}"


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _registry_from_vat(vat: str, country: str) -> str | None:
    """The national company number hidden in a VAT number, where there is one."""
    if not vat:
        return None
    body = vat[2:] if vat[:2].isalpha() else vat
    digits = _digits(body)
    if country in {"BE", "DK", "NO"}:
        return digits or None
    if country == "SE" and len(digits) == 12:
        return digits[:10]  # SE + orgnr + 01
    if country == "FR" and len(digits) == 11:
        return digits[2:]  # FR + 2 check digits + SIREN
    return None


#: Legal-id scheme per country, for the countries whose registry we know.
_LEGAL_SCHEME = {
    "BE": "0208",
    "NL": "0106",
    "FR": "0002",
    "NO": "0192",
    "SE": "0007",
    "DK": "0184",
}
#: Registries whose Peppol rule checks only the shape (digits and length), not a
#: check digit (PEPPOL-COMMON-R042 for DK; none for NL KvK and FR SIREN/SIRET).
_SHAPE_ONLY = {"NL": (8,), "DK": (8,), "FR": (9, 14)}


def _registry_number(number: str, country: str) -> str:
    """The registry number checked as strictly as the Peppol rules check it.

    BE (R043), SE (R049) and NO (R041) must pass their check digit; NL, DK and FR
    numbers of the right length are accepted even when python-stdnum's checksum
    disagrees (some issued numbers do not follow it).
    """
    try:
        return validate_registry(number, country)
    except InvalidIdentifier:
        digits = _digits(compact_registry(number, country))
        if len(digits) in _SHAPE_ONLY.get(country, ()):
            return digits
        raise


def _legal_id(
    party: Party, country: str, vat: str | None, record: str
) -> tuple[str, str] | None:
    """(scheme, id) of the legal registration (BT-30 / BT-47), when known."""
    registry = party.company_registry
    scheme = (party.registry_scheme or "").strip() or None
    source = "company_registry" if registry else "vat"
    try:
        if scheme == "0190" and registry:  # NL OIN, 20 digits
            return ("0190", _digits(registry))
        if scheme == "0088":
            return None  # a GLN identifies a location, not a legal entity
        national = _LEGAL_SCHEME.get(country)
        if national and (scheme is None or scheme in {national, "0009"}):
            number = registry or _registry_from_vat(vat or "", country)
            if not number:
                return None
            number = _registry_number(number, country)
            if country == "FR":
                return ("0002", number[:9])  # legal id is the SIREN
            return (national, number)
    except InvalidIdentifier as err:
        raise InvoiceDataError(
            f"invalid {source.replace('_', ' ')} {err.value!r}: {err.reason}",
            record=record,
            field=source,
        ) from err
    if registry:
        return (scheme or "", registry.strip())
    return None


#: Registry schemes whose Peppol rule checks only the shape, with their country.
_SHAPE_ONLY_SCHEMES = {"0184": "DK", "0106": "NL", "0002": "FR", "0009": "FR"}


def _shape_only_endpoint(value: str, scheme: str | None) -> str | None:
    """``scheme:id`` for a registry id that Peppol accepts by shape, else None."""
    text = f"{scheme}:{value}" if scheme else str(value)
    head, _, ident = text.strip().partition(":")
    country = _SHAPE_ONLY_SCHEMES.get(head.strip())
    if country is None:
        return None
    digits = _digits(compact_registry(ident, country))
    if len(digits) in _SHAPE_ONLY[country] and digits == _digits(ident):
        return f"{head.strip()}:{digits}"
    return None


def _endpoint(
    party: Party,
    country: str,
    vat: str | None,
    legal: tuple[str, str] | None,
    record: str,
) -> tuple[str, str]:
    """(scheme, id) of the electronic address (BT-34 / BT-49)."""
    if party.endpoint_id:
        try:
            pid = validate_peppol_id(party.endpoint_id, party.endpoint_scheme)
        except InvalidIdentifier as err:
            shaped = _shape_only_endpoint(party.endpoint_id, party.endpoint_scheme)
            if shaped is None:
                raise InvoiceDataError(
                    f"invalid Peppol endpoint {party.endpoint_id!r}: {err.reason}",
                    record=record,
                    field="endpoint_id",
                ) from err
            pid = shaped
        scheme, _, ident = pid.partition(":")
        if scheme == "0088" and not ean.is_valid(ident):  # PEPPOL-COMMON-R040
            raise InvoiceDataError(
                f"invalid GLN {party.endpoint_id!r}: wrong check digit",
                record=record,
                field="endpoint_id",
            )
        return scheme, ident
    if party.registry_scheme == "0088" and party.company_registry:
        gln = _digits(party.company_registry)
        if not ean.is_valid(gln) or len(gln) != 13:  # PEPPOL-COMMON-R040
            raise InvoiceDataError(
                f"invalid GLN {party.company_registry!r}: 13 digits with a valid "
                "check digit expected",
                record=record,
                field="company_registry",
            )
        return "0088", gln
    if country == "FR" and party.company_registry:
        number = _digits(party.company_registry)
        if len(number) == 14:
            return "0009", number  # SIRET addresses an establishment
    if legal and legal[0] in {"0208", "0106", "0190", "0192", "0007", "0184", "0002"}:
        return legal
    national = _LEGAL_SCHEME.get(country)
    from_vat = _registry_from_vat(vat or "", country) if national else None
    if national and from_vat:
        try:
            number = _registry_number(from_vat, country)
        except InvalidIdentifier:
            number = ""
        if number:
            return ("0002", number[:9]) if country == "FR" else (national, number)
    if vat and country in VAT_SCHEME_BY_COUNTRY:
        return VAT_SCHEME_BY_COUNTRY[country], vat
    raise InvoiceDataError(
        "no Peppol endpoint: give a Peppol id, a company registry or a VAT number",
        record=record,
        field="endpoint_id",
    )


def party_identifiers(party: Party, *, record: str | None = None) -> PartyIds:
    """Endpoint, legal registration and VAT id of a party, per its country.

    :param record: how errors name the party (default: its name).
    """
    record = record or party.name
    country = (party.address.country_code or "").upper()
    vat = compact_vat(party.vat, country) if party.vat else None
    if vat and vat.startswith("NO") and not vat.endswith("MVA"):
        vat += "MVA"  # NO-R-001: Norwegian VAT ids end in MVA
    legal = _legal_id(party, country, vat, record)
    scheme, ident = _endpoint(party, country, vat, legal, record)
    return PartyIds(
        endpoint_scheme=scheme,
        endpoint_id=ident,
        legal_scheme=legal[0] if legal else None,
        legal_id=legal[1] if legal else None,
        vat=vat,
    )


# -------------------------------------------------------------------- amounts


def line_net_price(line: InvoiceLine) -> tuple[Decimal, Decimal]:
    """(quantity, net unit price) so that PEPPOL-EN16931-R120 holds.

    The ledger's unit price may include tax or a discount; when quantity × price does
    not give the line net within half a cent, the price is derived from the net with
    as many decimals as needed (four for C024's 428.10 / 40 = 10.7025). A negative
    price is not allowed (BR-27): the sign moves to the quantity.
    """
    quantity = line.quantity
    base = line.price_base_quantity or Decimal(1)
    charges = sum((a.amount for a in line.allowance_charges if a.is_charge), Decimal(0))
    allowances = sum(
        (a.amount for a in line.allowance_charges if not a.is_charge), Decimal(0)
    )
    target = _round(line.net_amount) - _round(charges) + _round(allowances)
    price = line.unit_price
    if quantity and abs(quantity * price / base - target) > _PRICE_SLACK:
        for places in range(2, 11):
            price = (target * base / quantity).quantize(
                Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP
            )
            if abs(quantity * price / base - target) <= _PRICE_SLACK:
                break
    if price < 0:
        quantity, price = -quantity, -price
    return quantity, price


@dataclass(frozen=True)
class TaxGroup:
    """One VAT breakdown line (BG-23)."""

    category: str
    percent: Decimal
    taxable: Decimal
    tax: Decimal
    exemption_code: str
    exemption_text: str


@dataclass(frozen=True)
class Totals:
    """Document totals (BG-22), all rounded to cents."""

    line_extension: Decimal
    allowances: Decimal
    charges: Decimal
    tax_exclusive: Decimal
    tax: Decimal
    tax_inclusive: Decimal
    prepaid: Decimal
    rounding: Decimal
    payable: Decimal


def _percent(category: str, percent: Decimal) -> Decimal:
    return Decimal(0) if category in _ZERO_RATED or category == "O" else percent


def tax_breakdown(invoice: Invoice) -> list[TaxGroup]:
    """VAT breakdown per (category, rate): taxable summed, tax rounded once.

    taxable = Σ line nets + charges − allowances of the group (BR-S-08 and its
    siblings for other categories); tax = taxable × rate, rounded half up (BR-CO-17),
    unless the ledger's own figure for the group is within tolerance (see module doc).
    """
    taxable: dict[tuple[str, Decimal], Decimal] = {}
    reasons: dict[tuple[str, Decimal], tuple[str | None, str | None]] = {}
    key: tuple[str, Decimal]
    for line in invoice.lines:
        key = (line.tax_category, _percent(line.tax_category, line.tax_percent))
        taxable[key] = taxable.get(key, Decimal(0)) + _round(line.net_amount)
        if line.exemption_reason or line.exemption_reason_code:
            reasons.setdefault(key, (line.exemption_reason_code, line.exemption_reason))
    for item in invoice.allowance_charges:
        key = (item.tax_category, _percent(item.tax_category, item.tax_percent))
        sign = 1 if item.is_charge else -1
        taxable[key] = taxable.get(key, Decimal(0)) + sign * _round(item.amount)
    ledger: dict[tuple[str, Decimal], TaxSubtotal] = {
        (sub.category, _percent(sub.category, sub.percent)): sub
        for sub in invoice.tax_subtotals
    }
    groups = []
    for key, base in taxable.items():
        category, percent = key
        tax = _round(base * percent / 100)
        booked = ledger.get(key)
        if booked is not None and abs(_round(booked.tax_amount) - tax) <= (
            _LEDGER_TAX_SLACK
        ):
            tax = _round(booked.tax_amount)
        code, text = reasons.get(key, (None, None))
        if booked is not None and not (code or text):
            code, text = booked.exemption_reason_code, booked.exemption_reason
        code, text = _exemption(category, code, text)
        if category == "E" and not (code or text):
            raise InvoiceDataError(
                "an exempt (E) line needs an exemption reason or code (BR-E-10)",
                record=_record(invoice),
                field="exemption_reason",
            )
        groups.append(TaxGroup(category, percent, base, tax, code, text))
    return groups


def document_totals(invoice: Invoice, groups: Iterable[TaxGroup]) -> Totals:
    """Totals derived from the rounded lines and groups (BR-CO-10/13/14/15/16)."""
    line_extension = sum((_round(ln.net_amount) for ln in invoice.lines), Decimal(0))
    allowances = sum(
        (_round(a.amount) for a in invoice.allowance_charges if not a.is_charge),
        Decimal(0),
    )
    charges = sum(
        (_round(a.amount) for a in invoice.allowance_charges if a.is_charge),
        Decimal(0),
    )
    tax_exclusive = line_extension - allowances + charges
    tax = sum((g.tax for g in groups), Decimal(0))
    tax_inclusive = tax_exclusive + tax
    prepaid = _round(invoice.prepaid_amount)
    rounding = _round(invoice.payable_rounding_amount)
    payable = tax_inclusive - prepaid + rounding
    if payable != _round(invoice.payable_amount):
        _logger.debug(
            "%s: payable %s recomputed from the lines (ledger said %s)",
            invoice.number,
            payable,
            invoice.payable_amount,
        )
    return Totals(
        line_extension,
        allowances,
        charges,
        tax_exclusive,
        tax,
        tax_inclusive,
        prepaid,
        rounding,
        payable,
    )


# ------------------------------------------------------------- builder functions


def header_vals(invoice: Invoice, buyer_reference: str) -> Vals:
    """Identification, dates, type code, note, currency and references."""
    credit = invoice.document_type == "credit_note"
    vals: Vals = {
        "cbc:CustomizationID": CUSTOMIZATION_ID,  # PEPPOL-EN16931-R004
        "cbc:ProfileID": PROFILE_ID,  # PEPPOL-EN16931-R001/R007
        "cbc:ID": invoice.number,
        "cbc:IssueDate": invoice.issue_date.isoformat(),
    }
    if credit:
        # UBL 2.1 CreditNote has no DueDate; BT-9 goes in PaymentMeans instead.
        vals["cbc:TaxPointDate"] = _date(invoice.tax_point_date)
        vals["cbc:CreditNoteTypeCode"] = invoice.type_code or "381"
        vals["cbc:Note"] = invoice.note  # at most one (PEPPOL-EN16931-R002)
    else:
        vals["cbc:DueDate"] = _date(invoice.due_date)
        vals["cbc:InvoiceTypeCode"] = invoice.type_code or "380"
        vals["cbc:Note"] = invoice.note
        vals["cbc:TaxPointDate"] = _date(invoice.tax_point_date)
    vals["cbc:DocumentCurrencyCode"] = invoice.currency
    vals["cbc:BuyerReference"] = buyer_reference or None
    vals["cac:OrderReference"] = {"cbc:ID": invoice.order_reference}
    if invoice.billing_reference:
        vals["cac:BillingReference"] = {
            "cac:InvoiceDocumentReference": {
                "cbc:ID": invoice.billing_reference,
                "cbc:IssueDate": _date(invoice.billing_reference_date),
            }
        }
    vals["cac:ContractDocumentReference"] = {"cbc:ID": invoice.contract_reference}
    vals["cac:AdditionalDocumentReference"] = attachment_vals(invoice)
    return vals


def _date(value: Any) -> str | None:
    return value.isoformat() if value else None


def attachment_vals(invoice: Invoice) -> list[Vals]:
    """Embedded files (BG-24), e.g. the PDF rendering of the invoice."""
    return [
        {
            "cbc:ID": filename,
            "cac:Attachment": {
                "cbc:EmbeddedDocumentBinaryObject": (
                    base64.b64encode(content).decode("ascii"),
                    {"mimeCode": mime, "filename": filename},
                )
            },
        }
        for filename, mime, content in invoice.attachments
    ]


def address_vals(address: Address, *, record: str) -> Vals:
    """A postal address; the country is mandatory (BR-09, BR-11)."""
    if not address.country_code:
        raise InvoiceDataError(
            "the address has no country", record=record, field="country_code"
        )
    return {
        "cbc:StreetName": address.street,
        "cbc:AdditionalStreetName": address.street2,
        "cbc:CityName": address.city,
        "cbc:PostalZone": address.zip,
        "cbc:CountrySubentity": address.state,
        "cac:Country": {"cbc:IdentificationCode": address.country_code},
    }


def party_vals(party: Party, *, with_vat: bool, record: str) -> Vals:
    """A seller or buyer party with endpoint, address, VAT and legal ids."""
    ids = party_identifiers(party, record=record)
    vals: Vals = {
        # PEPPOL-EN16931-R010/R020; the scheme must be on the EAS list (CL008)
        "cbc:EndpointID": (ids.endpoint_id, {"schemeID": ids.endpoint_scheme}),
        # a GLN also identifies the party (BT-29/BT-46), which helps BR-CO-26
        "cac:PartyIdentification": {
            "cbc:ID": (ids.endpoint_id, {"schemeID": "0088"})
            if ids.endpoint_scheme == "0088"
            else None
        },
        "cac:PartyName": {"cbc:Name": party.name},
        "cac:PostalAddress": address_vals(party.address, record=record),
    }
    if with_vat and ids.vat:
        # BR-CO-09: the VAT id carries its ISO prefix (Greece: EL)
        vals["cac:PartyTaxScheme"] = {
            "cbc:CompanyID": ids.vat,
            "cac:TaxScheme": {"cbc:ID": "VAT"},
        }
    legal_id: tuple[str, dict[str, str]] | None = None
    if ids.legal_id:
        attrs = {"schemeID": ids.legal_scheme} if ids.legal_scheme else {}
        legal_id = (ids.legal_id, attrs)
    vals["cac:PartyLegalEntity"] = {
        "cbc:RegistrationName": party.name,  # BR-06, BR-07
        "cbc:CompanyID": legal_id,
    }
    vals["cac:Contact"] = {
        "cbc:Name": party.contact_name,
        "cbc:Telephone": party.phone,
        "cbc:ElectronicMail": party.email,
    }
    return vals


def delivery_vals(invoice: Invoice, groups: list[TaxGroup]) -> Vals | None:
    """Delivery date and deliver-to address; required for K (BR-IC-11, BR-IC-12)."""
    intra_community = any(g.category == "K" for g in groups)
    if not (intra_community or invoice.delivery_date or invoice.delivery_address):
        return None
    if intra_community and not (invoice.delivery_date or invoice.tax_point_date):
        raise InvoiceDataError(
            "an intra-Community supply (K) needs the delivery date (BR-IC-11)",
            record=_record(invoice),
            field="delivery_date",
        )
    address = invoice.delivery_address
    if address is None and intra_community:
        address = invoice.buyer.address  # goods delivered to the buyer's address
    delivered = invoice.delivery_date
    if delivered is None and intra_community:
        delivered = invoice.tax_point_date
    return {
        "cbc:ActualDeliveryDate": _date(delivered),
        "cac:DeliveryLocation": {
            "cac:Address": address_vals(address, record=_record(invoice))
            if address
            else None
        },
    }


def payment_vals(invoice: Invoice) -> tuple[Vals | None, Vals | None]:
    """PaymentMeans (BG-16) and PaymentTerms (BT-20)."""
    iban = "".join((invoice.payment_iban or "").split()).upper() or None
    domestic_dk = (
        invoice.seller.address.country_code == "DK"
        and invoice.buyer.address.country_code == "DK"
    )
    # DK-R-005: between Danish parties 30 is not allowed; 58 (SEPA) is
    transfer = "58" if domestic_dk else "30"
    code = invoice.payment_means_code or (transfer if iban else None)
    credit = invoice.document_type == "credit_note"
    if code is None and not credit:
        code = "1"  # instrument not defined; BR-49 wants a code on invoices
    means: Vals | None = None
    if code:
        means = {
            "cbc:PaymentMeansCode": code,
            "cbc:PaymentDueDate": _date(invoice.due_date) if credit else None,
            "cbc:PaymentID": invoice.payment_reference,
            "cac:PayeeFinancialAccount": {  # BR-61: IBAN for codes 30 and 58
                "cbc:ID": iban,
                "cac:FinancialInstitutionBranch": {"cbc:ID": invoice.payment_bic},
            }
            if iban
            else None,
        }
    terms = {"cbc:Note": invoice.payment_terms} if invoice.payment_terms else None
    return means, terms


def _tax_category_vals(
    category: str,
    percent: Decimal,
    *,
    code: str = "",
    text: str = "",
    tag_percent: bool = True,
) -> Vals:
    return {
        "cbc:ID": category,
        # BR-O-05 and friends: category O carries no rate at all
        "cbc:Percent": _num(percent) if tag_percent and category != "O" else None,
        "cbc:TaxExemptionReasonCode": code or None,
        "cbc:TaxExemptionReason": text or None,
        "cac:TaxScheme": {"cbc:ID": "VAT"},
    }


def allowance_charge_vals(
    item: AllowanceCharge, currency: str, *, document_level: bool
) -> Vals:
    """A document or line allowance/charge; a reason is mandatory (BR-33, BR-38)."""
    reason = item.reason or (None if item.reason_code else _default_reason(item))
    vals: Vals = {
        "cbc:ChargeIndicator": "true" if item.is_charge else "false",
        "cbc:AllowanceChargeReasonCode": item.reason_code,
        "cbc:AllowanceChargeReason": reason,
        "cbc:MultiplierFactorNumeric": _num(item.percent)
        if item.percent is not None and item.base_amount is not None
        else None,
        "cbc:Amount": _amount(item.amount, currency),
        "cbc:BaseAmount": _amount(item.base_amount, currency)
        if item.base_amount is not None
        else None,
    }
    if document_level:
        vals["cac:TaxCategory"] = _tax_category_vals(
            item.tax_category, _percent(item.tax_category, item.tax_percent)
        )
    return vals


def _default_reason(item: AllowanceCharge) -> str:
    return "Charge" if item.is_charge else "Discount"


def tax_total_vals(groups: list[TaxGroup], totals: Totals, currency: str) -> Vals:
    """The one TaxTotal with its subtotals (PEPPOL-EN16931-R053, BR-CO-14)."""
    return {
        "cbc:TaxAmount": _amount(totals.tax, currency),
        "cac:TaxSubtotal": [
            {
                "cbc:TaxableAmount": _amount(g.taxable, currency),
                "cbc:TaxAmount": _amount(g.tax, currency),
                "cac:TaxCategory": _tax_category_vals(
                    g.category,
                    g.percent,
                    code=g.exemption_code,
                    text=g.exemption_text,
                ),
            }
            for g in groups
        ],
    }


def monetary_total_vals(totals: Totals, currency: str) -> Vals:
    """LegalMonetaryTotal (BG-22); optional amounts only when not zero."""

    def optional(value: Decimal) -> tuple[str, dict[str, str]] | None:
        return _amount(value, currency) if value else None

    return {
        "cbc:LineExtensionAmount": _amount(totals.line_extension, currency),
        "cbc:TaxExclusiveAmount": _amount(totals.tax_exclusive, currency),
        "cbc:TaxInclusiveAmount": _amount(totals.tax_inclusive, currency),
        "cbc:AllowanceTotalAmount": optional(totals.allowances),
        "cbc:ChargeTotalAmount": optional(totals.charges),
        "cbc:PrepaidAmount": optional(totals.prepaid),
        "cbc:PayableRoundingAmount": optional(totals.rounding),
        "cbc:PayableAmount": _amount(totals.payable, currency),
    }


def line_vals(line: InvoiceLine, currency: str, *, credit: bool) -> Vals:
    """One invoice or credit-note line (BG-25)."""
    quantity, price = line_net_price(line)
    percent = _percent(line.tax_category, line.tax_percent)
    return {
        "cbc:ID": line.line_id,
        "cbc:CreditedQuantity" if credit else "cbc:InvoicedQuantity": (
            _num(quantity),
            {"unitCode": line.unit_code},
        ),
        "cbc:LineExtensionAmount": _amount(line.net_amount, currency),
        "cbc:AccountingCost": line.account_code,
        "cac:AllowanceCharge": [
            allowance_charge_vals(a, currency, document_level=False)
            for a in line.allowance_charges
        ],
        "cac:Item": {
            "cbc:Description": line.description,
            "cbc:Name": line.name,
            "cac:SellersItemIdentification": {"cbc:ID": line.seller_item_id},
            # the line carries only category and rate, never an exemption reason
            "cac:ClassifiedTaxCategory": _tax_category_vals(line.tax_category, percent),
        },
        "cac:Price": {
            "cbc:PriceAmount": (_num(price), {"currencyID": currency}),
            "cbc:BaseQuantity": (
                _num(line.price_base_quantity),
                {"unitCode": line.unit_code},
            )
            if line.price_base_quantity
            else None,
        },
    }


def document_vals(invoice: Invoice) -> tuple[str, Vals]:
    """The whole document as plain data: (root element name, children)."""
    credit = invoice.document_type == "credit_note"
    if not invoice.lines:
        raise InvoiceDataError(
            "an invoice needs at least one line (BR-16)",
            record=_record(invoice),
            field="lines",
        )
    buyer_reference = resolve_buyer_reference(
        invoice.number,
        invoice_ref=invoice.buyer_reference,
        order_reference=invoice.order_reference,
    )
    groups = tax_breakdown(invoice)
    totals = document_totals(invoice, groups)
    # BR-O-02..04: an invoice with category O carries no VAT identifiers
    with_vat = not any(g.category == "O" for g in groups)
    currency = invoice.currency
    means, terms = payment_vals(invoice)
    vals = header_vals(invoice, buyer_reference)
    vals["cac:AccountingSupplierParty"] = {
        "cac:Party": party_vals(
            invoice.seller, with_vat=with_vat, record=f"{_record(invoice)} seller"
        )
    }
    vals["cac:AccountingCustomerParty"] = {
        "cac:Party": party_vals(
            invoice.buyer, with_vat=with_vat, record=f"{_record(invoice)} buyer"
        )
    }
    vals["cac:Delivery"] = delivery_vals(invoice, groups)
    vals["cac:PaymentMeans"] = means
    vals["cac:PaymentTerms"] = terms
    vals["cac:AllowanceCharge"] = [
        allowance_charge_vals(a, currency, document_level=True)
        for a in invoice.allowance_charges
    ]
    vals["cac:TaxTotal"] = tax_total_vals(groups, totals, currency)
    vals["cac:LegalMonetaryTotal"] = monetary_total_vals(totals, currency)
    vals["cac:CreditNoteLine" if credit else "cac:InvoiceLine"] = [
        line_vals(line, currency, credit=credit) for line in invoice.lines
    ]
    return ("CreditNote" if credit else "Invoice"), vals


# -------------------------------------------------------------------- renderer

_TAGS: dict[str, str] = {}


def _tag(key: str) -> str:
    tag = _TAGS.get(key)
    if tag is None:
        prefix, _, local = key.partition(":")
        tag = _TAGS[key] = f"{{{NS[prefix]}}}{local}"
    return tag


def _render_into(parent: etree._Element, vals: Mapping[str, Any]) -> None:
    for key, value in vals.items():
        for item in value if isinstance(value, list) else (value,):
            _render_one(parent, key, item)


def _render_one(parent: etree._Element, key: str, item: Any) -> None:
    if item is None:
        return
    if isinstance(item, Mapping):
        element = etree.SubElement(parent, _tag(key))
        _render_into(element, item)
        if len(element) == 0:  # PEPPOL-EN16931-R008: no empty aggregate
            parent.remove(element)
        return
    text, attrs = item if isinstance(item, tuple) else (item, None)
    text = "" if text is None else str(text).strip()
    if not text:
        return  # PEPPOL-EN16931-R008: no empty element
    element = etree.SubElement(parent, _tag(key), attrs or None)
    element.text = text


def render(root_name: str, vals: Mapping[str, Any]) -> etree._Element:
    """Render builder output into a UBL document with the conventional prefixes."""
    root_ns = CREDIT_NOTE_NS if root_name == "CreditNote" else INVOICE_NS
    nsmap: dict[str | None, str] = {None: root_ns, "cac": NS["cac"], "cbc": NS["cbc"]}
    root = etree.Element(f"{{{root_ns}}}{root_name}", nsmap=nsmap)
    _render_into(root, vals)
    return root


def build_document(invoice: Invoice) -> bytes:
    """The Peppol BIS 3 Invoice or CreditNote for ``invoice``, as UTF-8 bytes.

    :raises InvoiceDataError: something the document needs is missing or invalid;
        the message names the invoice (or party) and the field.
    """
    root_name, vals = document_vals(invoice)
    document: bytes = etree.tostring(
        render(root_name, vals), xml_declaration=True, encoding="UTF-8"
    )
    return document
