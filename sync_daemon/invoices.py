"""Invoices in Odoo: posted customer invoices out, vendor bills and payments in.

**Out** (:class:`InvoiceReader`): posted ``account.move`` of type ``out_invoice`` /
``out_refund`` become canonical :class:`~sync_daemon.kernel.models.Invoice`
objects, so every connector (Exact, Sage, Peppol) gets the same data: seller from
the company's partner, buyer from the commercial partner (never a child contact),
lines with a net unit price precise enough that quantity × price equals the line
amount (PEPPOL-EN16931-R120), a tax breakdown per (category, rate), EN 16931
totals, and references. The buyer reference comes from the sale order's customer
reference when the Sales app is installed, else the invoice's ``ref``, else the
partner's default buyer reference when the add-on provides one. A page of invoices
costs a fixed number of calls (moves, lines, taxes, partners, orders), whatever its
size.

The tax category (UNCL5305) is the tax's own ``ubl_cii_tax_category_code`` when
the server has that field; otherwise: a rate above zero is ``S``, a zero rate to a
buyer in another EU country ``K``, to a buyer outside the EU ``G``, else ``Z``.

**In**: :func:`create_vendor_bills` turns incoming e-invoices into *draft* vendor
bills (with their attachments), deduplicated on (supplier, number);
:func:`apply_payments` registers in Odoo what the ledger says was paid.
"""

from __future__ import annotations

import base64
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .gateway import Command, OdooGateway
from .kernel.errors import DataError, SyncError
from .kernel.models import (
    Address,
    Invoice,
    InvoiceLine,
    Party,
    PaymentStatus,
    TaxSubtotal,
)
from .matching import Keys, MatchIndex, _keys
from .partners import OdooLookups

__all__ = ["InvoiceReader", "apply_payments", "create_vendor_bills"]

_logger = logging.getLogger(__name__)

EU = frozenset(
    {
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    }
)
#: Partner fields that may hold a default buyer reference (first one present wins).
BUYER_REFERENCE_FIELDS = (
    "crm_buyer_reference",
    "peppol_buyer_reference",
    "buyer_reference",
)
_UNIT_CODES = {
    "units": "C62",
    "unit": "C62",
    "hours": "HUR",
    "days": "DAY",
    "kg": "KGM",
}

MOVE_FIELDS = (
    "name",
    "move_type",
    "state",
    "partner_id",
    "commercial_partner_id",
    "company_id",
    "currency_id",
    "invoice_date",
    "invoice_date_due",
    "delivery_date",
    "ref",
    "payment_reference",
    "invoice_payment_term_id",
    "partner_bank_id",
    "amount_untaxed",
    "amount_tax",
    "amount_total",
    "amount_residual",
    "reversed_entry_id",
    "narration",
    "write_date",
)
LINE_FIELDS = (
    "move_id",
    "display_type",
    "name",
    "quantity",
    "price_unit",
    "discount",
    "price_subtotal",
    "tax_ids",
    "product_id",
    "product_uom_id",
    "sale_line_ids",
)
PARTY_FIELDS = (
    "name",
    "vat",
    "company_registry",
    "street",
    "street2",
    "zip",
    "city",
    "country_id",
    "email",
    "phone",
    "peppol_eas",
    "peppol_endpoint",
    *BUYER_REFERENCE_FIELDS,
)
CENT = Decimal("0.01")


def _m2o(value: Any) -> int | None:
    if isinstance(value, list | tuple):
        return int(value[0]) if value else None
    return int(value) if value else None


def _name(value: Any) -> str | None:
    if isinstance(value, list | tuple) and len(value) > 1:
        return str(value[1])
    return None


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(CENT, ROUND_HALF_UP)


def _date(value: Any) -> date | None:
    if not value:
        return None
    return date.fromisoformat(str(value)[:10])


class InvoiceReader:
    """Reads posted customer invoices and credit notes as canonical invoices."""

    def __init__(
        self, gateway: OdooGateway, lookups: OdooLookups, *, page_size: int = 500
    ):
        self.gateway = gateway
        self.lookups = lookups
        self.page_size = page_size
        self._taxes: dict[int, dict[str, Any]] = {}
        self._companies: dict[int, dict[str, Any]] = {}

    def _party(self, row: Mapping[str, Any]) -> Party:
        cc = self.lookups.country_code(_m2o(row.get("country_id")))
        return Party(
            name=row.get("name") or f"res.partner {row['id']}",
            vat=row.get("vat") or None,
            company_registry=row.get("company_registry") or None,
            endpoint_id=row.get("peppol_endpoint") or None,
            endpoint_scheme=row.get("peppol_eas") or None,
            address=Address(
                street=row.get("street") or None,
                street2=row.get("street2") or None,
                zip=row.get("zip") or None,
                city=row.get("city") or None,
                country_code=cc,
            ),
            email=row.get("email") or None,
            phone=row.get("phone") or None,
        )

    def _load_taxes(self, ids: set[int]) -> None:
        missing = sorted(ids - set(self._taxes))
        if missing:
            fields = ["amount", "amount_type", "name", "ubl_cii_tax_category_code"]
            for row in self.gateway.read("account.tax", missing, fields):
                self._taxes[row["id"]] = row

    def _company_partner(self, company_id: int) -> int:
        if company_id not in self._companies:
            [row] = self.gateway.read("res.company", [company_id], ["partner_id"])
            self._companies[company_id] = row
        partner = _m2o(self._companies[company_id]["partner_id"])
        if partner is None:
            raise DataError(
                f"company {company_id} has no partner",
                record=f"res.company {company_id}",
            )
        return partner

    def posted_customer_invoices(
        self,
        company_id: int,
        *,
        since: str | None = None,
        skip: set[int] | None = None,
        where: Sequence[Any] = (),
        pending: tuple[str, str, Any] | None = None,
    ) -> Iterator[list[tuple[int, int, Invoice | DataError]]]:
        """Pages of (move id, commercial partner id, invoice or why it failed).

        :param where: more conditions every move must meet.
        :param pending: one condition that selects a move whatever ``since``.
        """
        domain: list[Any] = [
            ("move_type", "in", ["out_invoice", "out_refund"]),
            ("state", "=", "posted"),
            ("company_id", "=", company_id),
            *where,
        ]
        if since and pending:
            domain.extend(["|", ("write_date", ">=", since), pending])
        elif since:
            domain.append(("write_date", ">=", since))
        for moves in self.gateway.search_read_pages(
            "account.move", domain, MOVE_FIELDS, page_size=self.page_size
        ):
            moves = [m for m in moves if not skip or m["id"] not in skip]
            if moves:
                yield self.convert(moves, company_id)

    def convert(
        self, moves: Sequence[Mapping[str, Any]], company_id: int
    ) -> list[tuple[int, int, Invoice | DataError]]:
        """Canonical invoices of already-read moves (a fixed number of calls)."""
        move_ids = [m["id"] for m in moves]
        lines = self.gateway.search_read_all(
            "account.move.line",
            [("move_id", "in", move_ids), ("display_type", "=", "product")],
            LINE_FIELDS,
        )
        by_move: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for line in lines:
            by_move[int(_m2o(line["move_id"]) or 0)].append(line)
        self._load_taxes({t for line in lines for t in line.get("tax_ids") or []})
        seller_id = self._company_partner(company_id)
        partner_ids = {seller_id} | {
            int(_m2o(m.get("commercial_partner_id")) or _m2o(m.get("partner_id")) or 0)
            for m in moves
        }
        partners = {
            row["id"]: row
            for row in self.gateway.read(
                "res.partner", sorted(partner_ids - {0}), PARTY_FIELDS
            )
        }
        order_refs = self._order_references(lines)
        banks = self._banks({_m2o(m.get("partner_bank_id")) for m in moves} - {None})
        reversed_ids = {_m2o(m.get("reversed_entry_id")) for m in moves} - {None}
        reversed_moves = {
            row["id"]: row
            for row in (
                self.gateway.read(
                    "account.move", sorted(reversed_ids), ["name", "invoice_date"]
                )  # type: ignore[arg-type]
                if reversed_ids
                else []
            )
        }
        out: list[tuple[int, int, Invoice | DataError]] = []
        for move in moves:
            buyer_id = int(
                _m2o(move.get("commercial_partner_id"))
                or _m2o(move.get("partner_id"))
                or 0
            )
            try:
                invoice = self._invoice(
                    move,
                    by_move.get(move["id"], []),
                    partners.get(seller_id),
                    partners.get(buyer_id),
                    order_refs,
                    banks,
                    reversed_moves,
                )
            except DataError as err:
                out.append((move["id"], buyer_id, err))
            except (ValueError, ArithmeticError) as err:
                out.append(
                    (
                        move["id"],
                        buyer_id,
                        DataError(
                            str(err),
                            record=f"account.move {move['id']} ({move.get('name')})",
                        ),
                    )
                )
            else:
                out.append((move["id"], buyer_id, invoice))
        return out

    def _order_references(self, lines: Sequence[Mapping[str, Any]]) -> dict[int, str]:
        """Sale order customer reference per move, when the Sales app is installed."""
        sale_line_ids = sorted(
            {i for line in lines for i in line.get("sale_line_ids") or []}
        )
        if not sale_line_ids:
            return {}
        sale_lines = self.gateway.read("sale.order.line", sale_line_ids, ["order_id"])
        orders = {_m2o(row["order_id"]) for row in sale_lines} - {None}
        refs = {
            row["id"]: row.get("client_order_ref")
            for row in self.gateway.read(
                "sale.order", sorted(orders), ["client_order_ref"]
            )  # type: ignore[arg-type]
        }
        order_of_line = {row["id"]: _m2o(row["order_id"]) for row in sale_lines}
        result: dict[int, str] = {}
        for line in lines:
            for sale_line in line.get("sale_line_ids") or []:
                ref = refs.get(order_of_line.get(sale_line))  # type: ignore[arg-type]
                if ref:
                    result.setdefault(int(_m2o(line["move_id"]) or 0), ref)
        return result

    def _banks(self, ids: set[Any]) -> dict[int, dict[str, Any]]:
        if not ids:
            return {}
        rows = self.gateway.read(
            "res.partner.bank", sorted(ids), ["acc_number", "bank_bic"]
        )
        return {row["id"]: row for row in rows}

    def _category(
        self, tax: Mapping[str, Any] | None, seller: Party, buyer: Party
    ) -> tuple[str, Decimal, str | None, str | None]:
        if tax is None:
            return "O", Decimal(0), "Not subject to VAT", "VATEX-EU-O"
        percent = Decimal(str(tax.get("amount") or 0))
        code = tax.get("ubl_cii_tax_category_code")
        if code:
            return str(code), percent, None, None
        if percent > 0:
            return "S", percent, None, None
        seller_cc, buyer_cc = seller.address.country_code, buyer.address.country_code
        if buyer_cc and seller_cc and buyer_cc != seller_cc and buyer_cc in EU:
            return "K", percent, "Intra-community supply", "VATEX-EU-IC"
        if buyer_cc and buyer_cc not in EU:
            return "G", percent, "Export outside the EU", "VATEX-EU-G"
        return "Z", percent, None, None

    def _invoice(
        self,
        move: Mapping[str, Any],
        lines: Sequence[Mapping[str, Any]],
        seller_row: Mapping[str, Any] | None,
        buyer_row: Mapping[str, Any] | None,
        order_refs: Mapping[int, str],
        banks: Mapping[int, Mapping[str, Any]],
        reversed_moves: Mapping[int, Mapping[str, Any]],
    ) -> Invoice:
        record = f"account.move {move['id']} ({move.get('name')})"
        if seller_row is None or buyer_row is None:
            raise DataError(
                "seller or buyer partner not readable",
                record=record,
                field="partner_id",
            )
        if not lines:
            raise DataError(
                "invoice without product lines", record=record, field="invoice_line_ids"
            )
        issue_date = _date(move.get("invoice_date"))
        if issue_date is None:
            raise DataError(
                "invoice without an invoice date", record=record, field="invoice_date"
            )
        seller, buyer = self._party(seller_row), self._party(buyer_row)
        canonical_lines = []
        breakdown: dict[tuple[str, Decimal], list[Any]] = {}
        for index, line in enumerate(lines, start=1):
            taxes = [self._taxes.get(t) for t in line.get("tax_ids") or []]
            tax = taxes[0] if taxes else None
            category, percent, reason, reason_code = self._category(tax, seller, buyer)
            quantity = Decimal(str(line.get("quantity") or 0))
            net = _money(line.get("price_subtotal"))
            if quantity:
                unit = (
                    (net / quantity)
                    .quantize(Decimal("0.000001"), ROUND_HALF_UP)
                    .normalize()
                )
            else:
                unit = Decimal(str(line.get("price_unit") or 0))
            if unit.as_tuple().exponent > -2:  # type: ignore[operator]
                unit = unit.quantize(CENT)
            uom = (_name(line.get("product_uom_id")) or "units").lower()
            text = str(
                line.get("name") or _name(line.get("product_id")) or f"line {index}"
            )
            canonical_lines.append(
                InvoiceLine(
                    line_id=str(index),
                    name=text.splitlines()[0][:200],
                    description=text if "\n" in text else None,
                    quantity=quantity,
                    unit_code=_UNIT_CODES.get(uom, "C62"),
                    unit_price=unit,
                    net_amount=net,
                    tax_category=category,  # type: ignore[arg-type]
                    tax_percent=percent,
                    exemption_reason=reason,
                    exemption_reason_code=reason_code,
                    seller_item_id=_name(line.get("product_id")),
                )
            )
            entry = breakdown.setdefault(
                (category, percent), [Decimal(0), reason, reason_code]
            )
            entry[0] += net
        subtotals = [
            TaxSubtotal(
                category=category,  # type: ignore[arg-type]
                percent=percent,
                taxable_amount=base,
                tax_amount=(base * percent / 100).quantize(CENT, ROUND_HALF_UP),
                exemption_reason=reason,
                exemption_reason_code=reason_code,
            )
            for (category, percent), (base, reason, reason_code) in sorted(
                breakdown.items()
            )
        ]
        tax_total = _money(move.get("amount_tax"))
        drift = tax_total - sum((s.tax_amount for s in subtotals), Decimal(0))
        if drift and subtotals:
            # Odoo may round per line: put the cent difference on the largest group
            big = max(range(len(subtotals)), key=lambda i: subtotals[i].taxable_amount)
            subtotals[big] = subtotals[big].model_copy(
                update={"tax_amount": subtotals[big].tax_amount + drift}
            )
        line_total = sum((line.net_amount for line in canonical_lines), Decimal(0))
        untaxed = _money(move.get("amount_untaxed"))
        total = _money(move.get("amount_total"))
        residual = _money(move.get("amount_residual"))
        buyer_ref = order_refs.get(move["id"]) or (move.get("ref") or None)
        if not buyer_ref:
            buyer_ref = next(
                (buyer_row.get(f) for f in BUYER_REFERENCE_FIELDS if buyer_row.get(f)),
                None,
            )
        bank = banks.get(_m2o(move.get("partner_bank_id")) or 0) or {}
        reversed_move = (
            reversed_moves.get(_m2o(move.get("reversed_entry_id")) or 0) or {}
        )
        is_refund = move.get("move_type") == "out_refund"
        return Invoice(
            document_type="credit_note" if is_refund else "invoice",
            number=str(move.get("name")),
            issue_date=issue_date,
            due_date=_date(move.get("invoice_date_due")),
            currency=_name(move.get("currency_id")) or "EUR",
            type_code="381" if is_refund else "380",
            buyer_reference=buyer_ref,
            order_reference=order_refs.get(move["id"]),
            billing_reference=reversed_move.get("name") or None,
            billing_reference_date=_date(reversed_move.get("invoice_date")),
            note=None,
            seller=seller,
            buyer=buyer,
            lines=tuple(canonical_lines),
            tax_subtotals=tuple(subtotals),
            line_extension_amount=line_total,
            tax_exclusive_amount=untaxed,
            tax_amount=tax_total,
            tax_inclusive_amount=total,
            prepaid_amount=total - residual if residual < total else Decimal(0),
            payable_amount=residual if residual < total else total,
            payment_means_code="30" if bank.get("acc_number") else None,
            payment_iban=(bank.get("acc_number") or "").replace(" ", "") or None,
            payment_bic=bank.get("bank_bic") or None,
            payment_reference=move.get("payment_reference") or None,
            payment_terms=_name(move.get("invoice_payment_term_id")),
            odoo_id=int(move["id"]),
        )


def apply_payments(
    gateway: OdooGateway,
    statuses: Sequence[PaymentStatus],
    company_id: int,
    now: datetime,
) -> tuple[int, list[tuple[str, Exception]]]:
    """Register in Odoo the part of each invoice the ledger says is paid.

    Only ever adds payments (the difference between Odoo's and the ledger's open
    amount); a reversal in the ledger is reported, not undone in Odoo. Statuses of
    invoices Odoo has no posted invoice for (the ledger's own history, invoices
    booked there by hand) are skipped: they are not Odoo's to follow, and a first
    sync of a ledger with years of invoices must not raise one issue per invoice.
    """
    numbers = sorted({s.invoice_number for s in statuses})
    if not numbers:
        return 0, []
    moves = {
        row["name"]: row
        for row in gateway.search_read_all(
            "account.move",
            [
                ("name", "in", numbers),
                ("move_type", "in", ["out_invoice", "out_refund"]),
                ("state", "=", "posted"),
                ("company_id", "=", company_id),
            ],
            ["name", "amount_residual", "currency_id"],
        )
    }
    applied, skipped, problems = 0, 0, []
    for status in statuses:
        move = moves.get(status.invoice_number)
        record = f"invoice {status.invoice_number}"
        if move is None:
            skipped += 1
            continue
        if status.state == "reversed":
            problems.append(
                (
                    status.invoice_number,
                    DataError(
                        "reversed in the ledger: reverse it in Odoo by hand",
                        record=record,
                        field="state",
                    ),
                )
            )
            continue
        open_odoo = _money(move.get("amount_residual"))
        open_ledger = _money(status.amount_residual)
        paid = open_odoo - open_ledger
        if paid <= 0:
            continue
        try:
            [wizard] = gateway.create(
                "account.payment.register",
                [
                    {
                        "amount": float(paid),
                        "payment_date": (status.paid_on or now.date()).isoformat(),
                    }
                ],
                context={"active_model": "account.move", "active_ids": [move["id"]]},
            )
            gateway.call(
                "account.payment.register",
                "action_create_payments",
                [wizard],
                context={"active_model": "account.move", "active_ids": [move["id"]]},
            )
        except SyncError as err:
            problems.append((status.invoice_number, err))
            continue
        applied += 1
    if skipped:
        _logger.debug("%d payment status(es) of invoices not in Odoo skipped", skipped)
    return applied, problems


def create_vendor_bills(
    gateway: OdooGateway,
    lookups: OdooLookups,
    invoices: Sequence[Invoice],
    company_id: int,
    index: Callable[[], MatchIndex],
) -> tuple[int, list[tuple[str, Exception]]]:
    """Draft vendor bills from incoming invoices, once per (supplier, kind, number).

    An invoice and a credit note of one supplier may carry the same number (their
    sequences are separate): both become documents.
    """
    problems: list[tuple[str, Exception]] = []
    suppliers: dict[str, int] = {}
    #: one new supplier per identity, however many of its bills are in the batch
    to_create: dict[str, list[tuple[Invoice, Keys]]] = {}
    for invoice in invoices:
        external_id = invoice.external_id or invoice.number
        seller = invoice.seller
        peppol = None
        if seller.endpoint_scheme and seller.endpoint_id:
            peppol = f"{seller.endpoint_scheme}:{seller.endpoint_id}"
        keys = _keys(
            record_id=external_id,
            commercial_id=external_id,
            name=seller.name,
            vat=seller.vat,
            registry=seller.company_registry,
            peppol=peppol,
            email=seller.email,
            zip_code=seller.address.zip,
            country=seller.address.country_code,
        )
        decision = index().match(keys)
        if decision.outcome == "link" and decision.partner_id:
            suppliers[external_id] = decision.partner_id
        elif decision.outcome == "new":
            identity = next(iter(keys.strong().values()), None) or keys.name_key
            to_create.setdefault(identity, []).append((invoice, keys))
        else:
            problems.append(
                (
                    external_id,
                    DataError(
                        f"supplier of bill {invoice.number} is unclear: "
                        f"{decision.explanation}",
                        record=f"e-invoice {invoice.number}",
                        field="seller",
                    ),
                )
            )
    if to_create:
        groups = list(to_create.values())
        values = [_supplier_values(group[0][0].seller, lookups) for group in groups]
        new_ids = gateway.create("res.partner", values)
        for group, new_id in zip(groups, new_ids, strict=True):
            index().add(replace(group[0][1], id=new_id, commercial_id=new_id))
            for invoice, _ in group:
                suppliers[invoice.external_id or invoice.number] = new_id
    wanted = [i for i in invoices if (i.external_id or i.number) in suppliers]
    if not wanted:
        return 0, problems
    existing = {
        (_m2o(row.get("commercial_partner_id")), row.get("move_type"), row.get("ref"))
        for row in gateway.search_read_all(
            "account.move",
            [
                ("move_type", "in", ["in_invoice", "in_refund"]),
                ("company_id", "=", company_id),
                ("ref", "in", sorted({i.number for i in wanted})),
            ],
            ["ref", "commercial_partner_id", "partner_id", "move_type"],
        )
    }
    taxes = _purchase_taxes(gateway, company_id)
    bills, sources = [], []
    for invoice in wanted:
        supplier = suppliers[invoice.external_id or invoice.number]
        move_type = (
            "in_refund" if invoice.document_type == "credit_note" else "in_invoice"
        )
        if (supplier, move_type, invoice.number) in existing:
            continue
        existing.add((supplier, move_type, invoice.number))
        bills.append(
            {
                "move_type": move_type,
                "partner_id": supplier,
                "ref": invoice.number,
                "invoice_date": invoice.issue_date.isoformat(),
                "invoice_date_due": invoice.due_date.isoformat()
                if invoice.due_date
                else False,
                "company_id": company_id,
                "narration": invoice.note or False,
                "invoice_line_ids": [
                    Command.create(
                        {
                            "name": line.name,
                            "quantity": float(line.quantity),
                            "price_unit": float(line.unit_price),
                            "tax_ids": [
                                Command.set(
                                    [taxes[line.tax_percent]]
                                    if line.tax_percent in taxes
                                    else []
                                )
                            ],
                        }
                    )
                    for line in invoice.lines
                ],
            }
        )
        sources.append(invoice)
    if not bills:
        return 0, problems
    move_ids = gateway.create("account.move", bills)
    attachments = [
        {
            "name": filename,
            "mimetype": mimetype,
            "datas": base64.b64encode(content).decode(),
            "res_model": "account.move",
            "res_id": move_id,
        }
        for invoice, move_id in zip(sources, move_ids, strict=True)
        for filename, mimetype, content in invoice.attachments
    ]
    if attachments:
        gateway.create("ir.attachment", attachments)
    return len(move_ids), problems


def _supplier_values(seller: Party, lookups: OdooLookups) -> dict[str, Any]:
    return {
        "name": seller.name,
        "is_company": True,
        "vat": seller.vat or False,
        "company_registry": seller.company_registry or False,
        "street": seller.address.street or False,
        "zip": seller.address.zip or False,
        "city": seller.address.city or False,
        "country_id": lookups.countries().get(seller.address.country_code or "", False),
        "email": seller.email or False,
        "supplier_rank": 1,
        "peppol_eas": seller.endpoint_scheme or False,
        "peppol_endpoint": seller.endpoint_id or False,
    }


def _purchase_taxes(gateway: OdooGateway, company_id: int) -> dict[Decimal, int]:
    rows = gateway.search_read_all(
        "account.tax",
        [
            ("type_tax_use", "=", "purchase"),
            ("company_id", "=", company_id),
            ("amount_type", "=", "percent"),
        ],
        ["amount"],
    )
    taxes: dict[Decimal, int] = {}
    for row in rows:
        taxes.setdefault(Decimal(str(row["amount"])), row["id"])
    return taxes
