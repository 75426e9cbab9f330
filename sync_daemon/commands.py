"""``crm-sync`` commands of the daemon: init, check, run, once, status, auth, sandbox.

- ``init [PATH]``: write a commented example configuration (``crm-sync.toml``);
- ``check``: reach Odoo and every backend, report each credentials state (also to
  Odoo); exit 1 when one is not valid;
- ``run``: the daemon, until SIGTERM/SIGINT (one per state directory);
- ``once [--backend ID]``: one cycle and exit, with a progress bar on long loads;
- ``status``: backends, their last runs, open issues and dead letters;
- ``auth BACKEND_ID``: the OAuth authorization-code flow of a backend's connector,
  with a one-shot redirect listener on 127.0.0.1;
- ``sandbox NAME [ARGS...]``: start a connector's local sandbox (entry point
  ``crm_sync.sandboxes``).
"""

from __future__ import annotations

import argparse
import http.server
import secrets
import sys
import threading
import urllib.parse
import webbrowser
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .config import configure_logging, example_config, load_settings
from .engine import BackendConfig
from .kernel.errors import ConfigurationError, SyncError
from .kernel.protocol import AuthorizationCodeFlow
from .runtime import Daemon

__all__ = ["register"]

Sub = argparse._SubParsersAction  # type: ignore[type-arg]


def _daemon(args: argparse.Namespace) -> Daemon:
    settings = load_settings(getattr(args, "config", None))
    configure_logging(
        "DEBUG" if args.verbose > 1 else settings.log_level, settings.log_format
    )
    return Daemon(settings)


def _guard(handler: Any) -> Any:
    """Turn our errors into one readable line and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(handler(args) or 0)
        except SyncError as err:
            print(f"crm-sync {args.command}: {err}", file=sys.stderr)
            return 2
        except OSError as err:  # state folder or file not usable
            where = f" ({err.filename})" if err.filename else ""
            print(
                f"crm-sync {args.command}: {err.strerror or err}{where}",
                file=sys.stderr,
            )
            return 2

    return run


# -- init ----------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        print(f"{path} exists; use --force to overwrite it", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(example_config(), encoding="utf-8")
    path.chmod(0o600)
    print(f"wrote {path}: fill in [odoo] and one [backends.<id>] section per backend")
    return 0


# -- check ---------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    daemon = _daemon(args)
    gateway = daemon.gateway()
    console = Console()
    console.print(
        f"Odoo {gateway.version} at {gateway.url}, database {gateway.database}: "
        f"logged in as {gateway.login_name} (uid {gateway.uid})"
    )
    results = daemon.check()
    table = Table("backend", "name", "kind", "credentials", "message")
    for backend, report in results:
        table.add_row(
            str(backend.id),
            backend.name,
            backend.kind,
            report.credentials_state,
            report.message,
        )
    console.print(table)
    if not results:
        console.print("no active backend is configured in Odoo")
    return 0 if all(r.credentials_state == "valid" for _, r in results) else 1


# -- run / once ----------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    daemon = _daemon(args)
    daemon.run_forever()
    return 0


def cmd_once(args: argparse.Namespace) -> int:
    daemon = _daemon(args)
    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} records"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[tuple[int, str], Any] = {}

        def progress(backend: BackendConfig, stream: str, done: int) -> None:
            key = (backend.id, stream)
            if key not in tasks:
                tasks[key] = bar.add_task(f"{backend.name}: {stream}", total=None)
            bar.update(tasks[key], completed=done)

        results = daemon.once(args.backend, progress=progress)
    out = Console()
    for result in results:
        counts = ", ".join(f"{k} {v}" for k, v in vars(result.counts).items())
        out.print(f"backend {result.backend_id}: {result.outcome} — {counts}")
    if not results:
        out.print("no active backend is configured in Odoo")
    return 1 if any(r.outcome == "failed" for r in results) else 0


# -- status --------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    daemon = _daemon(args)
    console = Console()
    gateway = daemon.gateway()
    backends = daemon.backends(gateway)
    local = {row["backend_id"]: row for row in daemon.state.backend_runs()}
    letters: dict[int, int] = {}
    for letter in daemon.state.dead_letters():
        letters[letter.backend_id] = letters.get(letter.backend_id, 0) + 1
    table = Table(
        "id",
        "name",
        "kind",
        "schedule",
        "next run (UTC)",
        "last run",
        "open issues",
        "dead letters",
    )
    for backend in backends:
        try:
            issues = gateway.call(
                "crm.sync.issue",
                "search_count",
                [
                    ("backend_id", "=", backend.id),
                    ("state", "in", ["open", "action_pending"]),
                ],
            )
        except SyncError:
            issues = "?"
        run = local.get(backend.id) or {}
        schedule = (
            f"every {backend.interval_minutes} min"
            if backend.schedule_type == "interval"
            else f"daily {int(backend.daily_time):02d}:"
            f"{round(backend.daily_time % 1 * 60):02d} {backend.tz}"
        )
        last = (
            f"{run.get('outcome') or '?'} at {str(run.get('last_started'))[:19]}"
            if run
            else "never (here)"
        )
        table.add_row(
            str(backend.id),
            backend.name,
            backend.kind,
            schedule + (" + run now" if backend.run_requested else ""),
            str(backend.next_run or "-"),
            last,
            str(issues),
            str(letters.get(backend.id, 0)),
        )
    console.print(table)
    return 0


# -- auth ----------------------------------------------------------------------------


def _listen_once(host: str, port: int, path: str, timeout: float) -> dict[str, str]:
    """Serve one request on host:port at ``path``; return its query parameters."""
    received: dict[str, str] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            parsed = urllib.parse.urlparse(self.path)
            if parsed.path != path:
                self.send_error(404)
                return
            received.update(dict(urllib.parse.parse_qsl(parsed.query)))
            body = b"crm-sync: authorisation received, you can close this window.\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.HTTPServer((host, port), Handler)
    server.timeout = timeout
    try:
        while not received:
            server.handle_request()  # returns after one request or the timeout
            if not received:
                raise ConfigurationError(
                    f"no authorisation redirect reached http://{host}:{port}{path} "
                    f"within {timeout:.0f} s"
                )
    finally:
        server.server_close()
    return received


def cmd_auth(args: argparse.Namespace) -> int:
    daemon = _daemon(args)
    backends = {b.id: b for b in daemon.backends()}
    backend = backends.get(args.backend_id)
    if backend is None:
        raise ConfigurationError(
            f"crm.sync.backend {args.backend_id} not found in Odoo"
        )
    connector = daemon.connector(backend)
    try:
        if not isinstance(connector, AuthorizationCodeFlow):
            raise ConfigurationError(
                f"the {backend.kind} connector has no authorization-code flow"
            )
        section = daemon.settings.backend_settings(backend.id)
        redirect = str(section.get("redirect_uri") or "http://127.0.0.1:8765/callback")
        parsed = urllib.parse.urlparse(redirect)
        if parsed.hostname != "127.0.0.1":
            raise ConfigurationError(
                f"redirect_uri {redirect} must point at 127.0.0.1 (field "
                f"backends.{backend.id}.redirect_uri)"
            )
        state = secrets.token_urlsafe(24)
        url = connector.authorization_url(redirect_uri=redirect, state=state)
        print(f"Open this address to authorise {backend.name}:\n\n  {url}\n")
        if not args.no_browser:
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        answer = _listen_once(
            "127.0.0.1", parsed.port or 80, parsed.path or "/", args.timeout
        )
        if answer.get("state") != state:
            raise ConfigurationError("the redirect carried a wrong state: ignored")
        if "code" not in answer:
            raise ConfigurationError(
                f"the remote refused: {answer.get('error_description') or answer}"
            )
        tokens = connector.exchange_code(code=answer["code"], redirect_uri=redirect)
    finally:
        connector.close()
    gateway = daemon.gateway()
    gateway.call(
        "crm.sync.backend",
        "daemon_report_health",
        [
            {
                "backend_id": backend.id,
                "credentials_state": "valid",
                "message": f"authorised, access token valid until "
                f"{tokens.expires_at:%Y-%m-%d %H:%M} UTC",
            }
        ],
    )
    print(f"{backend.name}: authorised; tokens saved in {daemon.state.path}")
    return 0


# -- sandbox -------------------------------------------------------------------------


def cmd_sandbox(args: argparse.Namespace) -> int:
    found = {ep.name: ep for ep in entry_points(group="crm_sync.sandboxes")}
    if args.name not in found:
        names = ", ".join(sorted(found)) or "none installed"
        print(f"no sandbox named {args.name!r} (available: {names})", file=sys.stderr)
        return 2
    try:
        main = found[args.name].load()
    except (ImportError, AttributeError) as err:
        print(f"sandbox {args.name} cannot be loaded: {err}", file=sys.stderr)
        return 2
    try:
        return int(main(list(args.args)) or 0)
    except (OverflowError, ValueError, OSError) as err:
        # a port out of range or taken, a fault rate of nan: one line, not a trace
        reason = (err.strerror if isinstance(err, OSError) else None) or err
        print(f"crm-sync sandbox {args.name}: {reason}", file=sys.stderr)
        return 2


# -- registration --------------------------------------------------------------------


def register(sub: Sub) -> None:
    parser = sub.add_parser(
        "init",
        help="write a commented example configuration",
        description="Write a commented example configuration. The other commands "
        "read it from -c FILE, $CRM_SYNC_CONFIG, ./crm-sync.toml or "
        "./.crm-sync/crm-sync.toml, in that order.",
    )
    parser.add_argument(
        "path",
        nargs="?",
        default="crm-sync.toml",
        help="where to write it (default: ./crm-sync.toml)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite the file")
    parser.set_defaults(handler=_guard(cmd_init))

    parser = sub.add_parser(
        "check",
        help="reach Odoo and every backend, report credentials",
        description="Log in to Odoo, read the active backends and ask each "
        "connector whether it reaches its system and holds valid credentials. "
        "Writes nothing. Exit 0 when every backend answers with valid "
        "credentials, 1 when one does not, 2 when the configuration or Odoo "
        "cannot be used.",
    )
    parser.set_defaults(handler=_guard(cmd_check))

    parser = sub.add_parser(
        "run",
        help="run the daemon until SIGTERM",
        description="Run the daemon: re-read the backends and their schedules "
        "from Odoo every poll_seconds, run each backend when due or when 'Run "
        "now' was pressed, one run per backend at a time. SIGTERM or Ctrl-C "
        "finishes the current batch and exits. One daemon per state folder.",
    )
    parser.set_defaults(handler=_guard(cmd_run))

    parser = sub.add_parser("once", help="one sync cycle of every backend, then exit")
    parser.add_argument("--backend", type=int, metavar="ID", help="only this backend")
    parser.set_defaults(handler=_guard(cmd_once))

    parser = sub.add_parser(
        "status",
        help="backends, last runs, open issues",
        description="Print a table of the backends with their last run, health "
        "and open issues, read from Odoo, plus the local dead letters.",
    )
    parser.set_defaults(handler=_guard(cmd_status))

    parser = sub.add_parser(
        "auth", help="authorise a backend (OAuth, redirect on 127.0.0.1)"
    )
    parser.add_argument("backend_id", type=int, metavar="BACKEND_ID")
    parser.add_argument("--no-browser", action="store_true", help="only print the URL")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait (default 300)"
    )
    parser.set_defaults(handler=_guard(cmd_auth))

    names = ", ".join(
        sorted(ep.name for ep in entry_points(group="crm_sync.sandboxes"))
    )
    parser = sub.add_parser(
        "sandbox",
        help="start a connector's local sandbox on 127.0.0.1",
        description="Start the local fake of a remote system on 127.0.0.1; "
        "'crm-sync sandbox NAME --help' lists its options.",
    )
    parser.add_argument("name", help=f"sandbox name: {names or 'none installed'}")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="sandbox arguments")
    parser.set_defaults(handler=cmd_sandbox)
