"""Identity matching: which Odoo customer is this external record?

Both sides are reduced to exact keys with :mod:`sync_daemon.kernel.identifiers`
(VAT with its country prefix, company registry as ``CC:number``, Peppol
``scheme:id``, e-mail, name folded without legal forms + postcode) and looked up in
hash indexes, so matching N records against M partners costs O(N + M), never
N × M comparisons.

Keys always point at the *commercial entity*: a child contact that carries its
company's VAT indexes the company, so links and invoices go to the company.

The decision for one external record, in this order:

``same``
    it is already linked (the link wins over everything else);
``link``
    exactly one Odoo customer shares a VAT, registry or Peppol key with it and no
    identifier of the same kind contradicts (``rule`` says which key);
``review``
    identifiers point at several customers, or contradict each other (same VAT
    digits under another country, same VAT but another registry…), or the match is
    archived or erased: a person decides, nothing is merged or created;
``proposal``
    only the name (+ postcode), the e-mail or the phone number (E.164, with
    phonenumbers) is shared: a suggestion with a score,
    never linked automatically when either side carries an identifier;
``link`` by ``name_postcode``
    when *neither* side has any identifier and exactly one customer has the same
    folded name, postcode and country (can be switched off);
``new``
    nothing is shared.

Every decision carries its explanation, in words an admin can act on.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .kernel import identifiers as ids
from .kernel.models import Customer

__all__ = [
    "Decision",
    "Keys",
    "MatchIndex",
    "Suggestion",
    "customer_keys",
    "partner_keys",
]

Outcome = Literal["same", "link", "review", "proposal", "new"]
_STRONG = ("vat", "registry", "peppol")


def _form_index() -> tuple[list[int], dict[int, dict[tuple[str, ...], int]]]:
    """Legal forms by token count, each with its rank in the kernel's order."""
    by_size: dict[int, dict[tuple[str, ...], int]] = {}
    for rank, form in enumerate(ids._LEGAL_FORM_TOKENS):
        by_size.setdefault(len(form), {}).setdefault(form, rank)
    return sorted(by_size, reverse=True), by_size


_FORM_SIZES, _FORMS_BY_SIZE = _form_index()
_FORM_FIRST = {form[0] for forms in _FORMS_BY_SIZE.values() for form in forms}
_FORM_LAST = {form[-1] for forms in _FORMS_BY_SIZE.values() for form in forms}
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def name_key(value: object) -> str:
    """Same result as :func:`sync_daemon.kernel.identifiers.name_key`, faster.

    The kernel tries every legal form in turn at both ends; here each end is
    looked up once per form length, and the form the kernel would have met first
    (by rank) is stripped, so the outcome is identical (a test pins it).
    """
    text = str(value or "")
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    text = text.lower().replace(".", "").replace("&", " and ")
    tokens = _NOT_ALNUM.sub(" ", text).split()
    changed = True
    while changed and tokens:
        changed = False
        if tokens[0] not in _FORM_FIRST and tokens[-1] not in _FORM_LAST:
            break
        for size in _FORM_SIZES:
            if len(tokens) <= size:
                continue
            forms = _FORMS_BY_SIZE[size]
            suffix = forms.get(tuple(tokens[-size:]))
            prefix = forms.get(tuple(tokens[:size]))
            if suffix is None and prefix is None:
                continue
            if suffix is not None and (prefix is None or suffix <= prefix):
                tokens = tokens[:-size]
            else:
                tokens = tokens[size:]
            changed = True
            break
    return " ".join(tokens)


@functools.lru_cache(maxsize=400_000)
def _checked_vat(compact: str) -> str | None:
    return ids.vat_key(compact)


def vat_key(value: object, country: str | None) -> str | None:
    """:func:`~sync_daemon.kernel.identifiers.vat_key`, cached on the compact form
    (both sides of a match usually carry the same number, written differently)."""
    compact = ids.compact_vat(value, country)
    if not compact:
        return None
    return _checked_vat(compact)


def _zip(value: object) -> str:
    return "".join(str(value or "").split()).upper()


@dataclass(slots=True)
class Keys:
    """The matching keys of one record (Odoo partner or external customer).

    Built once per record by :func:`partner_keys`/:func:`customer_keys` and not
    changed afterwards (a plain slotted class: many thousands are built per run).
    """

    id: int | str
    name: str
    commercial_id: int | str
    is_company: bool = True
    active: bool = True
    erased: bool = False
    vat: str | None = None
    vat_digits: str | None = None
    registry: str | None = None
    peppol: str | None = None
    email: str | None = None
    phone: str | None = None
    name_key: str = ""
    zip: str = ""
    country: str | None = None
    #: an identifier was given but is not valid (it still counts as "carrying one")
    has_raw_identifier: bool = False
    problems: tuple[str, ...] = ()
    _strong: dict[str, str] | None = None

    @property
    def has_identifier(self) -> bool:
        return bool(self.vat or self.registry or self.peppol or self.has_raw_identifier)

    def strong(self) -> dict[str, str]:
        """The identifier keys this record has: ``{"vat": …, "registry": …}``."""
        if self._strong is None:
            self._strong = {k: v for k in _STRONG if (v := getattr(self, k))}
        return self._strong


def _keys(
    *,
    record_id: int | str,
    commercial_id: int | str,
    name: str,
    vat: object,
    registry: object,
    peppol: object,
    email: object,
    phone: object = None,
    zip_code: object,
    country: str | None,
    is_company: bool = True,
    active: bool = True,
    erased: bool = False,
) -> Keys:
    country = (country or "").upper() or None
    vat = vat if vat not in (None, False, "") else None
    compact = ids.compact_vat(vat, country) if vat else ""
    vat_key_ = _checked_vat(compact) if compact else None
    digits = compact[2:] if len(compact) > 2 and compact[:2].isalpha() else compact
    registry_key = ids.registry_key(registry, country) if registry else None
    peppol_key = ids.peppol_key(peppol) if peppol else None
    if vat_key_ and not registry and vat_key_.startswith("BE"):
        # a Belgian VAT number is the enterprise number with a prefix
        registry_key = f"BE:{vat_key_[2:]}"
    problems = []
    if vat and not vat_key_:
        problems.append(f"VAT {vat!s} is not valid for country {country or '?'}")
    if registry and not registry_key:
        problems.append(
            f"registry number {registry!s} is not valid for {country or '?'}"
        )
    return Keys(
        id=record_id,
        name=name,
        commercial_id=commercial_id,
        is_company=is_company,
        active=active,
        erased=erased,
        vat=vat_key_,
        vat_digits=digits or None,
        registry=registry_key,
        peppol=peppol_key,
        email=ids.email_key(email) if email else None,
        phone=ids.phone_key(phone, country) if phone else None,
        name_key=name_key(name),
        zip=_zip(zip_code),
        country=country,
        has_raw_identifier=bool(vat or registry or peppol),
        problems=tuple(problems),
    )


def _m2o_id(value: Any) -> int | None:
    if isinstance(value, list | tuple):
        return int(value[0]) if value else None
    return int(value) if value else None


def partner_keys(row: Mapping[str, Any], country_code: str | None = None) -> Keys:
    """Keys of an Odoo partner read with ``search_read`` (or a CSV row).

    ``country_code`` is the ISO code of ``country_id`` (the row may carry
    ``country_code`` itself, as the CSV export does).
    """
    partner_id = int(row["id"])
    parent = _m2o_id(row.get("parent_id"))
    commercial = _m2o_id(row.get("commercial_partner_id"))
    is_company = _truthy(row.get("is_company"))
    if commercial is None:
        commercial = partner_id if is_company or not parent else parent
    peppol = None
    if row.get("peppol_eas") and row.get("peppol_endpoint"):
        peppol = f"{row['peppol_eas']}:{row['peppol_endpoint']}"
    return _keys(
        record_id=partner_id,
        commercial_id=commercial,
        name=str(row.get("name") or ""),
        vat=row.get("vat") or None,
        registry=row.get("company_registry") or None,
        peppol=peppol or row.get("peppol_id") or None,
        email=row.get("email"),
        phone=row.get("phone"),
        zip_code=row.get("zip"),
        country=country_code or (row.get("country_code") or None),
        is_company=is_company,
        active=_truthy(row.get("active", True)),
        erased=_truthy(row.get("erased", False)),
    )


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "t", "y"}
    return bool(value)


def customer_keys(customer: Customer) -> Keys:
    """Keys of a canonical external customer."""
    return _keys(
        record_id=customer.external_id,
        commercial_id=customer.external_id,
        name=customer.name,
        vat=customer.vat,
        registry=customer.company_registry,
        peppol=customer.peppol_id,
        email=customer.email,
        phone=customer.phone,
        zip_code=customer.address.zip,
        country=customer.country_code,
        is_company=customer.is_company,
    )


@dataclass(frozen=True)
class Suggestion:
    """A possible Odoo customer for a record in review or proposal."""

    partner_id: int
    score: float
    reason: str


@dataclass(frozen=True)
class Decision:
    """What to do with one external record, and why."""

    outcome: Outcome
    external_id: str
    partner_id: int | None = None
    rule: str = ""
    score: float = 0.0
    explanation: str = ""
    suggestions: tuple[Suggestion, ...] = field(default=())

    @property
    def candidate_ids(self) -> list[int]:
        return [s.partner_id for s in self.suggestions]


class MatchIndex:
    """Hash indexes of Odoo partners by exact key, grouped by commercial entity.

    :param partners: keys of every Odoo partner (archived ones included, so that an
        archived customer is found instead of being created again).
    :param link_on_name_and_postcode: link on an exact folded name + postcode +
        country when neither side has any identifier.
    """

    def __init__(
        self, partners: Iterable[Keys] = (), *, link_on_name_and_postcode: bool = True
    ) -> None:
        self.link_on_name_and_postcode = link_on_name_and_postcode
        self.partners: dict[int, Keys] = {}
        self._by: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
        #: strong keys of each commercial entity (its own and its contacts')
        self._entity_keys: dict[int, dict[str, set[str]]] = defaultdict(
            lambda: defaultdict(set)
        )
        #: commercial entities of which a member carries an identifier
        self._with_identifier: set[int] = set()
        for keys in partners:
            self.add(keys)

    def __len__(self) -> int:
        return len(self.partners)

    def add(self, keys: Keys) -> None:
        """Index one partner (also used for partners created during a run)."""
        partner_id = int(keys.id)
        commercial = int(keys.commercial_id)
        self.partners[partner_id] = keys
        for kind, value in keys.strong().items():
            self._by[kind][value].add(commercial)
            self._entity_keys[commercial][kind].add(value)
        if keys.vat_digits:
            self._by["vat_digits"][keys.vat_digits].add(commercial)
        if keys.has_raw_identifier:
            self._with_identifier.add(commercial)
        if keys.email:
            self._by["email"][keys.email].add(commercial)
        if keys.phone:
            self._by["phone"][keys.phone].add(commercial)
        if keys.name_key:
            self._by["name"][keys.name_key].add(commercial)
            if keys.zip:
                self._by["name_zip"][f"{keys.name_key}|{keys.zip}"].add(commercial)

    def _entity(self, commercial: int) -> Keys | None:
        return self.partners.get(commercial)

    def _entity_has_identifier(self, commercial: int) -> bool:
        return commercial in self._with_identifier

    # -- decisions -----------------------------------------------------------------

    def match(self, keys: Keys, *, linked_partner_id: int | None = None) -> Decision:
        """Decide for one external record (see the module docstring)."""
        external_id = str(keys.id)
        if linked_partner_id:
            return Decision(
                "same",
                external_id,
                linked_partner_id,
                "link",
                1.0,
                "already linked to this Odoo customer",
            )
        hits: dict[int, list[str]] = defaultdict(list)
        for kind, value in keys.strong().items():
            for commercial in self._by[kind].get(value, ()):
                hits[commercial].append(kind)
        if len(hits) > 1:
            return Decision(
                "review",
                external_id,
                None,
                "ambiguous",
                0.0,
                "identifiers point at several Odoo customers: "
                + ", ".join(
                    f"{pid} ({'+'.join(kinds)})" for pid, kinds in sorted(hits.items())
                ),
                tuple(
                    Suggestion(pid, 1.0, f"same {'+'.join(kinds)}")
                    for pid, kinds in sorted(hits.items())
                ),
            )
        if len(hits) == 1:
            [(commercial, kinds)] = hits.items()
            return self._confirm(keys, commercial, kinds)
        contradiction = self._digits_contradiction(keys)
        if contradiction is not None:
            return contradiction
        return self._weak(keys)

    def _confirm(self, keys: Keys, commercial: int, kinds: list[str]) -> Decision:
        external_id = str(keys.id)
        entity_keys = self._entity_keys[commercial]
        contradictions = [
            f"{kind} {value} vs Odoo {', '.join(sorted(entity_keys[kind]))}"
            for kind, value in keys.strong().items()
            if entity_keys.get(kind) and value not in entity_keys[kind]
        ]
        suggestion = (Suggestion(commercial, 1.0, f"same {'+'.join(kinds)}"),)
        if contradictions:
            return Decision(
                "review",
                external_id,
                None,
                "contradiction",
                0.0,
                f"same {'+'.join(kinds)} as Odoo customer {commercial}, but "
                + "; ".join(contradictions),
                suggestion,
            )
        entity = self._entity(commercial)
        if entity is not None and entity.erased:
            return Decision(
                "review",
                external_id,
                None,
                "erased",
                0.0,
                f"matches Odoo customer {commercial}, whose personal data was erased",
                suggestion,
            )
        if entity is not None and not entity.active:
            return Decision(
                "review",
                external_id,
                None,
                "archived",
                0.0,
                f"same {'+'.join(kinds)} as archived Odoo customer {commercial}",
                suggestion,
            )
        return Decision(
            "link",
            external_id,
            commercial,
            kinds[0],
            1.0,
            f"same {' and '.join(kinds)} "
            f"({', '.join(keys.strong()[k] for k in kinds)})",
            suggestion,
        )

    def _digits_contradiction(self, keys: Keys) -> Decision | None:
        if not keys.vat_digits:
            return None
        found = self._by["vat_digits"].get(keys.vat_digits, set())
        if not found:
            return None
        return Decision(
            "review",
            str(keys.id),
            None,
            "vat_country",
            0.0,
            f"the VAT digits {keys.vat_digits} are those of Odoo customer(s) "
            f"{', '.join(map(str, sorted(found)))} but the country prefix differs or "
            "cannot be derived: check the country before linking",
            tuple(
                Suggestion(pid, 0.5, "same VAT digits, other country")
                for pid in sorted(found)
            ),
        )

    def _weak(self, keys: Keys) -> Decision:
        external_id = str(keys.id)
        suggestions: dict[int, Suggestion] = {}
        name_zip = set()
        if keys.name_key and keys.zip:
            name_zip = self._by["name_zip"].get(f"{keys.name_key}|{keys.zip}", set())
            if keys.country:
                name_zip = {
                    pid
                    for pid in name_zip
                    if (p := self._entity(pid)) is None
                    or not p.country
                    or p.country == keys.country
                }
            for pid in name_zip:
                suggestions[pid] = Suggestion(pid, 0.9, "same name and postcode")
        if keys.name_key:
            for pid in self._by["name"].get(keys.name_key, ()):
                suggestions.setdefault(pid, Suggestion(pid, 0.6, "same name"))
        if keys.email:
            for pid in self._by["email"].get(keys.email, ()):
                if pid in suggestions:
                    old = suggestions[pid]
                    suggestions[pid] = Suggestion(
                        pid, min(0.95, old.score + 0.05), old.reason + " and e-mail"
                    )
                else:
                    suggestions[pid] = Suggestion(pid, 0.7, "same e-mail")
        if keys.phone:
            for pid in self._by["phone"].get(keys.phone, ()):
                if pid in suggestions:
                    old = suggestions[pid]
                    suggestions[pid] = Suggestion(
                        pid, min(0.95, old.score + 0.05), old.reason + " and phone"
                    )
                else:
                    suggestions[pid] = Suggestion(pid, 0.65, "same phone")
        if not suggestions:
            return Decision(
                "new", external_id, None, "", 0.0, "no Odoo customer shares a key"
            )
        ranked = tuple(
            sorted(suggestions.values(), key=lambda s: (-s.score, s.partner_id))
        )
        if (
            self.link_on_name_and_postcode
            and len(name_zip) == 1
            and not keys.has_identifier
        ):
            [pid] = name_zip
            entity = self._entity(pid)
            usable = entity is None or (entity.active and not entity.erased)
            if not self._entity_has_identifier(pid) and usable:
                return Decision(
                    "link",
                    external_id,
                    pid,
                    "name_postcode",
                    0.9,
                    "same name and postcode, and neither side has an identifier",
                    ranked,
                )
        why = "never linked automatically: " + (
            "one side carries an identifier"
            if keys.has_identifier
            or any(self._entity_has_identifier(s.partner_id) for s in ranked)
            else "more than one candidate or no postcode"
        )
        return Decision(
            "proposal",
            external_id,
            None,
            "proposal",
            ranked[0].score,
            f"{ranked[0].reason} as Odoo customer {ranked[0].partner_id} ({why})",
            ranked,
        )

    # -- duplicates ------------------------------------------------------------------

    def duplicate_groups(self) -> list[list[int]]:
        """Groups of Odoo commercial entities sharing a strong key."""
        return _groups(
            ids_
            for kind in _STRONG
            for ids_ in self._by[kind].values()
            if len(ids_) > 1
        )


def _groups(sets: Iterable[Iterable[Any]]) -> list[list[Any]]:
    """Merge overlapping sets (union-find) into sorted groups."""
    parent: dict[Any, Any] = {}

    def find(x: Any) -> Any:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for members in sets:
        members = list(members)
        for other in members[1:]:
            parent[find(other)] = find(members[0])
    grouped: dict[Any, list[Any]] = defaultdict(list)
    for member in parent:
        grouped[find(member)].append(member)
    return sorted(
        (sorted(g, key=str) for g in grouped.values() if len(g) > 1),
        key=lambda g: str(g[0]),
    )


def external_duplicate_groups(records: Iterable[Keys]) -> list[list[str]]:
    """Groups of external records sharing a strong key."""
    by: dict[tuple[str, str], set[str]] = defaultdict(set)
    for keys in records:
        for kind, value in keys.strong().items():
            by[(kind, value)].add(str(keys.id))
    return _groups(members for members in by.values() if len(members) > 1)
