"""Pure mapping between kernel records and Sage X3 object XML (built with lxml).

X3 classic web services exchange objects as an XML *string* inside the SOAP call:
``objectXml``/``inputXml`` on the way in, ``resultXml`` on the way out::

    <PARAM>
      <GRP ID="BPC0_1"><FLD NAME="BPCNUM"/><FLD NAME="BPCNAM">Société …</FLD></GRP>
      <TAB ID="SIH4_1"><LIN NUM="1"><FLD NAME="ITMREF">PRESTA</FLD>…</LIN></TAB>
    </PARAM>

Group and table ids come from the publication (``getDescription``); the ones used
here are the defaults of the standard customer (BPC) and sales invoice (SIH)
objects and can be overridden field by field. Text is handled as Unicode end to end,
so accented names travel as UTF-8 in the SOAP envelope and read back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from lxml import etree
from pydantic import ValidationError

from sync_daemon.kernel.identifiers import compact_registry, compact_vat
from sync_daemon.kernel.models import Address, Customer, Invoice

from .errors import SageDataError
from .settings import SageX3Settings, tax_key

__all__ = [
    "CUSTOMER_GROUPS",
    "INVOICE_GROUPS",
    "bpc_to_customer",
    "build_object_xml",
    "customer_to_bpc",
    "invoice_to_sih",
    "parse_object_xml",
    "parse_query_lines",
]

#: Customer (BPC) fields and the group that carries each of them.
CUSTOMER_GROUPS = {
    "BPCNUM": "BPC0_1",
    "BPCNAM": "BPC0_1",
    "CRY": "BPC1_1",
    "EECNUM": "BPC1_1",
    "CRN": "BPC1_1",
    "LAN": "BPC1_1",
    "CUR": "BPC1_1",
    "BCGCOD": "BPC1_1",
    "BPAADDLIG1": "BPC3_1",
    "BPAADDLIG2": "BPC3_1",
    "POSCOD": "BPC3_1",
    "CTY": "BPC3_1",
    "TEL": "BPC3_1",
    "WEB": "BPC3_1",
}
#: Sales invoice (SIH) header fields; lines go to table ``SIH4_1``.
INVOICE_GROUPS = {
    "SALFCY": "SIH0_1",
    "SIVTYP": "SIH0_1",
    "NUM": "SIH0_1",
    "BPCINV": "SIH0_1",
    "INVDAT": "SIH0_1",
    "CUR": "SIH0_1",
    "BPRVCR": "SIH0_1",
    "STRDUDDAT": "SIH0_1",
}
INVOICE_LINE_TABLE = "SIH4_1"
DEFAULT_GROUP = "GRP1"


def build_object_xml(
    fields: Mapping[str, str | None],
    *,
    groups: Mapping[str, str],
    tables: Mapping[str, Sequence[Mapping[str, str]]] | None = None,
) -> str:
    """The ``<PARAM>`` string for ``fields`` (grouped) and ``tables`` (lines)."""
    root = etree.Element("PARAM")
    by_group: dict[str, etree._Element] = {}
    for name, value in fields.items():
        group_id = groups.get(name, DEFAULT_GROUP)
        group = by_group.get(group_id)
        if group is None:
            group = by_group[group_id] = etree.SubElement(root, "GRP", ID=group_id)
        field = etree.SubElement(group, "FLD", NAME=name)
        field.text = "" if value is None else str(value)
    for table_id, lines in (tables or {}).items():
        table = etree.SubElement(root, "TAB", ID=table_id, SIZE=str(len(lines)))
        for number, line in enumerate(lines, start=1):
            row = etree.SubElement(table, "LIN", NUM=str(number))
            for name, value in line.items():
                etree.SubElement(row, "FLD", NAME=name).text = str(value)
    return str(etree.tostring(root, encoding="unicode"))


def _parse(text: str, what: str) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(text.encode("utf-8"), parser)
    except etree.XMLSyntaxError as err:
        raise SageDataError(f"X3 {what} is not XML: {err}", field=what) from err
    if root.getroottree().docinfo.doctype:
        # X3 never sends one; its entities would be read as empty values
        raise SageDataError(f"X3 {what} carries a DOCTYPE (refused)", field=what)
    return root


def parse_object_xml(text: str | None) -> dict[str, str]:
    """Every ``GRP/FLD`` value of a ``resultXml`` (first occurrence wins)."""
    if not text:
        return {}
    root = _parse(text, "resultXml")
    out: dict[str, str] = {}
    for field in root.iterfind("GRP/FLD"):
        name = field.get("NAME")
        if name and name not in out:
            out[name] = field.text or ""
    return out


def parse_object_lines(text: str | None, table_id: str) -> list[dict[str, str]]:
    """The lines of table ``table_id`` of a ``resultXml``."""
    if not text:
        return []
    root = _parse(text, "resultXml")
    return [
        {f.get("NAME", ""): f.text or "" for f in line.iterfind("FLD")}
        for line in root.iterfind(f"TAB[@ID='{table_id}']/LIN")
    ]


def parse_query_lines(text: str | None) -> list[dict[str, str]]:
    """The rows of a ``query`` answer (``RESULT/TAB/LIN``)."""
    if not text:
        return []
    root = _parse(text, "resultXml")
    return [
        {f.get("NAME", ""): f.text or "" for f in line.iterfind("FLD")}
        for line in root.iterfind("TAB/LIN")
    ]


def customer_to_bpc(
    customer: Customer,
    *,
    settings: SageX3Settings,
    code: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> str:
    """The BPC ``objectXml`` that creates (``code`` empty) or updates a customer.

    ``extra`` adds fields of our own (the idempotency reference field).
    """
    record = f"customer {customer.external_id}"
    if not customer.name:
        raise SageDataError("an X3 customer needs a name", record=record, field="name")
    country = customer.country_code
    if not country:
        raise SageDataError(
            "an X3 customer needs a country", record=record, field="country_code"
        )
    address: Address = customer.address
    fields: dict[str, str | None] = {
        "BPCNUM": code or "",
        "BPCNAM": customer.name,
        "CRY": country,
    }
    optional = {
        "EECNUM": compact_vat(customer.vat, country) if customer.vat else None,
        "CRN": compact_registry(customer.company_registry, country)
        if customer.company_registry
        else None,
        "CUR": customer.currency,
        "BPAADDLIG1": address.street,
        "BPAADDLIG2": address.street2,
        "POSCOD": address.zip,
        "CTY": address.city,
        "TEL": customer.phone,
        "WEB": customer.email,
    }
    fields.update({key: value for key, value in optional.items() if value})
    for key, value in settings.customer_defaults.items():
        fields.setdefault(key, value)
    fields.update(extra or {})
    return build_object_xml(fields, groups=CUSTOMER_GROUPS)


def bpc_to_customer(fields: Mapping[str, str], *, record: str) -> Customer:
    """A BPC object read from X3 as a kernel :class:`Customer`."""
    code = (fields.get("BPCNUM") or "").strip()
    if not code:
        raise SageDataError("customer without BPCNUM", record=record, field="BPCNUM")
    updated = fields.get("UPDDATTIM") or ""
    try:
        updated_at = (
            datetime.fromisoformat(updated.replace("Z", "+00:00")) if updated else None
        )
    except ValueError as err:
        raise SageDataError(
            f"not a timestamp: {updated!r}", record=record, field="UPDDATTIM"
        ) from err
    country = (fields.get("CRY") or "").strip() or None
    if not (fields.get("BPCNAM") or "").strip():
        raise SageDataError("a customer needs a name", record=record, field="BPCNAM")
    try:
        return Customer(
            external_id=code,
            external_code=code,
            name=(fields.get("BPCNAM") or "").strip(),
            vat=(fields.get("EECNUM") or "").strip() or None,
            company_registry=(fields.get("CRN") or "").strip() or None,
            currency=(fields.get("CUR") or "").strip() or None,
            phone=(fields.get("TEL") or "").strip() or None,
            email=(fields.get("WEB") or "").strip() or None,
            address=Address(
                street=(fields.get("BPAADDLIG1") or "").strip() or None,
                street2=(fields.get("BPAADDLIG2") or "").strip() or None,
                zip=(fields.get("POSCOD") or "").strip() or None,
                city=(fields.get("CTY") or "").strip() or None,
                country_code=country,
            ),
            updated_at=updated_at,
        )
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(part) for part in first["loc"])
        field = _X3_FIELDS.get(loc, "BPC")
        raise SageDataError(first["msg"], record=record, field=field) from err


#: Where each Customer field comes from in a BPC object (to name the bad one).
_X3_FIELDS = {
    "external_id": "BPCNUM",
    "external_code": "BPCNUM",
    "name": "BPCNAM",
    "vat": "EECNUM",
    "company_registry": "CRN",
    "currency": "CUR",
    "phone": "TEL",
    "email": "WEB",
    "address.street": "BPAADDLIG1",
    "address.street2": "BPAADDLIG2",
    "address.zip": "POSCOD",
    "address.city": "CTY",
    "address.country_code": "CRY",
    # the Address is validated on its own first
    "street": "BPAADDLIG1",
    "street2": "BPAADDLIG2",
    "zip": "POSCOD",
    "city": "CTY",
    "country_code": "CRY",
}


def _number(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text not in {"-0", ""} else "0"


def invoice_to_sih(
    invoice: Invoice, *, customer_code: str, settings: SageX3Settings
) -> str:
    """The SIH ``objectXml`` booking a posted Odoo invoice or credit note.

    Items come from ``settings.items`` (by Odoo account code) or the default item,
    tax levels from ``settings.tax_codes``; all unmapped lines are named at once.
    """
    record = f"invoice {invoice.number}"
    problems: list[tuple[str, str]] = []
    lines: list[dict[str, str]] = []
    for index, line in enumerate(invoice.lines):
        where = f"lines[{index}]"
        item = settings.items.get(line.account_code or "") or settings.default_item
        if not item:
            problems.append(
                (f"{where}.account_code", f"no X3 item for {line.account_code!r}")
            )
        key = tax_key(line.tax_category, line.tax_percent)
        level = settings.tax_codes.get(key)
        if not level:
            problems.append((f"{where}.tax", f"no X3 tax level mapped for {key}"))
        lines.append(
            {
                "ITMREF": item or "",
                "ITMDES": line.name,
                "QTY": _number(line.quantity),
                "GROPRI": _number(line.unit_price),
                "VACITM1": level or "",
            }
        )
    if not settings.sales_site:
        problems.append(("sales_site", "no X3 sales site configured"))
    if problems:
        raise SageDataError(
            "; ".join(f"{field}: {text}" for field, text in problems),
            record=record,
            field=problems[0][0],
            details={"problems": problems},
        )
    header: dict[str, str | None] = {
        "SALFCY": settings.sales_site,
        "SIVTYP": settings.credit_note_type
        if invoice.document_type == "credit_note"
        else settings.invoice_type,
        "NUM": "",
        "BPCINV": customer_code,
        "INVDAT": invoice.issue_date.strftime("%Y%m%d"),
        "CUR": invoice.currency,
        settings.invoice_reference_field: invoice.number,
    }
    if invoice.due_date:
        header["STRDUDDAT"] = invoice.due_date.strftime("%Y%m%d")
    groups = {**INVOICE_GROUPS, settings.invoice_reference_field: "SIH0_1"}
    return build_object_xml(header, groups=groups, tables={INVOICE_LINE_TABLE: lines})


def describe_fields(fields: Mapping[str, Any]) -> str:
    """Field names only, for logs that must not carry personal data."""
    return ",".join(sorted(fields))
