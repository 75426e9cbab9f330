"""Fixtures of the Peppol tests: one compiled validator per session, invoice factory.

Identifiers below are invented but carry valid check digits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.peppol.validate import Validator, get_validator
from sync_daemon.kernel.models import Address, Invoice, InvoiceLine, Party

#: Seller and buyer per country profile: (party kwargs).
PARTIES: dict[str, dict[str, Any]] = {
    "BE": {
        "name": "Fictief Software BV",
        "vat": "BE 0447.123.478",
        "address": Address(
            street="Veldstraat 12", city="Gent", zip="9000", country_code="BE"
        ),
    },
    "BE_BUYER": {
        "name": "Atelier Imaginaire SRL",
        "vat": "BE 0765.881.217",
        "address": Address(
            street="Rue de l'Exemple 5", city="Namur", zip="5000", country_code="BE"
        ),
    },
    "NL": {
        "name": "Voorbeeld Logistiek B.V.",
        "vat": "NL004495445B01",
        "company_registry": "4123456",
        "address": Address(
            street="Kade 1", city="Rotterdam", zip="3011 AA", country_code="NL"
        ),
    },
    "NL_OIN": {
        "name": "Gemeente Voorbeeld",
        "company_registry": "00000001003214345000",
        "registry_scheme": "0190",
        "address": Address(
            street="Markt 1", city="Utrecht", zip="3511 AA", country_code="NL"
        ),
    },
    "FR": {
        "name": "Exemple Industrie SAS",
        "vat": "FR44732829320",
        "company_registry": "73282932000074",
        "address": Address(
            street="1 rue de la Paix", city="Paris", zip="75002", country_code="FR"
        ),
    },
    "FR_SIREN": {
        "name": "Exemple Services SARL",
        "vat": "FR44732829320",
        "company_registry": "732829320",
        "address": Address(
            street="2 rue de Lyon", city="Lyon", zip="69001", country_code="FR"
        ),
    },
    "NO": {
        "name": "Eksempel AS",
        "vat": "NO123456785",
        "address": Address(
            street="Storgata 1", city="Oslo", zip="0155", country_code="NO"
        ),
    },
    "SE": {
        "name": "Exempel AB",
        "vat": "SE556036079301",
        "address": Address(
            street="Drottninggatan 1", city="Stockholm", zip="111 51", country_code="SE"
        ),
    },
    "DK": {
        "name": "Eksempel ApS",
        "vat": "DK13585628",
        "address": Address(
            street="Strøget 1", city="København", zip="1160", country_code="DK"
        ),
    },
    "GLN": {
        "name": "Warehouse GmbH",
        "vat": "DE136695976",
        "company_registry": "5790000435968",
        "registry_scheme": "0088",
        "address": Address(
            street="Hafenstraße 1", city="Hamburg", zip="20457", country_code="DE"
        ),
    },
}


def party(key: str, **overrides: Any) -> Party:
    return Party(**{**PARTIES[key], **overrides})


def make_line(
    line_id: str = "1",
    *,
    quantity: str = "1",
    price: str = "100",
    net: str | None = None,
    category: str = "S",
    percent: str = "21",
    **extra: Any,
) -> InvoiceLine:
    net_amount = Decimal(net) if net is not None else Decimal(quantity) * Decimal(price)
    return InvoiceLine(
        line_id=line_id,
        name=extra.pop("name", f"Item {line_id}"),
        quantity=Decimal(quantity),
        unit_price=Decimal(price),
        net_amount=net_amount,
        tax_category=category,
        tax_percent=Decimal(percent),
        **extra,
    )


def make_invoice(
    *,
    seller: Party | None = None,
    buyer: Party | None = None,
    lines: tuple[InvoiceLine, ...] | None = None,
    **overrides: Any,
) -> Invoice:
    """A canonical invoice; totals are the ledger's (round globally) unless given."""
    lines = lines or (make_line(),)
    net = sum((ln.net_amount for ln in lines), Decimal(0))
    tax = sum(
        (ln.net_amount * ln.tax_percent / 100 for ln in lines), Decimal(0)
    ).quantize(Decimal("0.01"))
    values: dict[str, Any] = {
        "number": "FV-2025-00042",
        "issue_date": date(2025, 3, 14),
        "due_date": date(2025, 4, 13),
        "buyer_reference": "PO-77812",
        "seller": seller or party("BE"),
        "buyer": buyer or party("BE_BUYER"),
        "lines": lines,
        "line_extension_amount": net,
        "tax_exclusive_amount": net,
        "tax_amount": tax,
        "tax_inclusive_amount": net + tax,
        "payable_amount": net + tax,
        "payment_iban": "BE71 0961 2345 6769",
    }
    values.update(overrides)
    return Invoice(**values)


@pytest.fixture(scope="session")
def rules_dir(shared_dir: Path) -> Path:
    return shared_dir / "specs" / "peppol"


@pytest.fixture(scope="session")
def validator(rules_dir: Path) -> Validator:
    """The stylesheets are compiled once for the whole test session."""
    return get_validator(rules_dir)


@pytest.fixture(scope="session")
def examples_dir(shared_dir: Path) -> Path:
    return shared_dir / "examples" / "peppol"


@pytest.fixture
def invoice_factory() -> Callable[..., Invoice]:
    return make_invoice


@pytest.fixture
def peppol_env(monkeypatch: pytest.MonkeyPatch, rules_dir: Path) -> Iterator[None]:
    monkeypatch.setenv("PEPPOL_RULES_DIR", str(rules_dir))
    yield


@pytest.fixture
def sandbox_factory(
    validator: Validator,
) -> Iterator[Callable[..., Any]]:
    """Start Peppol sandboxes on 127.0.0.1; all are stopped after the test."""
    from connectors.peppol.sandbox import PeppolSandbox

    started: list[PeppolSandbox] = []

    def start(**kwargs: Any) -> PeppolSandbox:
        kwargs.setdefault("validator", validator)
        box = PeppolSandbox(**kwargs).start()
        started.append(box)
        return box

    yield start
    for box in started:
        box.stop()
