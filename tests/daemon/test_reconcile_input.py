"""``crm-sync reconcile`` on bad input: one named line, exit 2, nothing dropped.

Each case is a way real exports go wrong (a spreadsheet's delimiter or encoding, a
cut-short page set, a contact without its company, an envelope typo); the audit
must say which file, line or page, record and field, and never guess.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sync_daemon.cli import main

HEADER = "id,name,is_company,parent_id,vat,company_registry,email,phone,zip,city,"
HEADER += "country_code"
COMPANY = "1,Fictief Software,True,,BE 0447.123.478,,,,1000,Brussel,BE"
EXACT = {
    "d": {"results": [{"ID": "g1", "Name": "Fictief", "VATNumber": "BE0447123478"}]}
}


def _run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    csv_text: str | bytes,
    external: Any = EXACT,
    system: str = "exact",
) -> tuple[int, str, str]:
    odoo = tmp_path / "odoo.csv"
    if isinstance(csv_text, bytes):
        odoo.write_bytes(csv_text)
    else:
        odoo.write_text(csv_text, encoding="utf-8")
    ext = tmp_path / "external.json"
    if isinstance(external, bytes):
        ext.write_bytes(external)
    else:
        ext.write_text(external if isinstance(external, str) else json.dumps(external))
    argv = ["reconcile", "--odoo-csv", str(odoo), "--external", str(ext)]
    code = main([*argv, "--system", system, "--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.mark.parametrize(
    ("csv_text", "expected"),
    [
        (f"{HEADER}\n1,A\n", "line 2: 2 fields where the header has 11"),
        (f"{HEADER}\n1,Acme, Inc,True,,,,,,,,BE\n", "line 2: 12 fields"),
        (f"{HEADER}\nabc,A,True,,,,,,,,BE\n", "line 2: id must be a whole number"),
        (f"{HEADER}\n1,A,True,x,,,,,,,BE\n", "line 2: parent_id must be a whole"),
        (f"{HEADER}\n{COMPANY}\n1,Other,True,,,,,,,,BE\n", "id 1 already on line 2"),
        (
            f"{HEADER}\n5,Jane,False,999,BE0447123478,,,,,,BE\n",
            "line 2: parent_id 999 is not in the file",
        ),
        (
            f"{HEADER}\n5,Jane,False,6,,,,,,,BE\n6,John,False,5,,,,,,,BE\n",
            "makes a loop",
        ),
        ("", "missing column(s) id"),
        (HEADER.replace(",", "|") + "\n", "separated by ',', ';' or tabs"),
        (
            (f"{HEADER}\n1,Société,True,,,,,,,,FR\n").encode("latin-1"),
            "line 2: not UTF-8 (byte 0xe9)",
        ),
        (f'{HEADER}\n1,"{"x" * 200_000}",True,,,,,,,,BE\n', "line 2: field larger"),
    ],
)
def test_bad_odoo_csv_is_named_and_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    csv_text: str | bytes,
    expected: str,
) -> None:
    code, out, err = _run(tmp_path, capsys, csv_text)
    assert code == 2, out
    assert expected in err
    assert "odoo.csv" in err
    assert out == ""


def test_semicolons_upper_case_header_and_bom_are_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "\ufeff" + HEADER.upper().replace(",", ";") + "\n"
    text += COMPANY.replace(",", ";") + "\n"
    code, out, _ = _run(tmp_path, capsys, text)
    assert code == 0
    assert json.loads(out)["links"][0]["odoo_id"] == 1


def test_contacts_belong_to_their_first_company_ancestor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a contact of a contact: the VAT it carries links the company, never the person
    text = f"{HEADER}\n{COMPANY}\n2,Desk,False,1,,,,,,,BE\n"
    text += "3,Jane,False,2,BE0447123478,,,,,,BE\n"
    code, out, _ = _run(tmp_path, capsys, text)
    assert code == 0
    assert [link["odoo_id"] for link in json.loads(out)["links"]] == [1]


@pytest.mark.parametrize(
    ("external", "system", "expected"),
    [
        ({"d": {"results": None}}, "exact", "'d' object with a 'results' list"),
        ({"d": None}, "exact", "'results' list"),
        ({"d": {"result": []}}, "exact", "'results' list"),
        ({"d": "abc"}, "exact", "'results' list"),
        ({"d": {"results": [1, "x"]}}, "exact", "record 1: expected an object"),
        ({"$items": {"id": "a"}}, "sage", "'$items' must be a list"),
        ({"$items": [{"id": "a"}, {}]}, "sage", "record 2 has no id"),
        ({"data": []}, "exact", "not an Exact ('d') or Sage ('$items') page"),
        (
            {"$items": [{"id": "a", "name": "A", "main_address": "Rue 1"}]},
            "sage",
            "main_address must be an object",
        ),
        (
            {"d": {"results": [{"ID": "g1"}, {"ID": "g1", "Name": "Again"}]}},
            "exact",
            "ID 'g1' already at",
        ),
        ([EXACT, 7], "exact", "page 2: expected a JSON object, found int"),
        ("[" * 100_000, "exact", "not valid JSON"),
        ('{"d": {"results": [{"ID": ' + "9" * 5000 + "}]}}", "exact", "not valid"),
        ("{}".encode("utf-16"), "exact", "not UTF-8"),
    ],
)
def test_bad_external_pages_are_named_and_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    external: Any,
    system: str,
    expected: str,
) -> None:
    code, out, err = _run(tmp_path, capsys, f"{HEADER}\n{COMPANY}\n", external, system)
    assert code == 2, out
    assert expected in err
    assert out == ""


def test_id_zero_is_an_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    external = {"d": {"results": [{"ID": 0, "Name": "Zero"}]}}
    code, out, _ = _run(tmp_path, capsys, f"{HEADER}\n{COMPANY}\n", external)
    assert code == 0
    assert json.loads(out)["new"] == [{"external_id": "0"}]


@pytest.mark.parametrize(
    "external",
    [
        {"d": {"results": EXACT["d"]["results"], "__next": "https://x/?$skiptoken=1"}},
        {"$total": 500, "$next": "/contacts?page=2", "$items": [{"id": "a"}]},
    ],
)
def test_an_export_cut_short_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], external: Any
) -> None:
    system = "sage" if "$items" in external else "exact"
    code, out, err = _run(tmp_path, capsys, f"{HEADER}\n{COMPANY}\n", external, system)
    assert code == 0
    assert "warning:" in err and "incomplete" in err
    assert json.loads(out)["warnings"]


def test_invalid_identifiers_are_listed_with_their_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = f"{HEADER}\n{COMPANY}\n7,Typo BV,True,,BE0447123487,,,,,,BE\n"
    huge = {
        "d": {"results": [{"ID": "g9", "Name": "Huge", "VATNumber": "NL" + "9" * 4400}]}
    }
    code, out, _ = _run(tmp_path, capsys, text, huge)
    assert code == 0
    invalid = json.loads(out)["invalid"]
    assert [item["id"] for item in invalid["odoo"]] == [7]
    assert [item["id"] for item in invalid["external"]] == ["g9"]


def test_unreadable_paths_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "odoo.csv").write_text(f"{HEADER}\n{COMPANY}\n")
    for external in (tmp_path / "missing.json", tmp_path):
        argv = ["reconcile", "--odoo-csv", str(tmp_path / "odoo.csv")]
        argv += ["--external", str(external), "--system", "exact"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "cannot read" in err and "Traceback" not in err


def test_control_characters_never_reach_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    external = {"d": {"results": [{"ID": "evil\x1b[2J\nid", "Name": "Fictief Software",
                                   "Postcode": "1000"}]}}  # fmt: skip
    (tmp_path / "odoo.csv").write_text(
        f"{HEADER}\n{COMPANY}\n2,Fictief Software BV,True,,,,,,1000,,BE\n"
    )
    (tmp_path / "e.json").write_text(json.dumps(external))
    argv = ["reconcile", "--odoo-csv", str(tmp_path / "odoo.csv")]
    assert (
        main([*argv, "--external", str(tmp_path / "e.json"), "--system", "exact"]) == 0
    )
    out = capsys.readouterr().out
    assert "\x1b" not in out


EXACT_ROWS = [
    {"ID": "g1", "Name": "Fictief", "VATNumber": "BE0447123478", "Country": "BE"},
    {"ID": "g2", "Name": "Nieuw BV", "Country": "NL"},
]
SAGE_ROWS = [
    {
        "id": "s1",
        "name": "Fictief",
        "tax_number": "BE0447123478",
        "main_address": {"country": {"id": "BE"}},
    },
    {"id": "s2", "name": "Nouveau SARL", "main_address": {"country": {"id": "FR"}}},
]


@pytest.mark.parametrize(
    ("system", "external"),
    [
        ("exact", {"d": {"results": EXACT_ROWS}}),
        ("exact", [{"d": {"results": [row]}} for row in EXACT_ROWS]),
        ("exact", EXACT_ROWS),
        ("sage", {"$items": SAGE_ROWS}),
        ("sage", [{"$items": [row]} for row in SAGE_ROWS]),
        ("sage", SAGE_ROWS),
    ],
    ids=["exact-envelope", "exact-pages", "exact-list", "sage-envelope",
         "sage-pages", "sage-list"],
)  # fmt: skip
def test_every_documented_external_shape_reads_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], system: str, external: Any
) -> None:
    code, out, _ = _run(tmp_path, capsys, f"{HEADER}\n{COMPANY}\n", external, system)
    assert code == 0
    report = json.loads(out)
    prefix = "g" if system == "exact" else "s"
    assert [(x["odoo_id"], x["external_id"]) for x in report["links"]] == [
        (1, f"{prefix}1")
    ]
    assert report["new"] == [{"external_id": f"{prefix}2"}]
    assert report["stats"]["external_records"] == 2
