"""Exact Online sandbox: ``crm-sync sandbox exact --port N --seed S``.

A local, loopback-only fake of Exact Online for the demo and the contract tests
(see :mod:`.server` for what it reproduces). Programmatic use::

    from connectors.exact.sandbox import ExactSandbox

    with ExactSandbox(seed=7, accounts=2000, invoices=5000) as sandbox:
        settings = {"base_url": sandbox.url, "division": 2999999, ...}

``main(argv)`` is the ``crm_sync.sandboxes`` entry point: it serves until
interrupted and prints the base URL, division and client credentials to use.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from .data import companies, odoo_partners
from .server import ExactSandbox, FaultPlan, SandboxStats

__all__ = [
    "ExactSandbox",
    "FaultPlan",
    "SandboxStats",
    "build_parser",
    "companies",
    "main",
    "odoo_partners",
]


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``crm-sync sandbox exact``."""
    parser = argparse.ArgumentParser(
        prog="crm-sync sandbox exact",
        description="Serve a local Exact Online fake on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the data")
    parser.add_argument(
        "--accounts", type=int, default=2000, help="accounts per division"
    )
    parser.add_argument(
        "--invoices", type=int, default=5000, help="invoices per division"
    )
    parser.add_argument(
        "--division",
        type=int,
        action="append",
        dest="divisions",
        help="division number (repeat for several; default 2999999)",
    )
    parser.add_argument(
        "--token-lifetime",
        type=int,
        default=600,
        help="access token lifetime in seconds (Exact: 600)",
    )
    parser.add_argument(
        "--too-early",
        type=int,
        default=570,
        help="seconds before a refresh is allowed (Exact: 570)",
    )
    parser.add_argument(
        "--minutely-limit", type=int, default=60, help="calls per minute and division"
    )
    parser.add_argument(
        "--daily-limit", type=int, default=5000, help="calls per day and division"
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="share of division calls that fail (0..1): 429, 5xx, timeouts, resets, "
        "truncated JSON",
    )
    parser.add_argument(
        "--fault-kinds",
        default="5xx,timeout,reset,truncated,429",
        help="comma-separated faults to draw from (default: all)",
    )
    parser.add_argument("--client-id", default="sandbox-client")
    parser.add_argument("--client-secret", default="sandbox-secret")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox in the foreground until Ctrl-C; 0 on a clean stop."""
    args = build_parser().parse_args(argv)
    if not 0 <= args.fault_rate <= 1:
        print("--fault-rate must be between 0 and 1", file=sys.stderr)
        return 2
    kinds = tuple(kind.strip() for kind in args.fault_kinds.split(",") if kind.strip())
    unknown = set(kinds) - set(FaultPlan().kinds)
    if unknown or not kinds:
        print(f"unknown fault kinds: {sorted(unknown)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sandbox = ExactSandbox(
        port=args.port,
        seed=args.seed,
        accounts=args.accounts,
        invoices=args.invoices,
        divisions=args.divisions or (2999999,),
        client_id=args.client_id,
        client_secret=args.client_secret,
        access_lifetime=args.token_lifetime,
        too_early=args.too_early,
        minutely_limit=args.minutely_limit,
        daily_limit=args.daily_limit,
        faults=FaultPlan(rate=args.fault_rate, kinds=kinds, seed=args.seed),
    )
    # Handlers before the server starts: whoever reads the banner may signal us
    # at once, and a SIGTERM before its handler exists kills the process (-15).
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sandbox.start()
    try:
        # Inside the try: a Ctrl-C while the banner prints is a clean stop too.
        print(f"Exact sandbox on {sandbox.url}", flush=True)
        print(f"  divisions     : {', '.join(map(str, sandbox.division_numbers))}")
        print(f"  client id     : {args.client_id}")
        print(f"  client secret : {args.client_secret}")
        print(f"  consent       : {sandbox.url}/api/oauth2/auth", flush=True)
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0
