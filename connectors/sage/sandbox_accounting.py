"""A local fake of Sage Accounting v3.1 on 127.0.0.1, for tests and the demo.

What it reproduces, after the public documentation of the API:

- OAuth 2: ``GET /oauth2/auth/central`` (consent, answered at once with a redirect
  carrying a single-use code valid 60 s) and ``POST /oauth/token`` (form-encoded,
  ``authorization_code`` and ``refresh_token`` grants). Access tokens live 300 s,
  refresh tokens 31 days and rotate on every use; a used, unknown or expired refresh
  token gets ``400 {"error": "invalid_grant"}``. Lifetimes are parameters and the
  clock can be moved, so expiry is tested without waiting. The token endpoint never
  reads cookies; API answers set one, to catch clients that would depend on it.
- ``/v3.1``: ``X-Business`` selects the business (without it: the user's lead
  business) and is echoed on every answer; ``/businesses``, ``/contacts``,
  ``/sales_invoices``, ``/sales_credit_notes``, ``/tax_rates``, ``/ledger_accounts``.
- Lists: ``items_per_page`` (default 20, max 200), ``page``, the
  ``$total/$page/$next/$back/$itemsPerPage/$items`` envelope with ``$next`` relative
  to ``/v3.1``; items carry only ``id``, ``displayed_as`` and ``$path`` unless
  ``attributes`` asks for more; ``updated_or_created_since`` (inclusive),
  ``deleted_since`` (exclusive), ``search`` (name or reference).
- Errors as arrays of ``{"$severity", "$dataCode", "$message", "$source"}``
  (``RecordInvalid`` 422, ``RecordNotFound`` 404, ``AuthorizationFailure`` 401,
  ``MultiUserAccessDenied`` 403); an optional per-business rate limit answers 429
  with ``Retry-After``.
- Faults (:class:`~connectors.sage.sandbox_http.FaultPlan`) on ``/v3.1`` calls.

Customers are seeded from :mod:`connectors.sage.seed` (French and Belgian, valid
check digits, messy formatting). Run it with ``crm-sync sandbox sage_accounting
--port 8801`` or programmatically::

    sandbox = SageAccountingSandbox(customers=50).start()
    ... sandbox.api_base, sandbox.token_url ...
    sandbox.stop()
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from sync_daemon.kernel.identifiers import vat_key

from .sandbox_http import (
    FaultPlan,
    LoopbackServer,
    MovableClock,
    QuietHandler,
    install_stop_signals,
    run_until_signalled,
)
from .seed import seed_customers

__all__ = ["SageAccountingSandbox", "main"]

_logger = logging.getLogger(__name__)

LEAD_BUSINESS = "5a1e0c4f9b2d4e7a8c3b6d9e0f1a2b3c"
BE_BUSINESS = "7b2f1d5e0c3a4f8b9d4c7e0a1b2c3d4e"
OTHER_BUSINESS = "9c3a2e6f1d4b4a9c8e5d8f1b2c3d4e5f"
CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"

_CONTACT_FIELDS = (
    "name",
    "reference",
    "contact_types",
    "tax_number",
    "registered_number",
    "email",
    "locale",
    "currency",
    "credit_days",
    "main_address",
    "main_contact_person",
    "created_at",
    "updated_at",
    "deleted_at",
)
_INVOICE_FIELDS = (
    "contact",
    "date",
    "due_date",
    "reference",
    "invoice_number",
    "credit_note_number",
    "status",
    "currency",
    "net_amount",
    "tax_amount",
    "total_amount",
    "outstanding_amount",
    "last_paid",
    "invoice_lines",
    "credit_note_lines",
    "created_at",
    "updated_at",
)


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, source: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.retry_after: int | None = None
        self.body = [
            {
                "$severity": "error",
                "$dataCode": code,
                "$message": message,
                "$source": source,
            }
        ]


@dataclass
class _Business:
    id: str
    name: str
    country: str
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    sales_invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    sales_credit_notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tax_rates: dict[str, dict[str, Any]] = field(default_factory=dict)
    ledger_accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    sequence: int = 0


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_since(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise _ApiError(
            400, "RecordInvalid", f"{name} is not a date-time", name
        ) from err
    if moment.tzinfo is None:
        raise _ApiError(400, "RecordInvalid", f"{name} needs a time zone", name)
    return moment


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


class SageAccountingSandbox:
    """In-memory Sage Accounting v3.1 served on 127.0.0.1.

    :param port: TCP port (0: any free port).
    :param customers: seeded customer contacts per business.
    :param seed: seed of the generated data.
    :param access_ttl: access-token lifetime in seconds.
    :param refresh_ttl: refresh-token lifetime (unused) in seconds.
    :param clock: time source; default a :class:`MovableClock` (see :meth:`advance`).
    :param faults: fault plan for ``/v3.1`` calls.
    :param rate_limit: calls per business and minute before answering 429.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        customers: int = 30,
        seed: int = 42,
        access_ttl: int = 300,
        refresh_ttl: int = 31 * 86400,
        clock: Callable[[], datetime] | None = None,
        faults: FaultPlan | None = None,
        rate_limit: int | None = None,
    ) -> None:
        self.clock: Callable[[], datetime] = clock or MovableClock()
        #: Calls allowed per business and clock minute; beyond: 429 + Retry-After.
        self.rate_limit = rate_limit
        self._minute_calls: dict[tuple[str, str], int] = {}
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.faults = faults or FaultPlan()
        self.lock = threading.RLock()
        self.businesses: dict[str, _Business] = {}
        self.user_businesses = [LEAD_BUSINESS, BE_BUSINESS]
        self._codes: dict[str, tuple[datetime, str]] = {}
        self._access: dict[str, datetime] = {}
        self._refresh: dict[str, datetime] = {}
        self._spent_refresh: set[str] = set()
        #: Every refresh token presented to the token endpoint, in order.
        self.refresh_log: list[str] = []
        #: One entry per token request: grant type and whether a cookie came along.
        self.token_requests: list[dict[str, Any]] = []
        #: ``(method, path, X-Business sent)`` of every ``/v3.1`` request received,
        #: including those a fault then answered.
        self.requests: list[tuple[str, str, str | None]] = []
        #: When set, answers echo this business instead of the one served.
        self.echo_business_override: str | None = None
        self._server = LoopbackServer(
            port=port, handler=_Handler, name="sage-accounting", app=self
        )
        self._seed(customers, seed)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> SageAccountingSandbox:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> SageAccountingSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def api_base(self) -> str:
        return f"{self.url}/v3.1"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth/token"

    @property
    def authorize_url(self) -> str:
        return f"{self.url}/oauth2/auth/central?filter=apiv3.1"

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock (only with the default :class:`MovableClock`)."""
        if not isinstance(self.clock, MovableClock):
            raise RuntimeError("advance() needs the sandbox's own clock")
        self.clock.advance(seconds)

    def settings(self, business_id: str = BE_BUSINESS, **extra: Any) -> dict[str, Any]:
        """A backend section pointing a connector at this sandbox."""
        rates = {"S:21": "BE_STANDARD", "S:6": "BE_REDUCED", "Z:0": "BE_ZERO"}
        if business_id == LEAD_BUSINESS:
            rates = {"S:20": "FR_STANDARD", "S:5.5": "FR_REDUCED", "Z:0": "FR_ZERO"}
        ledger = next(iter(self.businesses[business_id].ledger_accounts))
        return {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "business_id": business_id,
            "redirect_uri": "http://127.0.0.1/callback",
            "authorize_url": self.authorize_url,
            "token_url": self.token_url,
            "api_base": self.api_base,
            "tax_rates": rates,
            "default_ledger_account_id": ledger,
            **extra,
        }

    # ------------------------------------------------------------------- seeding

    def _seed(self, count: int, seed: int) -> None:
        now = self.clock()
        specs = [
            (LEAD_BUSINESS, "Fictive Conseil SAS", "FR"),
            (BE_BUSINESS, "Fictief Advies BV", "BE"),
            (OTHER_BUSINESS, "Autre Société SARL", "FR"),
        ]
        for offset, (ident, name, country) in enumerate(specs):
            business = _Business(ident, name, country)
            for rate_id, pct in _RATES[country]:
                business.tax_rates[rate_id] = {
                    "id": rate_id,
                    "displayed_as": f"{rate_id} {pct}%",
                    "percentage": pct,
                }
            for code, label in (("4000", "Ventes"), ("4010", "Prestations")):
                ledger_id = uuid.uuid5(uuid.NAMESPACE_OID, f"{ident}:{code}").hex
                business.ledger_accounts[ledger_id] = {
                    "id": ledger_id,
                    "displayed_as": f"{label} ({code})",
                    "nominal_code": code,
                }
            for position, customer in enumerate(
                seed_customers(count, seed=seed + offset)
            ):
                touched = _iso(now - timedelta(minutes=count - position))
                contact_id = uuid.uuid5(
                    uuid.NAMESPACE_OID, f"{ident}:{customer.code}"
                ).hex
                business.contacts[contact_id] = {
                    "id": contact_id,
                    "displayed_as": f"{customer.name} ({customer.code})",
                    "name": customer.name,
                    "reference": customer.code,
                    "contact_types": [{"id": "CUSTOMER", "displayed_as": "Client"}],
                    "tax_number": customer.vat,
                    "registered_number": None,
                    "email": customer.email,
                    "locale": "fr",
                    "currency": {"id": "EUR", "displayed_as": "Euro (EUR)"},
                    "credit_days": 30,
                    "main_address": {
                        "address_line_1": customer.street,
                        "address_line_2": None,
                        "city": customer.city,
                        "region": None,
                        "postal_code": customer.zip,
                        "country": {"id": customer.country},
                    },
                    "main_contact_person": {
                        "name": "Service comptabilité",
                        "email": customer.email,
                        "telephone": customer.phone,
                        "mobile": None,
                    },
                    "created_at": touched,
                    "updated_at": touched,
                    "deleted_at": None,
                }
            self.businesses[ident] = business

    # --------------------------------------------------------------- consent

    def issue_code(self, business_id: str = BE_BUSINESS) -> str:
        """A consent code, as if a person had approved access in the browser."""
        with self.lock:
            code = secrets.token_urlsafe(16)
            self._codes[code] = (self.clock() + timedelta(seconds=60), business_id)
            return code

    def revoke_refresh_tokens(self) -> None:
        """Forget every refresh token (a user revoked the app, or 31 days passed)."""
        with self.lock:
            self._spent_refresh.update(self._refresh)
            self._refresh.clear()

    def pay(self, reference: str, amount: Decimal | str) -> None:
        """Record a payment against the invoice or credit note with ``reference``."""
        with self.lock:
            for business in self.businesses.values():
                for docs in (business.sales_invoices, business.sales_credit_notes):
                    for doc in docs.values():
                        if doc["reference"] == reference:
                            left = Decimal(doc["outstanding_amount"]) - Decimal(amount)
                            left = max(left, Decimal(0))
                            doc["outstanding_amount"] = _money(left)
                            status = "PAID" if left == 0 else "PART_PAID"
                            doc["status"] = {"id": status, "displayed_as": status}
                            doc["last_paid"] = self.clock().date().isoformat()
                            doc["updated_at"] = _iso(self.clock())
                            return
        raise KeyError(reference)

    # ------------------------------------------------------------- token API

    def token(self, form: dict[str, str], has_cookie: bool) -> tuple[int, Any]:
        """Answer ``POST /oauth/token``."""
        with self.lock:
            grant = form.get("grant_type", "")
            self.token_requests.append({"grant_type": grant, "cookie": has_cookie})
            if (
                form.get("client_id") != CLIENT_ID
                or form.get("client_secret") != CLIENT_SECRET
            ):
                return 401, {"error": "invalid_client"}
            now = self.clock()
            if grant == "authorization_code":
                entry = self._codes.pop(form.get("code", ""), None)
                if entry is None or entry[0] < now:
                    return 400, {"error": "invalid_grant"}
            elif grant == "refresh_token":
                presented = form.get("refresh_token", "")
                self.refresh_log.append(presented)
                expires = self._refresh.pop(presented, None)
                if expires is None or expires < now:
                    return 400, {"error": "invalid_grant"}
                self._spent_refresh.add(presented)
            else:
                return 400, {"error": "unsupported_grant_type"}
            access = "SAT-" + secrets.token_urlsafe(18)
            refresh = "SRT-" + secrets.token_urlsafe(18)
            self._access[access] = now + timedelta(seconds=self.access_ttl)
            self._refresh[refresh] = now + timedelta(seconds=self.refresh_ttl)
            return 200, {
                "access_token": access,
                "expires_in": self.access_ttl,
                "token_type": "bearer",
                "refresh_token": refresh,
                "refresh_token_expires_in": self.refresh_ttl,
                "scope": "full_access",
                "requested_by_id": uuid.uuid5(uuid.NAMESPACE_OID, "user").hex,
            }

    # --------------------------------------------------------------- REST API

    def api(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, Any, str]:
        """Answer one ``/v3.1`` request: status, JSON body, business served."""
        with self.lock:
            token = headers.get("authorization", "").removeprefix("Bearer ").strip()
            expiry = self._access.get(token)
            if expiry is None or expiry <= self.clock():
                raise _ApiError(
                    401, "AuthorizationFailure", "The access token is not valid."
                )
            business_id = headers.get("x-business") or LEAD_BUSINESS
            if business_id not in self.user_businesses:
                raise _ApiError(
                    403,
                    "MultiUserAccessDenied",
                    "You do not have access to this business.",
                )
            self._count_call(business_id)
            business = self.businesses[business_id]
            payload = json.loads(body.decode("utf-8")) if body else None
            return (*self._route(business, method, path, query, payload), business_id)

    def _count_call(self, business_id: str) -> None:
        if self.rate_limit is None:
            return
        now = self.clock()
        slot = (business_id, now.strftime("%Y%m%d%H%M"))
        used = self._minute_calls.get(slot, 0)
        if used >= self.rate_limit:
            error = _ApiError(
                429, "TooManyRequests", "Rate limit exceeded, retry later."
            )
            error.retry_after = 60 - now.second
            raise error
        self._minute_calls[slot] = used + 1

    def _route(
        self,
        business: _Business,
        method: str,
        path: str,
        query: dict[str, str],
        payload: Any,
    ) -> tuple[int, Any]:
        parts = [part for part in path.split("/") if part]
        if not parts:
            raise _ApiError(404, "RecordNotFound", "Unknown resource.")
        resource = parts[0]
        key = parts[1] if len(parts) > 1 else None
        if resource == "businesses":
            items = [
                self._business_view(self.businesses[b]) for b in self.user_businesses
            ]
            if key:
                found = [item for item in items if item["id"] == key]
                if not found:
                    raise _ApiError(404, "RecordNotFound", "Business not found.")
                return 200, found[0]
            return 200, self._envelope("/businesses", items, query, ())
        store = _collection(business, resource)
        if method == "GET" and key is None:
            return 200, self._list(resource, store, query)
        if method == "GET":
            return 200, self._get(store, key, resource)
        if method == "POST" and key is None and resource in _WRITABLE:
            return 201, self._create(business, resource, payload)
        if method == "PUT" and key and resource == "contacts":
            return 200, self._update_contact(business, key, payload)
        if method == "DELETE" and key and resource == "contacts":
            contact = self._get(store, key, resource)
            stored = store[contact["id"]]
            stored["deleted_at"] = _iso(self.clock())
            return 204, None
        raise _ApiError(405, "RecordInvalid", f"{method} not allowed on {path}")

    @staticmethod
    def _business_view(business: _Business) -> dict[str, Any]:
        return {
            "id": business.id,
            "displayed_as": business.name,
            "$path": f"/businesses/{business.id}",
            "name": business.name,
            "country": {"id": business.country},
        }

    def _get(
        self, store: dict[str, dict[str, Any]], key: str | None, resource: str
    ) -> dict[str, Any]:
        item = store.get(key or "")
        if item is None or item.get("deleted_at"):
            raise _ApiError(404, "RecordNotFound", "The record was not found.")
        return {**item, "$path": f"/{resource}/{item['id']}"}

    def _list(
        self, resource: str, store: dict[str, dict[str, Any]], query: dict[str, str]
    ) -> dict[str, Any]:
        rows = list(store.values())
        if "deleted_since" in query:
            since = _parse_since(query["deleted_since"], "deleted_since")
            rows = [
                row
                for row in rows
                if row.get("deleted_at")
                and _parse_since(row["deleted_at"], "deleted_at") > since
            ]
        else:
            rows = [row for row in rows if not row.get("deleted_at")]
        if "updated_or_created_since" in query:
            since = _parse_since(
                query["updated_or_created_since"], "updated_or_created_since"
            )
            rows = [
                row
                for row in rows
                if _parse_since(row["updated_at"], "updated_at") >= since
            ]
        if query.get("contact_type_id"):
            wanted = query["contact_type_id"]
            rows = [
                row
                for row in rows
                if any(kind["id"] == wanted for kind in row.get("contact_types", []))
            ]
        if query.get("search"):
            needle = query["search"].casefold()
            rows = [
                row
                for row in rows
                if needle in str(row.get("name") or "").casefold()
                or needle in str(row.get("reference") or "").casefold()
                or needle in str(row.get("invoice_number") or "").casefold()
                or needle in str(row.get("displayed_as") or "").casefold()
            ]
        fields = _CONTACT_FIELDS if resource == "contacts" else _INVOICE_FIELDS
        wanted = query.get("attributes", "")
        chosen: tuple[str, ...]
        if wanted == "all":
            chosen = fields
        else:
            chosen = tuple(name for name in wanted.split(",") if name in fields)
        if "deleted_since" in query:
            chosen = (*chosen, "deleted_at")
        return self._envelope(f"/{resource}", rows, query, chosen)

    def _envelope(
        self,
        path: str,
        rows: list[dict[str, Any]],
        query: dict[str, str],
        attributes: Sequence[str],
    ) -> dict[str, Any]:
        try:
            per_page = min(max(int(query.get("items_per_page", 20)), 1), 200)
            page = max(int(query.get("page", 1)), 1)
        except ValueError as err:
            raise _ApiError(
                400, "RecordInvalid", "page and items_per_page are numbers", "page"
            ) from err
        start = (page - 1) * per_page
        chunk = rows[start : start + per_page]
        others = [(k, v) for k, v in query.items() if k not in {"page"}]

        def link(number: int) -> str:
            return f"{path}?{urlencode([*others, ('page', str(number))])}"

        items = []
        for row in chunk:
            item = {
                "id": row["id"],
                "displayed_as": row.get("displayed_as"),
                "$path": f"{path}/{row['id']}",
            }
            item.update({name: row.get(name) for name in attributes})
            items.append(item)
        return {
            "$total": len(rows),
            "$page": page,
            "$next": link(page + 1) if start + per_page < len(rows) else None,
            "$back": link(page - 1) if page > 1 else None,
            "$itemsPerPage": per_page,
            "$items": items,
        }

    # ---------------------------------------------------------------- writes

    def _create(
        self, business: _Business, resource: str, payload: Any
    ) -> dict[str, Any]:
        wrapper = _WRITABLE[resource]
        if not isinstance(payload, dict) or not isinstance(payload.get(wrapper), dict):
            raise _ApiError(
                422, "RecordInvalid", f"Body must be {{'{wrapper}': {{...}}}}", wrapper
            )
        data = payload[wrapper]
        if resource == "contacts":
            return self._create_contact(business, data)
        return self._create_document(business, resource, data)

    def _validate_contact(
        self, business: _Business, data: dict[str, Any], own_id: str | None
    ) -> None:
        if not str(data.get("name") or "").strip():
            raise _ApiError(422, "RecordInvalid", "This field is required.", "name")
        reference = data.get("reference")
        if reference:
            for other in business.contacts.values():
                if (
                    other["id"] != own_id
                    and not other.get("deleted_at")
                    and str(other.get("reference") or "").casefold()
                    == str(reference).casefold()
                ):
                    raise _ApiError(
                        422, "RecordInvalid", "has already been taken", "reference"
                    )
        tax = data.get("tax_number")
        country = (data.get("main_address") or {}).get("country_id")
        if tax and vat_key(tax, country) is None:
            raise _ApiError(
                422, "RecordInvalid", "The VAT number is not valid.", "tax_number"
            )

    def _contact_from(self, data: dict[str, Any]) -> dict[str, Any]:
        address = data.get("main_address") or {}
        person = data.get("main_contact_person") or {}
        types = data.get("contact_type_ids") or ["CUSTOMER"]
        return {
            "name": data["name"],
            "displayed_as": f"{data['name']} ({data.get('reference') or ''})",
            "reference": data.get("reference"),
            "contact_types": [{"id": kind} for kind in types],
            "tax_number": data.get("tax_number"),
            "registered_number": data.get("registered_number"),
            "email": data.get("email"),
            "locale": data.get("locale"),
            "currency": {"id": data.get("currency_id") or "EUR"},
            "credit_days": data.get("credit_days"),
            "main_address": {
                "address_line_1": address.get("address_line_1"),
                "address_line_2": address.get("address_line_2"),
                "city": address.get("city"),
                "region": address.get("region"),
                "postal_code": address.get("postal_code"),
                "country": {"id": address.get("country_id")}
                if address.get("country_id")
                else None,
            },
            "main_contact_person": {
                "name": person.get("name"),
                "email": person.get("email"),
                "telephone": person.get("telephone"),
                "mobile": person.get("mobile"),
            }
            if person
            else None,
        }

    def _create_contact(
        self, business: _Business, data: dict[str, Any]
    ) -> dict[str, Any]:
        self._validate_contact(business, data, None)
        ident = uuid.uuid4().hex
        now = _iso(self.clock())
        contact = {
            "id": ident,
            **self._contact_from(data),
            "created_at": now,
            "updated_at": now,
            "deleted_at": None,
        }
        business.contacts[ident] = contact
        return {**contact, "$path": f"/contacts/{ident}"}

    def _update_contact(
        self, business: _Business, key: str, payload: Any
    ) -> dict[str, Any]:
        current = self._get(business.contacts, key, "contacts")
        data = (payload or {}).get("contact")
        if not isinstance(data, dict):
            raise _ApiError(422, "RecordInvalid", "Body must be {'contact': {...}}")
        merged = {"name": current["name"], "reference": current["reference"], **data}
        self._validate_contact(business, merged, key)
        updated = {**business.contacts[key], **self._contact_from(merged)}
        updated["updated_at"] = _iso(self.clock())
        business.contacts[key] = updated
        return {**updated, "$path": f"/contacts/{key}"}

    def _create_document(
        self, business: _Business, resource: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        lines_key = (
            "invoice_lines" if resource == "sales_invoices" else ("credit_note_lines")
        )
        contact = business.contacts.get(str(data.get("contact_id") or ""))
        if contact is None or contact.get("deleted_at"):
            raise _ApiError(422, "RecordInvalid", "Contact is not valid.", "contact_id")
        if not data.get("date"):
            raise _ApiError(422, "RecordInvalid", "This field is required.", "date")
        lines = data.get(lines_key)
        if not isinstance(lines, list) or not lines:
            raise _ApiError(422, "RecordInvalid", "At least one line.", lines_key)
        net_total = tax_total = Decimal(0)
        stored_lines = []
        for index, line in enumerate(lines):
            where = f"{lines_key}.{index}"
            if line.get("ledger_account_id") not in business.ledger_accounts:
                raise _ApiError(
                    422,
                    "RecordInvalid",
                    "Ledger account is not valid.",
                    f"{where}.ledger_account_id",
                )
            rate = business.tax_rates.get(str(line.get("tax_rate_id") or ""))
            if rate is None:
                raise _ApiError(
                    422,
                    "RecordInvalid",
                    "Tax rate is not valid.",
                    f"{where}.tax_rate_id",
                )
            try:
                quantity = Decimal(str(line.get("quantity")))
                price = Decimal(str(line.get("unit_price")))
            except InvalidOperation as err:
                raise _ApiError(
                    422, "RecordInvalid", "is not a number", f"{where}.unit_price"
                ) from err
            net = (quantity * price).quantize(Decimal("0.01"), ROUND_HALF_UP)
            tax = (net * Decimal(str(rate["percentage"])) / 100).quantize(
                Decimal("0.01"), ROUND_HALF_UP
            )
            net_total += net
            tax_total += tax
            stored_lines.append({**line, "net_amount": _money(net)})
        business.sequence += 1
        prefix = "SI" if resource == "sales_invoices" else "SCN"
        number = f"{prefix}-{business.sequence}"
        ident = uuid.uuid4().hex
        now = _iso(self.clock())
        total = net_total + tax_total
        document = {
            "id": ident,
            "displayed_as": number,
            "contact": {"id": contact["id"], "displayed_as": contact["name"]},
            "date": data["date"],
            "due_date": data.get("due_date"),
            "reference": data.get("reference"),
            "invoice_number": number if resource == "sales_invoices" else None,
            "credit_note_number": number if resource != "sales_invoices" else None,
            "status": {"id": "UNPAID", "displayed_as": "Unpaid"},
            "currency": {"id": data.get("currency_id") or "EUR"},
            "net_amount": _money(net_total),
            "tax_amount": _money(tax_total),
            "total_amount": _money(total),
            "outstanding_amount": _money(total),
            "last_paid": None,
            lines_key: stored_lines,
            "created_at": now,
            "updated_at": now,
            "deleted_at": None,
        }
        _collection(business, resource)[ident] = document
        return {**document, "$path": f"/{resource}/{ident}"}


_RATES = {
    "FR": [("FR_STANDARD", "20.0"), ("FR_REDUCED", "5.5"), ("FR_ZERO", "0.0")],
    "BE": [("BE_STANDARD", "21.0"), ("BE_REDUCED", "6.0"), ("BE_ZERO", "0.0")],
}
_WRITABLE = {
    "contacts": "contact",
    "sales_invoices": "sales_invoice",
    "sales_credit_notes": "sales_credit_note",
}


def _collection(business: _Business, resource: str) -> dict[str, dict[str, Any]]:
    collections = {
        "contacts": business.contacts,
        "sales_invoices": business.sales_invoices,
        "sales_credit_notes": business.sales_credit_notes,
        "tax_rates": business.tax_rates,
        "ledger_accounts": business.ledger_accounts,
    }
    if resource not in collections:
        raise _ApiError(404, "RecordNotFound", f"Unknown resource {resource}.")
    return collections[resource]


class _Handler(QuietHandler):
    """HTTP glue: routing, fault injection, JSON encoding."""

    @property
    def app(self) -> SageAccountingSandbox:
        return self.server.app  # type: ignore[no-any-return]

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _json(
        self, status: int, payload: Any, headers: dict[str, str] | None = None
    ) -> None:
        body = b"" if payload is None else json.dumps(payload).encode("utf-8")
        self.send_bytes(status, body, "application/json", headers)

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body = self.read_body()
        if parts.path == "/oauth2/auth/central" and method == "GET":
            self._consent(query)
            return
        if parts.path == "/oauth/token" and method == "POST":
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            status, payload = self.app.token(form, "Cookie" in self.headers)
            self._json(status, payload, {"Cache-Control": "no-store"})
            return
        if not parts.path.startswith("/v3.1/"):
            self._json(404, _ApiError(404, "RecordNotFound", "Not found.").body)
            return
        with self.app.lock:
            self.app.requests.append(
                (
                    method,
                    parts.path.removeprefix("/v3.1"),
                    self.headers.get("X-Business"),
                )
            )
        fault = self.app.faults.draw(method)
        if fault == "5xx":
            self._json(
                503,
                _ApiError(503, "ServiceUnavailable", "Please try again later.").body,
            )
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        extra: dict[str, str] = {}
        try:
            status, payload, business = self.app.api(
                method, parts.path.removeprefix("/v3.1"), query, headers, body
            )
        except _ApiError as err:
            status, payload, business = (
                err.status,
                err.body,
                headers.get("x-business", LEAD_BUSINESS),
            )
            if err.retry_after is not None:
                extra["Retry-After"] = str(err.retry_after)
        except (ValueError, KeyError, TypeError) as err:
            status, payload, business = (
                400,
                _ApiError(400, "RecordInvalid", f"Malformed request: {err}").body,
                LEAD_BUSINESS,
            )
        if fault == "reset":
            self.reset_connection()
            return
        if fault == "timeout":
            threading.Event().wait(self.app.faults.delay)
        echoed = self.app.echo_business_override or business
        self._json(
            status,
            payload,
            {
                "X-Business": echoed,
                "Set-Cookie": "sage_session=sandbox; Path=/; HttpOnly",
                **extra,
            },
        )

    def _consent(self, query: dict[str, str]) -> None:
        redirect = query.get("redirect_uri")
        if query.get("client_id") != CLIENT_ID or not redirect:
            self._json(400, {"error": "invalid_request"})
            return
        code = self.app.issue_code()
        target = (
            f"{redirect}?{urlencode({'code': code, 'state': query.get('state', '')})}"
        )
        self.send_bytes(302, b"", "text/plain", {"Location": target})


def main(argv: Sequence[str] | None = None) -> int:
    """``crm-sync sandbox sage_accounting``: serve the fake until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="sage-accounting-sandbox",
        description="Local fake of Sage Accounting v3.1 on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any)")
    parser.add_argument("--customers", type=int, default=30, help="seeded customers")
    parser.add_argument("--seed", type=int, default=42, help="seed of the data")
    parser.add_argument(
        "--access-ttl", type=int, default=300, help="access token lifetime (s)"
    )
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of failing API calls"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    stopping = install_stop_signals()
    sandbox = SageAccountingSandbox(
        port=args.port,
        customers=args.customers,
        seed=args.seed,
        access_ttl=args.access_ttl,
        faults=FaultPlan(rate=args.fault_rate),
    ).start()
    print(f"Sage Accounting sandbox on {sandbox.url}")
    print(f"  api base      {sandbox.api_base}")
    print(f"  token url     {sandbox.token_url}")
    print(f"  authorize url {sandbox.authorize_url}")
    print(f"  client        {CLIENT_ID} / {CLIENT_SECRET}")
    print(f"  businesses    lead {LEAD_BUSINESS}, BE {BE_BUSINESS}")
    print("Ctrl-C (or SIGTERM) to stop.", flush=True)
    run_until_signalled(sandbox.stop, stopping)
    return 0
