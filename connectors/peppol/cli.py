"""crm-sync peppol …: validate UBL files and look participants up.

crm-sync peppol validate FILE... [--json] runs the UBL 2.1 XSD and the official
CEN and PEPPOL rules on each file. Exit status: 0 when no file has a fatal assert,
1 when any has, 2 when a file cannot be read (missing, not XML, DTD/entities
refused). --json prints [{"file", "valid", "errors": [{"rule", "flag",
"message", "location"}]}].

crm-sync peppol lookup ID|--vat … [--country CC] asks the SML and SMP whether a
participant can receive Peppol BIS 3 invoices.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .discovery import SML_PRODUCTION, Discovery
from .errors import DocumentError, RulesNotFound, UnsafeDocument
from .safexml import DEFAULT_MAX_BYTES
from .validate import Assertion, ValidationResult, get_validator

__all__ = ["register", "run_lookup", "run_validate"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``peppol`` command and its subcommands to ``crm-sync``."""
    parser = sub.add_parser(
        "peppol",
        help="Peppol tools: validate UBL files, look up participants",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="peppol_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)

    validate = commands.add_parser(
        "validate",
        help="validate UBL Invoice/CreditNote files (XSD + CEN + PEPPOL)",
        description="Validate UBL 2.1 Invoice and CreditNote files against the "
        "UBL XSD and the official CEN and PEPPOL BIS Billing 3.0 rules. Exit 0 "
        "when no file has a fatal assert, 1 when any has, 2 when a file or the "
        "rules cannot be read.",
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.add_argument("--json", action="store_true", help="print JSON")
    validate.add_argument(
        "--rules-dir",
        type=Path,
        default=None,
        help="validation artefacts: ubl-2.1/xsd and xslt/ (default: "
        "$PEPPOL_RULES_DIR, else the copy found beside the project)",
    )
    validate.set_defaults(handler=run_validate)

    lookup = commands.add_parser(
        "lookup", help="can a participant receive Peppol BIS 3 invoices? (SML/SMP)"
    )
    lookup.add_argument("participant", nargs="?", help="scheme:id, e.g. 0208:…")
    lookup.add_argument("--vat")
    lookup.add_argument("--registry", help="company registry number")
    lookup.add_argument("--country")
    lookup.add_argument("--zone", default=SML_PRODUCTION, help="SML DNS zone")
    lookup.add_argument("--nameserver", help="ask only this DNS server")
    lookup.add_argument("--dns-port", type=int, default=53)
    lookup.add_argument("--smp-url", help="skip DNS, ask this SMP")
    lookup.set_defaults(handler=run_lookup)


#: Control characters (but tab) a file name or message must not send to a terminal.
_CONTROL = dict.fromkeys(c for c in [*range(32), 127] if c != 9)


def _printable(text: str) -> str:
    """``text`` without control characters: an escape sequence in a file name
    would otherwise drive the terminal."""
    return text.translate(_CONTROL)


def _read_bounded(path: Path, limit: int = DEFAULT_MAX_BYTES) -> bytes:
    """At most ``limit`` bytes of ``path``; an endless one (``/dev/zero``) is refused.

    :raises UnsafeDocument: the file holds more than ``limit`` bytes.
    """
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnsafeDocument(
            f"document is larger than the limit of {limit} bytes",
            record=str(path),
            details={"reason": "size", "limit": limit},
        )
    return data


def run_validate(args: argparse.Namespace) -> int:
    """Validate every file; see the module docstring for exit codes."""
    try:
        validator = get_validator(args.rules_dir)
    except RulesNotFound as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results: list[ValidationResult] = []
    unreadable = False
    for path in args.files:
        name = str(path)
        try:
            data = _read_bounded(path)
            results.append(validator.validate(data, source=name))
        except RulesNotFound as err:  # a schema loaded on first use is broken
            print(f"error: {err.message}", file=sys.stderr)
            return 2
        except (OSError, UnsafeDocument, DocumentError) as err:
            unreadable = True
            reason = getattr(err, "message", None) or err.__class__.__name__
            if isinstance(err, OSError):
                reason = err.strerror or str(err)
            results.append(
                ValidationResult(
                    name, (Assertion("UNREADABLE", "fatal", str(reason), ""),)
                )
            )
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for result in results:
            verdict = "valid" if result.valid else "INVALID"
            print(
                f"{_printable(result.source)}: {verdict} ({len(result.fatal)} "
                f"fatal, {len(result.errors) - len(result.fatal)} warning)"
            )
            for item in result.errors:
                print(_printable(f"  [{item.flag}] {item.rule}: {item.message}"))
                if item.location:
                    print(_printable(f"      at {item.location}"))
    if unreadable:
        return 2
    return 0 if all(r.valid for r in results) else 1


def run_lookup(args: argparse.Namespace) -> int:
    """Print the participant status as JSON; exit 0 can receive, 1 cannot, 3 unknown."""
    discovery = Discovery(
        zone=args.zone,
        nameserver=args.nameserver,
        nameserver_port=args.dns_port,
        smp_url=args.smp_url,
    )
    try:
        status = discovery.participant_status(
            args.participant,
            vat=args.vat,
            company_registry=args.registry,
            country=args.country,
        )
    finally:
        discovery.close()
    print(json.dumps(status.as_dict(), indent=2))
    return {"can_receive": 0, "cannot": 1}.get(status.state, 3)
