"""The Exact Online connector object: what the sync engine talks to.

``create(ctx)`` (entry point ``crm_sync.connectors`` → ``exact``) validates the
backend settings — a missing or ambiguous division stops here — and returns an
:class:`ExactConnector`, which implements the kernel protocols:

- ``Connector``: ``check`` (credentials, the division is reachable, journal, VAT
  code, GL account and item mappings exist in Exact) and ``close``;
- ``CustomerSource``: ``bulk/CRM/Accounts`` for the initial load, then
  ``sync/CRM/Accounts`` with the ``Timestamp`` cursor;
- ``DeletionSource``: ``sync/Deleted`` with its own ``Timestamp`` cursor;
- ``CustomerSink``: accounts found by VAT, KvK or code; created or updated;
- ``InvoiceSink``: sales entries or sales invoices (``invoice_mode``), always
  looked up by ``YourRef`` (the Odoo number) before a POST and before any re-POST;
- ``PaymentSource``: open amount and paid state per invoice (and its customer) from
  ``sync/Cashflow/Receivables``.

It also implements the kernel's optional ``AuthorizationCodeFlow`` used by
``crm-sync auth``: :meth:`ExactConnector.authorization_url` and
:meth:`ExactConnector.exchange_code` (``redirect_uri`` defaults to the setting).

Cursors are plain decimal ``Timestamp`` values, except in the middle of a bulk
initial load, where they read ``bulk <timestamp> <next url>`` so that a crash
resumes at the page after the last committed one.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import requests

from sync_daemon.kernel.errors import RateLimited, RetryableError
from sync_daemon.kernel.identifiers import (
    compact_vat,
    registry_key,
    vat_key,
)
from sync_daemon.kernel.models import (
    Customer,
    Deletion,
    Invoice,
    InvoiceLine,
    PaymentStatus,
    RemoteRef,
)
from sync_daemon.kernel.protocol import (
    ConnectorContext,
    HealthReport,
    Page,
    TokenSet,
)

from .auth import TokenManager
from .client import ExactClient
from .errors import (
    ExactAuthError,
    ExactConfigurationError,
    ExactDataError,
    ExactError,
    ExactNeedsReauthorisation,
)
from .mapping import (
    INT64_MAX,
    account_to_customer,
    check_invoice_number,
    customer_to_account,
    deleted_to_deletion,
    format_odata_datetime,
    invoice_to_sales_entry,
    invoice_to_sales_invoice,
    odata_quote,
    pad_code,
    receivables_to_payments,
    vat_key_of_line,
)
from .ratelimit import RateLimiter
from .settings import ExactSettings

__all__ = ["ACCOUNT_FIELDS", "ExactConnector", "create"]

_logger = logging.getLogger(__name__)

#: Account fields read from Exact (``$select`` is mandatory on bulk endpoints).
ACCOUNT_FIELDS = (
    "ID,Code,Name,VATNumber,ChamberOfCommerce,Email,Phone,Website,AddressLine1,"
    "AddressLine2,AddressLine3,Postcode,City,State,Country,Language,Status,IsSales,"
    "IsSupplier,Blocked,PeppolIdentifier,PeppolIdentifierType,SalesCurrency,Modified"
)
_RECEIVABLE_FIELDS = (
    "ID,Account,YourRef,InvoiceNumber,TransactionEntryID,AmountFC,"
    "TransactionAmountFC,Currency,IsFullyPaid,TransactionIsReversal,"
    "LastPaymentDate,Modified,Timestamp"
)
_GUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
#: How far before the start of a bulk load the follow-up sync starts reading.
_BULK_OVERLAP = timedelta(minutes=10)


def create(ctx: ConnectorContext) -> ExactConnector:
    """Connector factory of the ``exact`` backend kind."""
    settings = ExactSettings.from_mapping(ctx.settings, backend=str(ctx.backend_id))
    return ExactConnector(ctx, settings)


class ExactConnector:
    """One Exact Online division seen through the kernel protocols.

    :param ctx: the daemon's context (settings, token store, clock, sleep).
    :param settings: the validated settings of this backend.
    :param session: an HTTP session to use (tests inject one); the connector closes
        only a session it created.
    """

    kind = "exact"

    def __init__(
        self,
        ctx: ConnectorContext,
        settings: ExactSettings,
        *,
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self._ctx = ctx
        self._own_session = session is None
        self.session = session or requests.Session()
        self.token_key = settings.token_key or f"exact:{ctx.backend_id}"
        self.tokens = TokenManager(
            settings=settings,
            store=ctx.tokens,
            key=self.token_key,
            session=self.session,
            clock=ctx.clock,
            sleep=ctx.sleep,
        )
        self.limiter = RateLimiter(
            clock=ctx.clock,
            sleep=ctx.sleep,
            reserve=settings.minutely_reserve,
            max_per_minute=settings.max_calls_per_minute,
            on_pause=self.tokens.remember_pause,
        )
        # a daily 429 of an earlier run (or process) still pauses the division,
        # and the calls that run made in its last minute still count
        paused = self.tokens.stored_pause(settings.division)
        if paused is not None:
            self.limiter.restore_pause(settings.division, paused)
        minute = self.tokens.stored_minute(settings.division)
        if minute is not None:
            self.limiter.restore_minute(settings.division, minute)
        self.client = ExactClient(
            settings=settings,
            tokens=self.tokens,
            limiter=self.limiter,
            session=self.session,
            clock=ctx.clock,
            sleep=ctx.sleep,
        )
        self._gl_ids: dict[str, str] | None = None
        self._item_id: str | None = None

    # =========================================================== Connector

    def check(self) -> HealthReport:
        """Credentials, division and mappings; configuration faults are raised.

        Credential problems come back as the report's state; a division the user
        cannot reach or a mapping Exact does not know raises
        :class:`ExactConfigurationError` listing every problem found.
        """
        try:
            me_rows, _ = next(
                self.client.pages(
                    self.client.current_url(
                        "current/Me?$select=CurrentDivision,UserID,FullName"
                    )
                )
            )
        except ExactNeedsReauthorisation as err:
            return HealthReport("needs_reauth", str(err))
        except ExactAuthError as err:
            return HealthReport("invalid", str(err))
        current = me_rows[0].get("CurrentDivision") if me_rows else None
        if not _is_digits(str(current or "")):
            raise ExactDataError(
                "current/Me answered without CurrentDivision",
                record="Exact current/Me",
                field="CurrentDivision",
            )
        # Divisions are listed through the user's current division; the
        # configured one is then checked against that list, never assumed.
        listing = (
            f"{self.settings.host}/api/v1/{current}/system/Divisions"
            "?$select=Code,Description"
        )
        divisions = {
            int(row["Code"])
            for rows, _ in self.client.pages(listing)
            for row in rows
            if _is_digits(str(row.get("Code", "")))
        }
        if self.settings.division not in divisions:
            raise ExactConfigurationError(
                f"division {self.settings.division} is not reachable with these "
                f"credentials (reachable: {sorted(divisions)})",
                record=f"backend {self._ctx.backend_id}",
                field="division",
            )
        problems = self.mapping_problems()
        if problems:
            raise ExactConfigurationError(
                "; ".join(problems),
                record=f"backend {self._ctx.backend_id}",
                field="mappings",
                details={"problems": problems},
            )
        return HealthReport(
            "valid",
            f"Exact division {self.settings.division} reachable",
            {"division": self.settings.division, "user_current_division": current},
        )

    def mapping_problems(self) -> list[str]:
        """Every journal, VAT code, GL account and item of the settings unknown."""
        problems: list[str] = []
        self._gl_ids = None  # re-read: accounts may have been added since
        self._item_id = None
        journals = {
            str(row.get("Code", "")).strip(): row
            for row in self._all("financial/Journals", "Code,Type,Description")
        }
        journal = journals.get(self.settings.journal)
        if journal is None:
            problems.append(f"journal: {self.settings.journal!r} does not exist")
        elif journal.get("Type") not in (None, 20):
            problems.append(
                f"journal: {self.settings.journal!r} is not a sales journal"
            )
        vat_rows = {
            str(row.get("Code", "")).strip(): row
            for row in self._all("vat/VATCodes", "Code,Description,IsBlocked")
        }
        for key, code in sorted(self.settings.vat_codes.items()):
            row = vat_rows.get(code.strip())
            if row is None:
                problems.append(f"vat_codes.{key}: VAT code {code!r} does not exist")
            elif row.get("IsBlocked"):
                problems.append(f"vat_codes.{key}: VAT code {code!r} is blocked")
        gl_ids = self._gl_accounts()
        wanted = dict(self.settings.gl_accounts)
        if self.settings.default_gl_account:
            wanted["default_gl_account"] = self.settings.default_gl_account
        for key, code in sorted(wanted.items()):
            if code.strip() not in gl_ids:
                problems.append(
                    f"gl_accounts.{key}: GL account {code!r} does not exist"
                )
        if self.settings.invoice_mode == "sales_invoices":
            try:
                self._item()
            except ExactDataError as err:
                problems.append(f"item_code: {err.message}")
        return problems

    def close(self) -> None:
        """Hand this minute's calls over to the next run; close our HTTP session."""
        division = self.settings.division
        if self.limiter.minute_snapshot(division) or self.tokens.stored_minute(
            division
        ):
            try:
                self.tokens.remember_minute(
                    division, self.limiter.minute_snapshot(division)
                )
            except Exception:  # losing it costs at most one 429 in the next run
                _logger.warning("could not keep the minute window of %s", division)
        if self._own_session:
            self.session.close()

    # ==================================================== auth (crm-sync auth)

    def authorization_url(self, *, state: str, redirect_uri: str | None = None) -> str:
        """The browser URL that starts Exact's consent (``crm-sync auth``)."""
        return self.tokens.authorization_url(state, self._redirect(redirect_uri))

    def exchange_code(self, *, code: str, redirect_uri: str | None = None) -> TokenSet:
        """Trade the code Exact sent to the redirect URI for stored tokens.

        Called once per code and never retried: codes are single-use.
        """
        return self.tokens.exchange_code(code, self._redirect(redirect_uri))

    def _redirect(self, redirect_uri: str | None) -> str:
        uri = redirect_uri or self.settings.redirect_uri
        if not uri:
            raise ExactConfigurationError(
                "no redirect URI configured for the consent flow",
                record=f"backend {self._ctx.backend_id}",
                field="redirect_uri",
            )
        return uri

    # ====================================================== CustomerSource

    def pull_customers(self, cursor: str | None) -> Iterator[Page[Customer]]:
        """Accounts changed since ``cursor``; everything (bulk) when ``None``."""
        if cursor is None and self.settings.initial_load == "bulk":
            start = self._sync_timestamp()
            url = self.client.url("bulk/CRM/Accounts", {"$select": ACCOUNT_FIELDS})
            yield from self._bulk_pages(start, url)
            return
        if cursor is not None and cursor.startswith("bulk "):
            start, url = _parse_bulk_cursor(cursor)
            if not self.client.on_host(url) or "/bulk/CRM/Accounts" not in url:
                raise ExactDataError(
                    "the bulk-load cursor points away from this backend's "
                    "bulk/CRM/Accounts",
                    record="cursor",
                    field="cursor",
                )
            yield from self._bulk_pages(start, url)
            return
        since = _parse_timestamp(cursor)
        url = self.client.url(
            "sync/CRM/Accounts",
            {
                "$select": ACCOUNT_FIELDS + ",Timestamp",
                "$filter": f"Timestamp gt {since}",
            },
        )
        seen: set[tuple[str, str]] = set()
        for rows, _next in self.client.pages(url):
            customers, rejected = _map_rows(rows, account_to_customer, seen)
            since = max([since, *_timestamps(rows)])
            yield Page(customers, str(since), rejected)

    def _bulk_pages(self, start: int, url: str) -> Iterator[Page[Customer]]:
        seen: set[tuple[str, str]] = set()
        for rows, next_url in self.client.pages(url):
            customers, rejected = _map_rows(rows, account_to_customer, seen)
            cursor = f"bulk {start} {next_url}" if next_url else str(start)
            yield Page(customers, cursor, rejected)

    def _sync_timestamp(self) -> int:
        """The sync timestamp from which changes made during a bulk load show."""
        moment = self._ctx.clock() - _BULK_OVERLAP
        url = self.client.url(
            "read/sync/Sync/SyncTimestamp",
            {
                "modified": format_odata_datetime(moment),
                "endPoint": "'CRM/Accounts'",
            },
        )
        rows, _ = next(self.client.pages(url))
        value = rows[0].get("TimeStampAsBigInt") if rows else None
        text = str(value if value is not None else "").strip()
        if not _is_digits(text) or int(text) > INT64_MAX:
            raise ExactDataError(
                f"SyncTimestamp answered {value!r}",
                record="Exact read/sync/Sync/SyncTimestamp",
                field="TimeStampAsBigInt",
            )
        return max(1, int(text))

    # ====================================================== DeletionSource

    def pull_deletions(self, cursor: str | None) -> Iterator[Page[Deletion]]:
        """Deletions reported by ``sync/Deleted`` after ``cursor``.

        Only entity types listed in ``deleted_entity_types`` are returned; the
        cursor moves past the others too, so nothing is read twice.
        """
        since = _parse_timestamp(cursor)
        url = self.client.url(
            "sync/Deleted",
            {
                "$select": "ID,EntityKey,EntityType,DeletedDate,Timestamp",
                "$filter": f"Timestamp gt {since}",
            },
        )
        types = self.settings.deleted_entity_types
        for rows, _next in self.client.pages(url):
            deletions: list[Deletion] = []
            rejected: list[tuple[str, Exception]] = []
            for row in rows:
                try:
                    deletion = deleted_to_deletion(row, types)
                except ExactDataError as err:
                    rejected.append((str(row.get("EntityKey") or row.get("ID")), err))
                    continue
                if deletion is not None:
                    deletions.append(deletion)
            since = max([since, *_timestamps(rows)])
            yield Page(deletions, str(since), rejected)

    # ======================================================== CustomerSink

    def find_customer(self, customer: Customer) -> RemoteRef | None:
        """The Exact account with the customer's VAT, KvK or code, if one exists.

        Exact stores identifiers as typed, so the usual spellings are asked for and
        the answers are compared on normalised keys. Two different accounts
        matching is a data problem a person must solve.
        """
        country = customer.country_code
        clauses: list[str] = []
        vat = vat_key(customer.vat, country)
        if vat:
            for spelling in _vat_spellings(customer.vat or "", vat):
                clauses.append(f"VATNumber eq {odata_quote(spelling)}")
        registry = registry_key(customer.company_registry, country)
        if registry:
            number = registry.split(":", 1)[1]
            for spelling in {
                number,
                number.lstrip("0"),
                str(customer.company_registry),
            }:
                clauses.append(f"ChamberOfCommerce eq {odata_quote(spelling.strip())}")
        if customer.external_code:
            clauses.append(f"Code eq {odata_quote(pad_code(customer.external_code))}")
        if not clauses:
            return None
        rows = self._select(
            "crm/Accounts",
            "ID,Code,Name,VATNumber,ChamberOfCommerce,Country",
            " or ".join(dict.fromkeys(clauses)),
        )
        matches = {}
        for row in rows:
            row_country = row.get("Country") or country
            same = (
                (vat and vat_key(row.get("VATNumber"), row_country) == vat)
                or (
                    registry
                    and registry_key(row.get("ChamberOfCommerce"), row_country)
                    == registry
                )
                or (
                    customer.external_code
                    and str(row.get("Code") or "").strip()
                    == customer.external_code.strip()
                )
            )
            if same:
                matches[_key_of(row, "ID", f"customer {customer.name}")] = row
        if len(matches) > 1:
            raise ExactDataError(
                f"{len(matches)} Exact accounts match this customer: "
                + ", ".join(
                    sorted(str(r.get("Code") or "").strip() for r in matches.values())
                ),
                record=f"customer {customer.name}",
                field="vat" if vat else "company_registry",
                details={"exact_ids": sorted(matches)},
            )
        if not matches:
            return None
        ((external_id, row),) = matches.items()
        return RemoteRef(
            external_id=external_id,
            external_code=str(row.get("Code") or "").strip() or None,
        )

    def exclude_from_marketing(self, external_id: str, *, purpose: str) -> None:
        """Exclude a linked account from mailings (kernel ``MarketingSink``).

        Exact keeps this on the account as ``IsMailing`` ("indicates if the account
        is excluded from mailing marketing information", a byte: 1 = excluded).
        ``purpose`` is the consent purpose withdrawn in Odoo; Exact has one flag.
        """
        if not _GUID.match(external_id):
            raise ExactDataError(
                f"linked Exact id {external_id[:40]!r} is not a GUID",
                record=f"account {external_id[:40]}",
                field="external_id",
            )
        url = self.client.url(f"crm/Accounts(guid'{external_id}')")
        self.client.put(url, {"IsMailing": 1})

    def push_customer(
        self, customer: Customer, *, external_id: str | None, idempotency_key: str
    ) -> RemoteRef:
        """Update the linked account, or create one (looked up before any re-POST)."""
        body = customer_to_account(customer)
        if external_id:
            if not _GUID.match(external_id):
                raise ExactDataError(
                    f"linked Exact id {external_id[:40]!r} is not a GUID",
                    record=f"customer {customer.name}",
                    field="external_id",
                )
            url = self.client.url(f"crm/Accounts(guid'{external_id}')")
            self.client.put(url, body)
            return RemoteRef(
                external_id=external_id.lower(), external_code=customer.external_code
            )

        def lookup() -> RemoteRef | None:
            found = self.find_customer(customer)
            if found is not None:
                return found
            rows = self._select(
                "crm/Accounts", "ID,Code", f"Name eq {odata_quote(customer.name)}"
            )
            if len(rows) == 1:
                return RemoteRef(
                    external_id=_key_of(rows[0], "ID", f"customer {customer.name}"),
                    external_code=str(rows[0].get("Code") or "").strip() or None,
                )
            return None

        created = self._post_or_find(
            self.client.url("crm/Accounts"),
            body,
            lookup,
            record=f"customer {customer.name}",
            key_field="ID",
            code_field="Code",
            label=idempotency_key,
        )
        _logger.info("Exact account created (%s)", idempotency_key)
        return created

    # ========================================================= InvoiceSink

    def _invoice_entity(self) -> tuple[str, str, str]:
        if self.settings.invoice_mode == "sales_invoices":
            return "salesinvoice/SalesInvoices", "InvoiceID", "InvoiceNumber"
        return "salesentry/SalesEntries", "EntryID", "EntryNumber"

    def find_invoice(self, invoice: Invoice) -> RemoteRef | None:
        """The Exact entry or invoice whose ``YourRef`` is the Odoo number."""
        check_invoice_number(invoice)
        path, key, number = self._invoice_entity()
        rows = self._select(
            path, f"{key},{number},YourRef", f"YourRef eq {odata_quote(invoice.number)}"
        )
        rows = [row for row in rows if row.get("YourRef") == invoice.number]
        if not rows:
            return None
        if len(rows) > 1:
            _logger.warning(
                "%d Exact documents carry YourRef %s; linking the first",
                len(rows),
                invoice.number,
            )
        row = rows[0]
        return RemoteRef(
            external_id=_key_of(row, key, f"invoice {invoice.number}"),
            external_code=str(row.get(number)) if row.get(number) else None,
        )

    def push_invoice(self, invoice: Invoice, *, idempotency_key: str) -> RemoteRef:
        """Book a posted invoice or credit note unless Exact already has it."""
        existing = self.find_invoice(invoice)
        if existing is not None:
            return existing
        customer_id = self._buyer_id(invoice)
        if self.settings.invoice_mode == "sales_invoices":
            body = invoice_to_sales_invoice(
                invoice,
                customer_id=customer_id,
                journal=self.settings.journal,
                item_id=self._item(),
                vat_code=lambda line: self._vat_code(invoice, line),
            )
        else:
            body = invoice_to_sales_entry(
                invoice,
                customer_id=customer_id,
                journal=self.settings.journal,
                gl_account=lambda line: self._gl_account(invoice, line),
                vat_code=lambda line: self._vat_code(invoice, line),
            )
        path, key, number = self._invoice_entity()
        ref = self._post_or_find(
            self.client.url(path),
            body,
            lambda: self.find_invoice(invoice),
            record=f"invoice {invoice.number}",
            key_field=key,
            code_field=number,
            label=idempotency_key,
        )
        _logger.info("Exact %s booked (%s)", path.rsplit("/", 1)[1], idempotency_key)
        return ref

    def _buyer_id(self, invoice: Invoice) -> str:
        if invoice.buyer_external_id:
            return invoice.buyer_external_id
        buyer = invoice.buyer
        found = self.find_customer(
            Customer(
                external_id="-",
                name=buyer.name,
                vat=buyer.vat,
                company_registry=buyer.company_registry,
                address=buyer.address,
            )
        )
        if found is None:
            raise ExactDataError(
                "the buyer has no Exact account yet (push the customer first)",
                record=f"invoice {invoice.number}",
                field="buyer",
            )
        return found.external_id

    def _vat_code(self, invoice: Invoice, line: InvoiceLine) -> str:
        key = vat_key_of_line(line)
        code = self.settings.vat_codes.get(key)
        if code is None:
            raise ExactDataError(
                f"no Exact VAT code configured for {key} (settings vat_codes)",
                record=f"invoice {invoice.number}",
                field=f"lines[{line.line_id}].tax",
            )
        return code

    def _gl_account(self, invoice: Invoice, line: InvoiceLine) -> str:
        code = self.settings.gl_accounts.get(line.account_code or "")
        code = code or self.settings.default_gl_account
        if code is None:
            raise ExactDataError(
                f"no Exact GL account configured for Odoo account "
                f"{line.account_code!r} (settings gl_accounts)",
                record=f"invoice {invoice.number}",
                field=f"lines[{line.line_id}].account_code",
            )
        guid = self._gl_accounts().get(code.strip())
        if guid is None:
            raise ExactDataError(
                f"GL account {code!r} does not exist in Exact",
                record=f"invoice {invoice.number}",
                field=f"lines[{line.line_id}].account_code",
            )
        return guid

    def _gl_accounts(self) -> dict[str, str]:
        if self._gl_ids is None:
            self._gl_ids = {
                str(row.get("Code", "")).strip(): _key_of(row, "ID", "Exact GL account")
                for row in self._all("financial/GLAccounts", "ID,Code,Type")
            }
        return self._gl_ids

    def _item(self) -> str:
        if self._item_id is None:
            code = self.settings.item_code
            if not code:
                raise ExactDataError(
                    "sales_invoices mode needs an item code",
                    record=f"backend {self._ctx.backend_id}",
                    field="item_code",
                )
            rows = self._select(
                "logistics/Items", "ID,Code", f"Code eq {odata_quote(code)}"
            )
            if not rows:
                raise ExactDataError(
                    f"item {code!r} does not exist in Exact",
                    record=f"backend {self._ctx.backend_id}",
                    field="item_code",
                )
            self._item_id = _key_of(rows[0], "ID", f"Exact item {code}")
        return self._item_id

    # ======================================================= PaymentSource

    def pull_payments(self, cursor: str | None) -> Iterator[Page[PaymentStatus]]:
        """Open amount and paid state of invoices whose receivables changed."""
        since = _parse_timestamp(cursor)
        url = self.client.url(
            "sync/Cashflow/Receivables",
            {"$select": _RECEIVABLE_FIELDS, "$filter": f"Timestamp gt {since}"},
        )
        for rows, _next in self.client.pages(url):
            good: list[dict[str, Any]] = []
            rejected: list[tuple[str, Exception]] = []
            for row in rows:
                try:
                    receivables_to_payments([row])
                except ExactDataError as err:
                    rejected.append((str(row.get("ID")), err))
                    continue
                good.append(row)
            since = max([since, *_timestamps(rows)])
            yield Page(receivables_to_payments(good), str(since), rejected)

    # ============================================================ helpers

    def _select(self, path: str, fields: str, filter_: str) -> list[dict[str, Any]]:
        url = self.client.url(path, {"$select": fields, "$filter": filter_})
        return [row for rows, _ in self.client.pages(url) for row in rows]

    def _all(self, path: str, fields: str) -> list[dict[str, Any]]:
        url = self.client.url(path, {"$select": fields})
        return [row for rows, _ in self.client.pages(url) for row in rows]

    def _post_or_find(
        self,
        url: str,
        body: dict[str, Any],
        lookup: Callable[[], RemoteRef | None],
        *,
        record: str,
        key_field: str,
        code_field: str,
        label: str,
    ) -> RemoteRef:
        """POST once; after an unclear failure, look up and only then POST again.

        A network error, timeout, 5xx or broken answer may hide a stored record
        (the connection can break after Exact committed). So a POST is repeated
        only when the lookup by the record's own key finds nothing.
        """
        attempts = self.settings.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                answer = self.client.post(url, body)
                return _created_ref(answer, key_field, code_field, record)
            except ExactDataError:
                # Stored (2xx) but the answer lacks the key: find it, never re-POST.
                found = lookup()
                if found is not None:
                    return found
                raise
            except RetryableError as err:
                if isinstance(err, RateLimited) and err.scope == "daily":
                    raise
                if attempt == attempts:
                    raise
                wait = min(
                    self.settings.max_backoff,
                    max(err.retry_after or 0.0, random.uniform(0.5, 2.0) * attempt),
                )
                # ``label`` is the idempotency key: no customer name in logs.
                _logger.warning(
                    "POST %s failed (%s); looking it up before any re-send",
                    label,
                    type(err).__name__,
                )
                self._ctx.sleep(wait)
                found = lookup()
                if found is not None:
                    return found
                continue
        raise AssertionError("unreachable")  # pragma: no cover


def _created_ref(
    answer: Any, key_field: str, code_field: str, record: str
) -> RemoteRef:
    row = answer.get("d") if isinstance(answer, dict) else None
    if isinstance(row, list):
        row = row[0] if row else None
    if not isinstance(row, dict) or not row.get(key_field):
        raise ExactDataError(
            f"Exact answered the create without {key_field}",
            record=record,
            field=key_field,
        )
    code = row.get(code_field)
    return RemoteRef(
        external_id=str(row[key_field]).lower(),
        external_code=str(code).strip() if code not in (None, "") else None,
        created=True,
    )


def _map_rows(
    rows: list[dict[str, Any]],
    mapper: Callable[[dict[str, Any]], Customer],
    seen: set[tuple[str, str]],
) -> tuple[list[Customer], list[tuple[str, Exception]]]:
    """Mapped rows and rejected ones; a version already read in this pull is skipped.

    Skip-token paging can hand the same row version out twice (on two pages);
    a row with the same ID and ``Timestamp``/``Modified`` carries nothing new.
    """
    mapped: list[Customer] = []
    rejected: list[tuple[str, Exception]] = []
    repeated = 0
    for row in rows:
        key = str(row.get("ID", "?")).lower()
        version = (key, str(row.get("Timestamp") or row.get("Modified") or ""))
        if version[1] and version in seen:
            repeated += 1
            continue
        seen.add(version)
        try:
            mapped.append(mapper(row))
        except ExactError as err:
            rejected.append((key, err))
    if repeated:
        _logger.debug("Exact page repeated %d row versions; skipped", repeated)
    return mapped, rejected


def _timestamps(rows: list[dict[str, Any]]) -> list[int]:
    """The rows' usable ``Timestamp`` values (ASCII digits within Int64)."""
    values = []
    for row in rows:
        text = str(row.get("Timestamp", "")).strip()
        if _is_digits(text) and int(text) <= INT64_MAX:
            values.append(int(text))
    return values


def _key_of(row: dict[str, Any], field: str, record: str) -> str:
    """The row's key in lower case; a row without one is a named data error."""
    value = row.get(field)
    if value is None or str(value).strip() == "":
        raise ExactDataError(
            f"Exact answered a row without {field}", record=record, field=field
        )
    return str(value).strip().lower()


def _is_digits(text: str) -> bool:
    """ASCII digits only: ``"²".isdigit()`` is true but ``int("²")`` fails."""
    return text.isascii() and text.isdigit()


def _parse_timestamp(cursor: str | None) -> int:
    if cursor is None or cursor == "":
        return 1
    text = cursor.strip()
    if not _is_digits(text) or int(text) > INT64_MAX:
        raise ExactDataError(
            f"not an Exact sync timestamp: {cursor!r}", record="cursor", field="cursor"
        )
    return max(1, int(text))


def _parse_bulk_cursor(cursor: str) -> tuple[int, str]:
    parts = cursor.split(" ", 2)
    if len(parts) != 3 or not _is_digits(parts[1]) or not parts[2].startswith("http"):
        raise ExactDataError(
            f"not a bulk-load cursor: {cursor!r}", record="cursor", field="cursor"
        )
    return int(parts[1]), parts[2]


def _vat_spellings(raw: str, key: str) -> list[str]:
    """The ways a VAT number is commonly typed into Exact."""
    spellings = [key, key[2:], raw.strip(), compact_vat(raw)]
    if key.startswith("BE"):
        digits = key[2:]
        spellings.append(f"BE {digits[:4]}.{digits[4:7]}.{digits[7:]}")
        spellings.append(f"{digits[:4]}.{digits[4:7]}.{digits[7:]}")
    return [s for s in dict.fromkeys(spellings) if s]
