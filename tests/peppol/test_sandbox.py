"""The sandbox: in-process API and the ``main(argv)`` entry point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from connectors.peppol.sandbox import PeppolSandbox

ROOT = Path(__file__).resolve().parents[2]
#: ``crm-sync sandbox peppol`` as a child process, arguments appended
SANDBOX_MAIN = [
    sys.executable,
    "-c",
    "import sys; from connectors.peppol.sandbox import main; "
    "sys.exit(main(sys.argv[1:]))",
]


def test_in_process_api_serves_only_loopback(sandbox_factory, examples_dir) -> None:
    box: PeppolSandbox = sandbox_factory()
    assert box.url.startswith("http://127.0.0.1:")
    assert len(box.inbox) == len(
        [p for p in examples_dir.iterdir() if p.suffix.lower() == ".xml"]
    )
    answer = requests.get(f"{box.url}/v1/inbox", timeout=5)
    assert answer.status_code == 401  # the API key is required
    me = requests.get(
        f"{box.url}/v1/me",
        headers={"Authorization": f"Bearer {box.api_key}"},
        timeout=5,
    )
    assert me.json() == {"name": "Peppol sandbox access point"}
    sender = box.inbox["base-example.xml"]["sender"]
    assert sender == "0088:9482348239847239874"


def test_main_starts_prints_and_stops_on_signal(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            *SANDBOX_MAIN,
            *("--port", "0", "--inbox", str(tmp_path), "--no-validate"),
            *("--participant", "0208:0765881217"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        assert first.startswith("access point : http://127.0.0.1:")
        url = first.split()[3]
        for _ in range(3):
            process.stdout.readline()
        verify = requests.post(
            f"{url}/v1/participants/verify",
            json={"participant": "0208:0765881217"},
            headers={"Authorization": "Bearer sandbox-key"},
            timeout=5,
        )
        assert verify.json() == {"registered": True}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.readline() == "stopped\n"
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()


def test_main_without_rules_says_so_in_two_lines(tmp_path: Path) -> None:
    process = subprocess.run(
        [*SANDBOX_MAIN, "--port", "0", "--inbox", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PEPPOL_RULES_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 2
    assert process.stdout == ""
    assert "Traceback" not in process.stderr
    assert "artefacts not found" in process.stderr
    assert "--no-validate" in process.stderr
