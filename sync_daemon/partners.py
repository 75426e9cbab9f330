"""Customers in Odoo: canonical customer <-> ``res.partner`` values, by field group.

The field-ownership policy of a backend works on *field groups* (the add-on's
``crm.sync.ownership`` lines): ``legal_name``, ``vat``, ``registry``,
``billing_address``, ``payment_terms``, ``contacts``, ``phones``, ``emails`` and
``tags``. This module turns both sides into the same comparable value per group
(identifiers compared in their compact form, so ``BE 0447.123.478`` equals
``BE0447123478`` and the stored Odoo value is not rewritten for punctuation), and
turns group values back into ``res.partner`` values, with many2many written as
Odoo 18 commands.

:class:`OdooLookups` resolves countries, tags and payment terms by name/code, each
read once per run.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .gateway import Command, OdooGateway
from .kernel import identifiers as ids
from .kernel.errors import PermanentError
from .kernel.models import Address, ContactPerson, Customer

__all__ = [
    "FIELD_GROUPS",
    "PARTNER_READ_FIELDS",
    "OdooLookups",
    "customer_from_partner",
    "customer_groups",
    "group_hash",
    "group_values",
    "partner_groups",
]

FIELD_GROUPS = (
    "legal_name",
    "vat",
    "registry",
    "billing_address",
    "payment_terms",
    "contacts",
    "phones",
    "emails",
    "tags",
)

#: Fields the daemon reads on partners (unknown ones are dropped per server).
PARTNER_READ_FIELDS = (
    "name",
    "is_company",
    "parent_id",
    "commercial_partner_id",
    "company_id",
    "vat",
    "company_registry",
    "peppol_eas",
    "peppol_endpoint",
    "email",
    "phone",
    "mobile",
    "website",
    "lang",
    "street",
    "street2",
    "zip",
    "city",
    "country_id",
    "category_id",
    "property_payment_term_id",
    "customer_rank",
    "active",
    "write_date",
)

#: The add-on's erasure flag on ``res.partner`` (crm_module/API.md, "GDPR"): the
#: person's data was erased on request. Used only when ``fields_get`` shows it.
ERASURE_FIELD = "crm_erased"


def _text(value: Any) -> str:
    if value is None or value is False:
        return ""
    return " ".join(str(value).split())


def _m2o(value: Any) -> int | None:
    if isinstance(value, list | tuple):
        return int(value[0]) if value else None
    return int(value) if value else None


def _contacts_value(contacts: Sequence[tuple[str, str]]) -> list[list[str]]:
    return sorted(
        [[_text(name), ids.email_key(email) or ""] for name, email in contacts]
    )


def customer_groups(customer: Customer) -> dict[str, Any]:
    """The comparable value of every field group of an external customer."""
    cc = customer.country_code
    address = customer.address
    return {
        "legal_name": _text(customer.name),
        "vat": ids.compact_vat(customer.vat, cc) if customer.vat else "",
        "registry": ids.compact_registry(customer.company_registry, cc)
        if customer.company_registry
        else "",
        "billing_address": [
            _text(address.street),
            _text(address.street2),
            _text(address.zip),
            _text(address.city),
            address.country_code or "",
        ],
        "payment_terms": customer.payment_term_days,
        "contacts": _contacts_value(
            [(c.name, c.email or "") for c in customer.contacts]
        ),
        "phones": _text(customer.phone),
        "emails": ids.email_key(customer.email) or _text(customer.email),
        "tags": sorted(_text(tag) for tag in customer.tags),
    }


def group_hash(groups: Mapping[str, Any]) -> str:
    """A short stable hash of group values (stored as the link's ``sync_hash``)."""
    raw = json.dumps(groups, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:20]


class OdooLookups:
    """Countries, tags and payment terms of one Odoo, read once per run."""

    def __init__(self, gateway: OdooGateway) -> None:
        self.gateway = gateway
        self._countries: dict[str, int] | None = None
        self._country_codes: dict[int, str] = {}
        self._tags: dict[str, int] | None = None
        self._tag_names: dict[int, str] = {}
        self._terms: dict[int, int] | None = None
        self._term_days: dict[int, int] = {}

    def countries(self) -> dict[str, int]:
        if self._countries is None:
            rows = self.gateway.search_read_all("res.country", [], ["code"])
            self._countries = {
                r["code"].upper(): r["id"] for r in rows if r.get("code")
            }
            self._country_codes = {v: k for k, v in self._countries.items()}
        return self._countries

    def country_code(self, country_id: int | None) -> str | None:
        if not country_id:
            return None
        self.countries()
        return self._country_codes.get(country_id)

    def tags(self) -> dict[str, int]:
        if self._tags is None:
            rows = self.gateway.search_read_all("res.partner.category", [], ["name"])
            self._tags = {_text(r["name"]).lower(): r["id"] for r in rows}
            self._tag_names = {r["id"]: _text(r["name"]) for r in rows}
        return self._tags

    def tag_names(self, tag_ids: Sequence[int]) -> list[str]:
        self.tags()
        return sorted(self._tag_names.get(i, str(i)) for i in tag_ids)

    def tag_ids(self, names: Sequence[str]) -> list[int]:
        """Ids of the tags named, creating the missing ones (never deleting any)."""
        known = self.tags()
        missing = [n for n in dict.fromkeys(names) if n.lower() not in known]
        if missing:
            new_ids = self.gateway.create(
                "res.partner.category", [{"name": n} for n in missing]
            )
            for name, tag_id in zip(missing, new_ids, strict=True):
                known[name.lower()] = tag_id
                self._tag_names[tag_id] = name
        return [known[n.lower()] for n in names]

    def payment_terms(self) -> dict[int, int]:
        """Days -> payment term id, for terms named "Immediate…" or "N Days"."""
        if self._terms is None:
            self._terms = {}
            try:
                rows = self.gateway.search_read_all(
                    "account.payment.term", [], ["name"]
                )
            except PermanentError:  # the Invoicing app is not installed
                rows = []
            if rows:
                for row in rows:
                    name = _text(row.get("name")).lower()
                    match = re.fullmatch(r"(\d+) days?", name)
                    days = (
                        0
                        if name.startswith("immediate")
                        else (int(match.group(1)) if match else None)
                    )
                    if days is not None:
                        self._terms.setdefault(days, row["id"])
                        self._term_days[row["id"]] = days
        return self._terms

    def term_days(self, term_id: int | None) -> int | None:
        if not term_id:
            return None
        self.payment_terms()
        return self._term_days.get(term_id)


def partner_groups(
    row: Mapping[str, Any],
    lookups: OdooLookups,
    children: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The comparable value of every field group of an Odoo partner row."""
    cc = lookups.country_code(_m2o(row.get("country_id")))
    vat = row.get("vat") or ""
    registry = row.get("company_registry") or ""
    return {
        "legal_name": _text(row.get("name")),
        "vat": ids.compact_vat(vat, cc) if vat else "",
        "registry": ids.compact_registry(registry, cc) if registry else "",
        "billing_address": [
            _text(row.get("street")),
            _text(row.get("street2")),
            _text(row.get("zip")),
            _text(row.get("city")),
            cc or "",
        ],
        "payment_terms": lookups.term_days(_m2o(row.get("property_payment_term_id"))),
        "contacts": _contacts_value(
            [(c.get("name") or "", c.get("email") or "") for c in children]
        ),
        "phones": _text(row.get("phone")),
        "emails": ids.email_key(row.get("email")) or _text(row.get("email")),
        "tags": lookups.tag_names(row.get("category_id") or []),
    }


def group_values(
    customer: Customer,
    groups: Sequence[str],
    lookups: OdooLookups,
    *,
    existing_contacts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """``res.partner`` values writing the given groups from ``customer``."""
    values: dict[str, Any] = {}
    address = customer.address
    for group in groups:
        if group == "legal_name":
            values["name"] = customer.name
        elif group == "vat":
            values["vat"] = customer.vat or False
        elif group == "registry":
            values["company_registry"] = (
                ids.compact_registry(customer.company_registry, customer.country_code)
                if customer.company_registry
                else False
            )
        elif group == "billing_address":
            values.update(
                street=address.street or False,
                street2=address.street2 or False,
                zip=address.zip or False,
                city=address.city or False,
                country_id=lookups.countries().get(address.country_code or "", False),
            )
        elif group == "payment_terms":
            term = lookups.payment_terms().get(customer.payment_term_days or -1)
            if term:
                values["property_payment_term_id"] = term
        elif group == "contacts":
            known = {
                (ids.email_key(c.get("email")) or _text(c.get("name")).lower())
                for c in existing_contacts
            }
            new = [
                Command.create(_contact_values(contact))
                for contact in customer.contacts
                if (ids.email_key(contact.email) or _text(contact.name).lower())
                not in known
            ]
            if new:
                values["child_ids"] = new
        elif group == "phones":
            values["phone"] = customer.phone or False
        elif group == "emails":
            values["email"] = customer.email or False
        elif group == "tags":
            values["category_id"] = [Command.set(lookups.tag_ids(list(customer.tags)))]
    return values


def _contact_values(contact: ContactPerson) -> dict[str, Any]:
    return {
        "name": contact.name,
        "type": "contact",
        "email": contact.email or False,
        "phone": contact.phone or False,
        "mobile": contact.mobile or False,
        "function": contact.function or False,
    }


def customer_from_partner(
    row: Mapping[str, Any],
    lookups: OdooLookups,
    children: Sequence[Mapping[str, Any]] = (),
    *,
    external_id: str | None = None,
) -> Customer:
    """The canonical customer of an Odoo partner, to push to a ledger."""
    cc = lookups.country_code(_m2o(row.get("country_id")))
    peppol = None
    if row.get("peppol_eas") and row.get("peppol_endpoint"):
        peppol = f"{row['peppol_eas']}:{row['peppol_endpoint']}"
    return Customer(
        external_id=external_id or f"odoo:{row['id']}",
        name=_text(row.get("name")) or f"res.partner {row['id']}",
        is_company=bool(row.get("is_company")),
        vat=row.get("vat") or None,
        company_registry=row.get("company_registry") or None,
        peppol_id=peppol,
        email=row.get("email") or None,
        phone=row.get("phone") or None,
        website=row.get("website") or None,
        lang=row.get("lang") or None,
        payment_term_days=lookups.term_days(_m2o(row.get("property_payment_term_id"))),
        address=Address(
            street=row.get("street") or None,
            street2=row.get("street2") or None,
            zip=row.get("zip") or None,
            city=row.get("city") or None,
            country_code=cc,
        ),
        contacts=tuple(
            ContactPerson(
                name=_text(c.get("name")) or "?",
                email=c.get("email") or None,
                phone=c.get("phone") or None,
            )
            for c in children
        ),
        tags=tuple(lookups.tag_names(row.get("category_id") or [])),
    )
