"""Seed data of the Exact sandbox: realistic, deterministic, any size.

Companies are Dutch, Belgian and French, with VAT, KvK/enterprise and SIREN numbers
whose check digits are valid but which are *written* the messy ways people type
them (dots, spaces, lower case, a KvK number that lost its leading zero, a Belgian
number without its prefix). The same ``seed`` always gives the same data, so a
seeded Odoo can share customers with it (:func:`odoo_partners`).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

__all__ = [
    "Company",
    "DivisionSeed",
    "companies",
    "generate",
    "odoo_partners",
    "reference_data",
]

_NAMESPACE = uuid.UUID("5b0cbe0e-7ad2-4f35-9b7e-5e1d3c0a9e11")

_TRADES = {
    "NL": [
        "Bakkerij",
        "Installatiebedrijf",
        "Transportbedrijf",
        "Drukkerij",
        "Adviesbureau",
        "Groothandel",
        "Tuincentrum",
        "Bouwbedrijf",
        "Garage",
    ],
    "BE": [
        "Brouwerij",
        "Schrijnwerkerij",
        "Boekhandel",
        "Atelier",
        "Transport",
        "Immo",
        "Elektro",
        "Bureau",
        "Garage",
    ],
    "FR": [
        "Boulangerie",
        "Atelier",
        "Transports",
        "Imprimerie",
        "Cabinet",
        "Menuiserie",
        "Garage",
        "Librairie",
        "Jardinerie",
    ],
}
_NAMES = {
    "NL": [
        "de Vries",
        "Jansen",
        "Bakker",
        "Visser",
        "Smit",
        "Meijer",
        "de Boer",
        "Mulder",
        "de Groot",
        "Bos",
        "Vos",
        "Peters",
        "Hendriks",
        "Dekker",
    ],
    "BE": [
        "Peeters",
        "Maes",
        "Janssens",
        "Claes",
        "Jacobs",
        "Mertens",
        "Willems",
        "Goossens",
        "Dubois",
        "Lambert",
        "Wouters",
        "Declercq",
        "Hermans",
    ],
    "FR": [
        "Martin",
        "Bernard",
        "Moreau",
        "Laurent",
        "Lefèvre",
        "Roux",
        "Girard",
        "Fournier",
        "Mercier",
        "Bonnet",
        "Chevalier",
        "Lemaire",
        "Rousseau",
    ],
}
_FORMS = {
    "NL": ["B.V.", "BV", "V.O.F.", "N.V.", ""],
    "BE": ["BV", "NV", "SRL", "CommV", "bvba", ""],
    "FR": ["SARL", "SAS", "SA", "EURL", ""],
}
_CITIES = {
    "NL": [
        ("Amsterdam", "1012"),
        ("Utrecht", "3511"),
        ("Eindhoven", "5611"),
        ("Zwolle", "8011"),
        ("Groningen", "9711"),
        ("Breda", "4811"),
    ],
    "BE": [
        ("Gent", "9000"),
        ("Antwerpen", "2000"),
        ("Leuven", "3000"),
        ("Brugge", "8000"),
        ("Namur", "5000"),
        ("Liège", "4000"),
    ],
    "FR": [
        ("Lille", "59000"),
        ("Lyon", "69001"),
        ("Nantes", "44000"),
        ("Rennes", "35000"),
        ("Bordeaux", "33000"),
        ("Strasbourg", "67000"),
    ],
}
_STREETS = {
    "NL": ["Dorpsstraat", "Kerkstraat", "Industrieweg", "Molenweg", "Stationsplein"],
    "BE": ["Kerkstraat", "Stationsstraat", "Rue de la Gare", "Nieuwstraat", "Markt"],
    "FR": [
        "Rue de la République",
        "Avenue Jean Jaurès",
        "Rue Victor Hugo",
        "Place de la Gare",
        "Rue Pasteur",
    ],
}


@dataclass(frozen=True)
class Company:
    """One seeded company with clean identifiers and the messy ways they are typed."""

    index: int
    name: str
    country: str
    vat: str | None
    registry: str | None
    vat_typed: str | None
    registry_typed: str | None
    street: str
    zip: str
    city: str
    email: str
    phone: str


def _luhn_digit(number: str) -> str:
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def _belgian_number(rng: random.Random) -> str:
    """An enterprise number: 8 digits starting 0 or 1, then 97 - (them mod 97)."""
    base = rng.randrange(2_000_000, 20_000_000)
    return f"{base:08d}{97 - base % 97:02d}"


def _dutch_vat(rng: random.Random) -> tuple[str, str]:
    while True:
        digits = [rng.randrange(10) for _ in range(8)]
        if digits[0] == 0:
            continue
        total = sum(d * w for d, w in zip(digits, range(9, 1, -1), strict=True))
        last = total % 11
        if last < 10:
            number = "".join(map(str, digits)) + str(last)
            kvk = str(rng.randrange(100000, 99999999)).zfill(8)
            return f"NL{number}B01", kvk


def _french_vat(rng: random.Random) -> tuple[str, str]:
    body = str(rng.randrange(10000000, 99999999))
    siren = body + _luhn_digit(body)
    key = (12 + 3 * (int(siren) % 97)) % 97
    return f"FR{key:02d}{siren}", siren


def _messy_vat(rng: random.Random, vat: str) -> str:
    cc, rest = vat[:2], vat[2:]
    style = rng.randrange(5)
    if cc == "BE":
        dotted = f"{rest[:4]}.{rest[4:7]}.{rest[7:]}"
        return [
            vat,
            f"BE {dotted}",
            dotted,
            f"be {rest[:4]} {rest[4:7]} {rest[7:]}",
            f"BE-{rest}",
        ][style]
    if cc == "NL":
        return [
            vat,
            f"NL {rest[:4]}.{rest[4:6]}.{rest[6:9]}.{rest[9:]}",
            vat.lower(),
            f"NL{rest[:9]} {rest[9:]}",
            f"nl {rest}",
        ][style]
    return [
        vat,
        f"FR {rest[:2]} {rest[2:5]} {rest[5:8]} {rest[8:]}",
        vat.lower(),
        f"{cc}{rest[:2]}.{rest[2:]}",
        f"FR {rest}",
    ][style]


def _messy_registry(rng: random.Random, country: str, number: str) -> str:
    style = rng.randrange(4)
    if country == "NL":
        return (
            [
                number,
                number.lstrip("0") or "0",
                f"{number[:4]} {number[4:]}",
                f"KvK {number}",
            ][style]
            if style < 3
            else number
        )
    if country == "BE":
        return [
            number,
            f"{number[:4]}.{number[4:7]}.{number[7:]}",
            number.removeprefix("0"),
            f"BE{number}",
        ][style]
    return [number, f"{number[:3]} {number[3:6]} {number[6:]}", number, number][style]


def companies(seed: int, count: int) -> list[Company]:
    """``count`` deterministic companies for ``seed`` (about 40 % NL, 40 % BE)."""
    rng = random.Random(seed)
    result = []
    for index in range(count):
        country = rng.choices(["NL", "BE", "FR"], weights=[4, 4, 2])[0]
        form = rng.choice(_FORMS[country])
        name = f"{rng.choice(_TRADES[country])} {rng.choice(_NAMES[country])}"
        if rng.random() < 0.3:
            name += f" {rng.choice(['& Zonen', 'en Co', 'Services', 'Group'])}"
        name = f"{name} {form}".strip()
        if country == "BE":
            registry = _belgian_number(rng)
            vat = f"BE{registry}"
        elif country == "NL":
            vat, registry = _dutch_vat(rng)
        else:
            vat, registry = _french_vat(rng)
        has_vat = rng.random() < 0.85
        city, zip_code = rng.choice(_CITIES[country])
        slug = "".join(ch for ch in name.lower() if ch.isalnum())[:20] or "info"
        result.append(
            Company(
                index=index,
                name=name,
                country=country,
                vat=vat if has_vat else None,
                registry=registry,
                vat_typed=_messy_vat(rng, vat) if has_vat else None,
                registry_typed=_messy_registry(rng, country, registry)
                if rng.random() < 0.7
                else None,
                street=f"{rng.choice(_STREETS[country])} {rng.randrange(1, 240)}",
                zip=zip_code if country != "NL" else f"{zip_code} {_letters(rng)}",
                city=city,
                email=f"facturatie@{slug}.example",
                phone={"NL": "+31 ", "BE": "+32 ", "FR": "+33 "}[country]
                + f"{rng.randrange(10, 99)} {rng.randrange(100, 999)} "
                f"{rng.randrange(10, 99)} {rng.randrange(10, 99)}",
            )
        )
    return result


def _letters(rng: random.Random) -> str:
    return "".join(rng.choice("ABCDEGHJKLMNPRSTVWXZ") for _ in range(2))


def odoo_partners(seed: int, count: int, *, share: float = 0.6) -> list[dict[str, Any]]:
    """Partners for a seeded Odoo overlapping the sandbox's accounts.

    About ``share`` of the companies also exist on the Odoo side, with the VAT
    written differently and the name sometimes without legal form.
    """
    rng = random.Random(seed + 7919)
    partners = []
    for company in companies(seed, count):
        if rng.random() >= share:
            continue
        name = company.name
        if rng.random() < 0.4:
            name = name.rsplit(" ", 1)[0]
        partners.append(
            {
                "name": name,
                "is_company": True,
                "vat": company.vat if company.vat and rng.random() < 0.8 else None,
                "company_registry": company.registry,
                "country_code": company.country,
                "street": company.street,
                "zip": company.zip,
                "city": company.city,
                "email": company.email,
            }
        )
    return partners


def reference_data() -> dict[str, list[dict[str, Any]]]:
    """VAT codes, GL accounts, journals and items of every sandbox division."""
    vat_codes = [
        ("0", "Geen BTW", 0, "N", False),
        ("1", "Verkopen hoog 21%", 0.21, "E", False),
        ("2", "Verkopen laag 9%", 0.09, "E", False),
        ("3", "Verkopen 6% (BE)", 0.06, "E", False),
        ("4", "Intracommunautaire levering 0%", 0, "B", False),
        ("5", "Export buiten EU 0%", 0, "B", False),
        ("9", "Oud tarief 19%", 0.19, "E", True),
    ]
    gl_accounts = [
        ("1300", "Debiteuren", 20),
        ("1500", "Af te dragen BTW", 24),
        ("8000", "Omzet hoog", 110),
        ("8010", "Omzet laag", 110),
        ("8100", "Omzet intracommunautair", 110),
        ("8200", "Omzet diensten", 110),
    ]
    return {
        "vat_codes": [
            {
                "ID": str(uuid.uuid5(_NAMESPACE, f"vat-{code}")),
                "Code": code.rjust(3),
                "Description": text,
                "Percentage": pct,
                "Type": kind,
                "IsBlocked": blocked,
            }
            for code, text, pct, kind, blocked in vat_codes
        ],
        "gl_accounts": [
            {
                "ID": str(uuid.uuid5(_NAMESPACE, f"gl-{code}")),
                "Code": code,
                "Description": text,
                "Type": kind,
            }
            for code, text, kind in gl_accounts
        ],
        "journals": [
            {
                "ID": str(uuid.uuid5(_NAMESPACE, "j70")),
                "Code": "70",
                "Description": "Verkoopboek",
                "Type": 20,
            },
            {
                "ID": str(uuid.uuid5(_NAMESPACE, "j90")),
                "Code": "90",
                "Description": "Memoriaal",
                "Type": 90,
            },
        ],
        "items": [
            {
                "ID": str(uuid.uuid5(_NAMESPACE, "item-DIENST")),
                "Code": "DIENST",
                "Description": "Dienstverlening",
            },
        ],
    }


@dataclass
class DivisionSeed:
    """Rows of one division before the server adds metadata and timestamps."""

    accounts: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    receivables: list[dict[str, Any]] = field(default_factory=list)


def generate(
    seed: int,
    *,
    division: int,
    accounts: int,
    invoices: int,
    now: datetime,
) -> DivisionSeed:
    """Accounts (from :func:`companies`), sales entries and their receivables."""
    rng = random.Random(seed * 31 + division)
    out = DivisionSeed()
    start = now - timedelta(days=400)
    for company in companies(seed, accounts):
        modified = start + timedelta(minutes=rng.randrange(0, 400 * 24 * 60))
        out.accounts.append(
            {
                "ID": str(
                    uuid.uuid5(_NAMESPACE, f"{seed}-{division}-acc-{company.index}")
                ),
                "Code": str(1001 + company.index).rjust(18),
                "Name": company.name,
                "VATNumber": company.vat_typed or "",
                "ChamberOfCommerce": company.registry_typed or "",
                "Email": company.email,
                "Phone": company.phone,
                "Website": "",
                "AddressLine1": company.street,
                "AddressLine2": "",
                "AddressLine3": "",
                "Postcode": company.zip,
                "City": company.city,
                "State": "",
                "Country": company.country,
                "Language": {"NL": "NL", "BE": rng.choice(["NL", "FR"]), "FR": "FR"}[
                    company.country
                ],
                "Status": rng.choices(["C", "P", "S", "A"], weights=[85, 8, 4, 3])[0],
                "IsSales": True,
                "IsSupplier": rng.random() < 0.05,
                "Blocked": rng.random() < 0.02,
                "PeppolIdentifier": "",
                "PeppolIdentifierType": None,
                "SalesCurrency": "EUR",
                "IsMailing": 0,
                "Created": modified,
                "Modified": modified,
            }
        )
    if not out.accounts:
        return out
    for number in range(1, invoices + 1):
        account = rng.choice(out.accounts)
        day = start + timedelta(days=rng.randrange(0, 390))
        amount = Decimal(rng.randrange(5000, 2500000)) / 100
        gross = (amount * Decimal("1.21")).quantize(Decimal("0.01"))
        entry_id = str(uuid.uuid5(_NAMESPACE, f"{seed}-{division}-entry-{number}"))
        your_ref = f"INV/{day.year}/{number:05d}"
        out.entries.append(
            {
                "EntryID": entry_id,
                "EntryNumber": 26000000 + number,
                "Customer": account["ID"],
                "Journal": "70",
                "Type": 20,
                "EntryDate": day,
                "YourRef": your_ref,
                "Description": your_ref,
                "Currency": "EUR",
                "AmountDC": float(gross),
                "AmountFC": float(gross),
            }
        )
        state = rng.choices(["paid", "partial", "open"], weights=[60, 15, 25])[0]
        open_amount = {
            "paid": Decimal(0),
            "partial": (gross * Decimal(rng.randrange(10, 90)) / 100).quantize(
                Decimal("0.01")
            ),
            "open": gross,
        }[state]
        out.receivables.append(
            {
                "ID": str(uuid.uuid5(_NAMESPACE, f"{seed}-{division}-rec-{number}")),
                "Account": account["ID"],
                "YourRef": your_ref,
                "InvoiceNumber": 26000000 + number,
                "TransactionEntryID": entry_id,
                "AmountFC": float(open_amount),
                "AmountDC": float(open_amount),
                "TransactionAmountFC": float(gross),
                "TransactionAmountDC": float(gross),
                "Currency": "EUR",
                "IsFullyPaid": state == "paid",
                "TransactionIsReversal": False,
                "Status": 50 if state == "paid" else 20,
                "DueDate": day + timedelta(days=30),
                "LastPaymentDate": day + timedelta(days=rng.randrange(5, 60))
                if state != "open"
                else None,
                "Modified": day,
            }
        )
    return out


def utc(moment: datetime) -> datetime:
    """``moment`` as aware UTC."""
    return moment.astimezone(UTC)
