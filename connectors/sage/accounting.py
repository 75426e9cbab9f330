"""Sage Accounting v3.1 connector: contacts, sales invoices and payment status.

Built by :func:`create` from a :class:`~sync_daemon.kernel.protocol.ConnectorContext`
(entry point ``crm_sync.connectors: sage_accounting``). It implements the kernel
protocols ``Connector``, ``CustomerSource``, ``DeletionSource``, ``CustomerSink``,
``InvoiceSink``, ``PaymentSource`` and ``AuthorizationCodeFlow`` (the consent
helpers driven by ``crm-sync auth``).

Streams and cursors (ISO 8601 UTC timestamps, opaque to the engine):

- customers: ``/contacts?contact_type_id=CUSTOMER&updated_or_created_since=…``
  (inclusive) with the mapped attributes asked for; a list item that still comes
  back bare is fetched by id before mapping, never read as "no VAT number";
- deletions: ``/contacts?deleted_since=…`` (exclusive);
- payments: ``/sales_invoices`` and ``/sales_credit_notes`` changed since the cursor.

A cursor only moves on the last page of a run, to the newest ``updated_at`` seen, so
a run cut short is simply read again. Writes are never retried blindly: each POST is
preceded by a lookup (contact by reference, invoice by reference), and after a POST
whose outcome is unknown the lookup runs again before any second POST.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import requests
from pydantic import ValidationError

from sync_daemon.kernel.errors import (
    AuthError,
    NeedsReauthorisation,
    RetryableError,
    SyncError,
)
from sync_daemon.kernel.identifiers import vat_key
from sync_daemon.kernel.models import (
    Customer,
    Deletion,
    Invoice,
    Party,
    PaymentStatus,
    RemoteRef,
)
from sync_daemon.kernel.protocol import (
    ConnectorContext,
    HealthReport,
    Page,
    TokenSet,
    TokenStore,
)

from .accounting_client import SageAccountingClient
from .accounting_mapping import (
    CONTACT_ATTRIBUTES,
    INVOICE_ATTRIBUTES,
    contact_to_customer,
    customer_to_contact,
    deleted_item_to_deletion,
    has_details,
    invoice_to_payment_status,
    invoice_to_sales_document,
)
from .errors import SageConfigurationError, SageDataError
from .oauth import SageOAuth
from .settings import SageAccountingSettings

__all__ = ["KIND", "SageAccountingConnector", "create", "load_settings"]

_logger = logging.getLogger(__name__)

KIND = "sage_accounting"
#: ``deleted_since`` is mandatory for a deletion list; the first run starts here.
_EPOCH = "1970-01-01T00:00:00Z"


def load_settings(raw: Mapping[str, Any]) -> SageAccountingSettings:
    """Validate a backend section, naming the first wrong field on failure."""
    try:
        return SageAccountingSettings.model_validate(dict(raw))
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise SageConfigurationError(
            f"invalid Sage Accounting settings: {first['msg']}",
            record="sage_accounting settings",
            field=field or None,
        ) from err


def create(ctx: ConnectorContext) -> SageAccountingConnector:
    """Connector factory registered under ``crm_sync.connectors``."""
    return SageAccountingConnector(
        load_settings(ctx.settings),
        tokens=ctx.tokens,
        clock=ctx.clock,
        sleep=ctx.sleep,
        backend_id=ctx.backend_id,
    )


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _later(current: str | None, candidate: datetime | None) -> str | None:
    if candidate is None:
        return current
    text = _iso(candidate.astimezone(UTC))
    return text if current is None or text > current else current


class SageAccountingConnector:
    """One Sage Accounting business, seen through the kernel protocols."""

    kind = KIND

    def __init__(
        self,
        settings: SageAccountingSettings,
        *,
        tokens: TokenStore,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
        backend_id: int = 0,
        session: requests.Session | None = None,
        token_session_factory: Callable[[], requests.Session] = requests.Session,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._owns_session = session is None
        self._session = session or requests.Session()
        self.oauth = SageOAuth(
            settings,
            store=tokens,
            key=f"{KIND}:{backend_id}:{settings.business_id}",
            clock=clock,
            sleep=sleep,
            session_factory=token_session_factory,
        )
        self.client = SageAccountingClient(
            settings, oauth=self.oauth, session=self._session, sleep=sleep
        )

    # ------------------------------------------------------------- Connector

    def check(self) -> HealthReport:
        """Reach the configured business with the stored tokens."""
        stored = self.oauth.stored()
        if stored is None:
            return HealthReport("missing", "not authorised yet: run 'crm-sync auth'")
        self.oauth.check_refresh_expiry(stored)
        business = self.settings.business_id
        try:
            self.client.get(
                f"/businesses/{business}", record=f"Sage business {business}"
            )
        except NeedsReauthorisation as err:
            return HealthReport("needs_reauth", err.message)
        except AuthError as err:
            return HealthReport("invalid", err.message)
        except SyncError as err:
            return HealthReport("unknown", str(err), {"error": type(err).__name__})
        details: dict[str, Any] = {"business_id": business}
        message = f"Sage business {business} reachable"
        if self.oauth.warning:
            details["warning"] = self.oauth.warning
            message = f"{message}; {self.oauth.warning}"
        return HealthReport("valid", message, details)

    def close(self) -> None:
        """Close the HTTP session when this connector created it."""
        if self._owns_session:
            self._session.close()

    # ---------------------------------------------------------- consent flow

    def authorization_url(self, *, redirect_uri: str | None = None, state: str) -> str:
        """Browser URL of Sage's consent page (kernel ``AuthorizationCodeFlow``)."""
        return self.oauth.authorization_url(state=state, redirect_uri=redirect_uri)

    def exchange_code(self, *, code: str, redirect_uri: str | None = None) -> TokenSet:
        """Store the tokens obtained for a consent code (single use, no retry)."""
        return self.oauth.exchange_code(code=code, redirect_uri=redirect_uri)

    # -------------------------------------------------------- CustomerSource

    def pull_customers(self, cursor: str | None) -> Iterator[Page[Customer]]:
        """Customer contacts created or changed since ``cursor`` (inclusive)."""
        params: dict[str, Any] = {
            "contact_type_id": self.settings.contact_type_id,
            "attributes": ",".join(CONTACT_ATTRIBUTES),
        }
        if cursor:
            params["updated_or_created_since"] = cursor
        newest = cursor
        count = 0
        for page in self.client.iter_pages("/contacts", params, record="Sage contacts"):
            records: list[Customer] = []
            rejected: list[tuple[str, Exception]] = []
            for item in page["$items"]:
                ident = str(item.get("id") or "")
                try:
                    full = item if has_details(item) else self._contact_details(ident)
                    customer = contact_to_customer(full)
                except SageDataError as err:
                    rejected.append((ident, err))
                    continue
                records.append(customer)
                newest = _later(newest, customer.updated_at)
            count += len(records)
            last = not page.get("$next")
            yield Page(records, newest if last else cursor, rejected)
        _logger.info("Sage contacts pulled: %d since %s", count, cursor or "the start")

    def _contact_details(self, ident: str) -> dict[str, Any]:
        record = f"Sage contact {ident}"
        if not ident:
            raise SageDataError("list item without id", record=record, field="id")
        item = self.client.get(
            f"/contacts/{ident}",
            {"attributes": ",".join(CONTACT_ATTRIBUTES)},
            record=record,
        )
        if not isinstance(item, dict):
            raise SageDataError("contact answer is not an object", record=record)
        return item

    # -------------------------------------------------------- DeletionSource

    def pull_deletions(self, cursor: str | None) -> Iterator[Page[Deletion]]:
        """Contacts deleted after ``cursor`` (exclusive)."""
        params = {"deleted_since": cursor or _EPOCH}
        newest = cursor
        for page in self.client.iter_pages(
            "/contacts", params, record="Sage deleted contacts"
        ):
            records: list[Deletion] = []
            rejected: list[tuple[str, Exception]] = []
            for item in page["$items"]:
                try:
                    deletion = deleted_item_to_deletion(item, entity="contact")
                except SageDataError as err:
                    rejected.append((str(item.get("id") or ""), err))
                    continue
                records.append(deletion)
                newest = _later(newest, deletion.deleted_at)
            last = not page.get("$next")
            yield Page(records, newest if last else cursor, rejected)

    # ---------------------------------------------------------- CustomerSink

    def find_customer(self, customer: Customer) -> RemoteRef | None:
        """The Sage contact of ``customer``, by reference first, then by VAT."""
        reference = customer.external_code
        if reference:
            found = self._contact_by_reference(reference)
            if found:
                return found
        wanted = vat_key(customer.vat, customer.country_code) if customer.vat else None
        if not wanted:
            return None
        for item in self._search("/contacts", customer.name, CONTACT_ATTRIBUTES):
            country = (item.get("main_address") or {}).get("country") or {}
            key = vat_key(item.get("tax_number"), (country or {}).get("id"))
            if key == wanted:
                return RemoteRef(
                    external_id=str(item["id"]),
                    external_code=item.get("reference") or None,
                )
        return None

    def push_customer(
        self, customer: Customer, *, external_id: str | None, idempotency_key: str
    ) -> RemoteRef:
        """Create (after a lookup by reference) or update a customer contact.

        A new contact's ``reference`` is the customer's code, else one derived from
        the idempotency key, so the same key always finds the same contact. An
        update leaves the reference alone unless the customer carries a code.
        """
        record = f"customer {customer.external_id}"
        kind = self.settings.contact_type_id
        if external_id:
            body = customer_to_contact(
                customer, reference=customer.external_code, contact_type_id=kind
            )
            answer = self.client.put(f"/contacts/{external_id}", body, record=record)
            ident = str(answer.get("id") or external_id) if answer else external_id
            code = (answer or {}).get("reference") or customer.external_code
            return RemoteRef(external_id=ident, external_code=code)
        reference = customer.external_code or _reference_for(idempotency_key)
        body = customer_to_contact(customer, reference=reference, contact_type_id=kind)
        existing = self._contact_by_reference(reference)
        if existing:
            return existing
        answer, created = self._post_once_known(
            "/contacts",
            body,
            record=record,
            lookup=lambda: self._contact_by_reference(reference),
        )
        if isinstance(answer, RemoteRef):
            return answer
        return RemoteRef(
            external_id=str(answer["id"]), external_code=reference, created=created
        )

    def _contact_by_reference(self, reference: str) -> RemoteRef | None:
        for item in self._search("/contacts", reference, ("reference",)):
            if str(item.get("reference") or "").casefold() == reference.casefold():
                return RemoteRef(external_id=str(item["id"]), external_code=reference)
        return None

    # ----------------------------------------------------------- InvoiceSink

    def find_invoice(self, invoice: Invoice) -> RemoteRef | None:
        """The Sage sales invoice/credit note whose reference is the Odoo number."""
        endpoint = _endpoint(invoice)
        for item in self._search(endpoint, invoice.number, INVOICE_ATTRIBUTES):
            if str(item.get("reference") or "") == invoice.number:
                number = item.get("invoice_number") or item.get("credit_note_number")
                return RemoteRef(external_id=str(item["id"]), external_code=number)
        return None

    def push_invoice(self, invoice: Invoice, *, idempotency_key: str) -> RemoteRef:
        """Book a posted Odoo invoice, unless a lookup by reference finds it."""
        existing = self.find_invoice(invoice)
        if existing:
            return existing
        contact_id = self._buyer_contact(invoice)
        endpoint, body = invoice_to_sales_document(
            invoice, contact_id=contact_id, settings=self.settings
        )
        answer, created = self._post_once_known(
            endpoint,
            body,
            record=f"invoice {invoice.number}",
            lookup=lambda: self.find_invoice(invoice),
        )
        if isinstance(answer, RemoteRef):
            return answer
        number = answer.get("invoice_number") or answer.get("credit_note_number")
        _logger.info("Sage %s booked", endpoint.strip("/").rstrip("s"))
        return RemoteRef(
            external_id=str(answer["id"]), external_code=number, created=created
        )

    def _buyer_contact(self, invoice: Invoice) -> str:
        if invoice.buyer_external_id:
            return invoice.buyer_external_id
        buyer: Party = invoice.buyer
        record = f"invoice {invoice.number}"
        country = buyer.address.country_code
        wanted = vat_key(buyer.vat, country) if buyer.vat else None
        candidates = list(self._search("/contacts", buyer.name, CONTACT_ATTRIBUTES))
        if wanted:
            for item in candidates:
                item_country = (item.get("main_address") or {}).get("country") or {}
                if vat_key(item.get("tax_number"), item_country.get("id")) == wanted:
                    return str(item["id"])
        named = [
            item
            for item in candidates
            if str(item.get("name") or "").casefold() == buyer.name.casefold()
            and not item.get("tax_number")
            and not wanted
        ]
        if len(named) == 1:
            return str(named[0]["id"])
        raise SageDataError(
            "the buyer has no Sage contact (push the customer first)",
            record=record,
            field="buyer.vat" if wanted else "buyer.name",
        )

    # --------------------------------------------------------- PaymentSource

    def pull_payments(self, cursor: str | None) -> Iterator[Page[PaymentStatus]]:
        """Payment state of sales invoices and credit notes changed since ``cursor``."""
        params: dict[str, Any] = {"attributes": ",".join(INVOICE_ATTRIBUTES)}
        if cursor:
            params["updated_or_created_since"] = cursor
        newest = cursor
        endpoints = ("/sales_invoices", "/sales_credit_notes")
        for index, endpoint in enumerate(endpoints):
            for page in self.client.iter_pages(
                endpoint, params, record=f"Sage {endpoint}"
            ):
                records: list[PaymentStatus] = []
                rejected: list[tuple[str, Exception]] = []
                for item in page["$items"]:
                    try:
                        status = invoice_to_payment_status(item)
                    except SageDataError as err:
                        rejected.append((str(item.get("id") or ""), err))
                        continue
                    records.append(status)
                    newest = _later(newest, status.updated_at)
                last = not page.get("$next") and index == len(endpoints) - 1
                yield Page(records, newest if last else cursor, rejected)

    # ------------------------------------------------------------- helpers

    def _search(
        self, endpoint: str, text: str, attributes: tuple[str, ...]
    ) -> Iterator[dict[str, Any]]:
        params = {"search": text, "attributes": ",".join(attributes)}
        for page in self.client.iter_pages(endpoint, params, record=f"Sage {endpoint}"):
            yield from page["$items"]

    def _post_once_known(
        self,
        endpoint: str,
        body: Mapping[str, Any],
        *,
        record: str,
        lookup: Callable[[], RemoteRef | None],
    ) -> tuple[dict[str, Any] | RemoteRef, bool]:
        """POST; after an unknown outcome, look up before posting again (bounded).

        Returns the created object (and ``True``) or the reference found by the
        lookup (and ``False``).
        """
        attempts = self.settings.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                answer = self.client.post(endpoint, body, record=record)
            except RetryableError as err:
                if attempt == attempts:
                    raise
                _logger.warning(
                    "POST %s for %s failed (%s); looking it up before any re-send",
                    endpoint,
                    record,
                    type(err).__name__,
                )
                self._sleep(self.settings.backoff_seconds * attempt)
                found = lookup()
                if found is not None:
                    return found, False
                continue
            if not isinstance(answer, dict) or "id" not in answer:
                raise SageDataError(
                    "create answer without id",
                    record=record,
                    details={"answer": answer},
                )
            return answer, True
        raise AssertionError("unreachable")  # pragma: no cover


def _endpoint(invoice: Invoice) -> str:
    return (
        "/sales_credit_notes"
        if invoice.document_type == "credit_note"
        else ("/sales_invoices")
    )


def _reference_for(idempotency_key: str) -> str:
    """A short, stable contact reference derived from the idempotency key."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()
    return "OD" + digest[:8].upper()
