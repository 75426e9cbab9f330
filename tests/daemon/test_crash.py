"""Crash safety: a child process killed with SIGKILL at random points during a
2,000-record sync, ten times, then one clean run: no duplicate, nothing lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from sync_daemon.kernel.models import Address, Customer
from sync_daemon.testing.double import DoubleLedger
from sync_daemon.testing.fake_odoo import FakeOdoo

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 2000
ODOO_SIDE = 100


def _child(fake: FakeOdoo, tmp_path: Path, backend_id: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sync_daemon.testing.crash_child",
            fake.url,
            fake.database,
            str(tmp_path / "state"),
            str(tmp_path / "ledger.sqlite3"),
            str(backend_id),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.slow
def test_kill_nine_ten_times_then_no_duplicates_nothing_lost(
    fake_odoo: FakeOdoo, tmp_path: Path
) -> None:
    backend_id = fake_odoo.add_backend(name="Crash")
    ledger = DoubleLedger(tmp_path / "ledger.sqlite3")
    for n in range(RECORDS):
        base = f"0{n + 1000000:07d}"
        vat = f"BE{base}{97 - int(base) % 97:02d}" if n % 3 == 0 else None
        ledger.put_customer(
            Customer(
                external_id=f"E{n}",
                name=f"Client {n:05d}",
                vat=vat,
                address=Address(country_code="BE", zip=f"{1000 + n % 9000}"),
                email=f"c{n}@example.com",
            )
        )
    for n in range(ODOO_SIDE):
        fake_odoo.seed(
            "res.partner",
            {"name": f"Odoo Customer {n:04d}", "is_company": True, "customer_rank": 1},
        )
    rng = random.Random(20260302)
    kills = 0
    for _ in range(10):
        # The kill point is counted in Odoo calls the child has made, not in
        # seconds, so it lands mid-run whatever the machine's speed; a short
        # random pause after that call varies where inside it the kill falls.
        kill_after = len(fake_odoo.calls) + rng.randint(2, 12)
        child = _child(fake_odoo, tmp_path, backend_id)
        deadline = time.monotonic() + 60
        while (
            child.poll() is None
            and len(fake_odoo.calls) < kill_after
            and time.monotonic() < deadline
        ):
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.02))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.wait(30)
    final = _child(fake_odoo, tmp_path, backend_id)
    _out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()[-3000:]
    assert kills >= 5  # most attempts were really interrupted

    names = Counter(p["name"] for p in fake_odoo.records("res.partner"))
    clients = {
        name: count for name, count in names.items() if name.startswith("Client ")
    }
    assert len(clients) == RECORDS  # nothing lost
    assert max(clients.values()) == 1  # no duplicate in Odoo
    links = [
        link
        for link in fake_odoo.records("crm.sync.link")
        if link["res_model"] == "res.partner"
    ]
    by_external = Counter(link["external_id"] for link in links)
    assert max(by_external.values()) == 1
    by_partner = Counter(link["res_id"] for link in links)
    assert max(by_partner.values()) == 1
    assert len(links) == RECORDS + ODOO_SIDE
    origins = Counter(c["origin"] for c in ledger.customers() if c["origin"])
    assert len(origins) == ODOO_SIDE and max(origins.values()) == 1  # pushed once each
