"""Hostile inputs to ``crm-sync reconcile`` found by a tester: each one used to
crash with a traceback, or to be read silently as something else.

Every case must exit 2 with one line naming the file, the line or record and the
field, and print no report.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sync_daemon.cli import main
from sync_daemon.kernel.models import Address, Customer
from sync_daemon.testing.fake_odoo import FakeOdoo

from .test_engine import Env, _customer

HEADER = "id,name,is_company,parent_id,vat,company_registry,email,phone,zip,city,"
HEADER += "country_code"
COMPANY = "1,Fictief Software,True,,BE 0447.123.478,,,,1000,Brussel,BE"
EXACT = {"d": {"results": [{"ID": "g1", "Name": "Fictief"}]}}


def _run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    csv_text: str,
    external: Any = EXACT,
    system: str = "exact",
) -> tuple[int, str, str]:
    (tmp_path / "odoo.csv").write_text(csv_text, encoding="utf-8")
    ext = tmp_path / "external.json"
    ext.write_text(external if isinstance(external, str) else json.dumps(external))
    argv = ["reconcile", "--odoo-csv", str(tmp_path / "odoo.csv")]
    code = main([*argv, "--external", str(ext), "--system", system, "--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.mark.parametrize(
    ("csv_text", "expected"),
    [
        # str.isdigit() is true for '²' and '١٢'; int() then crashed or guessed
        (f"{HEADER}\n²,A,True,,,,,,,,BE\n", "line 2: id must be a whole number"),
        (f"{HEADER}\n1,A,True,³,,,,,,,BE\n", "line 2: parent_id must be a whole"),
        (f"{HEADER}\n١٢,A,True,,,,,,,,BE\n", "line 2: id must be a whole number"),
        # which of two 'id' columns counts? it used to be the last one, silently
        (f"{HEADER},id\n1,A,True,,,,,,,,BE,2\n", "line 1: column(s) id appear"),
        # an unknown boolean was read as "not a company"
        (f"{HEADER}\n1,A,maybe,,,,,,,,BE\n", "line 2: is_company must be True or"),
        # a country name instead of its code matched as 'BELGIUM'
        (f"{HEADER}\n1,A,True,,,,,,,,Belgium\n", "line 2: country_code must be a"),
    ],
    ids=["superscript-id", "superscript-parent", "arabic-digits", "column-twice",
         "is-company-maybe", "country-name"],
)  # fmt: skip
def test_odd_csv_values_are_named_not_guessed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], csv_text: str, expected: str
) -> None:
    code, out, err = _run(tmp_path, capsys, csv_text)
    assert code == 2, out
    assert expected in err and "odoo.csv" in err
    assert out == ""


def _exact(**record: Any) -> dict[str, Any]:
    return {"d": {"results": [{"ID": "g1", "Name": "A", **record}]}}


@pytest.mark.parametrize(
    ("external", "system", "expected"),
    [
        # a lone surrogate crashed the JSON writer after the audit had run
        ('{"d": {"results": [{"ID": "a\\ud800"}]}}', "exact", "record 1: ID holds an"),
        ('{"$items": [{"id": "s", "name": "\\udfff"}]}', "sage", "record 1: name hol"),
        # NaN/Infinity are no JSON: the id became the text 'nan'
        ('{"d": {"results": [{"ID": NaN}]}}', "exact", "NaN is not a JSON value"),
        ('[{"ID": "a", "Postcode": -Infinity}]', "exact", "Infinity is not a JSON"),
        # ids of the wrong type became "True", "1.5", "[1]", "{'a': 1}"
        (_exact(ID=True), "exact", "record 1: ID must be text or a whole number"),
        (_exact(ID=1.5), "exact", "record 1: ID must be text or a whole number"),
        (_exact(ID=[1]), "exact", "ID must be text or a whole number, found a list"),
        ({"$items": [{"id": {"a": 1}}]}, "sage", "record 1: id must be text or a"),
        # objects and lists where text belongs were matched as their repr
        (_exact(Name={"x": 1}), "exact", "record 1: Name must be text, found an ob"),
        (_exact(VATNumber=["BE"]), "exact", "record 1: VATNumber must be text"),
        (_exact(PeppolIdentifier={}), "exact", "record 1: PeppolIdentifier must"),
        (
            {"$items": [{"id": "s", "main_address": {"postal_code": [1000]}}]},
            "sage",
            "record 1: main_address.postal_code must be text",
        ),
        # 'Netherlands' was cut to 'NE' (Niger) and linked on name + postcode
        (_exact(Country="Netherlands"), "exact", "record 1: Country must be a two"),
        (
            {"$items": [{"id": "s", "main_address": {"country": {"id": "FRA"}}}]},
            "sage",
            "record 1: main_address.country.id must be a two-letter ISO code",
        ),
        # which 'ID' counts? the last one did, silently
        ('{"d": {"results": [{"ID": "a", "ID": "b"}]}}', "exact", "key 'ID' appears"),
    ],
)
def test_odd_external_values_are_named_not_guessed(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    external: Any,
    system: str,
    expected: str,
) -> None:
    code, out, err = _run(tmp_path, capsys, f"{HEADER}\n{COMPANY}\n", external, system)
    assert code == 2, out
    assert expected in err and "external.json" in err
    assert out == ""


def test_the_netherlands_never_links_to_niger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    niger = f"{HEADER}\n1,Acme,True,,,,,,1000,,NE\n"
    ok = _exact(Name="Acme", Postcode="1000", Country="NL")
    code, out, _ = _run(tmp_path, capsys, niger, ok)
    assert code == 0
    assert json.loads(out)["links"] == []


def test_numbers_and_plain_booleans_are_still_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = f"{HEADER}\n{COMPANY}\n2,Jane,0,1,,,,,,,be\n3,John,,1,,,,,,,\n"
    numbers = _exact(ID=42, VATNumber=447123478, Country="be", Postcode=1000)
    code, out, _ = _run(tmp_path, capsys, text, numbers)
    assert code == 0, out
    report = json.loads(out)
    assert report["stats"]["odoo_partners"] == 3
    assert [x["external_id"] for x in report["links"]] == ["42"]


# -- configuration ------------------------------------------------------------------

ODOO = '[odoo]\ndatabase = "d"\nlogin = "l"\napi_key = "k"\n'


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        # urlsplit(...).port raised ValueError: a traceback
        (ODOO + 'url = "http://127.0.0.1:99999"\n', "odoo.url has a bad port"),
        # the gateway only uses host and port: a path was silently ignored
        (ODOO + 'url = "http://127.0.0.1:1/odoo"\n', "without a path, query"),
        (ODOO + 'url = "http://127.0.0.1:1?db=x"\n', "without a path, query"),
        # TOML has inf: the first call died with "OverflowError"
        (ODOO + "timeout = inf\n", "odoo.timeout: Input should be a finite number"),
        ("poll_seconds = inf\n" + ODOO, "poll_seconds: Input should be a finite"),
        # a section the daemon never reads was silently unused
        ("[backends.exact]\nx = 1\n" + ODOO, "[backends.exact]: the section name"),
        ('state_dir = "c.toml"\n' + ODOO, "state_dir: Value error, c.toml exists"),
    ],
    ids=["port", "path", "query", "timeout-inf", "poll-inf", "backend-name",
         "state-dir-file"],
)  # fmt: skip
def test_odd_configuration_is_named_before_anything_runs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    toml: str,
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text(toml)
    assert main(["-c", "c.toml", "check"]) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_section_variable_that_is_no_json_names_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "c.toml").write_text(ODOO)
    monkeypatch.setenv("CRM_SYNC_ODOO", "garbage")
    assert main(["-c", str(tmp_path / "c.toml"), "check"]) == 2
    err = capsys.readouterr().err
    assert "CRM_SYNC_* environment variables" in err and "CRM_SYNC_ODOO" in err
    assert "cannot read configuration" not in err


def test_an_odoo_that_accepts_but_never_answers_is_given_up_quickly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 'check' used to wait the whole odoo.timeout (120 s) for the first answer
    from sync_daemon import gateway

    assert gateway.CONNECT_TIMEOUT <= 15
    monkeypatch.setattr(gateway, "CONNECT_TIMEOUT", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        url = f'url = "http://127.0.0.1:{port}"\n'
        (tmp_path / "c.toml").write_text(ODOO + url + "timeout = 120\n")
        started = time.monotonic()
        assert main(["-c", str(tmp_path / "c.toml"), "check"]) == 2
        assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert "did not answer version_info in 0.5 s" in err


# -- ledger records the daemon writes to Odoo ---------------------------------------


def test_a_nul_character_is_refused_where_the_record_is_made() -> None:
    # PostgreSQL refuses U+0000: one such name failed a whole batch create in Odoo
    # with "A string literal cannot contain NUL (0x00) characters"
    with pytest.raises(ValidationError) as caught:
        Customer(external_id="X1", name="Acme\x00 BV")
    assert caught.value.errors()[0]["loc"] == ("name",)
    assert "NUL" in caught.value.errors()[0]["msg"]
    with pytest.raises(ValidationError):
        Customer(external_id="X1", name="Acme", tags=("ok", "b\x00d"))
    with pytest.raises(ValidationError):
        Address(city="Gent\x00")
    assert Customer(external_id="X1", name="Acme 😀" * 2000).name.startswith("Acme")


def test_an_unknown_country_is_a_dead_letter_not_an_empty_country(
    fake_odoo: FakeOdoo, tmp_path: Path
) -> None:
    env = Env(fake_odoo, tmp_path)
    env.ledger.put_customer(_customer("X1", "Nowhere Ltd", country="XX"))
    env.ledger.put_customer(_customer("B1", "Brussels BV", "BE0765881217"))
    result = env.run()
    assert result.outcome == "partial"
    assert result.counts.created == 1 and result.counts.errors == 1
    assert not env.partners(name="Nowhere Ltd")
    letters = {d.external_id: d for d in env.state.dead_letters(env.backend_id)}
    assert letters["X1"].field == "country_code"
    assert "'XX' is not a country known to Odoo" in letters["X1"].message
    assert {i["external_id"]: i["kind"] for i in env.issues()} == {"X1": "invalid_data"}
    # an update with an unknown code used to erase the partner's country
    [partner] = env.partners(name="Brussels BV")
    country = partner["country_id"]
    assert country
    env.ledger.put_customer(
        _customer("B1", "Brussels BV", "BE0765881217", country="XX")
    )
    env.run()
    [partner] = env.partners(name="Brussels BV")
    assert partner["country_id"] == country
    letters = {d.external_id: d for d in env.state.dead_letters(env.backend_id)}
    assert letters["B1"].field == "country_code"


# -- sandboxes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["exact", "--port", "99999"], "port must be 0-65535"),
        (["peppol", "--port", "-1"], "port must be 0-65535"),
        (["sage_accounting", "--fault-rate", "nan"], "fault rate must lie in"),
    ],
)
def test_sandbox_mistakes_are_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert main(["sandbox", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"crm-sync sandbox {argv[0]}: ") and expected in err
    assert len(err.strip().splitlines()) == 1


def test_a_taken_sandbox_port_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        assert main(["sandbox", "sage_x3", "--port", port]) == 2
    assert "crm-sync sandbox sage_x3: Address already in use" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["garbage", "folder"])
def test_a_damaged_state_file_is_one_line_not_a_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    damage: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "st" / "state.sqlite3"
    if damage == "garbage":
        state.parent.mkdir()
        state.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    else:
        state.mkdir(parents=True)
    (tmp_path / "c.toml").write_text('state_dir = "st"\n' + ODOO)
    for command in ("status", "once", "check"):
        assert main(["-c", "c.toml", command]) == 2
        err = capsys.readouterr().err
        assert f"crm-sync {command}: st/state.sqlite3 / state_dir: not a usable" in err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_an_endless_input_is_refused_not_read_into_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # /dev/zero used to be read until memory ran out (12 GB in 20 s)
    from sync_daemon import reconcile

    monkeypatch.setattr(reconcile, "MAX_INPUT_BYTES", 1024)
    (tmp_path / "odoo.csv").write_text(f"{HEADER}\n{COMPANY}\n")
    for odoo, external in (("/dev/zero", "odoo.csv"), ("odoo.csv", "/dev/zero")):
        argv = ["reconcile", "--odoo-csv", str(tmp_path / odoo)]
        argv += ["--external", str(tmp_path / external), "--system", "exact"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("crm-sync reconcile: /dev/zero: larger than")
        assert "split the export" in err
