"""Deterministic French and Belgian customers for the Sage sandboxes.

The same ``seed`` and ``count`` always give the same customers. Identifiers carry
valid check digits (SIREN and SIRET: Luhn; French VAT: key 12 + 3 × SIREN mod 97;
Belgian enterprise number: 97 − first eight digits mod 97) and are written the
messy way people type them (spaces, dots, lower-case prefixes), so that the daemon's
normalisation is exercised. Names and cities carry accents on purpose.

>>> [c.country for c in seed_customers(4)]
['FR', 'BE', 'FR', 'BE']
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass

__all__ = [
    "SeedCustomer",
    "belgian_enterprise_number",
    "french_vat",
    "luhn_digit",
    "seed_customers",
]

_TRADES = [
    "Boulangerie",
    "Menuiserie",
    "Atelier",
    "Transports",
    "Imprimerie",
    "Brasserie",
    "Électricité",
    "Fromagerie",
    "Librairie",
    "Quincaillerie",
]
_FAMILIES = [
    "Lefèvre",
    "Dupont",
    "Mercier",
    "Gérard",
    "Rousseau",
    "Lambert",
    "Peeters",
    "Janssens",
    "Dubois",
    "Française",
    "Hérault",
    "Wouters",
]
_FR_FORMS = ["SARL", "SAS", "SA", "EURL"]
_BE_FORMS = ["SRL", "SA", "BV", "NV"]
_FR_CITIES = [
    ("75011", "Paris"),
    ("69002", "Lyon"),
    ("59000", "Lille"),
    ("44000", "Nantes"),
    ("13001", "Marseille"),
    ("67000", "Strasbourg"),
]
_BE_CITIES = [
    ("4000", "Liège"),
    ("5000", "Namur"),
    ("1000", "Bruxelles"),
    ("9000", "Gent"),
    ("7000", "Mons"),
    ("2000", "Antwerpen"),
]
_STREETS = [
    "rue de la Paix",
    "avenue Foch",
    "chaussée de Louvain",
    "quai Saint-Léonard",
]


def luhn_digit(digits: str) -> str:
    """The Luhn check digit completing ``digits``."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def french_vat(siren: str) -> str:
    """``FR`` + two-digit key + SIREN."""
    return f"FR{(12 + 3 * (int(siren) % 97)) % 97:02d}{siren}"


def belgian_enterprise_number(body: int) -> str:
    """A 10-digit enterprise number from an 8-digit body (0 or 1 first)."""
    first8 = f"{body:08d}"
    return first8 + f"{97 - int(first8) % 97:02d}"


@dataclass(frozen=True)
class SeedCustomer:
    """One sandbox customer, identifiers as a person would have typed them."""

    code: str
    name: str
    country: str
    vat: str
    registry: str
    street: str
    zip: str
    city: str
    email: str
    phone: str


def _messy_vat(vat: str, rng: random.Random) -> str:
    style = rng.randrange(4)
    if style == 0:
        return vat
    if style == 1:
        return f"{vat[:2]} {vat[2:]}"
    if style == 2 and vat.startswith("BE"):
        digits = vat[2:]
        return f"BE {digits[:4]}.{digits[4:7]}.{digits[7:]}"
    return vat[:2].lower() + " " + " ".join(vat[2 + i : 5 + i] for i in range(0, 11, 3))


def seed_customers(count: int, *, seed: int = 42) -> list[SeedCustomer]:
    """``count`` customers, alternating France and Belgium, fully deterministic."""
    rng = random.Random(seed)
    out: list[SeedCustomer] = []
    for index in range(count):
        trade = rng.choice(_TRADES)
        family = rng.choice(_FAMILIES)
        street = f"{rng.randint(1, 180)} {rng.choice(_STREETS)}"
        if index % 2 == 0:
            body = f"{rng.randint(10_000_000, 99_999_999)}"
            siren = body + luhn_digit(body)
            nic = f"{rng.randint(1, 9999):04d}"
            siret = siren + nic + luhn_digit(siren + nic)
            zip_code, city = rng.choice(_FR_CITIES)
            name = f"{trade} {family} {rng.choice(_FR_FORMS)}"
            vat = french_vat(siren)
            registry = f"{siret[:3]} {siret[3:6]} {siret[6:9]} {siret[9:]}"
            phone = f"+33 {rng.randint(1, 5)} {rng.randint(10, 99)} "
            phone += (
                f"{rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
            )
            country = "FR"
        else:
            number = belgian_enterprise_number(rng.randint(2_000_000, 19_999_999))
            zip_code, city = rng.choice(_BE_CITIES)
            name = f"{trade} {family} {rng.choice(_BE_FORMS)}"
            vat = "BE" + number
            registry = f"{number[:4]}.{number[4:7]}.{number[7:]}"
            phone = f"+32 4{rng.randint(70, 99)} {rng.randint(10, 99)} "
            phone += f"{rng.randint(10, 99)} {rng.randint(10, 99)}"
            country = "BE"
        folded = unicodedata.normalize("NFKD", family.lower())
        slug = "".join(ch for ch in folded if ch.isascii() and ch.isalpha())
        out.append(
            SeedCustomer(
                code=f"C{index + 1:05d}",
                name=name,
                country=country,
                vat=_messy_vat(vat, rng),
                registry=registry,
                street=street,
                zip=zip_code,
                city=city,
                email=f"compta@{slug}{index + 1}.example",
                phone=phone,
            )
        )
    return out
