"""Find, start and test against a local Odoo 18.0.

No package registry ships Odoo, so the project points at one: an Odoo 18.0 source
tree in ``ODOO_HOME`` (default ``/opt/odoo18``) and a Python with Odoo's requirements
in ``ODOO_PYTHON`` (default ``/opt/odoo18-venv/bin/python``). PostgreSQL is reached
with ``ODOO_DB_HOST``/``ODOO_DB_PORT``/``ODOO_DB_USER``/``ODOO_DB_PASSWORD`` (defaults
``127.0.0.1``/``5432``/``odoo``/``odoo``); when it is down and a Debian cluster exists
it is started.

Used by ``scripts/odoo-test`` (the add-on's Odoo tests in a throw-away database), by
the pytest fixtures of the end-to-end tests (a server on a free loopback port) and by
the main job. Run ``python -m sync_daemon.odoo_runtime --help`` for the commands.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "OdooNotFound",
    "OdooRuntime",
    "OdooServer",
    "TestSummary",
    "find_odoo",
    "free_port",
    "run_addon_tests",
]

ADDON_DIR = Path(__file__).resolve().parent.parent / "crm_module"
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \d+ (\w+) ")
_RESULT = re.compile(
    r"odoo\.tests\.result: (\d+) failed, (\d+) error\(s\) of (\d+) tests"
)


class OdooNotFound(RuntimeError):
    """No usable Odoo 18.0 here; the message says what is missing and how to fix it."""


@dataclass(frozen=True)
class OdooRuntime:
    """Where Odoo lives and how it reaches PostgreSQL."""

    home: Path
    python: Path
    db_host: str = "127.0.0.1"
    db_port: int = 5432
    db_user: str = "odoo"
    db_password: str = "odoo"
    extra_addons: tuple[Path, ...] = ()

    @property
    def addons_path(self) -> str:
        paths = [self.home / "addons", self.home / "odoo" / "addons"]
        paths += [p for p in self.extra_addons if p not in paths]
        return ",".join(str(p) for p in paths)

    def db_args(self) -> list[str]:
        return [
            "--db_host", self.db_host, "--db_port", str(self.db_port),
            "--db_user", self.db_user, "--db_password", self.db_password,
        ]  # fmt: skip

    def odoo_cmd(self, *args: str) -> list[str]:
        """The odoo-bin command line with database and add-on options."""
        return [
            str(self.python), str(self.home / "odoo-bin"), *self.db_args(),
            "--addons-path", self.addons_path, *args,
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        # Keep bytecode out of the add-on's folder (and out of git status).
        env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "odoo-pycache")
        return env


def find_odoo(environ: Mapping[str, str] | None = None) -> OdooRuntime:
    """Locate Odoo 18.0 from the environment, or raise :class:`OdooNotFound`."""
    env = os.environ if environ is None else environ
    home = Path(env.get("ODOO_HOME", "/opt/odoo18"))
    python = Path(env.get("ODOO_PYTHON", "/opt/odoo18-venv/bin/python"))
    hint = (
        "set ODOO_HOME to an Odoo 18.0 source tree and ODOO_PYTHON to a Python that "
        "has its requirements (see README, 'Pointing the project at Odoo 18')"
    )
    if not (home / "odoo-bin").is_file():
        raise OdooNotFound(f"no Odoo 18 at {home} (no odoo-bin); {hint}")
    release = home / "odoo" / "release.py"
    text = release.read_text(encoding="utf-8") if release.is_file() else ""
    if not re.search(r"version_info\s*=\s*\(\s*18\s*,\s*0\s*,", text):
        raise OdooNotFound(f"{home} is not Odoo 18.0 (checked {release}); {hint}")
    if not os.access(python, os.X_OK):
        raise OdooNotFound(f"no Odoo Python at {python}; {hint}")
    return OdooRuntime(
        home=home,
        python=python,
        db_host=env.get("ODOO_DB_HOST", "127.0.0.1"),
        db_port=int(env.get("ODOO_DB_PORT", "5432")),
        db_user=env.get("ODOO_DB_USER", "odoo"),
        db_password=env.get("ODOO_DB_PASSWORD", "odoo"),
        extra_addons=(ADDON_DIR.parent,),
    )


# ---------------------------------------------------------------------- PostgreSQL


def _pg_ready(rt: OdooRuntime) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((rt.db_host, rt.db_port)) == 0


def ensure_postgres(rt: OdooRuntime, *, log: bool = True) -> None:
    """Make sure PostgreSQL answers; start the local Debian cluster if it does not."""
    if _pg_ready(rt):
        return
    if not shutil.which("pg_lsclusters") or rt.db_host not in {
        "127.0.0.1",
        "localhost",
    }:
        raise OdooNotFound(
            f"PostgreSQL does not answer on {rt.db_host}:{rt.db_port}; start it "
            "(e.g. 'pg_ctlcluster 15 main start') or set ODOO_DB_HOST/ODOO_DB_PORT"
        )
    rows = subprocess.run(
        ["pg_lsclusters", "-h"], capture_output=True, text=True, check=False
    ).stdout.split("\n")
    for row in rows:
        parts = row.split()
        if len(parts) >= 3 and parts[2] == str(rt.db_port):
            if log:
                print(f"starting PostgreSQL cluster {parts[0]}/{parts[1]}", flush=True)
            subprocess.run(["pg_ctlcluster", parts[0], parts[1], "start"], check=False)
            break
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _pg_ready(rt):
            return
        time.sleep(0.5)
    raise OdooNotFound(f"PostgreSQL did not start on {rt.db_host}:{rt.db_port}")


def drop_database(rt: OdooRuntime, name: str) -> None:
    """Drop a database and its filestore, ignoring one that is already gone."""
    code = (
        "import sys, psycopg2\n"
        "c = psycopg2.connect(host=sys.argv[1], port=sys.argv[2], user=sys.argv[3],"
        " password=sys.argv[4], dbname='postgres')\n"
        "c.autocommit = True\n"
        "c.cursor().execute("
        "'DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)' % sys.argv[5])\n"
    )
    subprocess.run(
        [str(rt.python), "-c", code, rt.db_host, str(rt.db_port), rt.db_user,
         rt.db_password, name],
        check=False, capture_output=True,
    )  # fmt: skip
    for base in (Path.home() / ".local/share/Odoo/filestore",):
        shutil.rmtree(base / name, ignore_errors=True)


def free_port(start: int = 8169) -> int:
    """The first free TCP port on 127.0.0.1 from ``start`` on."""
    for port in range(start, start + 200):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"no free port in {start}..{start + 199}")


def _throwaway_name(prefix: str) -> str:
    return f"{prefix}_{time.strftime('%Y%m%d%H%M%S')}_{uuid.uuid4().hex[:6]}"


# --------------------------------------------------------------------- add-on tests


@dataclass
class TestSummary:
    """What one Odoo test run reported."""

    __test__ = False  # not a pytest test class

    run: int = 0
    failed: int = 0
    errors: int = 0
    exit_code: int = 0
    result_line: str | None = None
    problems: list[str] = field(default_factory=list)
    log_path: Path | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return (
            self.exit_code == 0
            and self.result_line is not None
            and self.run > 0
            and self.failed == 0
            and self.errors == 0
            and not self.problems
        )

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"odoo tests: {verdict} — {self.run} run, {self.failed} failed, "
            f"{self.errors} errors, {len(self.problems)} ERROR/CRITICAL log lines "
            f"({self.seconds:.0f} s)"
        )


def parse_test_log(text: str) -> TestSummary:
    """Read Odoo's test log: result line and ERROR/CRITICAL records."""
    summary = TestSummary()
    for line in text.splitlines():
        found = _RESULT.search(line)
        if found:
            summary.result_line = line[found.start() :]
            summary.failed, summary.errors, summary.run = map(int, found.groups())
        level = _LOG_LINE.match(line)
        if level and level.group(1) in {"ERROR", "CRITICAL"} and not found:
            summary.problems.append(line)
    return summary


def run_addon_tests(
    rt: OdooRuntime,
    module: str = "crm_module",
    odoo_args: Sequence[str] = (),
    *,
    keep_db: bool = False,
) -> TestSummary:
    """Install ``module`` in a fresh database with tests enabled and read the result."""
    ensure_postgres(rt)
    db = _throwaway_name(f"t_{module}")
    log_path = Path(tempfile.gettempdir()) / f"{db}.log"
    tags = [] if any(a.startswith("--test-tags") for a in odoo_args) else [
        "--test-tags", f"/{module}"
    ]  # fmt: skip
    cmd = rt.odoo_cmd(
        "-d", db, "-i", module, "--test-enable", *tags, "--stop-after-init",
        "--max-cron-threads", "0", "--http-interface", "127.0.0.1",
        "--http-port", str(free_port()), "--log-level", "test", *odoo_args,
    )  # fmt: skip
    started = time.monotonic()
    try:
        with log_path.open("w", encoding="utf-8") as out:
            proc = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=rt.env()
            )
    finally:
        if not keep_db:
            drop_database(rt, db)
    summary = parse_test_log(log_path.read_text(encoding="utf-8", errors="replace"))
    summary.exit_code = proc.returncode
    summary.log_path = log_path
    summary.seconds = time.monotonic() - started
    return summary


def _first_failure(log_text: str, limit: int = 40) -> list[str]:
    lines = log_text.splitlines()
    for index, line in enumerate(lines):
        level = _LOG_LINE.match(line)
        if (
            level
            and level.group(1) in {"ERROR", "CRITICAL"}
            and "tests.result" not in line
        ):
            block = [line]
            for follow in lines[index + 1 :]:
                if _LOG_LINE.match(follow):
                    break
                block.append(follow)
            return block[:limit]
    return []


# -------------------------------------------------------------------------- servers


class OdooServer:
    """A throw-away database with add-ons installed and a server on loopback.

    >>> with OdooServer(find_odoo()) as server:      # doctest: +SKIP
    ...     server.url, server.db
    """

    def __init__(
        self,
        rt: OdooRuntime,
        *,
        modules: Sequence[str] = ("crm_module",),
        db: str | None = None,
        port: int | None = None,
        demo: bool = False,
        keep: bool = False,
        log_path: Path | None = None,
    ) -> None:
        self.rt = rt
        self.modules = list(modules)
        self.db = db or _throwaway_name("e2e")
        self.port = port
        self.demo = demo
        self.keep = keep
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"{self.db}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_database(self) -> None:
        """Create the database with the add-ons; raise with the log on failure."""
        ensure_postgres(self.rt)
        args = [
            "-d",
            self.db,
            "-i",
            ",".join(self.modules),
            "--stop-after-init",
            "--max-cron-threads",
            "0",
            "--http-port",
            str(free_port(18000)),
        ]
        if not self.demo:
            args.append("--without-demo=all")
        with self.log_path.open("a", encoding="utf-8") as out:
            proc = subprocess.run(
                self.rt.odoo_cmd(*args), stdout=out, stderr=subprocess.STDOUT,
                env=self.rt.env(),
            )  # fmt: skip
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        failure = _first_failure(text)
        if proc.returncode != 0 or failure:
            raise RuntimeError(
                f"installing {self.modules} in {self.db} failed "
                f"(log {self.log_path}):\n" + "\n".join(failure)
            )

    def start(self, *, timeout: float = 60.0) -> None:
        """Start odoo-bin on 127.0.0.1 and wait until /web/health answers."""
        self.port = self.port or free_port(8269)
        cmd = self.rt.odoo_cmd(
            "-d", self.db, "--db-filter", f"^{self.db}$", "--http-interface",
            "127.0.0.1", "--http-port", str(self.port), "--max-cron-threads", "0",
            "--workers", "0",
        )  # fmt: skip
        out = self.log_path.open("a", encoding="utf-8")
        self._proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=self.rt.env(),
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"odoo-bin exited early; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/web/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Odoo did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def __enter__(self) -> OdooServer:
        try:
            self.create_database()
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if not self.keep:
            drop_database(self.rt, self.db)


@contextmanager
def running_server(**kwargs: object) -> Iterator[OdooServer]:
    """Shortcut: find Odoo and run a throw-away server for the ``with`` block."""
    with OdooServer(find_odoo(), **kwargs) as server:  # type: ignore[arg-type]
        yield server


# ---------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sync_daemon.odoo_runtime",
        description="Run crm_module's Odoo tests, or check for an Odoo 18, here.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("find", help="say whether an Odoo 18 is found, and where")
    test = sub.add_parser(
        "test",
        help="install the add-on in a throw-away database and run its Odoo tests",
        description="Extra arguments go to odoo-bin, e.g. "
        "--test-tags /crm_module:TestPartnerIdentifierKeys. A run in which no "
        "test ran counts as a failure.",
    )
    test.add_argument("--module", default="crm_module")
    test.add_argument("--keep-db", action="store_true")
    args, odoo_args = parser.parse_known_args(argv)

    try:
        rt = find_odoo()
    except OdooNotFound as err:
        print(f"odoo add-on tests: skipped: {err}")
        return 3
    if args.command == "find":
        print(f"Odoo 18 at {rt.home} (python {rt.python})")
        return 0
    print(f"running {args.module} tests on Odoo 18 at {rt.home} …", flush=True)
    summary = run_addon_tests(rt, args.module, odoo_args, keep_db=args.keep_db)
    log_text = summary.log_path.read_text(errors="replace") if summary.log_path else ""
    if summary.result_line:
        print(summary.result_line)
    for line in summary.problems[:20]:
        print("  " + line[:300])
    if not summary.passed and summary.result_line and summary.run == 0:
        print(
            "no test ran: do the --test-tags name a test class of the add-on "
            "(e.g. /crm_module:TestPartnerIdentifierKeys)?"
        )
    elif not summary.passed:
        print("first failure:")
        for line in _first_failure(log_text):
            print("  | " + line[:300])
    print(f"log: {summary.log_path}")
    print(summary.line())
    return 0 if summary.passed else 1


if __name__ == "__main__":
    sys.exit(main())
