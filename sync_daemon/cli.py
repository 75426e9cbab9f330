"""``crm-sync``: the command line of the sync daemon.

Commands are registered by modules, each with a ``register(subparsers)`` function:
the daemon's own modules listed in :data:`BUILTIN_COMMANDS`, and connector packages
through the entry-point group ``crm_sync.commands`` (so the daemon never imports a
connector by name). A module that cannot be imported is reported, not fatal.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from . import __version__

__all__ = ["build_parser", "main"]

#: Modules of the daemon that add commands, in help order.
BUILTIN_COMMANDS = (
    "sync_daemon.commands",
    "sync_daemon.reconcile",
    "sync_daemon.demo",
)

Register = Callable[[argparse._SubParsersAction], None]  # type: ignore[type-arg]


def _registrars() -> list[tuple[str, Register | Exception]]:
    found: list[tuple[str, Register | Exception]] = []
    for name in BUILTIN_COMMANDS:
        try:
            found.append((name, importlib.import_module(name).register))
        except (ImportError, AttributeError) as err:
            found.append((name, err))
    for ep in sorted(entry_points(group="crm_sync.commands"), key=lambda e: e.name):
        try:
            found.append((ep.name, ep.load()))
        except (ImportError, AttributeError) as err:
            found.append((ep.name, err))
    return found


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered command."""
    parser = argparse.ArgumentParser(
        prog="crm-sync",
        description="Reconcile Odoo 18 customers and invoices with Exact Online, "
        "Sage and Peppol.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    parser.add_argument(
        "-c", "--config", metavar="FILE", help="configuration file (TOML)"
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    broken: list[str] = []
    for name, registrar in _registrars():
        if isinstance(registrar, Exception):
            broken.append(f"{name}: {registrar}")
            continue
        registrar(sub)
    if broken:
        parser.epilog = "Commands not available: " + "; ".join(broken)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crm-sync`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG
        if args.verbose > 1
        else logging.INFO
        if args.verbose
        else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
