"""Building: field cases C024-C026, every tax category, every country profile."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from lxml import etree

from connectors.peppol.build import (
    NS,
    build_document,
    line_net_price,
    party_identifiers,
    resolve_buyer_reference,
)
from connectors.peppol.errors import InvoiceDataError
from connectors.peppol.parse import parse_document
from connectors.peppol.validate import Validator
from sync_daemon.kernel.models import AllowanceCharge, TaxSubtotal
from tests.peppol.conftest import make_invoice, make_line, party


def _tree(document: bytes) -> etree._Element:
    return etree.fromstring(document)


def _texts(root: etree._Element, path: str) -> list[str]:
    return [e.text or "" for e in root.findall(path, NS)]


def _assert_valid(validator: Validator, document: bytes) -> None:
    result = validator.validate(document)
    assert result.valid, [(a.rule, a.message) for a in result.fatal]


# ------------------------------------------------------------------ C024


def test_c024_price_gets_enough_decimals_for_r120(validator: Validator) -> None:
    # Odoo line: 40 × 12.95 tax included at 21 %; the ledger's net is 428.10
    invoice = make_invoice(
        number="FV-2025-00043",
        lines=(make_line(quantity="40", price="12.95", net="428.10"),),
    )
    document = build_document(invoice)
    root = _tree(document)
    assert _texts(root, "cac:LegalMonetaryTotal/cbc:LineExtensionAmount") == ["428.10"]
    assert _texts(root, "cac:TaxTotal/cbc:TaxAmount") == ["89.90"]
    assert _texts(root, "cac:LegalMonetaryTotal/cbc:PayableAmount") == ["518.00"]
    price = _texts(root, "cac:InvoiceLine/cac:Price/cbc:PriceAmount")[0]
    assert len(price.split(".")[1]) >= 4
    assert abs(40 * Decimal(price) - Decimal("428.10")) <= Decimal("0.02")
    amounts = root.xpath(
        "//cbc:*[@currencyID and local-name() != 'PriceAmount']", namespaces=NS
    )
    assert amounts and all(len(a.text.split(".")[1]) == 2 for a in amounts)
    _assert_valid(validator, document)


def test_c024_rounded_reference_file_is_refused_with_r120(load_case, validator):
    fail = load_case("C024_invoice_price_rounded_2dp_R120_fail.xml")
    assert validator.validate(fail).fatal_rules == ["PEPPOL-EN16931-R120"]
    fixed = load_case("C024_invoice_price_4dp_R120_fixed.xml")
    assert validator.validate(fixed).valid


def test_line_price_with_base_quantity_and_line_allowance() -> None:
    line = make_line(
        quantity="3",
        price="12.50",
        net="35.00",
        price_base_quantity=Decimal(1),
        allowance_charges=(AllowanceCharge(is_charge=False, amount=Decimal("2.50")),),
    )
    assert line_net_price(line) == (Decimal(3), Decimal("12.50"))
    negative = make_line(quantity="1", price="-5", net="-5")
    assert line_net_price(negative) == (Decimal(-1), Decimal(5))  # BR-27


# ------------------------------------------------------------------ C025


def test_c025_no_reference_refused_naming_the_invoice() -> None:
    invoice = make_invoice(number="FV-2025-00044", buyer_reference=None)
    with pytest.raises(InvoiceDataError) as err:
        build_document(invoice)
    assert err.value.message == (
        "FV-2025-00044: buyer reference or order reference required"
    )
    assert err.value.field == "buyer_reference"
    assert err.value.details["rule"] == "PEPPOL-EN16931-R003"


def test_c025_buyer_reference_source_order(validator: Validator) -> None:
    ref = resolve_buyer_reference(
        "FV-2025-00044",
        sale_order_ref="PO-4471",
        invoice_ref="INV-REF",
        partner_default="DEFAULT",
    )
    assert ref == "PO-4471"
    assert resolve_buyer_reference("X", invoice_ref="  ", partner_default="D") == "D"
    assert resolve_buyer_reference("X", order_reference="NA") == ""
    document = build_document(make_invoice(buyer_reference=ref))
    assert _texts(_tree(document), "cbc:BuyerReference") == ["PO-4471"]
    _assert_valid(validator, document)
    # an order reference alone satisfies R003
    only_order = make_invoice(buyer_reference=None, order_reference="SO-12")
    _assert_valid(validator, build_document(only_order))


def test_c025_reference_file_fires_r003(load_case, validator: Validator) -> None:
    data = load_case("C025_invoice_no_buyer_or_order_reference_R003_fail.xml")
    assert validator.validate(data).fatal_rules == ["PEPPOL-EN16931-R003"]


# ------------------------------------------------------------------ C026


def test_c026_belgian_ids_are_ten_digits(validator: Validator) -> None:
    buyer = party("BE_BUYER", vat="BE 0765.881.217")
    ids = party_identifiers(buyer)
    assert (ids.endpoint_scheme, ids.endpoint_id) == ("0208", "0765881217")
    assert (ids.legal_scheme, ids.legal_id) == ("0208", "0765881217")
    document = build_document(make_invoice(buyer=buyer))
    root = _tree(document)
    customer = "cac:AccountingCustomerParty/cac:Party/"
    assert _texts(root, customer + "cbc:EndpointID") == ["0765881217"]
    assert _texts(root, customer + "cac:PartyLegalEntity/cbc:CompanyID") == [
        "0765881217"
    ]
    assert b'schemeID="EM"' not in document
    _assert_valid(validator, document)
    # a partner registered under 9925 gets its prefixed VAT number
    vat_endpoint = party(
        "BE_BUYER", endpoint_id="BE 0765.881.217", endpoint_scheme="9925"
    )
    assert party_identifiers(vat_endpoint).participant_id == "9925:BE0765881217"
    _assert_valid(validator, build_document(make_invoice(buyer=vat_endpoint)))


def test_c026_reference_file_fires_r043_twice(load_case, validator: Validator):
    data = load_case("C026_invoice_buyer_endpoint_0208_with_prefix_fail.xml")
    result = validator.validate(data)
    assert [a.rule for a in result.fatal] == ["PEPPOL-COMMON-R043"] * 2


def test_invalid_identifier_names_invoice_party_and_field() -> None:
    buyer = party("BE_BUYER", vat=None, company_registry="0765.881.218")
    with pytest.raises(InvoiceDataError) as err:
        build_document(make_invoice(buyer=buyer))
    assert err.value.record == "invoice FV-2025-00042 buyer"
    assert err.value.field == "company_registry"
    bad_vat = party("BE_BUYER", vat="BE0765881218")
    with pytest.raises(InvoiceDataError, match="invalid vat") as err:
        build_document(make_invoice(buyer=bad_vat))
    assert err.value.field == "vat"
    bad_gln = party("GLN", company_registry="5790000435969")
    with pytest.raises(InvoiceDataError, match="invalid GLN") as err:
        build_document(make_invoice(seller=bad_gln))
    assert err.value.record == "invoice FV-2025-00042 seller"


# --------------------------------------------------------- tax categories


CATEGORIES = {
    "S": {},
    "Z": {},
    "E": {"exemption_reason_code": "VATEX-EU-132"},
    "AE": {},
    "K": {},
    "G": {},
    "O": {},
}


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_each_tax_category_validates(category: str, validator: Validator) -> None:
    percent = "21" if category == "S" else "0"
    lines = (
        make_line("1", category=category, percent=percent, **CATEGORIES[category]),
        make_line("2", quantity="2", price="7.5", category=category, percent=percent,
                  **CATEGORIES[category]),
    )  # fmt: skip
    buyer = {"K": party("NL"), "G": party("NO")}.get(category)
    invoice = make_invoice(
        buyer=buyer,
        lines=lines,
        delivery_date=date(2025, 3, 10) if category == "K" else None,
    )
    document = build_document(invoice)
    root = _tree(document)
    sub = root.find("cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory", NS)
    assert sub.findtext("cbc:ID", namespaces=NS) == category
    reason = sub.findtext("cbc:TaxExemptionReasonCode", namespaces=NS)
    if category in {"S", "Z"}:
        assert reason is None  # BR-S-10, BR-Z-10
    else:
        assert reason and reason.startswith("VATEX-EU-")
    if category == "O":  # BR-O-02..04: no VAT ids, no rate
        assert root.find(".//cac:PartyTaxScheme", NS) is None
        assert root.find(".//cbc:Percent", NS) is None
    if category == "K":
        assert root.findtext("cac:Delivery/cbc:ActualDeliveryDate", namespaces=NS)
    _assert_valid(validator, document)


def test_exempt_without_reason_is_refused() -> None:
    invoice = make_invoice(lines=(make_line(category="E", percent="0"),))
    with pytest.raises(InvoiceDataError, match="BR-E-10"):
        build_document(invoice)


def test_intra_community_needs_a_delivery_date() -> None:
    invoice = make_invoice(
        buyer=party("NL"), lines=(make_line(category="K", percent="0"),)
    )
    with pytest.raises(InvoiceDataError, match="BR-IC-11") as err:
        build_document(invoice)
    assert err.value.field == "delivery_date"


def test_mixed_categories_and_document_allowance(validator: Validator) -> None:
    invoice = make_invoice(
        lines=(
            make_line("1", quantity="3", price="19.99"),
            make_line("2", quantity="1", price="250", percent="6"),
            make_line("3", quantity="2", price="10", category="Z", percent="0"),
        ),
        allowance_charges=(
            AllowanceCharge(
                is_charge=False,
                amount=Decimal("10"),
                base_amount=Decimal("100"),
                percent=Decimal("10"),
                tax_category="S",
                tax_percent=Decimal("21"),
            ),
            AllowanceCharge(
                is_charge=True, amount=Decimal("5"), reason="Freight",
                tax_category="S", tax_percent=Decimal("21"),
            ),
        ),
        prepaid_amount=Decimal("50"),
    )  # fmt: skip
    document = build_document(invoice)
    root = _tree(document)
    assert len(root.findall("cac:TaxTotal/cac:TaxSubtotal", NS)) == 3
    assert _texts(root, "cac:LegalMonetaryTotal/cbc:AllowanceTotalAmount") == ["10.00"]
    _assert_valid(validator, document)


# ------------------------------------------------------- country profiles


PROFILES = {
    "BE": ("BE", "BE_BUYER", "21", "0208"),
    "NL-KvK": ("NL", "NL", "21", "0106"),
    "NL-OIN-buyer": ("NL", "NL_OIN", "21", "0190"),
    "FR-SIRET": ("FR", "FR", "20", "0009"),
    "FR-SIREN": ("FR_SIREN", "FR_SIREN", "20", "0002"),
    "NO": ("NO", "NO", "25", "0192"),
    "SE": ("SE", "SE", "25", "0007"),
    "DK": ("DK", "DK", "25", "0184"),
    "GLN": ("GLN", "BE_BUYER", "19", "0088"),
}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_country_profile_validates(profile: str, validator: Validator) -> None:
    seller_key, buyer_key, percent, scheme = PROFILES[profile]
    invoice = make_invoice(
        seller=party(seller_key),
        buyer=party(buyer_key),
        lines=(
            make_line(percent=percent),
            make_line("2", price="33.33", percent=percent),
        ),
    )
    document = build_document(invoice)
    root = _tree(document)
    endpoints = root.findall(".//cac:Party/cbc:EndpointID", NS)
    assert scheme in {e.get("schemeID") for e in endpoints}
    _assert_valid(validator, document)


def test_country_endpoint_and_legal_ids() -> None:
    assert party_identifiers(party("NL")).participant_id == "0106:04123456"
    assert party_identifiers(party("NL_OIN")).participant_id == (
        "0190:00000001003214345000"
    )
    fr = party_identifiers(party("FR"))
    assert (fr.participant_id, fr.legal_scheme, fr.legal_id) == (
        "0009:73282932000074", "0002", "732829320",
    )  # fmt: skip
    assert party_identifiers(party("NO")).vat == "NO123456785MVA"  # NO-R-001
    assert party_identifiers(party("NO")).participant_id == "0192:123456785"
    assert party_identifiers(party("SE")).participant_id == "0007:5560360793"
    assert party_identifiers(party("DK")).participant_id == "0184:13585628"
    assert party_identifiers(party("GLN")).participant_id == "0088:5790000435968"
    known = party("BE_BUYER", endpoint_id="0208:0765.881.217")
    assert party_identifiers(known).participant_id == "0208:0765881217"
    de = party("GLN", company_registry=None, registry_scheme=None)
    assert party_identifiers(de).participant_id == "9930:DE136695976"


def test_registry_checked_as_strictly_as_peppol_does() -> None:
    # PEPPOL-COMMON-R042 checks only the shape of a CVR; stdnum's checksum fails
    dk = party("DK", vat=None, company_registry="DK12345678")
    assert party_identifiers(dk).participant_id == "0184:12345678"
    explicit = party("DK", endpoint_id="DK12345678", endpoint_scheme="0184")
    assert party_identifiers(explicit).participant_id == "0184:12345678"
    # R043 checks the Belgian check digit, so a wrong one is refused
    with pytest.raises(InvoiceDataError):
        party_identifiers(party("BE_BUYER", company_registry="0765881218"))
    # a registry under another scheme than the country's is written as given
    swiss = party("SE", company_registry="39937423947", registry_scheme="0183")
    ids = party_identifiers(swiss)
    assert (ids.legal_scheme, ids.legal_id) == ("0183", "39937423947")
    assert ids.participant_id == "0007:5560360793"  # from the VAT number


def test_party_without_any_identifier_is_refused() -> None:
    buyer = party("BE_BUYER", vat=None)
    with pytest.raises(InvoiceDataError, match="no Peppol endpoint") as err:
        build_document(make_invoice(buyer=buyer))
    assert err.value.field == "endpoint_id"


# ------------------------------------------------------------- rounding


def _three_lines() -> tuple:
    return tuple(make_line(str(i), price="10.01") for i in (1, 2, 3))


def test_round_globally_input(validator: Validator) -> None:
    document = build_document(make_invoice(lines=_three_lines()))
    root = _tree(document)
    assert _texts(root, "cac:TaxTotal/cbc:TaxAmount") == ["6.31"]  # 30.03 × 21 %
    assert _texts(root, "cac:LegalMonetaryTotal/cbc:PayableAmount") == ["36.34"]
    _assert_valid(validator, document)


def test_round_per_line_input_keeps_the_ledger_tax(validator: Validator) -> None:
    # Odoo "round per line": 3 × round(2.1021) = 6.30 instead of 6.31
    booked = TaxSubtotal(
        category="S", percent=Decimal(21), taxable_amount=Decimal("30.03"),
        tax_amount=Decimal("6.30"),
    )  # fmt: skip
    invoice = make_invoice(
        lines=_three_lines(),
        tax_subtotals=(booked,),
        tax_amount=Decimal("6.30"),
        tax_inclusive_amount=Decimal("36.33"),
        payable_amount=Decimal("36.33"),
    )
    document = build_document(invoice)
    root = _tree(document)
    assert _texts(root, "cac:TaxTotal/cbc:TaxAmount") == ["6.30"]
    assert _texts(root, "cac:LegalMonetaryTotal/cbc:PayableAmount") == ["36.33"]
    _assert_valid(validator, document)


def test_ledger_tax_far_off_is_recomputed() -> None:
    booked = TaxSubtotal(
        category="S", percent=Decimal(21), taxable_amount=Decimal("30.03"),
        tax_amount=Decimal("9.99"),
    )  # fmt: skip
    document = build_document(
        make_invoice(lines=_three_lines(), tax_subtotals=(booked,))
    )
    assert _texts(_tree(document), "cac:TaxTotal/cbc:TaxAmount") == ["6.31"]


def test_unrounded_line_nets_add_up(validator: Validator) -> None:
    lines = (
        make_line("1", quantity="3", price="0.3333", net="0.9999"),
        make_line("2", quantity="7", price="1.115", net="7.805", percent="6"),
        make_line("3", quantity="-1", price="5", net="-5"),
    )
    _assert_valid(validator, build_document(make_invoice(lines=lines)))


# ---------------------------------------------------------- credit notes


def test_credit_note_with_billing_reference(validator: Validator) -> None:
    invoice = make_invoice(
        document_type="credit_note",
        number="CN-2025-00007",
        billing_reference="FV-2025-00042",
        billing_reference_date=date(2025, 3, 14),
        tax_point_date=date(2025, 3, 20),
        note="Returned goods",
    )
    document = build_document(invoice)
    root = _tree(document)
    assert etree.QName(root).localname == "CreditNote"
    assert _texts(root, "cbc:CreditNoteTypeCode") == ["381"]
    assert _texts(root, "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID") == [
        "FV-2025-00042"
    ]
    assert root.find("cac:CreditNoteLine/cbc:CreditedQuantity", NS) is not None
    assert _texts(root, "cac:PaymentMeans/cbc:PaymentDueDate") == ["2025-04-13"]
    _assert_valid(validator, document)


def test_dutch_credit_note_needs_its_reference(validator: Validator) -> None:
    without = make_invoice(
        document_type="credit_note", seller=party("NL"), buyer=party("NL")
    )
    assert "NL-R-001" in validator.validate(build_document(without)).fatal_rules
    with_ref = without.model_copy(update={"billing_reference": "FV-1"})
    _assert_valid(validator, build_document(with_ref))


def test_optional_header_parts_in_schema_order(validator: Validator) -> None:
    invoice = make_invoice(
        attachments=(("FV-2025-00042.pdf", "application/pdf", b"%PDF-1.4 test"),),
        tax_point_date=date(2025, 3, 14),
        note="Thank you",
        order_reference="SO-12",
        contract_reference="CT-1",
        payment_terms="30 days",
        payment_reference="+++090/9337/55493+++",
        delivery_date=date(2025, 3, 12),
        payment_bic="GKCCBEBB",
    )
    document = build_document(invoice)
    assert b'mimeCode="application/pdf"' in document
    _assert_valid(validator, document)
    parsed = parse_document(document)
    assert parsed.attachments == invoice.attachments
    assert (parsed.tax_point_date, parsed.delivery_date) == (
        date(2025, 3, 14),
        date(2025, 3, 12),
    )
    assert (parsed.payment_bic, parsed.payment_terms) == ("GKCCBEBB", "30 days")
