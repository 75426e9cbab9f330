"""``crm-sync peppol validate`` on hostile files found by a tester.

Incoming documents with NaN amounts or values a nested model refuses escaped as
bare ``decimal``/pydantic errors instead of a :class:`DocumentError` naming the
document and the field.

An endless file (``/dev/zero``, a device) used to be read whole into memory before
the size limit was looked at: the command hung until it ran out of memory. It must
stop at the limit and report the file as unreadable (exit 2).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from connectors.peppol.cli import _read_bounded
from connectors.peppol.errors import DocumentError, UnsafeDocument
from connectors.peppol.parse import parse_document
from sync_daemon.cli import main as crm_sync


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_an_endless_file_is_read_only_up_to_the_limit() -> None:
    with pytest.raises(UnsafeDocument, match="larger than the limit of 1024 bytes"):
        _read_bounded(Path("/dev/zero"), limit=1024)


def test_a_file_at_the_limit_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.xml"
    path.write_bytes(b"x" * 1024)
    assert _read_bounded(path, limit=1024) == b"x" * 1024
    path.write_bytes(b"x" * 1025)
    with pytest.raises(UnsafeDocument) as caught:
        _read_bounded(path, limit=1024)
    assert caught.value.record == str(path)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_validate_dev_zero_is_unreadable_not_a_hang(
    peppol_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert crm_sync(["peppol", "validate", "/dev/zero"]) == 2
    assert time.monotonic() - started < 30
    out, err = capsys.readouterr()
    assert "/dev/zero: INVALID" in out
    assert "UNREADABLE: document is larger than the limit" in out
    assert "Traceback" not in err


# -- incoming documents --------------------------------------------------------------


def _with(base: str, pattern: str, value: str) -> bytes:
    changed, count = re.subn(pattern, lambda m: m.group(1) + value, base, count=1)
    assert count == 1, pattern
    return changed.encode()


@pytest.mark.parametrize(
    ("pattern", "value", "field"),
    [
        # NaN got through Decimal() and broke the first comparison with a bare
        # decimal.InvalidOperation
        (r"(<cbc:PayableAmount[^>]*>)[^<]*", "NaN", "cbc:PayableAmount"),
        # nested models raised pydantic's ValidationError, not a DocumentError
        (r"(<cbc:InvoicedQuantity[^>]*>)[^<]*", "NaN", "cbc:InvoicedQuantity"),
        (r"(<cbc:Percent>)[^<]*", "-Infinity", "cbc:Percent"),
        (r"(<cbc:IdentificationCode>)[^<]*", "Netherlands", "Address.country_code"),
    ],
)
def test_odd_values_in_an_incoming_document_name_document_and_field(
    examples_dir: Path, pattern: str, value: str, field: str
) -> None:
    base = (examples_dir / "base-example.xml").read_text(encoding="utf-8")
    with pytest.raises(DocumentError) as caught:
        parse_document(_with(base, pattern, value), source="inbox/1.xml")
    assert caught.value.record == "inbox/1.xml (Snippet1)"
    assert caught.value.field and caught.value.field.endswith(field)


def test_a_file_name_cannot_drive_the_terminal(
    peppol_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = tmp_path / "inv\x1b[2J\x07.xml"
    evil.write_bytes(b"not xml")
    assert crm_sync(["peppol", "validate", str(evil)]) == 2
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "inv[2J.xml: INVALID" in out
