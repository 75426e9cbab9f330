"""Identifier normalisation (kernel), including field cases C007, C008 and C009."""

from __future__ import annotations

import doctest

import pytest

from sync_daemon.kernel import identifiers
from sync_daemon.kernel.errors import DataError, PermanentError
from sync_daemon.kernel.identifiers import (
    InvalidIdentifier,
    email_key,
    name_key,
    peppol_key,
    phone_key,
    registry_key,
    validate_registry,
    validate_vat,
    vat_key,
)


def test_module_doctests_pass() -> None:
    result = doctest.testmod(identifiers)
    assert result.attempted >= 5 and result.failed == 0


def _country_of(vat: str) -> str | None:
    return vat.strip()[:2].upper() if vat.strip()[:2].isalpha() else None


def test_c007_same_pairs_normalise_to_one_key(load_case) -> None:
    case = load_case("C007_vat_punctuation_pairs.json")
    for odoo_vat, ledger_vat in case["same"]:
        country = _country_of(odoo_vat)
        left, right = vat_key(odoo_vat, country), vat_key(ledger_vat, country)
        assert left is not None and left == right, (odoo_vat, ledger_vat)
    assert vat_key("BE 0447.123.478") == "BE0447123478"
    assert vat_key("NL 8076.54.322.B01") == "NL807654322B01"
    assert vat_key("FR 40 503219875") == "FR40503219875"


def test_c007_different_pairs_never_share_a_key(load_case) -> None:
    case = load_case("C007_vat_punctuation_pairs.json")
    for left, right in case["different"]:
        keys = {vat_key(left), vat_key(right)}
        assert len(keys - {None}) <= 1 or vat_key(left) != vat_key(right)
        assert vat_key(left) != vat_key(right)


def test_c008_prefix_comes_from_the_country(load_case) -> None:
    for case in load_case("C008_vat_missing_country_prefix.json")["cases"]:
        odoo = vat_key(case["odoo"]["vat"], case["odoo"]["country"])
        exact = vat_key(case["exact"]["VATNumber"], case["exact"]["Country"])
        if case["expected"] == "same":
            assert odoo is not None and odoo == exact, case
        else:
            # A bare BE number on a French partner is no valid FR VAT: no key, so
            # never linked on VAT (the matcher sends it to review).
            assert odoo is None and exact == "BE0765881217", case


def test_greece_uses_el_prefix_for_iso_gr() -> None:
    assert vat_key("801234560", "GR") == "EL801234560"
    assert vat_key("GR801234560") == "EL801234560"
    assert identifiers.vat_country("EL801234560") == "GR"


def test_c009_kvk_is_an_eight_digit_string(load_case) -> None:
    case = load_case("C009_kvk_leading_zero.json")
    for row in case["cases"]:
        left = registry_key(row["odoo_company_registry"], "NL")
        right = registry_key(row["exact_ChamberOfCommerce"], "NL")
        assert left == "NL:04123456"
        assert (left == right) == (row["expected"] == "same"), row
    assert peppol_key("4123456", scheme="0106") == "0106:04123456"


def test_registry_rules_per_country() -> None:
    assert registry_key("BE 0765.881.217", "BE") == "BE:0765881217"
    assert registry_key("765881217", "BE") == "BE:0765881217"
    assert registry_key("732 829 320", "FR") == "FR:732829320"
    assert registry_key("73282932000074", "FR") == "FR:732829320"
    assert registry_key("73282932000075", "FR") is None
    with pytest.raises(InvalidIdentifier, match="KvK number has 8 digits"):
        validate_registry("000012345678", "NL")
    with pytest.raises(InvalidIdentifier, match="country unknown"):
        validate_registry("12345678", None)


def test_invalid_vat_error_names_kind_and_value() -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        validate_vat("BE0447123487")
    err = caught.value
    assert isinstance(err, DataError) and isinstance(err, PermanentError)
    assert err.field == "vat" and "BE0447123487" in str(err)
    assert vat_key("") is None and vat_key(None) is None


def test_c026_belgian_peppol_ids_are_ten_digits_without_prefix() -> None:
    assert peppol_key("0208:BE0765881217") == "0208:0765881217"
    assert peppol_key("0208:0765.881.217") == "0208:0765881217"
    assert peppol_key("9925:be 0765 881 217") == "9925:BE0765881217"
    assert peppol_key("0208:0765881218") is None
    assert peppol_key("BE0765881217") is None


def test_email_phone_and_name_keys() -> None:
    assert email_key("  Info@Example.BE ") == "info@example.be"
    assert email_key("Jan <Jan@Example.nl>") == "jan@example.nl"
    assert email_key("not an address") is None
    assert phone_key("02 555 12 34", "BE") == "+3225551234"
    assert phone_key("+31 20 123 4567") == "+31201234567"
    assert phone_key("12") is None
    assert name_key("Voorbeeld Logistiek B.V.") == "voorbeeld logistiek"
    assert name_key("Müller GmbH & Co. KG") == "muller"
    assert name_key("SARL Dupont") == name_key("Dupont S.A.R.L.") == "dupont"
    assert name_key("Société d'Électricité") == "societe d electricite"


@pytest.mark.parametrize(
    ("key", "args"),
    [
        (vat_key, ("NL" + "9" * 4400, None)),
        (vat_key, ("9" * 5000, "BE")),
        (registry_key, ("1" * 5000, "BE")),
        (registry_key, ("1" * 5000, "FR")),
        (peppol_key, ("0208:" + "1" * 5000, None)),
        (peppol_key, ("9925:BE" + "1" * 5000, None)),
        (email_key, ("a" * 5000 + "@example.com",)),
    ],
)
def test_absurdly_long_identifiers_are_invalid_not_errors(key, args) -> None:
    # python-stdnum turns digits into integers, which Python refuses past 4,300
    # digits; a pasted-twice cell must make the identifier invalid, nothing more
    assert key(*args) is None


def test_too_long_vat_error_says_why() -> None:
    with pytest.raises(InvalidIdentifier, match="longer than 64 characters"):
        validate_vat("BE" + "4" * 70)
