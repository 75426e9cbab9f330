"""The validator (compiled once, full assert details) and ``crm-sync peppol``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.peppol.errors import RulesNotFound, ValidationFailed
from connectors.peppol.validate import Validator, find_rules_dir, get_validator
from sync_daemon.cli import main as crm_sync


def test_validator_is_compiled_once_per_process(validator: Validator, rules_dir):
    assert get_validator(rules_dir) is validator
    assert get_validator(str(rules_dir)) is validator
    assert validator.compile_seconds > 0


def test_every_failed_assert_has_rule_flag_message_location(load_case, validator):
    result = validator.validate(
        load_case("C026_invoice_buyer_endpoint_0208_with_prefix_fail.xml"),
        source="C026.xml",
    )
    assert not result.valid
    for item in result.errors:
        assert item.rule == "PEPPOL-COMMON-R043"
        assert item.flag == "fatal"
        assert "Belgian enterprise number" in item.message
        assert "AccountingCustomerParty" in item.location
    as_json = result.as_dict()
    assert as_json["file"] == "C026.xml" and as_json["valid"] is False
    with pytest.raises(ValidationFailed) as err:
        result.raise_for_fatal(record="invoice FV-2025-00045")
    assert err.value.rules == ["PEPPOL-COMMON-R043"]
    assert err.value.record == "invoice FV-2025-00045"
    assert len(err.value.details["errors"]) == 2


def test_warnings_do_not_make_a_document_invalid(examples_dir: Path, validator):
    result = validator.validate((examples_dir / "Norwegian-example-1.xml").read_bytes())
    assert result.valid
    assert result.errors and all(a.flag == "warning" for a in result.errors)


def test_xsd_errors_are_reported(load_case, validator: Validator) -> None:
    data = load_case("C029_invoice_default_ns_cbc_local_ns_cac_valid.xml")
    broken = data.replace(b"<IssueDate>2025-03-14</IssueDate>", b"")
    result = validator.validate(broken)
    assert "XSD" in result.fatal_rules


def test_rules_dir_env_and_clear_error(monkeypatch, tmp_path: Path, rules_dir):
    monkeypatch.setenv("PEPPOL_RULES_DIR", str(rules_dir))
    assert find_rules_dir() == rules_dir.resolve()
    monkeypatch.setenv("PEPPOL_RULES_DIR", str(tmp_path))
    with pytest.raises(RulesNotFound, match="PEPPOL_RULES_DIR"):
        find_rules_dir()


def test_cli_json_and_exit_codes(
    peppol_env, load_case, examples_dir: Path, tmp_path: Path, capsys
) -> None:
    good = examples_dir / "base-example.xml"
    bad = tmp_path / "C025.xml"
    bad.write_bytes(load_case("C025_invoice_no_buyer_or_order_reference_R003_fail.xml"))

    assert crm_sync(["peppol", "validate", str(good), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"file": str(good), "valid": True, "errors": []}
    ]

    assert crm_sync(["peppol", "validate", str(good), str(bad), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [r["valid"] for r in report] == [True, False]
    assert report[1]["errors"][0]["rule"] == "PEPPOL-EN16931-R003"
    assert set(report[1]["errors"][0]) == {"rule", "flag", "message", "location"}

    evil = tmp_path / "evil.xml"
    evil.write_bytes(
        b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>'
    )
    missing = tmp_path / "missing.xml"
    assert crm_sync(["peppol", "validate", str(bad), str(evil), str(missing)]) == 2
    out = capsys.readouterr().out
    assert "UNREADABLE" in out and "INVALID" in out


@pytest.mark.parametrize("broken", ["xsd", "xslt"])
def test_broken_rules_are_exit_2_not_a_verdict(
    tmp_path: Path,
    rules_dir: Path,
    examples_dir: Path,
    capsys: pytest.CaptureFixture[str],
    broken: str,
) -> None:
    # exit 1 means "a document has a fatal error": a broken artefact is not that
    import shutil

    copy = tmp_path / "rules"
    shutil.copytree(rules_dir / "ubl-2.1", copy / "ubl-2.1")
    shutil.copytree(rules_dir / "xslt", copy / "xslt")
    target = (
        copy / "ubl-2.1" / "xsd" / "maindoc" / "UBL-Invoice-2.1.xsd"
        if broken == "xsd"
        else copy / "xslt" / "PEPPOL-EN16931-UBL.xslt"
    )
    target.write_text("garbage, not XML")
    example = next(examples_dir.glob("*.xml"))
    code = crm_sync(["peppol", "validate", "--rules-dir", str(copy), str(example)])
    err = capsys.readouterr().err
    assert code == 2
    assert target.name in err and "cannot be" in err
    assert "Traceback" not in err
