"""crm-sync reconcile: an offline audit of how Odoo and a ledger's customers match.

No writes anywhere, no network: it reads an Odoo CSV export and an external JSON
file, runs the same matching engine as the daemon, and prints what a first sync
would do (links, records for review, new customers) plus the duplicates already
present on each side. This lets a company measure how messy its data is before
the first sync.

Inputs:

- Odoo CSV with a header holding at least id,name,is_company,parent_id,vat,
  company_registry,email,phone,zip,city,country_code (extra columns ignored;
  ',', ';' or tab separated; UTF-8). id and parent_id are numeric database
  ids, not external ids such as __export__.res_partner_12_ab; the parents of
  the contacts must be in the file;
- the external file: Exact Online OData JSON ({"d": {"results": [...]}} or a
  list of such pages) with ID, Code, Name, VATNumber,
  ChamberOfCommerce, PeppolIdentifierType/PeppolIdentifier, Email,
  Phone, Postcode, Country; Sage Accounting v3.1 JSON
  ({"$items": [...]} or a list of pages) with id, name,
  tax_number, registered_number, email, telephone,
  main_address.postal_code/country.id; or a plain list of such records.

JSON output (--json)::

    {"links": [{"odoo_id", "external_id", "rule", "score"}],
     "review": [{"odoo_ids", "external_id", "reason"}],
     "new": [{"external_id"}],
     "duplicates": {"odoo": [[ids]], "external": [[ids]]},
     "invalid": {"odoo": [{"id", "problems"}], "external": [...]},
     "warnings": [...],
     "stats": {...}}

Exit status: 0 with a report; 2 when an input cannot be read, with one line on
standard error naming the file, line or page, record and field (a missing column
or one given twice, a row of the wrong width, an id that is not a number or
appears twice, an is_company that is not true/false, a contact whose parent is
not in the file, a page that is no known envelope, a record without its id, a key
given twice in one object, NaN/Infinity, an object or list where text
belongs, a country that is not a two-letter ISO code). Doubts that do not stop
the audit, such as an export whose last page links to a next one, are printed as
warnings and listed under warnings.

Proposals (name or e-mail only) are listed under review with their score in the
reason: an audit never links them.
"""

from __future__ import annotations

import argparse
import csv
import io
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


#: Delimiters an Odoo export may use: ',' by default, ';' or a tab from a
#: spreadsheet saved with a European locale.
_DELIMITERS = (",", ";", "\t")
#: Characters that must not reach a terminal from someone else's data.
_CONTROL = dict.fromkeys(c for c in range(32) if c not in (9,))


#: Largest input read (an export of a million partners is about 200 MB); an
#: endless one such as ``/dev/zero`` is refused here instead of filling memory.
MAX_INPUT_BYTES = 512 * 1024 * 1024


def _read_text(path: Path) -> str:
    """The whole file as text (UTF-8, with or without BOM), or a named DataError."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as err:
        raise DataError(
            f"{path}: cannot read ({err.strerror or err})", record=str(path)
        ) from err
    if len(data) > MAX_INPUT_BYTES:
        raise DataError(
            f"{path}: larger than {MAX_INPUT_BYTES // (1024 * 1024)} MB; split the "
            "export",
            record=str(path),
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path} line {line}: not UTF-8 (byte 0x{data[err.start]:02x}); save "
            "or export the file as UTF-8",
            record=f"{path}:{line}",
        ) from err


def _delimiter(header: str) -> str:
    return max(_DELIMITERS, key=header.count)


def _csv_int(value: Any, path: Path, line: int, field: str) -> int | None:
    text = str(value or "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise DataError(
            f"{path} line {line}: {field} must be a whole number, not {text[:40]!r}",
            record=f"{path}:{line}",
            field=field,
        )
    return int(text)


#: How an Odoo export or a spreadsheet writes a boolean (empty is false).
_TRUE = frozenset({"1", "true", "yes", "y", "t"})
_FALSE = frozenset({"", "0", "false", "no", "n", "f"})


def _csv_bool(value: Any, path: Path, line: int, field: str) -> bool:
    text = str(value or "").strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise DataError(
        f"{path} line {line}: {field} must be True or False, not {text[:40]!r}",
        record=f"{path}:{line}",
        field=field,
    )


def _is_code(text: str) -> bool:
    return len(text) == 2 and text.isascii() and text.isalpha()


def _csv_country(value: Any, path: Path, line: int) -> str | None:
    text = str(value or "").strip().upper()
    if text and not _is_code(text):
        raise DataError(
            f"{path} line {line}: country_code must be a two-letter ISO code, not "
            f"{text[:40]!r}",
            record=f"{path}:{line}",
            field="country_code",
        )
    return text or None


def load_odoo_csv(path: Path) -> list[Keys]:
    """Keys of every row of an Odoo partner export; bad rows name line and field.

    The delimiter (',', ';' or tab) is taken from the header, header names are
    read case-insensitively, and every row must have as many fields as the header.
    Each contact's commercial entity is found by walking ``parent_id`` up to the
    first company (as Odoo's ``commercial_partner_id``), so the file must hold the
    parents of its contacts.
    """
    text = _read_text(path)
    header_line = text.split("\n", 1)[0]
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=_delimiter(header_line)
    )
    try:
        header = [name.strip().lower() for name in next(reader, [])]
        twice = sorted({c for c in REQUIRED_COLUMNS if header.count(c) > 1})
        if twice:
            raise DataError(
                f"{path} line 1: column(s) {', '.join(twice)} appear more than once",
                record=f"{path}:1",
                field=twice[0],
            )
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            hint = ""
            if len(header) <= 1 and header_line.strip():
                hint = " (is the file separated by ',', ';' or tabs?)"
            raise DataError(
                f"{path}: missing column(s) {', '.join(missing)}{hint}",
                record=str(path),
                field=missing[0],
            )
        rows: dict[int, dict[str, Any]] = {}
        lines: dict[int, int] = {}
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise DataError(
                    f"{path} line {line}: {len(values)} fields where the header "
                    f"has {len(header)} (a value with the delimiter in it must be "
                    "quoted)",
                    record=f"{path}:{line}",
                )
            row: dict[str, Any] = dict(zip(header, values, strict=True))
            row_id = _csv_int(row["id"], path, line, "id")
            if row_id is None:
                raise DataError(
                    f"{path} line {line}: id is empty",
                    record=f"{path}:{line}",
                    field="id",
                )
            if row_id in rows:
                raise DataError(
                    f"{path} line {line}: id {row_id} already on line {lines[row_id]}",
                    record=f"{path}:{line}",
                    field="id",
                )
            row["id"] = row_id
            row["parent_id"] = _csv_int(row["parent_id"], path, line, "parent_id")
            row["is_company"] = _csv_bool(row["is_company"], path, line, "is_company")
            row["country_code"] = _csv_country(row["country_code"], path, line)
            rows[row_id] = row
            lines[row_id] = line
    except csv.Error as err:
        raise DataError(
            f"{path} line {reader.line_num}: {err}", record=f"{path}:{reader.line_num}"
        ) from err
    for row_id, row in rows.items():
        row["commercial_partner_id"] = _commercial(row_id, rows, lines, path)
    return [partner_keys(row) for row in rows.values()]


def _commercial(
    row_id: int,
    rows: Mapping[int, Mapping[str, Any]],
    lines: Mapping[int, int],
    path: Path,
) -> int:
    """The commercial entity of a row: itself, or its first company ancestor."""
    seen = [row_id]
    current = rows[row_id]
    while current["parent_id"] is not None and not _is_company(current):
        parent = current["parent_id"]
        line = lines[current["id"]]
        if parent not in rows:
            raise DataError(
                f"{path} line {line}: parent_id {parent} is not in the file (export "
                "the parent companies with their contacts)",
                record=f"{path}:{line}",
                field="parent_id",
            )
        if parent in seen:
            raise DataError(
                f"{path} line {line}: parent_id {parent} makes a loop "
                f"({' -> '.join(map(str, [*seen, parent]))})",
                record=f"{path}:{line}",
                field="parent_id",
            )
        seen.append(parent)
        current = rows[parent]
    return int(current["id"])


def _is_company(row: Mapping[str, Any]) -> bool:
    return bool(row.get("is_company"))


def _pages(
    data: Any, path: Path, warnings: list[str]
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(position, record)`` for every record of the export's pages.

    A page is an Exact OData envelope ``{"d": {"results": [...]}}`` (or
    ``{"d": [...]}``), a Sage page ``{"$items": [...]}``, or a plain record.
    A last page that announces a next one means the export stopped early: that
    is reported in ``warnings``.
    """
    pages = data if isinstance(data, list) else [data]
    announced_next = False
    for number, page in enumerate(pages, start=1):
        where = f"{path} page {number}" if isinstance(data, list) else str(path)
        if not isinstance(page, dict):
            raise DataError(
                f"{where}: expected a JSON object, found {type(page).__name__}",
                record=where,
            )
        if "d" in page:
            envelope = page["d"]
            items = envelope.get("results") if isinstance(envelope, dict) else envelope
            if not isinstance(items, list):
                raise DataError(
                    f"{where}: an OData page needs a 'd' object with a 'results' list",
                    record=where,
                    field="d.results",
                )
            announced_next = isinstance(envelope, dict) and bool(envelope.get("__next"))
        elif "$items" in page:
            items = page["$items"]
            if not isinstance(items, list):
                raise DataError(
                    f"{where}: '$items' must be a list", record=where, field="$items"
                )
            announced_next = bool(page.get("$next"))
            total = page.get("$total")
            if len(pages) == 1 and isinstance(total, int) and total > len(items):
                warnings.append(
                    f"{where}: '$total' says {total} records, the page has {len(items)}"
                )
        elif not isinstance(data, list) and _looks_like_envelope(page):
            raise DataError(
                f"{where}: not an Exact ('d') or Sage ('$items') page: keys "
                f"{', '.join(sorted(page))[:80]}",
                record=where,
            )
        else:
            items = [page]
            announced_next = False
        for index, item in enumerate(items):
            position = f"{where} record {index + 1}"
            if not isinstance(item, dict):
                raise DataError(
                    f"{position}: expected an object, found {type(item).__name__}",
                    record=position,
                )
            yield position, item
    if announced_next:
        warnings.append(
            f"{path}: the last page links to a next page; the export looks incomplete"
        )


def _looks_like_envelope(page: Mapping[str, Any]) -> bool:
    """A lone object that holds lists only (``{"d": {}}`` typos, ``{"data": []}``)."""
    return bool(page) and all(isinstance(v, dict | list) for v in page.values())


def _bad(position: str, field: str, what: str) -> DataError:
    return DataError(f"{position}: {field} {what}", record=position, field=field)


def _text_of(value: Any, position: str, field: str) -> str | None:
    """A scalar field as text (numbers as written); objects and lists are refused."""
    if value is None or value is False or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        found = "true" if value is True else _json_type(value)
        raise _bad(position, field, f"must be text, found {found}")
    text = value if isinstance(value, str) else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        what = "holds an unpaired surrogate (\\ud800-\\udfff)"
        raise _bad(position, field, what) from err
    return text


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _country(value: Any, position: str, field: str) -> str | None:
    if isinstance(value, Mapping):
        field = f"{field}.id" if "id" in value or "code" not in value else field
        value = value.get("id") or value.get("code")
    text = (_text_of(value, position, field) or "").strip().upper()
    if text and not _is_code(text):
        raise _bad(position, field, f"must be a two-letter ISO code, not {text[:40]!r}")
    return text or None


def _id(value: Any, position: str, field: str) -> str:
    if value is None or value is False or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _bad(position, field, f"must be text or a whole number, found "
                   f"{_json_type(value) if value is not True else 'true'}")  # fmt: skip
    return (_text_of(value, position, field) or "").strip()


def _exact_keys(record: Mapping[str, Any], at: str) -> Keys:
    def get(field: str) -> str | None:
        return _text_of(record.get(field), at, field)

    peppol_type, peppol_id = get("PeppolIdentifierType"), get("PeppolIdentifier")
    return _keys(
        record_id=_id(record.get("ID"), at, "ID")
        or _id(record.get("Code"), at, "Code"),
        commercial_id=_id(record.get("ID"), at, "ID"),
        name=get("Name") or "",
        vat=get("VATNumber"),
        registry=get("ChamberOfCommerce"),
        peppol=f"{peppol_type}:{peppol_id}" if peppol_type and peppol_id else None,
        email=get("Email"),
        phone=get("Phone"),
        zip_code=get("Postcode"),
        country=_country(record.get("Country"), at, "Country"),
    )


def _sage_keys(record: Mapping[str, Any], at: str) -> Keys:
    def get(field: str) -> str | None:
        return _text_of(record.get(field), at, field)

    address = record.get("main_address") or {}
    if address.get("country"):
        country = _country(address["country"], at, "main_address.country")
    else:
        country = _country(record.get("country"), at, "country")
    return _keys(
        record_id=_id(record.get("id"), at, "id"),
        commercial_id=_id(record.get("id"), at, "id"),
        name=get("name") or get("displayed_as") or "",
        vat=get("tax_number"),
        registry=get("registered_number") or get("company_number"),
        peppol=None,
        email=get("email"),
        phone=get("telephone") or get("mobile"),
        zip_code=_text_of(address.get("postal_code"), at, "main_address.postal_code"),
        country=country,
    )


def _sage_incomplete(record: Mapping[str, Any]) -> bool:
    """A list item with only id/displayed_as: its VAT is unknown, not absent."""
    return set(record) <= {"id", "displayed_as", "$path"}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (else which value counts?)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key[:40]!r} appears twice in one object")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value; write null or a number")


def load_external(
    path: Path, system: str, warnings: list[str] | None = None
) -> tuple[list[Keys], list[str]]:
    """Keys of the external records, and ids of records too incomplete to judge.

    Every record needs its id, and an id may appear once; a record that cannot
    be read is a :class:`DataError` naming its page, position and field.
    Doubts that do not stop the audit (an export that looks cut short) are
    appended to ``warnings``.
    """
    text = _read_text(path)
    try:
        data = json.loads(
            text, parse_constant=_no_constant, object_pairs_hook=_unique_keys
        )
    except (ValueError, RecursionError) as err:
        raise DataError(f"{path}: not valid JSON ({err})", record=str(path)) from err
    id_field = "ID" if system == "exact" else "id"
    to_keys = _exact_keys if system == "exact" else _sage_keys
    keys: list[Keys] = []
    incomplete: list[str] = []
    seen: dict[str, str] = {}
    for position, record in _pages(
        data, path, warnings if warnings is not None else []
    ):
        if system == "sage" and not isinstance(record.get("main_address") or {}, dict):
            raise DataError(
                f"{position}: main_address must be an object",
                record=position,
                field="main_address",
            )
        item = to_keys(record, position)
        record_id = str(item.id)
        if not record_id:
            raise DataError(
                f"{position} has no {id_field}", record=position, field=id_field
            )
        if record_id in seen:
            raise DataError(
                f"{position}: {id_field} {record_id!r} already at {seen[record_id]}",
                record=position,
                field=id_field,
            )
        seen[record_id] = position
        if system == "sage" and _sage_incomplete(record):
            incomplete.append(record_id)
        else:
            keys.append(item)
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
    report["invalid"] = {
        "odoo": [
            {"id": k.id, "problems": list(k.problems)}
            for k in index.partners.values()
            if k.problems
        ],
        "external": [
            {"id": k.id, "problems": list(k.problems)} for k in external if k.problems
        ],
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


def _printable(text: str) -> str:
    """``text`` without control characters (external data reaches a terminal)."""
    return text.translate(_CONTROL)


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
        line = f"  review {item['external_id']} (Odoo {ids}): {item['reason']}"
        print(_printable(line), file=out)
    if len(report["review"]) > 20:
        print(f"  … and {len(report['review']) - 20} more (use --json)", file=out)
    for side in ("odoo", "external"):
        for item in report["invalid"][side][:10]:
            problems = "; ".join(item["problems"])
            print(_printable(f"  invalid {side} {item['id']}: {problems}"), file=out)


def run_reconcile(args: argparse.Namespace) -> int:
    """Exit 0 with the report; 2 when an input cannot be read (one line says why)."""
    warnings: list[str] = []
    try:
        odoo = load_odoo_csv(Path(args.odoo_csv))
        external, incomplete = load_external(Path(args.external), args.system, warnings)
    except DataError as err:
        print(f"crm-sync reconcile: {_printable(err.message)}", file=sys.stderr)
        return 2
    report = reconcile(
        odoo,
        external,
        incomplete=incomplete,
        link_on_name_and_postcode=not args.no_name_links,
    )
    report["warnings"] = warnings
    for warning in warnings:
        print(f"warning: {_printable(warning)}", file=sys.stderr)
    try:
        if args.json:
            json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
            print()
        else:
            _text(report, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader (``| head``) has what it wanted
        sys.stdout = None  # type: ignore[assignment]
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
