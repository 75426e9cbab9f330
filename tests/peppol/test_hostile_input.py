"""``crm-sync peppol validate`` on hostile files found by a tester.

An endless file (``/dev/zero``, a device) used to be read whole into memory before
the size limit was looked at: the command hung until it ran out of memory. It must
stop at the limit and report the file as unreadable (exit 2).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from connectors.peppol.cli import _read_bounded
from connectors.peppol.errors import UnsafeDocument
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
