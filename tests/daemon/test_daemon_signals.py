"""``crm-sync run`` as a process: one daemon per state directory, and SIGTERM
finishes the current batch, records the run and exits cleanly (exit code 0)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sync_daemon.cli import main
from sync_daemon.kernel.models import Address, Customer
from sync_daemon.testing.double import DoubleLedger
from sync_daemon.testing.fake_odoo import Call, FakeOdoo

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 2000
BATCH = 50


def _config(fake: FakeOdoo, tmp_path: Path, backend_id: int) -> Path:
    config = tmp_path / "crm-sync.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f"batch_size = {BATCH}\n"
        "poll_seconds = 1\n"
        f'[odoo]\nurl = "{fake.url}"\ndatabase = "{fake.database}"\n'
        'login = "sync-bot"\n'
        f'[backends.{backend_id}]\nfactory = "sync_daemon.testing.double:create"\n'
        f'ledger = "{tmp_path / "ledger.sqlite3"}"\n'
    )
    return config


def _daemon(config: Path, *command: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "sync_daemon.cli", "-v", "-c", str(config), *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "CRM_SYNC_ODOO__API_KEY": "secret",
        },
    )


def _clients(fake: FakeOdoo) -> Counter[str]:
    return Counter(
        p["name"]
        for p in fake.records("res.partner")
        if p["name"].startswith("Client ")
    )


def test_sigterm_finishes_the_batch_and_one_daemon_per_state_dir(
    fake_odoo: FakeOdoo, tmp_path: Path, monkeypatch: Any
) -> None:
    backend_id = fake_odoo.add_backend(name="Ledger")
    ledger = DoubleLedger(tmp_path / "ledger.sqlite3")
    for n in range(RECORDS):
        ledger.put_customer(
            Customer(
                external_id=f"E{n}",
                name=f"Client {n:05d}",
                address=Address(country_code="BE"),
            )
        )

    def slow_creates(fake: FakeOdoo, call: Call) -> None:
        if call.method == "create" and call.model == "res.partner":
            time.sleep(0.2)  # a run of 40 batches takes seconds, not milliseconds

    fake_odoo.hooks.append(slow_creates)
    config = _config(fake_odoo, tmp_path, backend_id)
    daemon = _daemon(config, "run")
    second: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 60
        while len(_clients(fake_odoo)) < 2 * BATCH and time.monotonic() < deadline:
            assert daemon.poll() is None, daemon.communicate()[1].decode()[-2000:]
            time.sleep(0.02)
        # a second daemon on the same state directory is refused at once
        second = _daemon(config, "run")
        _out, err = second.communicate(timeout=60)
        assert second.returncode == 2, err.decode()[-2000:]
        assert b"another crm-sync daemon" in err

        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=60)
    finally:
        for process in (daemon, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
    log = err.decode()
    assert daemon.returncode == 0, log[-3000:]
    assert "stop requested" in log and "Traceback" not in log

    clients = _clients(fake_odoo)
    assert 0 < len(clients) < RECORDS  # stopped early
    assert len(clients) % BATCH == 0  # after a whole batch, not inside one
    assert max(clients.values()) == 1
    links = [
        link
        for link in fake_odoo.records("crm.sync.link")
        if link["res_model"] == "res.partner"
    ]
    assert len(links) == len(clients)  # every created partner is linked
    [run] = fake_odoo.records("crm.sync.run")
    assert run["outcome"] == "partial" and "stopped on request" in run["log"]

    # the lock is gone with the process; the next cycle picks up where it stopped
    fake_odoo.hooks.remove(slow_creates)
    monkeypatch.setenv("CRM_SYNC_ODOO__API_KEY", "secret")
    assert main(["-c", str(config), "once"]) == 0
    clients = _clients(fake_odoo)
    assert len(clients) == RECORDS and max(clients.values()) == 1
