"""crm-sync demo: the main job on embedded defaults, on this machine only.

1. Sandboxes: Exact Online, Sage Accounting v3.1, Sage X3 and Peppol start in this
   process on free 127.0.0.1 ports, seeded together (Exact accounts and invoices
   with messy identifiers; French and Belgian Sage customers; the official Peppol
   example invoices in the inbox). Peppol needs the official validation
   artefacts, which the repository does not ship: PEPPOL_RULES_DIR (or
   CRM_SHARED_DIR), see the README's 'Peppol artefacts'; without them Peppol is
   skipped with a notice and the rest runs.
2. With an Odoo 18 (ODOO_HOME / ODOO_PYTHON, see the README): PostgreSQL is
   started when needed, a fresh database with crm_module is served on 127.0.0.1
   and seeded with customers that overlap the Exact accounts and posted invoices;
   one sync backend per kind is configured (settings in a generated
   crm-sync.toml under the state folder); the daemon runs one full cycle of every
   backend and a summary per backend is printed, with where to look in Odoo.
   Odoo and the daemon then keep running until Ctrl-C (or SIGTERM), unless
   --exit-after-cycle; the run's database is dropped on exit unless --keep.
3. Without an Odoo 18: the offline 'crm-sync reconcile' audit runs on the same
   seeds (written to the state folder as an Odoo CSV export and Exact/Sage JSON
   pages), and how to point the project at an Odoo 18 is explained.

Nothing outside 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import csv
import logging
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from pathlib import Path
from types import FrameType
from typing import Any

import tomli_w
from rich import box
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from .config import load_settings
from .engine import BackendConfig, RunResult
from .odoo_runtime import (
    OdooNotFound,
    OdooRuntime,
    OdooServer,
    drop_database,
    ensure_postgres,
    find_odoo,
)
from .reconcile import REQUIRED_COLUMNS, load_external, load_odoo_csv, reconcile
from .runtime import Daemon

__all__ = ["BackendSummary", "DemoResult", "register", "run_demo"]

_logger = logging.getLogger(__name__)

ODOO_URL_HINT = "/odoo/action-crm_module.crm_sync_backend_action"
#: outcome of a backend the demo left out (e.g. Peppol without its artefacts)
SKIPPED = "skipped"


@dataclass
class BackendSummary:
    """What the first cycle of one backend did."""

    backend_id: int
    kind: str
    name: str
    outcome: str
    pulled: int
    linked: int
    created: int
    conflicts: int
    errors: int
    #: open ``crm.sync.issue`` rows: duplicates to review, conflicts, bad records
    issues: int
    invoices_pushed: int
    einvoices_received: int
    einvoices_sent: int
    seconds: float
    #: why the backend was skipped (outcome ``skipped``)
    note: str = ""


@dataclass
class DemoResult:
    """What one demo run found and did (for tests and for the summary)."""

    mode: str  # "odoo" or "offline"
    backends: list[BackendSummary]
    reconcile: dict[str, dict[str, Any]]
    odoo_customers: int = 0
    odoo_invoices: int = 0
    inbox: int = 0
    url: str | None = None
    database: str | None = None
    #: backend kinds left out of this run, with the reason (e.g. no Peppol rules)
    skipped: dict[str, str] = field(default_factory=dict)


# -- the command -----------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "demo",
        help="run the main job locally: sandboxes, Odoo 18 when found, one full sync",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".crm-sync"),
        help="where state, logs, seeds and the generated configuration go "
        "(default: ./.crm-sync)",
    )
    parser.add_argument(
        "--exit-after-cycle",
        action="store_true",
        help="stop everything after the first full cycle (tests, CI)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the run's Odoo database (dropped on exit by default)",
    )
    size = parser.add_argument_group("seed sizes")
    size.add_argument(
        "--accounts",
        type=int,
        default=2000,
        help="Exact accounts (default %(default)s)",
    )
    size.add_argument(
        "--exact-invoices",
        type=int,
        default=5000,
        help="Exact sales invoices (default %(default)s)",
    )
    size.add_argument(
        "--customers",
        type=int,
        default=500,
        help="Odoo customers that are also Exact accounts (default %(default)s)",
    )
    size.add_argument(
        "--sage-customers",
        type=int,
        default=40,
        help="customers in Sage Accounting and in Sage X3, the same ones "
        "(default %(default)s)",
    )
    size.add_argument(
        "--invoices",
        type=int,
        default=12,
        help="posted Odoo invoices to push (default %(default)s)",
    )
    size.add_argument(
        "--seed", type=int, default=7, help="seed of all the data (default %(default)s)"
    )
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Run the main job; 0 when every backend's first cycle succeeded."""
    # a pipe or a CI log gets a fixed width wide enough for the summary table
    width = None if sys.stdout.isatty() else 120
    result = demo(args, console=Console(highlight=False, width=width))
    ok = ("success", SKIPPED)
    return 0 if all(b.outcome in ok for b in result.backends) else 1


def demo(args: argparse.Namespace, *, console: Console) -> DemoResult:
    """The whole job: sandboxes, then Odoo (or the offline audit)."""
    state_dir = Path(args.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    with _log_to_file(state_dir / "demo.log"):
        console.print(f"[bold]crm-sync demo[/] — state folder {state_dir}")
        return _demo(args, state_dir, console)


def _demo(args: argparse.Namespace, state_dir: Path, console: Console) -> DemoResult:
    world = _load_world()(
        exact_accounts=args.accounts,
        exact_invoices=args.exact_invoices,
        odoo_customers=args.customers,
        sage_customers=args.sage_customers,
        seed=args.seed,
    )
    with _terminate_as_interrupt(), _step(console, "starting the sandboxes"):
        world.start()
    try:
        for kind, url in world.urls().items():
            console.print(f"  {kind:<16} {url}")
        skipped: dict[str, str] = dict(getattr(world, "skipped", {}))
        peppol = (
            "Peppol skipped"
            if "peppol" in skipped
            else f"{world.inbox_size()} documents in the Peppol inbox"
        )
        console.print(
            f"  seeded: {args.accounts} Exact accounts, {args.exact_invoices} "
            f"Exact invoices, {args.sage_customers} Sage customers, {peppol}"
        )
        for notice in getattr(world, "notices", []):
            console.print(f"[yellow]note[/]: {notice}")
        try:
            runtime = find_odoo()
        except OdooNotFound as err:
            result = _offline(args, world, state_dir, err, skipped, console)
        else:
            result = _online(args, world, runtime, state_dir, skipped, console)
        result.skipped = skipped
        return result
    finally:
        world.stop()
        console.print("sandboxes stopped")


# -- helpers ---------------------------------------------------------------------------


def _load_world() -> Callable[..., Any]:
    """The sandbox world factory (entry point ``crm_sync.demo``, name ``world``)."""
    for ep in entry_points(group="crm_sync.demo"):
        if ep.name == "world":
            return ep.load()  # type: ignore[no-any-return]
    raise SystemExit(
        "crm-sync demo: no sandbox world is installed (entry point crm_sync.demo); "
        "reinstall the project with 'pip install -e .'"
    )


@contextmanager
def _log_to_file(path: Path) -> Iterator[None]:
    """Daemon and sandbox logs go to a file while the console shows the steps."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    for old in saved:
        root.removeHandler(old)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        for old in saved:
            root.addHandler(old)
        root.setLevel(level)


@contextmanager
def _step(console: Console, what: str) -> Iterator[None]:
    started = time.monotonic()
    with console.status(f"{what} …"):
        yield
    console.print(f"[green]✓[/] {what} ({time.monotonic() - started:.1f} s)")


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the demo the way Ctrl-C does (clean stop of everything)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (tests): nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- without Odoo: the offline audit ---------------------------------------------------


def _write_odoo_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=REQUIRED_COLUMNS)
        writer.writeheader()
        for number, row in enumerate(rows, start=1):
            writer.writerow(
                {
                    "id": number,
                    "name": row["name"],
                    "is_company": "1",
                    "parent_id": "",
                    "vat": row.get("vat") or "",
                    "company_registry": row.get("company_registry") or "",
                    "email": row.get("email") or "",
                    "phone": row.get("phone") or "",
                    "zip": row.get("zip") or "",
                    "city": row.get("city") or "",
                    "country_code": row.get("country_code") or "",
                }
            )


def _offline(
    args: argparse.Namespace,
    world: Any,
    state_dir: Path,
    why: OdooNotFound,
    skipped: dict[str, str],
    console: Console,
) -> DemoResult:
    console.print(f"[yellow]no Odoo 18 here[/]: {why}")
    console.print("running the offline audit ('crm-sync reconcile') on the same seeds")
    seeds = state_dir / "seeds"
    seeds.mkdir(exist_ok=True)
    customers = world.odoo_customers()
    odoo_csv = seeds / "odoo-partners.csv"
    _write_odoo_csv(odoo_csv, customers)
    pages = world.write_pages(seeds)
    odoo = load_odoo_csv(odoo_csv)
    reports: dict[str, dict[str, Any]] = {}
    table = Table(
        "ledger",
        "records",
        "linked",
        "to review",
        "new",
        "duplicates",
        "seconds",
    )
    for system, path in pages.items():
        external, incomplete = load_external(path, system)
        report = reconcile(odoo, external, incomplete=incomplete)
        reports[system] = report
        stats = report["stats"]
        table.add_row(
            system,
            str(stats["external_records"]),
            str(stats["links"]),
            str(stats["review"]),
            str(stats["new"]),
            f"{stats['odoo_duplicate_groups']} / {stats['external_duplicate_groups']}",
            f"{stats['seconds']:.2f}",
        )
    console.print(
        f"\n[bold]What a first sync would do[/] ({len(customers)} Odoo customers):"
    )
    console.print(table)
    _print_skipped(console, skipped)
    console.print(
        f"seeds in {seeds}: try 'crm-sync reconcile --odoo-csv {odoo_csv} "
        f"--external {pages['exact']} --system exact'\n"
        "To run the real job, point the project at an Odoo 18.0 source tree and a "
        "Python with its requirements:\n"
        "  export ODOO_HOME=/path/to/odoo-18.0 "
        "ODOO_PYTHON=/path/to/odoo-venv/bin/python\n"
        "then run 'scripts/quickstart' again (README: 'Pointing the project at "
        "Odoo 18')."
    )
    return DemoResult(
        mode="offline", backends=[], reconcile=reports, odoo_customers=len(customers)
    )


# -- with Odoo: the real job -----------------------------------------------------------


def _admin(server: OdooServer) -> Any:
    import odoorpc

    client = odoorpc.ODOO(
        "127.0.0.1", protocol="jsonrpc", port=server.port, timeout=300
    )
    client.login(server.db, "admin", "admin")
    return client


def _write_config(
    path: Path, server: OdooServer, seeded: Any, settings: dict[int, dict[str, Any]]
) -> None:
    data = {
        "state_dir": str(path.parent / "state"),
        "log_level": "INFO",
        "poll_seconds": 60,
        "odoo": {
            "url": server.url,
            "database": server.db,
            "login": seeded.daemon_login,
            "api_key": seeded.daemon_password,
            "timeout": 300,
        },
        "backends": {
            str(backend_id): {k: v for k, v in section.items() if v is not None}
            for backend_id, section in settings.items()
        },
    }
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    path.chmod(0o600)


def _online(
    args: argparse.Namespace,
    world: Any,
    runtime: OdooRuntime,
    state_dir: Path,
    skipped: dict[str, str],
    console: Console,
) -> DemoResult:
    from .demo_odoo import demo_database, seed_odoo

    console.print(f"Odoo 18 at {runtime.home}")
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    database = f"crm_sync_demo_{stamp}_{uuid.uuid4().hex[:4]}"
    run_dir = state_dir / database
    run_dir.mkdir(parents=True)
    log_path = run_dir / "odoo.log"
    server = OdooServer(runtime, db=database, keep=True, log_path=log_path)
    created = False
    try:
        with _terminate_as_interrupt():
            with _step(console, "PostgreSQL"):
                ensure_postgres(runtime, log=False)
            with _step(console, f"database {database} with crm_module"):
                if demo_database(runtime, database, log_path=log_path):
                    console.print(
                        "  (first run: crm_module installed once in a template "
                        "database, later runs copy it)"
                    )
                created = True
            with _step(console, f"Odoo serving it on 127.0.0.1 (log {log_path})"):
                server.start(timeout=120)
            admin = _admin(server)
            customers = world.odoo_customers()
            with _step(
                console,
                f"seeding Odoo: {len(customers)} customers, {args.invoices} "
                "posted invoices, one backend per kind",
            ):
                seeded = seed_odoo(
                    admin,
                    customers=customers,
                    invoices=args.invoices,
                    backends=[(b.kind, b.name) for b in world.backends()],
                )
                for participant in seeded.buyers:
                    world.register_participant(participant)
                sections = {
                    seeded.backends[b.kind]: b.settings for b in world.backends()
                }
                config = run_dir / "crm-sync.toml"
                _write_config(config, server, seeded, sections)
            daemon = Daemon(load_settings(config))
            _authorise(daemon, world)
            results, pushed = _first_cycle(daemon, console)
        issues = _open_issues(admin, [r.backend_id for r in results])
        summaries = _summaries(daemon, results, pushed, issues, world)
        summaries += [_skipped_summary(kind, why) for kind, why in skipped.items()]
        _print_summary(console, summaries, server, config)
        result = DemoResult(
            mode="odoo",
            backends=summaries,
            reconcile={},
            odoo_customers=seeded.customers,
            odoo_invoices=len(seeded.invoices),
            inbox=world.inbox_size(),
            url=server.url,
            database=database,
        )
        if not args.exit_after_cycle:
            console.print(
                "\nOdoo and the daemon keep running (next runs as scheduled in "
                "Odoo). [bold]Ctrl-C[/] stops everything."
            )
            daemon.run_forever()
            console.print("daemon stopped")
        return result
    except KeyboardInterrupt:
        console.print("\ninterrupted: stopping")
        raise
    finally:
        server.stop()
        if created and not args.keep:
            drop_database(runtime, database)
            console.print(f"database {database} dropped (--keep keeps it)")
        elif created:
            console.print(f"database {database} kept; Odoo log in {log_path}")


def _authorise(daemon: Daemon, world: Any) -> None:
    """Grant each backend's connector its sandbox credentials (consent skipped)."""
    for backend in daemon.backends():
        connector = daemon.connector(backend)
        try:
            world.authorise(
                backend.kind,
                backend_id=backend.id,
                connector=connector,
                tokens=daemon.tokens,
            )
        finally:
            connector.close()


def _first_cycle(
    daemon: Daemon, console: Console
) -> tuple[list[RunResult], dict[int, int]]:
    """One cycle of every backend (``crm-sync once``), with live progress."""
    pushed: dict[int, int] = {}
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.completed} records"),
        TimeElapsedColumn(),
    )
    console.print("\n[bold]First sync cycle[/] (daemon log in the state folder)")
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[tuple[int, str], Any] = {}

        def progress(backend: BackendConfig, stream: str, done: int) -> None:
            key = (backend.id, stream)
            if key not in tasks:
                tasks[key] = bar.add_task(f"{backend.name}: {stream}", total=None)
            bar.update(tasks[key], completed=done)
            if stream == "invoices":
                pushed[backend.id] = done

        results = daemon.once(progress=progress)
    return results, pushed


def _seconds(row: dict[str, Any] | None) -> float:
    if not row or not row.get("last_started") or not row.get("last_finished"):
        return 0.0
    started = datetime.fromisoformat(str(row["last_started"]))
    finished = datetime.fromisoformat(str(row["last_finished"]))
    return (finished - started).total_seconds()


def _open_issues(admin: Any, backend_ids: list[int]) -> dict[int, int]:
    """Open issues per backend, as the workbench in Odoo lists them."""
    return {
        backend_id: admin.execute_kw(
            "crm.sync.issue",
            "search_count",
            [
                [
                    ("backend_id", "=", backend_id),
                    ("state", "in", ["open", "action_pending"]),
                ]
            ],
        )
        for backend_id in backend_ids
    }


def _summaries(
    daemon: Daemon,
    results: list[RunResult],
    pushed: dict[int, int],
    issues: dict[int, int],
    world: Any,
) -> list[BackendSummary]:
    backends = {b.id: b for b in daemon.backends()}
    runs = {row["backend_id"]: row for row in daemon.state.backend_runs()}
    out = []
    for result in results:
        backend = backends[result.backend_id]
        counts = result.counts
        peppol = backend.kind == "peppol"
        sent = pushed.get(result.backend_id, 0)
        received = world.inbox_read() if peppol else 0
        out.append(
            BackendSummary(
                backend_id=backend.id,
                kind=backend.kind,
                name=backend.name,
                outcome=result.outcome,
                pulled=counts.pulled,
                linked=counts.linked,
                # the engine counts sent invoices and new bills as "created" too
                created=max(0, counts.created - sent - received),
                conflicts=counts.conflicts,
                errors=counts.errors,
                issues=issues.get(backend.id, 0),
                invoices_pushed=0 if peppol else sent,
                einvoices_received=received,
                einvoices_sent=world.documents_sent() if peppol else 0,
                seconds=_seconds(runs.get(backend.id)),
            )
        )
    return out


def _skipped_summary(kind: str, why: str) -> BackendSummary:
    """The summary row of a backend kind the demo left out."""
    return BackendSummary(
        backend_id=0,
        kind=kind,
        name=kind,
        outcome=SKIPPED,
        pulled=0,
        linked=0,
        created=0,
        conflicts=0,
        errors=0,
        issues=0,
        invoices_pushed=0,
        einvoices_received=0,
        einvoices_sent=0,
        seconds=0.0,
        note=why,
    )


def _print_skipped(console: Console, skipped: dict[str, str]) -> None:
    for kind, why in skipped.items():
        console.print(f"[yellow]{kind}: skipped[/] in this run — {why} (see the note)")


def _print_summary(
    console: Console,
    rows: list[BackendSummary],
    server: OdooServer,
    config: Path,
) -> None:
    skipped = {r.kind: r.note for r in rows if r.outcome == SKIPPED}
    table = Table(
        Column("backend", no_wrap=True),
        "outcome",
        "pulled",
        "linked",
        "created",
        "conflicts",
        "to\nreview",
        "invoices\npushed",
        "e-inv.\nin",
        "e-inv.\nout",
        "secs",
        title="First cycle per backend",
        box=box.SIMPLE_HEAD,
    )
    for row in sorted(rows, key=lambda r: (r.outcome == SKIPPED, r.backend_id)):
        if row.outcome == SKIPPED:
            table.add_row(row.kind, f"[yellow]{SKIPPED}[/]", *["–"] * 9)
            continue
        colour = "green" if row.outcome == "success" else "red"
        table.add_row(
            f"{row.kind} #{row.backend_id}",
            f"[{colour}]{row.outcome}[/]",
            str(row.pulled),
            str(row.linked),
            str(row.created),
            str(row.conflicts),
            str(row.issues),
            str(row.invoices_pushed),
            str(row.einvoices_received),
            str(row.einvoices_sent),
            f"{row.seconds:.1f}",
        )
    console.print(table)
    _print_skipped(console, skipped)
    console.print(
        "linked: remote records matched to an existing Odoo customer; created: new "
        "customers (in Odoo from the ledger, or in the ledger from Odoo); to review: "
        "open issues in Odoo (likely duplicates, conflicts, refused records); "
        "e-inv. in/out: Peppol e-invoices received and sent."
    )
    bills = (
        ""
        if "peppol" in skipped
        else ", Invoicing → Vendors → Bills for the e-invoices received"
    )
    console.print(
        f"\n[bold]Where to look[/]: {server.url}{ODOO_URL_HINT}  "
        "(login [bold]admin[/], password [bold]admin[/]); Contacts for the "
        f"customers{bills}."
        f"\ndaemon configuration: {config}"
    )
