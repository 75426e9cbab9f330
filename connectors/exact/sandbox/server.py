"""The Exact Online sandbox server: a loopback fake faithful to Exact's contract.

What it does, as Exact does it (see ``shared/specs/EXTERNAL-APIS.md`` §1 and §5):

- ``/api/oauth2/auth`` (auto-consents and redirects with a one-time code) and
  ``/api/oauth2/token``: ``expires_in`` as a string, a new single-use refresh token
  on every refresh (a spent one → ``400 invalid_grant``), refresh refused within
  570 s of the previous issue (``400 access_denied`` + ``Reason:
  TooEarlyToRefreshTokens``), codes valid 3 minutes and once, refresh tokens that
  expire after 30 idle days;
- ``/api/v1/current/Me`` and, per division, ``system/Divisions``, ``crm/Accounts``
  (GET/POST, by key GET/PUT/DELETE), ``bulk/CRM/Accounts``, ``sync/CRM/Accounts``,
  ``sync/Deleted``, ``read/sync/Sync/SyncTimestamp``, ``salesentry/SalesEntries``,
  ``salesinvoice/SalesInvoices``, ``cashflow/Receivables``,
  ``sync/Cashflow/Receivables``, ``vat/VATCodes``, ``financial/GLAccounts``,
  ``financial/Journals``, ``logistics/Items``;
- OData v2 envelopes with ``__metadata``, ``/Date(ms)/`` dates, 18-character
  right-aligned account codes, ``$select``/``$filter``/``$top``, pages of 60 rows
  (1,000 on ``bulk/`` and ``sync/``) and an absolute ``__next`` with ``$skiptoken``;
- ``Timestamp`` as one monotonic row-version counter per division;
- rate-limit headers (epoch ms) on every division call, 429 after 60 calls in a
  minute (only the minutely headers) or over the daily quota (only the daily ones);
- Exact's error body ``{"error": {"code": "", "message": {"lang": "", "value": …}}}``
  and empty-bodied 401s;
- optional faults on division calls: 429, 5xx, timeouts, connection resets and
  truncated JSON, *after* a POST/PUT was committed (:class:`FaultPlan`).

Time comes from an injectable clock plus an offset that :meth:`ExactSandbox.advance`
moves, so tests exercise the 570 s rule and the minute windows without waiting.
It binds 127.0.0.1 only.
"""

from __future__ import annotations

import bisect
import json
import logging
import random
import secrets
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sync_daemon.kernel.protocol import TokenSet

from . import data
from .odata import FilterError, compile_filter

__all__ = ["ExactSandbox", "FaultPlan", "SandboxStats"]

_logger = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST_TIMESTAMP = 88_213_000_000
_PAGE = 60
_BIG_PAGE = 1000

#: path after /api/v1/{division}/ -> (collection, key field, page size, OData type)
_ENDPOINTS: dict[str, tuple[str, str, int, str]] = {
    "crm/Accounts": ("accounts", "ID", _PAGE, "Account"),
    "bulk/CRM/Accounts": ("accounts", "ID", _BIG_PAGE, "Bulk.CRM.Account"),
    "sync/CRM/Accounts": ("accounts", "ID", _BIG_PAGE, "Sync.CRM.Account"),
    "sync/Deleted": ("deleted", "ID", _BIG_PAGE, "Sync.Deleted"),
    "salesentry/SalesEntries": ("entries", "EntryID", _PAGE, "SalesEntry"),
    "salesinvoice/SalesInvoices": ("invoices", "InvoiceID", _PAGE, "SalesInvoice"),
    "cashflow/Receivables": ("receivables", "ID", _PAGE, "Receivable"),
    "sync/Cashflow/Receivables": (
        "receivables",
        "ID",
        _BIG_PAGE,
        "Sync.Cashflow.Receivable",
    ),
    "vat/VATCodes": ("vat_codes", "ID", _PAGE, "VATCode"),
    "financial/GLAccounts": ("gl_accounts", "ID", _PAGE, "GLAccount"),
    "financial/Journals": ("journals", "ID", _PAGE, "Journal"),
    "logistics/Items": ("items", "ID", _PAGE, "Item"),
    "system/Divisions": ("divisions", "Code", _PAGE, "Division"),
}


@dataclass(frozen=True)
class FaultPlan:
    """Which share of division calls fail, and how.

    :param rate: probability (0..1) that a division call gets a fault.
    :param kinds: faults drawn from: ``429``, ``5xx``, ``timeout``, ``reset``,
        ``truncated``. For POST/PUT/DELETE every kind but ``429`` strikes *after*
        the change was committed, the case that makes blind re-sends duplicate.
    :param timeout_seconds: how long a ``timeout`` fault keeps the client waiting
        before the connection is reset (set the client's read timeout lower).
    :param seed: seed of the fault dice, for reproducible runs.
    :param methods: HTTP methods the faults strike.
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = ("5xx", "timeout", "reset", "truncated", "429")
    timeout_seconds: float = 1.0
    seed: int = 0
    methods: tuple[str, ...] = ("GET", "POST", "PUT", "DELETE")


@dataclass
class SandboxStats:
    """What happened, for tests and benchmarks."""

    token_calls: int = 0
    refreshes: int = 0
    refresh_token_reuse: int = 0
    too_early_refusals: int = 0
    api_calls: int = 0
    division_calls: int = 0
    rate_limited: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    posts: dict[str, int] = field(default_factory=dict)
    #: Division calls per UTC minute window (for "peak calls per minute").
    calls_per_minute: dict[int, int] = field(default_factory=dict)
    #: Every refresh token ever presented, with how often.
    refresh_tokens_presented: dict[str, int] = field(default_factory=dict)
    #: Moment of every accepted division call (for rolling-minute peaks).
    call_times: list[datetime] = field(default_factory=list)

    def peak_rolling_minute(self) -> int:
        """Most division calls accepted in any 60-second span."""
        times = sorted(self.call_times)
        best = 0
        start = 0
        for end, moment in enumerate(times):
            while moment - times[start] >= timedelta(minutes=1):
                start += 1
            best = max(best, end - start + 1)
        return best

    def as_dict(self) -> dict[str, Any]:
        return {
            "token_calls": self.token_calls,
            "refreshes": self.refreshes,
            "refresh_token_reuse": self.refresh_token_reuse,
            "too_early_refusals": self.too_early_refusals,
            "api_calls": self.api_calls,
            "division_calls": self.division_calls,
            "rate_limited": self.rate_limited,
            "faults": dict(self.faults),
            "posts": dict(self.posts),
            "peak_calls_per_minute": max(self.calls_per_minute.values(), default=0),
            "peak_calls_rolling_minute": self.peak_rolling_minute(),
        }


@dataclass
class _Division:
    number: int
    tables: dict[str, dict[str, dict[str, Any]]]
    timestamp: int = _FIRST_TIMESTAMP
    minute_window: int = -1
    minute_calls: int = 0
    day: str = ""
    day_calls: int = 0
    entry_number: int = 0
    invoice_number: int = 0
    account_code: int = 0

    def next_timestamp(self) -> int:
        self.timestamp += 1
        return self.timestamp


def _ms(moment: datetime) -> int:
    return int((moment - _EPOCH) / timedelta(milliseconds=1))


def _render(value: Any) -> Any:
    if isinstance(value, datetime):
        return f"/Date({_ms(value)})/"
    if isinstance(value, Decimal):
        return float(value)
    return value


def _error_body(message: str) -> dict[str, Any]:
    return {"error": {"code": "", "message": {"lang": "", "value": message}}}


class _Reply(Exception):
    """Raised inside a handler to answer at once."""

    def __init__(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class ExactSandbox:
    """A running (or ready to run) Exact Online fake.

    :param port: TCP port on 127.0.0.1; 0 picks a free one.
    :param seed: seed of the generated data.
    :param accounts: accounts per division.
    :param invoices: sales entries (with receivables) per division.
    :param divisions: division numbers; the first is the user's "current" one.
    :param access_lifetime: seconds an access token lives (Exact: 600).
    :param too_early: seconds before a refresh is allowed (Exact: 570).
    :param minutely_limit: calls per minute and division (Exact: 60).
    :param daily_limit: calls per day and division (Exact: 5,000).
    :param faults: fault injection plan (none by default).
    :param clock: current UTC time; :meth:`advance` adds an offset to it.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        seed: int = 1,
        accounts: int = 200,
        invoices: int = 500,
        divisions: Iterable[int] = (2999999,),
        client_id: str = "sandbox-client",
        client_secret: str = "sandbox-secret",
        access_lifetime: int = 600,
        too_early: int = 570,
        code_lifetime: int = 180,
        refresh_idle_lifetime: timedelta = timedelta(days=30),
        minutely_limit: int = 60,
        daily_limit: int = 5000,
        faults: FaultPlan | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.port = port
        self.seed = seed
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_lifetime = access_lifetime
        self.too_early = too_early
        self.code_lifetime = code_lifetime
        self.refresh_idle_lifetime = refresh_idle_lifetime
        self.minutely_limit = minutely_limit
        self.daily_limit = daily_limit
        self.faults = faults or FaultPlan()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._offset = timedelta()
        self._lock = threading.RLock()
        self._dice = random.Random(self.faults.seed)
        self.stats = SandboxStats()
        self._access: dict[str, datetime] = {}
        self._refresh: dict[str, dict[str, Any]] = {}
        self._codes: dict[str, dict[str, Any]] = {}
        self._last_issue: datetime | None = None
        self._order_cache: dict[tuple[int, str, bool], tuple[Any, list, list]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.division_numbers = list(divisions)
        if not self.division_numbers:
            raise ValueError("the sandbox needs at least one division")
        self.divisions = {
            number: self._seed_division(number, accounts, invoices)
            for number in self.division_numbers
        }

    # ============================================================ lifecycle

    def start(self) -> ExactSandbox:
        """Bind 127.0.0.1 and serve in a background thread."""
        handler = type("Handler", (_Handler,), {"sandbox": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"exact-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        _logger.info("Exact sandbox listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ExactSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, the value of the connector's ``base_url`` setting."""
        return f"http://127.0.0.1:{self.port}"

    # ================================================================= time

    def now(self) -> datetime:
        """The sandbox's current time."""
        return self._clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the sandbox's time forward (tokens age, minute windows roll)."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)

    # ======================================================== test helpers

    def connector_settings(self, division: int | None = None) -> dict[str, Any]:
        """Backend settings that point the Exact connector at this sandbox.

        The mappings name the sandbox's VAT codes (1 = 21 %, 2 = 9 %, 3 = 6 %,
        4 = intra-EU 0 %, 5 = export 0 %), revenue GL accounts and its item.
        """
        return {
            "base_url": self.url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "division": division or self.division_numbers[0],
            "redirect_uri": "http://127.0.0.1:8765/callback",
            "journal": "70",
            "vat_codes": {
                "S:21": "1",
                "S:9": "2",
                "S:6": "3",
                "K:0": "4",
                "AE:0": "4",
                "G:0": "5",
                "Z:0": "0",
                "E:0": "0",
                "O:0": "0",
            },
            "default_gl_account": "8000",
            "gl_accounts": {},
            "item_code": "DIENST",
        }

    def token_set(self) -> TokenSet:
        """A fresh token pair as the token store keeps it (skips the consent)."""
        issued = self.issue_tokens()
        return TokenSet(
            access_token=issued["access_token"],
            refresh_token=issued["refresh_token"],
            issued_at=issued["issued_at"],
            expires_at=issued["issued_at"]
            + timedelta(seconds=int(issued["expires_in"])),
            refresh_expires_at=issued["issued_at"] + self.refresh_idle_lifetime,
            base_url=self.url,
        )

    def issue_tokens(self) -> dict[str, Any]:
        """A fresh token pair, as after a consent (for tests and the demo)."""
        with self._lock:
            body = self._issue()
        return {**body, "issued_at": self.now()}

    def rows(
        self, collection: str, division: int | None = None
    ) -> list[dict[str, Any]]:
        """A copy of a table's rows (``accounts``, ``entries``, ``receivables``…)."""
        with self._lock:
            table = self._division(division).tables[collection]
            return [dict(row) for row in table.values()]

    def pay(self, your_ref: str, amount: Decimal, division: int | None = None) -> None:
        """Register a customer payment against the receivable of ``your_ref``."""
        with self._lock:
            div = self._division(division)
            for row in div.tables["receivables"].values():
                if row.get("YourRef") == your_ref and not row["IsFullyPaid"]:
                    left = Decimal(str(row["AmountFC"])) - amount
                    left = max(left, Decimal(0))
                    row["AmountFC"] = row["AmountDC"] = float(left)
                    row["IsFullyPaid"] = left == 0
                    row["Status"] = 50 if left == 0 else 20
                    row["LastPaymentDate"] = self.now()
                    row["Modified"] = self.now()
                    row["Timestamp"] = div.next_timestamp()
                    return
        raise KeyError(your_ref)

    def delete_account(self, account_id: str, division: int | None = None) -> None:
        """Delete an account as a user would in Exact (shows in ``sync/Deleted``)."""
        with self._lock:
            self._delete(self._division(division), account_id.lower())

    def update_account(
        self, account_id: str, division: int | None = None, **changes: Any
    ) -> None:
        """Change an account as a user would (it shows in ``sync/CRM/Accounts``)."""
        with self._lock:
            div = self._division(division)
            row = div.tables["accounts"][account_id.lower()]
            row.update(changes)
            row["Modified"] = self.now()
            row["Timestamp"] = div.next_timestamp()

    def _division(self, division: int | None) -> _Division:
        return self.divisions[division or self.division_numbers[0]]

    # ============================================================== seeding

    def _seed_division(self, number: int, accounts: int, invoices: int) -> _Division:
        seeded = data.generate(
            self.seed,
            division=number,
            accounts=accounts,
            invoices=invoices,
            now=self.now(),
        )
        reference = data.reference_data()
        div = _Division(number=number, tables={})
        div.account_code = 1000 + accounts
        div.entry_number = 26000000 + invoices
        div.invoice_number = 26500000
        tables: dict[str, dict[str, dict[str, Any]]] = {
            "accounts": {},
            "deleted": {},
            "entries": {},
            "invoices": {},
            "receivables": {},
        }
        for row in sorted(seeded.accounts, key=lambda r: r["Modified"]):
            row["ID"] = row["ID"].lower()
            row["Timestamp"] = div.next_timestamp()
            row["Division"] = number
            tables["accounts"][row["ID"]] = row
        for row in seeded.entries:
            row["Division"] = number
            tables["entries"][row["EntryID"]] = row
        for row in sorted(seeded.receivables, key=lambda r: r["Modified"]):
            row["Timestamp"] = div.next_timestamp()
            row["Division"] = number
            tables["receivables"][row["ID"]] = row
        for name in ("vat_codes", "gl_accounts", "journals", "items"):
            tables[name] = {row["ID"]: dict(row) for row in reference[name]}
        tables["divisions"] = {
            str(code): {
                "Code": code,
                "Description": f"Sandbox administratie {code}",
                "Country": "NL" if index == 0 else "BE",
                "Currency": "EUR",
                "DivisionMoveDate": None,
            }
            for index, code in enumerate(self.division_numbers)
        }
        div.tables = tables
        return div

    # ================================================================ OAuth

    def _issue(self) -> dict[str, Any]:
        now = self.now()
        access = "sbx-at-" + secrets.token_urlsafe(24)
        refresh = "sbx-rt-" + secrets.token_urlsafe(24)
        self._access[access] = now + timedelta(seconds=self.access_lifetime)
        self._refresh[refresh] = {"state": "active", "issued_at": now}
        self._last_issue = now
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": str(self.access_lifetime),
            "refresh_token": refresh,
        }

    def authorize(self, client_id: str, redirect_uri: str) -> str:
        """Consent at once and return a one-time code (the browser step)."""
        if client_id != self.client_id:
            raise _Reply(400, {"error": "invalid_client"})
        code = "sbx-code-" + secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = {
                "redirect_uri": redirect_uri,
                "expires": self.now() + timedelta(seconds=self.code_lifetime),
                "used": False,
            }
        return code

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        """The token endpoint's answer: status, JSON body, extra headers."""
        with self._lock:
            self.stats.token_calls += 1
            if (
                form.get("client_id") != self.client_id
                or form.get("client_secret") != self.client_secret
            ):
                return 400, {"error": "invalid_client"}, {}
            grant = form.get("grant_type")
            now = self.now()
            if grant == "authorization_code":
                code = self._codes.get(form.get("code", ""))
                if code is None or code["used"] or code["expires"] < now:
                    return 400, {"error": "invalid_grant"}, {}
                if code["redirect_uri"] != form.get("redirect_uri"):
                    return 400, {"error": "invalid_grant"}, {}
                code["used"] = True
                return 200, self._issue(), {}
            if grant != "refresh_token":
                return 400, {"error": "unsupported_grant_type"}, {}
            presented = form.get("refresh_token", "")
            seen = self.stats.refresh_tokens_presented
            seen[presented] = seen.get(presented, 0) + 1
            entry = self._refresh.get(presented)
            if entry is None:
                return 400, {"error": "invalid_grant"}, {}
            if entry["state"] == "used":
                self.stats.refresh_token_reuse += 1
                return (
                    400,
                    {
                        "error": "invalid_grant",
                        "error_description": "Old refresh token used.",
                    },
                    {},
                )
            if now - entry["issued_at"] > self.refresh_idle_lifetime:
                expired = entry["issued_at"] + self.refresh_idle_lifetime
                return (
                    400,
                    {
                        "error": "invalid_request",
                        "error_description": "The refresh token expired at "
                        f"{expired.isoformat()}",
                    },
                    {},
                )
            if (
                self._last_issue is not None
                and (now - self._last_issue).total_seconds() < self.too_early
            ):
                self.stats.too_early_refusals += 1
                return (
                    400,
                    {
                        "error": "access_denied",
                        "error_description": "Rate limit exceeded: access_token not "
                        "expired",
                    },
                    {"Reason": "TooEarlyToRefreshTokens"},
                )
            entry["state"] = "used"
            self.stats.refreshes += 1
            return 200, self._issue(), {}

    def authenticated(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        with self._lock:
            expires = self._access.get(header[7:].strip())
            return expires is not None and expires > self.now()

    # =========================================================== limits

    def count_call(self, div: _Division) -> tuple[int | None, dict[str, str]]:
        """Account one division call: (429 scope or None, rate-limit headers)."""
        now = self.now()
        now_ms = _ms(now)
        window = now_ms // 60000
        day = now.date().isoformat()
        if window != div.minute_window:
            div.minute_window, div.minute_calls = window, 0
        if day != div.day:
            div.day, div.day_calls = day, 0
        minute_reset = str((window + 1) * 60000)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time())
        day_reset = str(_ms(midnight.replace(tzinfo=UTC)))
        if div.day_calls >= self.daily_limit:
            return 429, {
                "X-RateLimit-Limit": str(self.daily_limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": day_reset,
            }
        if div.minute_calls >= self.minutely_limit:
            return 429, {
                "X-RateLimit-Minutely-Limit": str(self.minutely_limit),
                "X-RateLimit-Minutely-Remaining": "0",
                "X-RateLimit-Minutely-Reset": minute_reset,
            }
        div.minute_calls += 1
        div.day_calls += 1
        self.stats.division_calls += 1
        per_minute = self.stats.calls_per_minute
        per_minute[window] = per_minute.get(window, 0) + 1
        self.stats.call_times.append(now)
        return None, {
            "X-RateLimit-Limit": str(self.daily_limit),
            "X-RateLimit-Remaining": str(self.daily_limit - div.day_calls),
            "X-RateLimit-Reset": day_reset,
            "X-RateLimit-Minutely-Limit": str(self.minutely_limit),
            "X-RateLimit-Minutely-Remaining": str(
                self.minutely_limit - div.minute_calls
            ),
            "X-RateLimit-Minutely-Reset": minute_reset,
        }

    def draw_fault(self, method: str) -> str | None:
        with self._lock:
            if method not in self.faults.methods or self.faults.rate <= 0:
                return None
            if self._dice.random() >= self.faults.rate:
                return None
            kind = self._dice.choice(self.faults.kinds)
            self.stats.faults[kind] = self.stats.faults.get(kind, 0) + 1
            return kind

    # ========================================================== resources

    def handle_api(
        self, method: str, path: str, query: str, body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        """Answer one ``/api/v1/...`` call (auth and limits already done)."""
        parts = path.split("/", 1)
        if parts[0] == "current" and path == "current/Me":
            return 200, self._me(), {}
        if not parts[0].isdigit() or len(parts) < 2:
            raise _Reply(404, _error_body(f"Resource not found: {path}"))
        div = self.divisions.get(int(parts[0]))
        if div is None:
            raise _Reply(403, _error_body(f"Forbidden: division {parts[0]}"))
        resource = parts[1]
        params = _query(query)
        with self._lock:
            if resource == "read/sync/Sync/SyncTimestamp":
                return 200, self._sync_timestamp(div, params), {}
            key = None
            if resource.endswith(")") and "(" in resource:
                resource, _, key = resource[:-1].partition("(")
                key = key.removeprefix("guid").strip("'").lower()
            if resource not in _ENDPOINTS:
                raise _Reply(404, _error_body(f"Resource not found: {resource}"))
            if method == "GET":
                if key is not None:
                    return 200, {"d": self._one(div, resource, key, params)}, {}
                return 200, self._list(div, resource, query, params), {}
            if method == "POST" and key is None:
                self.stats.posts[resource] = self.stats.posts.get(resource, 0) + 1
                return 201, {"d": self._create(div, resource, body)}, {}
            if method == "PUT" and key is not None and resource == "crm/Accounts":
                self._update(div, key, body)
                return 204, None, {}
            if method == "DELETE" and key is not None and resource == "crm/Accounts":
                self._delete(div, key)
                return 204, None, {}
        raise _Reply(405, _error_body(f"{method} is not allowed on {resource}"))

    def _me(self) -> dict[str, Any]:
        current = self.division_numbers[0]
        return {
            "d": {
                "results": [
                    {
                        "__metadata": {
                            "uri": f"{self.url}/api/v1/current/Me(guid'"
                            "6cb67eb8-6739-5c7a-9393-38c2cf583a29')",
                            "type": "Exact.Web.Api.System.Me",
                        },
                        "CurrentDivision": current,
                        "AccountingDivision": current,
                        "UserID": "6cb67eb8-6739-5c7a-9393-38c2cf583a29",
                        "UserName": "sandbox@example.invalid",
                        "FullName": "Sandbox Gebruiker",
                        "Email": "sandbox@example.invalid",
                        "Legislation": 1,
                        "Language": "NL",
                    }
                ]
            }
        }

    def _sync_timestamp(self, div: _Division, params: dict[str, str]) -> dict[str, Any]:
        modified_text = params.get("modified", "")
        endpoint = params.get("endPoint", "").strip("'")
        if not modified_text.startswith("datetime'") or not endpoint:
            raise _Reply(400, _error_body("modified and endPoint are mandatory"))
        modified = datetime.fromisoformat(modified_text[9:-1]).replace(tzinfo=UTC)
        table = {"CRM/Accounts": "accounts", "Cashflow/Receivables": "receivables"}.get(
            endpoint
        )
        if table is None:
            raise _Reply(400, _error_body(f"Unknown endPoint {endpoint}"))
        before = [
            row["Timestamp"]
            for row in div.tables[table].values()
            if row.get("Modified") and row["Modified"] < modified
        ]
        return {
            "d": {
                "results": [
                    {
                        "API": endpoint,
                        "Modified": _render(modified),
                        "TimeStampAsBigInt": max(before, default=1),
                    }
                ]
            }
        }

    def _metadata(self, div: _Division, resource: str, row: dict[str, Any]) -> dict:
        _, key_field, _, kind = _ENDPOINTS[resource]
        return {
            "uri": f"{self.url}/api/v1/{div.number}/{resource}"
            f"(guid'{row.get(key_field)}')",
            "type": f"Exact.Web.Api.Models.{kind}",
        }

    def _project(
        self, div: _Division, resource: str, row: dict[str, Any], select: list[str]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"__metadata": self._metadata(div, resource, row)}
        names = select or [name for name in row if name != "Timestamp"]
        for name in names:
            if name not in row and name not in _OPTIONAL_FIELDS:
                raise _Reply(
                    400, _error_body(f"Property '{name}' does not exist on {resource}")
                )
            out[name] = _render(row.get(name))
        return out

    def _one(
        self, div: _Division, resource: str, key: str, params: dict[str, str]
    ) -> dict[str, Any]:
        table = div.tables[_ENDPOINTS[resource][0]]
        row = table.get(key)
        if row is None:
            raise _Reply(404, _error_body(f"Record not found: {key}"))
        return self._project(div, resource, row, _select(params))

    def _ordered(
        self, div: _Division, collection: str, key_field: str, is_sync: bool
    ) -> tuple[list[Any], list[dict[str, Any]]]:
        """Rows of a table in paging order, cached until the table changes."""
        table = div.tables[collection]
        stamp = (collection, is_sync, div.timestamp, len(table))
        cached = self._order_cache.get((div.number, collection, is_sync))
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        if is_sync:
            ordered = sorted(table.values(), key=lambda row: row["Timestamp"])
            keys: list[Any] = [row["Timestamp"] for row in ordered]
        else:
            ordered = sorted(
                table.values(), key=lambda row: str(row[key_field]).lower()
            )
            keys = [str(row[key_field]).lower() for row in ordered]
        self._order_cache[(div.number, collection, is_sync)] = (stamp, keys, ordered)
        return keys, ordered

    def _list(
        self, div: _Division, resource: str, query: str, params: dict[str, str]
    ) -> dict[str, Any]:
        collection, key_field, page_size, _ = _ENDPOINTS[resource]
        is_sync = resource.startswith("sync/")
        select = _select(params)
        if (resource.startswith("bulk/") or is_sync) and not select:
            raise _Reply(400, _error_body("$select is mandatory on this endpoint"))
        # Keyset order, as Exact pages: by Timestamp on sync/, by key elsewhere,
        # so a row deleted between two pages never derails the skip token.
        order_keys, ordered = self._ordered(div, collection, key_field, is_sync)
        skip = params.get("$skiptoken")
        start = 0
        if skip:
            after: Any = (
                int(skip.rstrip("L"))
                if is_sync
                else skip.removeprefix("guid").strip("'").lower()
            )
            start = bisect.bisect_right(order_keys, after)
        rows: list[dict[str, Any]] = ordered[start:]
        filter_text = params.get("$filter")
        if is_sync and (not filter_text or "Timestamp" not in filter_text):
            raise _Reply(400, _error_body("A Timestamp filter is mandatory"))
        if filter_text:
            try:
                predicate = compile_filter(filter_text, _field_value)
            except FilterError as err:
                raise _Reply(400, _error_body(str(err))) from err
            rows = [row for row in rows if predicate(row)]
        top = params.get("$top")
        limit = page_size
        if top is not None:
            if not top.isdigit():
                raise _Reply(400, _error_body("$top must be a number"))
            limit = min(page_size, int(top))
        page = rows[:limit]
        envelope: dict[str, Any] = {
            "results": [self._project(div, resource, row, select) for row in page]
        }
        if len(rows) > limit and top is None and page:
            last_row = page[-1]
            token = (
                f"{last_row['Timestamp']}L"
                if is_sync
                else f"guid'{str(last_row[key_field]).lower()}'"
            )
            kept = "&".join(
                part for part in query.split("&") if not part.startswith("$skiptoken=")
            )
            envelope["__next"] = (
                f"{self.url}/api/v1/{div.number}/{resource}?{kept}&$skiptoken={token}"
            )
        return {"d": envelope}

    # ---------------------------------------------------------- writes

    def _create(self, div: _Division, resource: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _Reply(400, _error_body("Body must be a JSON object"))
        if resource == "crm/Accounts":
            row = self._new_account(div, body)
        elif resource == "salesentry/SalesEntries":
            row = self._new_entry(div, body)
        elif resource == "salesinvoice/SalesInvoices":
            row = self._new_invoice(div, body)
        else:
            raise _Reply(405, _error_body(f"POST is not allowed on {resource}"))
        return self._project(div, resource, row, [])

    def _new_account(self, div: _Division, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("Name") or "").strip()
        if not name:
            raise _Reply(400, _error_body("Name: Mandatory field is missing"))
        unknown = set(body) - _ACCOUNT_WRITABLE
        if unknown:
            raise _Reply(
                400, _error_body(f"Property '{sorted(unknown)[0]}' does not exist")
            )
        code = str(body.get("Code") or "").strip()
        if not code:
            div.account_code += 1
            code = str(div.account_code)
        padded = code.rjust(18)
        if any(row["Code"] == padded for row in div.tables["accounts"].values()):
            raise _Reply(400, _error_body(f"Code: {code} already exists"))
        now = self.now()
        row = {name_: "" for name_ in _ACCOUNT_TEXT}
        row.update(
            {
                "ID": str(uuid.uuid4()),
                "IsSales": True,
                "IsSupplier": False,
                "Blocked": False,
                "Status": "C",
                "PeppolIdentifierType": None,
                "SalesCurrency": "EUR",
                "IsMailing": 0,
                "Division": div.number,
            }
        )
        row.update(body)
        row.update({"Code": padded, "Name": name, "Created": now, "Modified": now})
        row["Timestamp"] = div.next_timestamp()
        div.tables["accounts"][row["ID"]] = row
        return row

    def _update(self, div: _Division, key: str, body: Any) -> None:
        row = div.tables["accounts"].get(key)
        if row is None:
            raise _Reply(404, _error_body(f"Record not found: {key}"))
        if not isinstance(body, dict) or set(body) - _ACCOUNT_WRITABLE:
            raise _Reply(400, _error_body("Unknown property in body"))
        row.update(body)
        if "Code" in body:
            row["Code"] = str(body["Code"]).strip().rjust(18)
        row["Modified"] = self.now()
        row["Timestamp"] = div.next_timestamp()

    def _delete(self, div: _Division, key: str) -> None:
        row = div.tables["accounts"].pop(key, None)
        if row is None:
            raise _Reply(404, _error_body(f"Record not found: {key}"))
        deleted_id = str(uuid.uuid4())
        div.tables["deleted"][deleted_id] = {
            "ID": deleted_id,
            "EntityKey": key,
            "EntityType": 2,
            "DeletedBy": "6cb67eb8-6739-5c7a-9393-38c2cf583a29",
            "DeletedDate": self.now(),
            "Division": div.number,
            "Timestamp": div.next_timestamp(),
        }

    def _vat(self, div: _Division, code: Any) -> dict[str, Any]:
        for row in div.tables["vat_codes"].values():
            if row["Code"].strip() == str(code or "").strip():
                if row["IsBlocked"]:
                    raise _Reply(400, _error_body(f"VATCode: {code} is blocked"))
                return row
        raise _Reply(400, _error_body(f"VATCode: {code} does not exist"))

    def _journal(self, div: _Division, code: Any) -> None:
        for row in div.tables["journals"].values():
            if row["Code"] == str(code) and row["Type"] == 20:
                return
        raise _Reply(400, _error_body(f"Journal: {code} is not a sales journal"))

    def _customer(self, div: _Division, key: Any) -> dict[str, Any]:
        row = div.tables["accounts"].get(str(key or "").lower())
        if row is None:
            raise _Reply(400, _error_body(f"Customer: {key} does not exist"))
        return row

    def _new_entry(self, div: _Division, body: dict[str, Any]) -> dict[str, Any]:
        customer = self._customer(div, body.get("Customer"))
        self._journal(div, body.get("Journal"))
        kind = body.get("Type", 20)
        if kind not in (20, 21):
            raise _Reply(400, _error_body(f"Type: {kind} is not 20 or 21"))
        lines = body.get("SalesEntryLines") or []
        if not lines:
            raise _Reply(400, _error_body("SalesEntryLines: Mandatory"))
        gl_ids = {row["ID"] for row in div.tables["gl_accounts"].values()}
        total = Decimal(0)
        for line in lines:
            if str(line.get("GLAccount", "")).lower() not in gl_ids:
                raise _Reply(400, _error_body("GLAccount: does not exist"))
            vat = self._vat(div, line.get("VATCode"))
            amount = Decimal(str(line.get("AmountFC", 0)))
            total += amount * (1 + Decimal(str(vat["Percentage"])))
        total = total.quantize(Decimal("0.01"))
        now = self.now()
        div.entry_number += 1
        entry_id = str(uuid.uuid4())
        row = {
            "EntryID": entry_id,
            "EntryNumber": div.entry_number,
            "Customer": customer["ID"],
            "Journal": str(body["Journal"]),
            "Type": kind,
            "EntryDate": _body_date(body.get("EntryDate")) or now,
            "YourRef": body.get("YourRef"),
            "Description": body.get("Description"),
            "Currency": body.get("Currency", "EUR"),
            "AmountDC": float(total),
            "AmountFC": float(total),
            "Division": div.number,
        }
        div.tables["entries"][entry_id] = row
        receivable_id = str(uuid.uuid4())
        div.tables["receivables"][receivable_id] = {
            "ID": receivable_id,
            "Account": customer["ID"],
            "YourRef": body.get("YourRef"),
            "InvoiceNumber": div.entry_number,
            "TransactionEntryID": entry_id,
            "AmountFC": float(total),
            "AmountDC": float(total),
            "TransactionAmountFC": float(total),
            "TransactionAmountDC": float(total),
            "Currency": row["Currency"],
            "IsFullyPaid": False,
            "TransactionIsReversal": False,
            "Status": 20,
            "DueDate": _body_date(body.get("DueDate")),
            "LastPaymentDate": None,
            "Modified": now,
            "Division": div.number,
            "Timestamp": div.next_timestamp(),
        }
        return row

    def _new_invoice(self, div: _Division, body: dict[str, Any]) -> dict[str, Any]:
        customer = self._customer(div, body.get("OrderedBy"))
        self._journal(div, body.get("Journal"))
        lines = body.get("SalesInvoiceLines") or []
        if not lines:
            raise _Reply(400, _error_body("SalesInvoiceLines: Mandatory"))
        items = {row["ID"] for row in div.tables["items"].values()}
        total = Decimal(0)
        for line in lines:
            if str(line.get("Item", "")).lower() not in items:
                raise _Reply(400, _error_body("Item: does not exist"))
            vat = (
                self._vat(div, line["VATCode"])
                if line.get("VATCode") is not None
                else {"Percentage": 0.21}
            )
            net = Decimal(str(line.get("Quantity", 1))) * Decimal(
                str(line.get("NetPrice", line.get("UnitPrice", 0)))
            )
            total += net * (1 + Decimal(str(vat["Percentage"])))
        div.invoice_number += 1
        invoice_id = str(uuid.uuid4())
        row = {
            "InvoiceID": invoice_id,
            "InvoiceNumber": div.invoice_number,
            "OrderedBy": customer["ID"],
            "InvoiceTo": customer["ID"],
            "Journal": str(body["Journal"]),
            "Type": body.get("Type", 8020),
            "Status": 20,
            "InvoiceDate": _body_date(body.get("InvoiceDate")) or self.now(),
            "YourRef": body.get("YourRef"),
            "Description": body.get("Description"),
            "Currency": body.get("Currency", "EUR"),
            "AmountFC": float(total.quantize(Decimal("0.01"))),
            "Division": div.number,
        }
        div.tables["invoices"][invoice_id] = row
        return row


#: Fields a $select may name although a row lacks them (read as null).
_OPTIONAL_FIELDS = {
    "Website",
    "State",
    "PeppolIdentifier",
    "PeppolIdentifierType",
    "AddressLine2",
    "AddressLine3",
    "LastPaymentDate",
    "DueDate",
    "Created",
    "Modified",
    "Timestamp",
}
_ACCOUNT_TEXT = (
    "Name",
    "VATNumber",
    "ChamberOfCommerce",
    "Email",
    "Phone",
    "Website",
    "AddressLine1",
    "AddressLine2",
    "AddressLine3",
    "Postcode",
    "City",
    "State",
    "Country",
    "Language",
    "PeppolIdentifier",
)
_ACCOUNT_WRITABLE = set(_ACCOUNT_TEXT) | {
    "Code",
    "Status",
    "IsSales",
    "IsSupplier",
    "Blocked",
    "PeppolIdentifierType",
    "SalesCurrency",
    "IsMailing",
}


def _body_date(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _query(query: str) -> dict[str, str]:
    return {key: value for key, value in parse_qsl(query, keep_blank_values=True)}


def _select(params: dict[str, str]) -> list[str]:
    text = params.get("$select", "")
    return [name.strip() for name in text.split(",") if name.strip()]


def _field_value(row: dict[str, Any], name: str) -> Any:
    value = row.get(name)
    if isinstance(value, str) and len(value) == 36 and value.count("-") == 4:
        return value.lower()
    return value


class _Handler(BaseHTTPRequestHandler):
    """One HTTP exchange with the sandbox; the class gets ``sandbox`` set."""

    sandbox: ExactSandbox
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "ExactSandbox/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        _logger.debug("sandbox: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        raw = self._body()
        try:
            if path == "/api/oauth2/token" and method == "POST":
                form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
                status, body, headers = self.sandbox.token(form)
                self._send(status, body, headers)
                return
            if path == "/api/oauth2/auth" and method == "GET":
                params = _query(split.query)
                redirect = params.get("redirect_uri", "")
                code = self.sandbox.authorize(params.get("client_id", ""), redirect)
                sep = "&" if "?" in redirect else "?"
                location = f"{redirect}{sep}code={code}&state={params.get('state', '')}"
                self._send(302, None, {"Location": location})
                return
            if path.startswith("/api/v1/"):
                self._api(method, path[len("/api/v1/") :], split.query, raw)
                return
            raise _Reply(404, _error_body(f"Resource not found: {path}"))
        except _Reply as reply:
            self._send(reply.status, reply.body, reply.headers)

    def _api(self, method: str, path: str, query: str, raw: bytes) -> None:
        sandbox = self.sandbox
        with sandbox._lock:
            sandbox.stats.api_calls += 1
        if not sandbox.authenticated(self.headers.get("Authorization")):
            self._send(401, None, {"WWW-Authenticate": "Bearer"})
            return
        headers: dict[str, str] = {}
        head = path.split("/", 1)[0]
        division = sandbox.divisions.get(int(head)) if head.isdigit() else None
        fault = None
        if division is not None:
            with sandbox._lock:
                scope, headers = sandbox.count_call(division)
                if scope is not None:
                    sandbox.stats.rate_limited += 1
            if scope is not None:
                self._send(429, _error_body("Too many requests"), headers)
                return
            fault = sandbox.draw_fault(method)
        if fault == "429":
            minute = {k: v for k, v in headers.items() if "Minutely" in k}
            minute["X-RateLimit-Minutely-Remaining"] = "0"
            self._send(429, _error_body("Too many requests"), minute)
            return
        if fault in {"5xx", "timeout", "reset"} and method == "GET":
            self._fail(fault)
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._send(400, _error_body("Body is not valid JSON"), headers)
            return
        try:
            status, answer, extra = sandbox.handle_api(method, path, query, body)
        except _Reply as reply:
            self._send(reply.status, reply.body, {**headers, **reply.headers})
            return
        if fault in {"5xx", "timeout", "reset"}:
            # The change is committed; the client never learns it.
            self._fail(fault)
            return
        if fault == "truncated" and answer is not None:
            payload = json.dumps(answer).encode()
            self._send_raw(status, payload[: max(1, len(payload) // 2)], headers)
            return
        self._send(status, answer, {**headers, **extra})

    def _fail(self, fault: str) -> None:
        if fault == "5xx":
            self._send(503, _error_body("Service unavailable, try again later"))
            return
        if fault == "timeout":
            time.sleep(self.sandbox.faults.timeout_seconds)
        # Reset: RST instead of an answer.
        self.connection.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        self.close_connection = True
        self.connection.close()

    def _send(
        self, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        payload = b"" if body is None else json.dumps(body).encode("utf-8")
        self._send_raw(status, payload, headers or {})

    def _send_raw(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)
