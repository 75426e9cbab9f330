"""Identity matching and the offline reconcile audit: field cases C007, C008, C009."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from sync_daemon.cli import main
from sync_daemon.kernel.models import Address, Customer
from sync_daemon.matching import MatchIndex, customer_keys, partner_keys


def _odoo(pid: int, name: str, **extra: Any) -> dict[str, Any]:
    return {"id": pid, "name": name, "is_company": True, **extra}


def _exact(
    name: str, vat: Any = None, country: str | None = None, **extra: Any
) -> Customer:
    return Customer(
        external_id=extra.pop("external_id", "EXT-1"),
        name=name,
        vat=vat,
        address=Address(country_code=country, zip=extra.pop("zip", None)),
        **extra,
    )


def test_c007_vat_punctuation_pairs(load_case: Any) -> None:
    case = load_case("C007_vat_punctuation_pairs.json")
    for odoo_vat, exact_vat in case["same"]:
        country = odoo_vat.replace(" ", "")[:2].upper()
        index = MatchIndex(
            [
                partner_keys(
                    _odoo(101, "Fictief Software", vat=odoo_vat, country_code=country)
                )
            ]
        )
        decision = index.match(
            customer_keys(_exact("Fictief Software BV", exact_vat, country))
        )
        assert (decision.outcome, decision.partner_id, decision.rule) == (
            "link",
            101,
            "vat",
        ), (
            odoo_vat,
            exact_vat,
            decision,
        )
    for odoo_vat, exact_vat in case["different"]:
        index = MatchIndex(
            [
                partner_keys(
                    _odoo(101, "Fictief Software", vat=odoo_vat, country_code="BE")
                )
            ]
        )
        decision = index.match(customer_keys(_exact("Other Name", exact_vat)))
        assert decision.outcome != "link", (odoo_vat, exact_vat)


def test_c007_scenario_links_without_creating() -> None:
    index = MatchIndex(
        [
            partner_keys(
                _odoo(101, "Fictief Software", vat="BE 0447.123.478", country_code="BE")
            )
        ]
    )
    decision = index.match(
        customer_keys(_exact("Fictief Software BV", "BE0447123478", "BE"))
    )
    assert decision.outcome == "link" and decision.partner_id == 101
    assert "BE0447123478" in decision.explanation


def test_c008_missing_country_prefix(load_case: Any) -> None:
    for item in load_case("C008_vat_missing_country_prefix.json")["cases"]:
        odoo, exact = item["odoo"], item["exact"]
        index = MatchIndex(
            [
                partner_keys(
                    _odoo(
                        101, odoo["name"], vat=odoo["vat"], country_code=odoo["country"]
                    )
                )
            ]
        )
        decision = index.match(
            customer_keys(_exact(exact["Name"], exact["VATNumber"], exact["Country"]))
        )
        if item["expected"] == "same":
            assert (decision.outcome, decision.partner_id) == ("link", 101), item
        else:
            assert decision.outcome == "review", item
            assert decision.partner_id is None
            assert 101 in decision.candidate_ids
            assert "country" in decision.explanation


def test_c009_kvk_leading_zero(load_case: Any) -> None:
    case = load_case("C009_kvk_leading_zero.json")
    for item in case["cases"]:
        index = MatchIndex(
            [
                partner_keys(
                    _odoo(
                        7,
                        "Kaas BV",
                        company_registry=item["odoo_company_registry"],
                        country_code="NL",
                    )
                )
            ]
        )
        customer = Customer(
            external_id="E",
            name="Andere Naam",
            company_registry=str(item["exact_ChamberOfCommerce"]),
            address=Address(country_code="NL"),
        )
        decision = index.match(customer_keys(customer))
        expected = "link" if item["expected"] == "same" else "new"
        assert decision.outcome == expected, item
        if expected == "link":
            assert decision.rule == "registry"
            assert index.partners[7].registry == "NL:04123456"


def test_child_contact_vat_links_the_company() -> None:
    index = MatchIndex(
        [
            partner_keys(
                _odoo(
                    10, "Atelier Imaginaire SRL", vat="BE0765881217", country_code="BE"
                )
            ),
            partner_keys(
                {
                    "id": 11,
                    "name": "Jean",
                    "is_company": False,
                    "parent_id": 10,
                    "vat": "BE0765881217",
                    "country_code": "BE",
                }
            ),
        ]
    )
    decision = index.match(
        customer_keys(_exact("Atelier Imaginaire", "BE0765881217", "BE"))
    )
    assert (decision.outcome, decision.partner_id) == ("link", 10)
    assert index.duplicate_groups() == []


def test_identifiers_pointing_at_two_customers_go_to_review() -> None:
    index = MatchIndex(
        [
            partner_keys(_odoo(1, "A", vat="BE0765881217", country_code="BE")),
            partner_keys(_odoo(2, "B", vat="BE0447123478", country_code="BE")),
        ]
    )
    customer = Customer(
        external_id="X",
        name="A",
        vat="BE0765881217",
        company_registry="0447123478",
        address=Address(country_code="BE"),
    )
    decision = index.match(customer_keys(customer))
    assert decision.outcome == "review" and decision.candidate_ids == [1, 2]


def test_contradicting_registry_goes_to_review() -> None:
    index = MatchIndex(
        [
            partner_keys(
                _odoo(
                    1,
                    "A",
                    vat="NL807654322B01",
                    company_registry="04123456",
                    country_code="NL",
                )
            )
        ]
    )
    customer = Customer(
        external_id="X",
        name="A",
        vat="NL807654322B01",
        company_registry="14123456",
        address=Address(country_code="NL"),
    )
    decision = index.match(customer_keys(customer))
    assert decision.outcome == "review" and "registry" in decision.explanation


def test_name_and_postcode() -> None:
    plain = MatchIndex(
        [partner_keys(_odoo(1, "Dupont SARL", zip="75001", country_code="FR"))]
    )
    decision = plain.match(
        customer_keys(_exact("SARL Dupont", country="FR", zip="75 001"))
    )
    assert (decision.outcome, decision.rule) == ("link", "name_postcode")
    off = MatchIndex(plain.partners.values(), link_on_name_and_postcode=False)
    assert (
        off.match(
            customer_keys(_exact("SARL Dupont", country="FR", zip="75001"))
        ).outcome
        == "proposal"
    )
    # an identifier on either side: a proposal, never a link
    with_vat = MatchIndex(
        [
            partner_keys(
                _odoo(
                    1,
                    "Dupont SARL",
                    zip="75001",
                    vat="FR40503219875",
                    country_code="FR",
                )
            )
        ]
    )
    decision = with_vat.match(
        customer_keys(_exact("Dupont", country="FR", zip="75001"))
    )
    assert decision.outcome == "proposal" and decision.score == pytest.approx(0.9)
    decision = plain.match(
        customer_keys(_exact("Dupont", "FR40503219875", "FR", zip="75001"))
    )
    assert decision.outcome == "proposal"
    assert "identifier" in decision.explanation


def test_existing_link_wins() -> None:
    index = MatchIndex(
        [partner_keys(_odoo(1, "A", vat="BE0765881217", country_code="BE"))]
    )
    decision = index.match(
        customer_keys(_exact("Z", "BE0447123478", "BE")), linked_partner_id=5
    )
    assert (decision.outcome, decision.partner_id) == ("same", 5)


def test_archived_and_erased_are_reviewed() -> None:
    index = MatchIndex(
        [
            partner_keys(
                _odoo(1, "A", vat="BE0765881217", country_code="BE", active=False)
            ),
            partner_keys(
                _odoo(2, "B", vat="BE0447123478", country_code="BE", erased=True)
            ),
        ]
    )
    assert (
        index.match(customer_keys(_exact("A", "BE0765881217", "BE"))).rule == "archived"
    )
    assert (
        index.match(customer_keys(_exact("B", "BE0447123478", "BE"))).rule == "erased"
    )


# -- crm-sync reconcile --------------------------------------------------------------


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = [
        "id",
        "name",
        "is_company",
        "parent_id",
        "vat",
        "company_registry",
        "email",
        "phone",
        "zip",
        "city",
        "country_code",
        "extra",
    ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})


def test_reconcile_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_csv(
        tmp_path / "odoo.csv",
        [
            {
                "id": 101,
                "name": "Atelier Imaginaire SRL",
                "is_company": 1,
                "vat": "BE0765881217",
                "country_code": "BE",
            },
            {
                "id": 102,
                "name": "Jean Dupont",
                "is_company": 0,
                "parent_id": 101,
                "vat": "BE0765881217",
                "country_code": "BE",
            },
            {
                "id": 103,
                "name": "Fictief Software",
                "is_company": 1,
                "vat": "BE 0447.123.478",
                "country_code": "BE",
            },
            {
                "id": 104,
                "name": "Fictief Software NV",
                "is_company": 1,
                "vat": "BE0447123478",
                "country_code": "BE",
            },
            {
                "id": 105,
                "name": "Kaas BV",
                "is_company": 1,
                "company_registry": "04123456",
                "country_code": "NL",
                "zip": "1011 AB",
            },
        ],
    )
    pages = [
        {
            "d": {
                "results": [
                    {
                        "ID": "g1",
                        "Name": "Atelier Imaginaire",
                        "VATNumber": "0765881217",
                        "Country": "BE",
                    },
                    {
                        "ID": "g2",
                        "Name": "Kaas",
                        "ChamberOfCommerce": 4123456,
                        "Country": "NL",
                    },
                ],
                "__next": "x",
            }
        },
        {
            "d": {
                "results": [
                    {"ID": "g3", "Name": "Nieuw BV", "Country": "NL"},
                    {
                        "ID": "g4",
                        "Name": "Fictief Software",
                        "VATNumber": "BE0447123478",
                        "Country": "BE",
                    },
                    {
                        "ID": "g5",
                        "Name": "Kaas BV",
                        "Postcode": "1011AB",
                        "Country": "NL",
                    },
                ]
            }
        },
    ]
    (tmp_path / "exact.json").write_text(json.dumps(pages))
    code = main(
        [
            "reconcile",
            "--odoo-csv",
            str(tmp_path / "odoo.csv"),
            "--external",
            str(tmp_path / "exact.json"),
            "--system",
            "exact",
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    # the documented shape, key for key
    assert {"links", "review", "new", "duplicates", "stats"} <= set(report)
    assert all(
        set(link) == {"odoo_id", "external_id", "rule", "score"}
        and isinstance(link["odoo_id"], int)
        and isinstance(link["score"], float)
        and 0 < link["score"] <= 1
        for link in report["links"]
    )
    assert all(
        set(item) == {"odoo_ids", "external_id", "reason"}
        and all(isinstance(i, int) for i in item["odoo_ids"])
        and item["reason"]
        for item in report["review"]
    )
    assert all(set(item) == {"external_id"} for item in report["new"])
    assert set(report["duplicates"]) == {"odoo", "external"}
    assert isinstance(report["stats"], dict)
    assert sorted(
        (link["odoo_id"], link["external_id"], link["rule"]) for link in report["links"]
    ) == [
        (101, "g1", "vat"),
        (105, "g2", "registry"),
    ]
    reviews = {r["external_id"]: r for r in report["review"]}
    assert reviews["g4"]["odoo_ids"] == [103, 104]
    assert reviews["g5"]["odoo_ids"] == [105] and "proposal" in reviews["g5"]["reason"]
    assert report["new"] == [{"external_id": "g3"}]
    assert report["duplicates"]["odoo"] == [[103, 104]]
    assert report["stats"]["external_records"] == 5


def test_reconcile_sage_pages_and_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], load_case: Any
) -> None:
    _write_csv(tmp_path / "odoo.csv", [{"id": 1, "name": "X", "is_company": 1}])
    page = load_case("C019_contacts_page2.json")
    full = {
        "$items": [
            {
                "id": "s1",
                "name": "Dup One",
                "tax_number": "BE0765881217",
                "main_address": {"country": {"id": "BE"}},
            },
            {
                "id": "s2",
                "name": "Dup Two",
                "tax_number": "BE 0765 881 217",
                "main_address": {"country": {"id": "BE"}},
            },
        ]
    }
    (tmp_path / "sage.json").write_text(json.dumps([page, full]))
    assert (
        main(
            [
                "reconcile",
                "--odoo-csv",
                str(tmp_path / "odoo.csv"),
                "--external",
                str(tmp_path / "sage.json"),
                "--system",
                "sage",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["duplicates"]["external"] == [["s1", "s2"]]
    incomplete = [r for r in report["review"] if "without attributes" in r["reason"]]
    assert len(incomplete) == len(page["$items"])
    assert (
        main(
            [
                "reconcile",
                "--odoo-csv",
                str(tmp_path / "odoo.csv"),
                "--external",
                str(tmp_path / "sage.json"),
                "--system",
                "sage",
            ]
        )
        == 0
    )
    assert "new customers" in capsys.readouterr().out


def test_reconcile_bad_csv_names_the_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "odoo.csv").write_text("id,name\n1,A\n")
    (tmp_path / "e.json").write_text("[]")
    argv = ["reconcile", "--odoo-csv", str(tmp_path / "odoo.csv")]
    argv += ["--external", str(tmp_path / "e.json"), "--system", "exact"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "missing column(s)" in err and "company_registry" in err
    assert "Traceback" not in err


def test_fast_name_key_equals_the_kernel() -> None:
    import random

    from sync_daemon.kernel.identifiers import _LEGAL_FORMS
    from sync_daemon.kernel.identifiers import name_key as kernel_name_key
    from sync_daemon.matching import name_key

    rng = random.Random(3)
    words = [
        "Alpha",
        "Société",
        "Müller",
        "B.V.",
        "N.V.",
        "GmbH & Co. KG",
        "SA",
        "sarl",
        "as",
        "A/S",
        "I/S",
        "Comm.V",
        "ltd",
        "&",
        "Co",
        "KG",
        "é",
        "x",
    ]
    forms = [f.upper() for f in _LEGAL_FORMS] + [f.title() for f in _LEGAL_FORMS]
    for _ in range(5000):
        parts = rng.choices(words + forms, k=rng.randint(0, 6))
        text = " ".join(parts)
        assert name_key(text) == kernel_name_key(text), text


def test_same_phone_in_another_format_is_a_proposal() -> None:
    index = MatchIndex(
        [
            partner_keys(
                _odoo(1, "Bakkerij Peeters", phone="02 555 12 34", country_code="BE")
            )
        ]
    )
    decision = index.match(
        customer_keys(_exact("Peeters Brood", country="BE", phone="+32 2 555 12 34"))
    )
    assert decision.outcome == "proposal" and decision.candidate_ids == [1]
    assert "phone" in decision.explanation
