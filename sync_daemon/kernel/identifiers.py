"""Identifier normalisation: the keys on which customers are matched.

Every kind of identifier offers the same trio, after python-stdnum's habit:

- ``compact_*``: the value cleaned of spaces, dots and hyphens, upper-cased, with the
  country prefix added where the kind has one; never raises, never validates;
- ``validate_*``: the compact value when it is valid, else :class:`InvalidIdentifier`
  naming the kind, the value and the reason;
- ``*_key``: the matching key, or ``None`` when the value is empty or invalid. An
  invalid identifier is never used for matching.

>>> vat_key("BE 0447.123.478")
'BE0447123478'
>>> vat_key("801234560", country="GR")
'EL801234560'
>>> registry_key(4123456, country="NL")
'NL:04123456'
>>> peppol_key("0208:BE0765881217")
'0208:0765881217'
>>> name_key("Voorbeeld Logistiek B.V.") == name_key("VOORBEELD LOGISTIEK BV")
True
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import phonenumbers
from stdnum import get_cc_module
from stdnum.exceptions import ValidationError as StdnumValidationError

from .errors import DataError

__all__ = [
    "PEPPOL_SCHEME_BY_COUNTRY",
    "InvalidIdentifier",
    "compact_registry",
    "compact_vat",
    "email_key",
    "name_key",
    "peppol_key",
    "phone_key",
    "registry_key",
    "validate_peppol_id",
    "validate_registry",
    "validate_vat",
    "vat_country",
    "vat_key",
]

_SEPARATORS = re.compile(r"[\s.\-/,_]+")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

#: ISO 3166 country code -> the prefix its VAT numbers carry (Greece writes EL).
_VAT_PREFIX_BY_COUNTRY = {"GR": "EL"}
_COUNTRY_BY_VAT_PREFIX = {"EL": "GR", "XI": "GB"}

#: Peppol electronic-address schemes (EAS) for company registries, per country.
PEPPOL_SCHEME_BY_COUNTRY = {
    "BE": "0208",  # enterprise number, 10 digits, no prefix
    "NL": "0106",  # KvK, 8 digits
    "FR": "0009",  # SIRET (0002 is SIREN)
    "NO": "0192",  # organisasjonsnummer
    "SE": "0007",  # organisationsnummer
    "DK": "0184",  # CVR
    "FI": "0216",  # OVT code
}

#: Registry kind per country, for the stdnum module that checks it.
_REGISTRY_MODULE = {
    "BE": "vat",  # the enterprise number is the VAT number without prefix
    "FR": "siren",
    "NO": "orgnr",
    "SE": "orgnr",
    "DK": "cvr",
    "FI": "ytunnus",
}


class InvalidIdentifier(DataError):
    """An identifier that cannot be valid; ``details`` carries kind and value."""

    def __init__(self, kind: str, value: object, reason: str) -> None:
        super().__init__(
            f"invalid {kind} {str(value)!r}: {reason}",
            field=kind,
            details={"kind": kind, "value": value, "reason": reason},
        )
        self.kind = kind
        self.value = value
        self.reason = reason


#: No VAT, registry or Peppol identifier comes close to this length; longer input
#: is refused before any checksum (python-stdnum turns digits into integers).
MAX_IDENTIFIER_LENGTH = 64


def _too_long(kind: str, value: object, text: str) -> None:
    if len(text) > MAX_IDENTIFIER_LENGTH:
        raise InvalidIdentifier(
            kind, value, f"longer than {MAX_IDENTIFIER_LENGTH} characters"
        )


def _clean(value: object) -> str:
    """Return ``value`` as upper-case text without separators; '' for nothing."""
    if value is None or value is False:
        return ""
    return _SEPARATORS.sub("", str(value)).upper()


def _country(country: str | None) -> str:
    return (country or "").strip().upper()


# ---------------------------------------------------------------------------- VAT


def compact_vat(value: object, country: str | None = None) -> str:
    """Clean a VAT number and make sure it carries its country prefix.

    The prefix comes from the number itself when it starts with two letters, else
    from ``country`` (Greece: ``EL``). Without either the bare digits are returned.
    """
    text = _clean(value)
    if not text:
        return ""
    if len(text) > 2 and text[:2].isalpha():
        prefix, rest = text[:2], text[2:]
        return _VAT_PREFIX_BY_COUNTRY.get(prefix, prefix) + rest
    cc = _country(country)
    if not cc:
        return text
    return _VAT_PREFIX_BY_COUNTRY.get(cc, cc) + text


def vat_country(vat: str) -> str:
    """The ISO country code of a compact, prefixed VAT number (``EL`` -> ``GR``)."""
    prefix = vat[:2]
    return _COUNTRY_BY_VAT_PREFIX.get(prefix, prefix)


def validate_vat(value: object, country: str | None = None) -> str:
    """Return the compact VAT number when its checksum holds, else raise."""
    vat = compact_vat(value, country)
    if not vat:
        raise InvalidIdentifier("vat", value, "empty")
    _too_long("vat", value, vat)
    if not vat[:2].isalpha():
        raise InvalidIdentifier("vat", value, "no country prefix and no country")
    cc = vat_country(vat).lower()
    try:
        module: Any = get_cc_module(cc, "vat")
    except (ImportError, ValueError):
        module = None
    if module is None:
        raise InvalidIdentifier("vat", value, f"no VAT rules for country {cc.upper()}")
    try:
        number = module.validate(vat)
    except (StdnumValidationError, ValueError) as err:
        raise InvalidIdentifier("vat", value, str(err)) from err
    number = _clean(number)
    if cc == "no":
        number = number.removesuffix("MVA")
    # stdnum returns some numbers with and some without their prefix.
    return compact_vat(number, vat_country(vat))


def vat_key(value: object, country: str | None = None) -> str | None:
    """The VAT matching key, or ``None`` when empty or invalid."""
    try:
        return validate_vat(value, country)
    except InvalidIdentifier:
        return None


# ---------------------------------------------------------------------- registries


def compact_registry(value: object, country: str | None = None) -> str:
    """Clean a company registry number; Dutch KvK numbers are zero-padded to 8.

    Integers are accepted (a spreadsheet or an API may have lost the leading zero).
    """
    text = _clean(value)
    cc = _country(country)
    if cc == "NL" and text.isdigit() and len(text) < 8:
        text = text.zfill(8)
    if cc == "BE" and text.startswith("BE"):
        text = text[2:]
    if cc == "BE" and text.isdigit() and len(text) == 9:
        text = "0" + text
    return text


def validate_registry(value: object, country: str | None = None) -> str:
    """Return the registry number checked against its country's rules.

    BE: enterprise number, 10 digits (mod 97). NL: KvK, 8 digits (a 12-digit branch
    number is refused). FR: SIREN 9 or SIRET 14 digits (Luhn). NO, SE, DK, FI: their
    national company numbers. Other countries: digits and letters, unchecked.
    """
    cc = _country(country)
    text = compact_registry(value, cc)
    if not text:
        raise InvalidIdentifier("company_registry", value, "empty")
    _too_long("company_registry", value, text)
    if not cc:
        raise InvalidIdentifier("company_registry", value, "country unknown")
    if cc == "NL":
        if not (text.isdigit() and len(text) == 8):
            raise InvalidIdentifier(
                "company_registry", value, "a KvK number has 8 digits"
            )
        return text
    if cc == "FR" and len(text) == 14:
        module: Any = get_cc_module("fr", "siret")
    elif cc in _REGISTRY_MODULE:
        module = get_cc_module(cc.lower(), _REGISTRY_MODULE[cc])
    else:
        if not text.isalnum():
            raise InvalidIdentifier("company_registry", value, "unexpected characters")
        return text
    try:
        return _clean(module.compact(module.validate(text)))
    except (StdnumValidationError, ValueError) as err:
        raise InvalidIdentifier("company_registry", value, str(err)) from err


def registry_key(value: object, country: str | None = None) -> str | None:
    """``CC:number`` matching key (SIRET reduced to its SIREN), or ``None``."""
    try:
        number = validate_registry(value, country)
    except InvalidIdentifier:
        return None
    cc = _country(country)
    if cc == "FR" and len(number) == 14:
        number = number[:9]
    return f"{cc}:{number}"


# -------------------------------------------------------------------------- Peppol


def validate_peppol_id(value: object, scheme: str | None = None) -> str:
    """Return ``scheme:id`` for a Peppol participant identifier, else raise.

    Accepts ``0208:0765881217``, ``iso6523-actorid-upca::0208:…`` or an id with its
    scheme given apart. Identifiers under registry schemes are normalised the way
    PEPPOL-COMMON-R043 and friends want them (0208: 10 digits, no ``BE``; 0106:
    8 digits; 99xx VAT schemes: prefixed VAT).
    """
    text = str(value or "").strip()
    _too_long("peppol_id", value, text.removeprefix("iso6523-actorid-upis::"))
    text = text.removeprefix("iso6523-actorid-upis::")
    if scheme:
        text = f"{scheme}:{text}"
    head, sep, ident = text.partition(":")
    head = head.strip()
    if not sep or not re.fullmatch(r"\d{4}", head):
        raise InvalidIdentifier("peppol_id", value, "expected 'scheme:identifier'")
    ident = ident.strip()
    if not ident:
        raise InvalidIdentifier("peppol_id", value, "empty identifier")
    if head == "0208":
        ident = validate_registry(ident, "BE")
    elif head == "0106":
        ident = validate_registry(ident, "NL")
    elif head in {"0009", "0002"}:
        ident = validate_registry(ident, "FR")
    elif head == "0192":
        ident = validate_registry(ident, "NO")
    elif head == "0184":
        ident = validate_registry(ident, "DK")
    elif head == "0007":
        ident = validate_registry(ident, "SE")
    elif head.startswith("99") and head not in {"9901", "9957"}:
        ident = validate_vat(ident)
    elif head == "0088":
        ident = _clean(ident)
        if not (ident.isdigit() and len(ident) == 13):
            raise InvalidIdentifier("peppol_id", value, "a GLN has 13 digits")
    else:
        ident = re.sub(r"\s+", "", ident)
    return f"{head}:{ident}"


def peppol_key(value: object, scheme: str | None = None) -> str | None:
    """The participant matching key (``scheme:id``), or ``None``."""
    try:
        return validate_peppol_id(value, scheme)
    except InvalidIdentifier:
        return None


# ------------------------------------------------------------ e-mail, phone, names


def email_key(value: object) -> str | None:
    """Lower-cased e-mail address, or ``None`` when it does not look like one."""
    text = str(value or "").strip().lower()
    if len(text) > 320:  # RFC 5321: 64 + 1 + 255
        return None
    if "<" in text and text.endswith(">"):
        text = text[text.rindex("<") + 1 : -1].strip()
    return text if _EMAIL.match(text) else None


def phone_key(value: object, country: str | None = None) -> str | None:
    """The phone number in E.164 form, or ``None`` when it cannot be parsed."""
    text = str(value or "").strip()
    if not text:
        return None
    try:
        number = phonenumbers.parse(text, _country(country) or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


#: Legal forms stripped from names, written as they read after folding.
_LEGAL_FORMS = [
    "gmbh co kg",
    "gmbh and co kg",
    "sarl",
    "sas",
    "sasu",
    "eurl",
    "snc",
    "sa",
    "sca",
    "sci",
    "scop",
    "srl",
    "sprl",
    "bvba",
    "scrl",
    "scs",
    "comm v",
    "commv",
    "bv",
    "nv",
    "vof",
    "cv",
    "cvba",
    "vzw",
    "asbl",
    "gmbh",
    "ag",
    "kg",
    "ohg",
    "ug",
    "ab",
    "publ",
    "as",
    "a s",
    "asa",
    "aps",
    "i s",
    "oy",
    "oyj",
    "ltd",
    "limited",
    "plc",
    "llc",
    "inc",
    "corp",
    "ae",
    "ike",
    "ee",
    "oe",
    "epe",
    "se",
    "ehf",
]
_LEGAL_FORM_TOKENS = sorted(
    (tuple(form.split()) for form in _LEGAL_FORMS), key=len, reverse=True
)


def _fold(text: str) -> list[str]:
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = "".join(c for c in decomposed if not unicodedata.combining(c))
    ascii_text = ascii_text.lower().replace(".", "").replace("&", " and ")
    return re.sub(r"[^a-z0-9]+", " ", ascii_text).split()


def name_key(value: object) -> str:
    """Case- and accent-folded name without legal forms, for name comparisons.

    Legal forms are removed at either end, longest first, until none is left, so
    ``GmbH & Co. KG`` goes as a whole and ``Dupont SARL`` equals ``SARL Dupont``.
    """
    tokens = _fold(str(value or ""))
    changed = True
    while changed and tokens:
        changed = False
        for form in _LEGAL_FORM_TOKENS:
            size = len(form)
            if len(tokens) > size and tuple(tokens[-size:]) == form:
                tokens = tokens[:-size]
                changed = True
                break
            if len(tokens) > size and tuple(tokens[:size]) == form:
                tokens = tokens[size:]
                changed = True
                break
    return " ".join(tokens)
