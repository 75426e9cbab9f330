"""``crm-sync reconcile``: an offline audit of how Odoo and a ledger's customers match.

No writes anywhere, no network: it reads an Odoo CSV export and an external JSON
file, runs the same matching engine as the daemon, and prints what a first sync
would do (links, records for review, new customers) plus the duplicates already
present on each side. This lets a company measure how messy its data is before
the first sync.

Inputs:

- Odoo CSV with a header holding at least ``id,name,is_company,parent_id,vat,
  company_registry,email,phone,zip,city,country_code`` (extra columns ignored);
- the external file: Exact Online OData JSON (``{"d": {"results": [...]}}`` or a
  list of such pages), Sage Accounting v3.1 JSON (``{"$items": [...]}`` or a list of
  pages), or a plain list of records.

JSON output (``--json``)::

    {"links": [{"odoo_id", "external_id", "rule", "score"}],
     "review": [{"odoo_ids", "external_id", "reason"}],
     "new": [{"external_id"}],
     "duplicates": {"odoo": [[ids]], "external": [[ids]]},
     "stats": {...}}

Proposals (name or e-mail only) are listed under ``review`` with their score in the
reason: an audit never links them.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .kernel.errors import DataError
from .matching import (
    Decision,
    Keys,
    MatchIndex,
    _keys,
    external_duplicate_groups,
    partner_keys,
)

__all__ = ["load_external", "load_odoo_csv", "reconcile", "register"]

REQUIRED_COLUMNS = (
    "id",
    "name",
    "is_company",
    "parent_id",
    "vat",
    "company_registry",
    "email",
    "phone",
    "zip",
    "city",
    "country_code",
)


def load_odoo_csv(path: Path) -> list[Keys]:
    """Keys of every row of an Odoo partner export; bad rows name row and field."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {', '.join(missing)}",
                record=str(path),
                field=missing[0],
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                row_id = int(str(row["id"]).strip())
                parent = str(row.get("parent_id") or "").strip()
                row = dict(row, id=row_id, parent_id=int(parent) if parent else None)
            except ValueError as err:
                raise DataError(
                    f"{path} line {line}: id and parent_id must be numbers ({err})",
                    record=f"{path}:{line}",
                    field="id",
                ) from err
            rows.append(row)
    return [partner_keys(row) for row in rows]


def _pages(data: Any, path: Path) -> Iterator[Mapping[str, Any]]:
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON object or list", record=str(path))
    for item in data:
        if isinstance(item, dict) and "d" in item:
            d = item["d"]
            yield from (d.get("results", []) if isinstance(d, dict) else d)
        elif isinstance(item, dict) and "$items" in item:
            yield from item["$items"]
        elif isinstance(item, dict):
            yield item
        else:
            raise DataError(f"{path}: unexpected item {item!r:.60}", record=str(path))


def _country(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("id") or value.get("code")
    text = str(value or "").strip().upper()
    return text[:2] if len(text) >= 2 else None


def _exact_keys(record: Mapping[str, Any]) -> Keys:
    return _keys(
        record_id=str(record.get("ID") or record.get("Code") or "").strip(),
        commercial_id=str(record.get("ID") or "").strip(),
        name=str(record.get("Name") or ""),
        vat=record.get("VATNumber") or None,
        registry=record.get("ChamberOfCommerce") or None,
        peppol=(
            f"{record['PeppolIdentifierType']}:{record['PeppolIdentifier']}"
            if record.get("PeppolIdentifier") and record.get("PeppolIdentifierType")
            else None
        ),
        email=record.get("Email"),
        phone=record.get("Phone"),
        zip_code=record.get("Postcode"),
        country=_country(record.get("Country")),
    )


def _sage_keys(record: Mapping[str, Any]) -> Keys:
    address = record.get("main_address") or {}
    return _keys(
        record_id=str(record.get("id") or ""),
        commercial_id=str(record.get("id") or ""),
        name=str(record.get("name") or record.get("displayed_as") or ""),
        vat=record.get("tax_number") or None,
        registry=record.get("registered_number") or record.get("company_number"),
        peppol=None,
        email=record.get("email"),
        phone=record.get("telephone") or record.get("mobile"),
        zip_code=address.get("postal_code"),
        country=_country(address.get("country") or record.get("country")),
    )


def _sage_incomplete(record: Mapping[str, Any]) -> bool:
    """A list item with only id/displayed_as: its VAT is unknown, not absent."""
    return set(record) <= {"id", "displayed_as", "$path"}


def load_external(path: Path, system: str) -> tuple[list[Keys], list[str]]:
    """Keys of the external records, and ids of records too incomplete to judge."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})", record=str(path)) from err
    records, incomplete = [], []
    for record in _pages(data, path):
        if system == "sage" and _sage_incomplete(record):
            incomplete.append(str(record.get("id")))
        else:
            records.append(dict(record))
    to_keys = _exact_keys if system == "exact" else _sage_keys
    keys = [to_keys(record) for record in records]
    for index, item in enumerate(keys):
        if not item.id:
            raise DataError(
                f"{path}: record {index} has no id",
                record=f"{path}[{index}]",
                field="ID" if system == "exact" else "id",
            )
    return keys, incomplete


def reconcile(
    odoo: Iterable[Keys],
    external: Iterable[Keys],
    *,
    incomplete: Iterable[str] = (),
    link_on_name_and_postcode: bool = True,
) -> dict[str, Any]:
    """Match every external record; return the report as plain data."""
    started = time.perf_counter()
    index = MatchIndex(odoo, link_on_name_and_postcode=link_on_name_and_postcode)
    external = list(external)
    report: dict[str, Any] = {"links": [], "review": [], "new": []}
    by_outcome: dict[str, int] = {}
    for keys in external:
        decision: Decision = index.match(keys)
        by_outcome[decision.outcome] = by_outcome.get(decision.outcome, 0) + 1
        if decision.outcome == "link":
            report["links"].append(
                {
                    "odoo_id": decision.partner_id,
                    "external_id": decision.external_id,
                    "rule": decision.rule,
                    "score": decision.score,
                }
            )
        elif decision.outcome in ("review", "proposal"):
            reason = decision.explanation
            if decision.outcome == "proposal":
                reason = f"proposal (score {decision.score:.2f}): {reason}"
            report["review"].append(
                {
                    "odoo_ids": decision.candidate_ids,
                    "external_id": decision.external_id,
                    "reason": reason,
                }
            )
        else:
            report["new"].append({"external_id": decision.external_id})
    for external_id in incomplete:
        report["review"].append(
            {
                "odoo_ids": [],
                "external_id": external_id,
                "reason": "list item without attributes: fetch the record with "
                "its details before matching (its VAT is unknown, not absent)",
            }
        )
    report["duplicates"] = {
        "odoo": index.duplicate_groups(),
        "external": external_duplicate_groups(external),
    }
    report["stats"] = {
        "odoo_partners": len(index),
        "external_records": len(external) + len(list(incomplete)),
        "links": len(report["links"]),
        "review": len(report["review"]),
        "proposals": by_outcome.get("proposal", 0),
        "new": len(report["new"]),
        "odoo_duplicate_groups": len(report["duplicates"]["odoo"]),
        "external_duplicate_groups": len(report["duplicates"]["external"]),
        "invalid_odoo_identifiers": sum(
            1 for k in index.partners.values() if k.problems
        ),
        "invalid_external_identifiers": sum(1 for k in external if k.problems),
        "seconds": round(time.perf_counter() - started, 3),
    }
    return report


def _text(report: Mapping[str, Any], out: Any) -> None:
    stats = report["stats"]
    print(
        f"{stats['external_records']} external records against "
        f"{stats['odoo_partners']} Odoo partners:",
        file=out,
    )
    print(f"  linked automatically : {stats['links']}", file=out)
    print(
        f"  to review            : {stats['review']} "
        f"(of which {stats['proposals']} name/e-mail proposals)",
        file=out,
    )
    print(f"  new customers        : {stats['new']}", file=out)
    print(
        f"  duplicates           : {stats['odoo_duplicate_groups']} groups in Odoo, "
        f"{stats['external_duplicate_groups']} in the external system",
        file=out,
    )
    print(
        f"  invalid identifiers  : {stats['invalid_odoo_identifiers']} in Odoo, "
        f"{stats['invalid_external_identifiers']} external",
        file=out,
    )
    for item in report["review"][:20]:
        ids = ", ".join(map(str, item["odoo_ids"])) or "-"
        print(
            f"  review {item['external_id']} (Odoo {ids}): {item['reason']}", file=out
        )
    if len(report["review"]) > 20:
        print(f"  … and {len(report['review']) - 20} more (use --json)", file=out)


def run_reconcile(args: argparse.Namespace) -> int:
    odoo = load_odoo_csv(Path(args.odoo_csv))
    external, incomplete = load_external(Path(args.external), args.system)
    report = reconcile(
        odoo,
        external,
        incomplete=incomplete,
        link_on_name_and_postcode=not args.no_name_links,
    )
    if args.json:
        json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        _text(report, sys.stdout)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "reconcile",
        help="offline audit: how Odoo customers and a ledger's customers match",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--odoo-csv", required=True, metavar="FILE")
    parser.add_argument("--external", required=True, metavar="FILE")
    parser.add_argument("--system", required=True, choices=("exact", "sage"))
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    parser.add_argument(
        "--no-name-links",
        action="store_true",
        help="never link on name + postcode, even without identifiers",
    )
    parser.set_defaults(handler=run_reconcile)
