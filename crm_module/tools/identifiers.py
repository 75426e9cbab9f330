"""Normalisation of the identifiers used to match a customer across systems.

Every function returns a ``(key, error)`` pair: ``key`` is the canonical string
used for matching (``False`` when there is nothing usable) and ``error`` is a short
English reason when the typed value is not valid (``None`` otherwise). An invalid
value never produces a key, so it can never be matched by mistake.

Key formats (documented for the sync daemon in ``API.md``):

* VAT: ISO-style prefix + compact number, upper case: ``BE0447123478``,
  ``EL801234560`` (Greece uses ``EL``), ``NL807654322B01``.
* Company registry: ``<country>:<number>``: ``BE:0765881217`` (enterprise number,
  10 digits), ``NL:04123456`` (KvK, 8 digits, zero padded), ``FR:503219875``
  (SIREN) or ``FR:50321987500012`` (SIRET).
* Peppol participant: ``<eas>:<endpoint>`` lower case: ``0208:0765881217``,
  ``0106:04123456``, ``9925:be0447123478``.
* E-mail: the normalised address, lower case.

>>> normalize_vat("BE 0447.123.478")
('BE0447123478', None)
>>> normalize_vat("801234560", "GR")
('EL801234560', None)
>>> normalize_registry(4123456, "NL")
('NL:04123456', None)
"""

import re

from stdnum import util as stdnum_util
from stdnum.be import vat as be_vat
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError as StdnumValidationError
from stdnum.fr import siren, siret

from odoo.tools import email_normalize

__all__ = [
    "has_vat_checker",
    "normalize_email",
    "normalize_peppol",
    "normalize_registry",
    "normalize_vat",
    "vat_prefix_for_country",
]

# characters people type as separators inside identifiers
_SEPARATORS = re.compile(r"[\s.\-/,_]")
# the VAT prefix differs from the ISO 3166 country code for these countries
_VAT_PREFIX_BY_COUNTRY = {"GR": "EL"}
_EU_VAT_PREFIXES = {code.upper() for code in eu_vat.MEMBER_STATES} | {"EL"}
# Peppol schemes whose identifier is a plain number: separators are noise there
_NUMERIC_PEPPOL_SCHEMES = {"0002", "0007", "0009", "0088", "0106", "0208"}
# Peppol schemes whose identifiers contain meaningful hyphens (German Leitweg-ID)
_HYPHENATED_PEPPOL_SCHEMES = {"0204"}
KVK_LENGTH = 8
# no VAT, registry or Peppol identifier comes close to this; longer input is
# refused before it reaches a checksum (python-stdnum turns digits into integers)
MAX_IDENTIFIER_LENGTH = 64
TOO_LONG = f"longer than {MAX_IDENTIFIER_LENGTH} characters"


def vat_prefix_for_country(country_code):
    """Return the VAT prefix used for an ISO country code (``GR`` gives ``EL``)."""
    code = (country_code or "").upper()
    return _VAT_PREFIX_BY_COUNTRY.get(code, code)


def _vat_module(prefix):
    """Return the stdnum module validating VAT numbers with this prefix, if any."""
    if prefix in _EU_VAT_PREFIXES:
        return eu_vat
    if len(prefix) == 2 and prefix.isalpha():
        return stdnum_util.get_cc_module(prefix.lower(), "vat")
    return None


def has_vat_checker(prefix):
    """Tell whether python-stdnum can validate VAT numbers with this prefix."""
    return _vat_module((prefix or "").upper()) is not None


def _stdnum_reason(error):
    """Return the message of a stdnum error without its trailing dot."""
    return str(error.message if hasattr(error, "message") else error).rstrip(".")


def normalize_vat(vat, country_code=None):
    """Return the matching key of a VAT number and the reason it is invalid.

    Separators are removed, letters upper-cased and the prefix derived from the
    country when the number was typed without one. A number whose country has
    no checker in python-stdnum is kept unverified (key without validation).
    """
    if not vat:
        return False, None
    raw = _SEPARATORS.sub("", str(vat)).upper()
    if not raw:
        return False, None
    if len(raw) > MAX_IDENTIFIER_LENGTH:
        return False, TOO_LONG
    country_prefix = vat_prefix_for_country(country_code)
    if raw[:2].isalpha() and _vat_module(raw[:2]) is not None:
        prefix, number = raw[:2], raw[2:]
    elif country_prefix:
        prefix, number = country_prefix, raw
    else:
        return False, "no country prefix and no country to derive it from"
    if prefix == "GR":
        prefix = "EL"
    module = _vat_module(prefix)
    if module is None:
        return prefix + number, None
    try:
        compact = module.validate(prefix + number)
    except (StdnumValidationError, ValueError) as error:
        return False, _stdnum_reason(error)
    compact = compact.upper()
    if not compact.startswith(prefix):
        compact = prefix + compact
    return compact, None


def _normalize_be_registry(raw):
    number = raw[2:] if raw.startswith("BE") else raw
    if number.isdigit() and len(number) == 9:
        number = "0" + number
    if not (number.isdigit() and len(number) == 10):
        return False, "a Belgian enterprise number has 10 digits"
    if not be_vat.is_valid(number):
        return False, "the Belgian enterprise number has an invalid checksum"
    return f"BE:{number}", None


def _normalize_nl_registry(raw):
    number = raw[2:] if raw.startswith("NL") else raw
    if not number.isdigit():
        return False, "a KvK number contains digits only"
    if len(number) == 12:
        return False, "12 digits is a branch (vestiging) number, not a KvK number"
    if len(number) > KVK_LENGTH:
        return False, "a KvK number has 8 digits"
    # a KvK number is an 8-character string: restore leading zeros lost by
    # systems that stored it as an integer
    return f"NL:{number.zfill(KVK_LENGTH)}", None


def _normalize_fr_registry(raw):
    number = raw[2:] if raw.startswith("FR") else raw
    if number.isdigit() and len(number) == 9:
        if not siren.is_valid(number):
            return False, "the SIREN number has an invalid checksum"
        return f"FR:{number}", None
    if number.isdigit() and len(number) == 14:
        if not siret.is_valid(number):
            return False, "the SIRET number has an invalid checksum"
        return f"FR:{number}", None
    return False, "a French registry number is a SIREN (9 digits) or SIRET (14)"


_REGISTRY_NORMALIZERS = {
    "BE": _normalize_be_registry,
    "NL": _normalize_nl_registry,
    "FR": _normalize_fr_registry,
}


def normalize_registry(value, country_code):
    """Return the matching key of a company registry number for a country.

    Integers are accepted (some systems lose the leading zero that way) but the
    key is always a string.
    """
    if value is None or value is False or value == "":
        return False, None
    raw = _SEPARATORS.sub("", str(value)).upper()
    if not raw:
        return False, None
    if len(raw) > MAX_IDENTIFIER_LENGTH:
        return False, TOO_LONG
    country = (country_code or "").upper()
    if not country:
        return False, "the country is needed to read a company registry number"
    normalizer = _REGISTRY_NORMALIZERS.get(country)
    if normalizer is None:
        return f"{country}:{raw}", None
    return normalizer(raw)


def normalize_peppol(eas, endpoint, vat_country=None):
    """Return the ``scheme:id`` matching key of a Peppol participant.

    ``vat_country`` is given for schemes whose identifier is a VAT number (such
    as 9925 for Belgium): the endpoint is then checked and compacted as a VAT.
    """
    if not eas or not endpoint:
        return False, None
    scheme = str(eas).strip()
    value = re.sub(r"\s", "", str(endpoint))
    if len(value) > MAX_IDENTIFIER_LENGTH:
        return False, TOO_LONG
    if vat_country:
        vat_key, error = normalize_vat(value, vat_country)
        if error:
            return False, error
        return f"{scheme}:{vat_key.lower()}", None
    if scheme not in _HYPHENATED_PEPPOL_SCHEMES:
        value = _SEPARATORS.sub("", value)
    if scheme in _NUMERIC_PEPPOL_SCHEMES:
        value = _SEPARATORS.sub("", value)
        if not value.isdigit():
            return False, f"scheme {scheme} expects digits only"
        if scheme == "0106":
            if len(value) > KVK_LENGTH:
                return False, "scheme 0106 expects an 8-digit KvK number"
            value = value.zfill(KVK_LENGTH)
        if scheme == "0208" and (len(value) != 10 or not be_vat.is_valid(value)):
            return False, "scheme 0208 expects a valid 10-digit enterprise number"
    if not value:
        return False, None
    return f"{scheme}:{value.lower()}", None


def normalize_email(email):
    """Return the lower-cased e-mail address used for matching."""
    if not email or not str(email).strip():
        return False, None
    normalized = email_normalize(str(email).strip())
    if not normalized:
        return False, "not a valid e-mail address"
    return normalized.lower(), None
