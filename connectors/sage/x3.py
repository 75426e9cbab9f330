"""Sage X3 connector (classic SOAP web services): customers and sales invoices.

Built by :func:`create` (entry point ``crm_sync.connectors: sage_x3``); implements
the kernel protocols ``Connector``, ``CustomerSource``, ``CustomerSink`` and
``InvoiceSink`` over the publications named in the settings (customer ``BPC`` and
sales invoice ``SIH`` by default).

- customers are listed with ``query`` (key, name, VAT, ``UPDDATTIM``) and those
  changed since the cursor (inclusive ISO timestamp) are ``read`` in full;
- a customer is looked up (by code, else by VAT number, else by the optional
  reference field) before any ``save``; after a ``save`` whose outcome is unknown
  (timeout, reset, busy pool) the lookup runs again and only a negative answer
  allows another ``save`` — at most ``max_attempts`` in all;
- an answer with ``status`` 0 raises :class:`~connectors.sage.errors.X3DataError`
  with X3's own message text; nothing is linked then;
- invoices are looked up by the SIH field that carries Odoo's number
  (``invoice_reference_field``) before any ``save``, under the same rule.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import requests
from pydantic import ValidationError

from sync_daemon.kernel.errors import RetryableError, SyncError
from sync_daemon.kernel.identifiers import compact_vat, vat_key
from sync_daemon.kernel.models import Customer, Invoice, RemoteRef
from sync_daemon.kernel.protocol import ConnectorContext, HealthReport, Page

from .errors import (
    SageAuthError,
    SageConfigurationError,
    SageDataError,
    X3DataError,
)
from .settings import SageX3Settings
from .x3_client import X3Client, X3Result
from .x3_payloads import (
    bpc_to_customer,
    customer_to_bpc,
    invoice_to_sih,
    parse_object_xml,
    parse_query_lines,
)

__all__ = ["KIND", "SageX3Connector", "create", "load_settings"]

_logger = logging.getLogger(__name__)

KIND = "sage_x3"


def load_settings(raw: Mapping[str, Any]) -> SageX3Settings:
    """Validate a backend section, naming the first wrong field on failure."""
    try:
        return SageX3Settings.model_validate(dict(raw))
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise SageConfigurationError(
            f"invalid Sage X3 settings: {first['msg']}",
            record="sage_x3 settings",
            field=field or None,
        ) from err


def create(ctx: ConnectorContext) -> SageX3Connector:
    """Connector factory registered under ``crm_sync.connectors``."""
    return SageX3Connector(load_settings(ctx.settings), sleep=ctx.sleep)


class SageX3Connector:
    """One X3 folder, seen through the kernel protocols."""

    kind = KIND

    def __init__(
        self,
        settings: SageX3Settings,
        *,
        sleep: Callable[[float], None],
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self.client = X3Client(settings, sleep=sleep, session=session)

    # ------------------------------------------------------------- Connector

    def check(self) -> HealthReport:
        """Ask X3 for the customer publication's description."""
        name = self.settings.customer_publication
        try:
            self.client.get_description(name)
        except SageAuthError as err:
            return HealthReport("invalid", err.message)
        except SyncError as err:
            return HealthReport("unknown", str(err), {"error": type(err).__name__})
        return HealthReport(
            "valid",
            f"X3 pool {self.settings.pool_alias} answers for publication {name}",
            {"pool_alias": self.settings.pool_alias},
        )

    def close(self) -> None:
        self.client.close()

    # -------------------------------------------------------- CustomerSource

    def pull_customers(self, cursor: str | None) -> Iterator[Page[Customer]]:
        """Customers whose ``UPDDATTIM`` is at or after ``cursor``, one page."""
        public = self.settings.customer_publication
        size = self.settings.query_list_size
        lines = parse_query_lines(self.client.query(public, {}, size).result_xml)
        if len(lines) >= size:
            _logger.warning(
                "X3 query %s returned %d rows, the configured list size: raise "
                "query_list_size or some customers are not seen",
                public,
                size,
            )
        newest = cursor
        records: list[Customer] = []
        rejected: list[tuple[str, Exception]] = []
        for line in lines:
            stamp = line.get("UPDDATTIM") or ""
            if cursor and stamp and stamp < cursor:
                continue
            code = line.get("BPCNUM", "")
            try:
                result = self.client.read(public, {"BPCNUM": code})
                customer = bpc_to_customer(
                    parse_object_xml(result.result_xml), record=f"X3 customer {code}"
                )
            except (SageDataError, X3DataError) as err:
                rejected.append((code, err))
                continue
            records.append(customer)
            if stamp and (newest is None or stamp > newest):
                newest = stamp
        _logger.info(
            "X3 customers pulled: %d since %s", len(records), cursor or "start"
        )
        yield Page(records, newest, rejected)

    # ---------------------------------------------------------- CustomerSink

    def find_customer(self, customer: Customer) -> RemoteRef | None:
        """The X3 customer by code, then VAT number, then reference field."""
        public = self.settings.customer_publication
        if customer.external_code:
            try:
                found = self.client.read(public, {"BPCNUM": customer.external_code})
            except X3DataError:
                found = None
            if found is not None:
                return RemoteRef(
                    external_id=customer.external_code,
                    external_code=customer.external_code,
                )
        wanted = vat_key(customer.vat, customer.country_code) if customer.vat else None
        if wanted:
            keys = {"EECNUM": compact_vat(customer.vat, customer.country_code)}
            for line in self._query(public, keys):
                if vat_key(line.get("EECNUM"), line.get("CRY")) == wanted:
                    code = line["BPCNUM"]
                    return RemoteRef(external_id=code, external_code=code)
        return None

    def _find_by_reference(self, reference: str) -> RemoteRef | None:
        field = self.settings.customer_reference_field
        if not field:
            return None
        for line in self._query(self.settings.customer_publication, {field: reference}):
            code = line.get("BPCNUM", "")
            if code:
                return RemoteRef(external_id=code, external_code=code)
        return None

    def push_customer(
        self, customer: Customer, *, external_id: str | None, idempotency_key: str
    ) -> RemoteRef:
        """Update by code, or create after a lookup; status 0 raises X3DataError."""
        public = self.settings.customer_publication
        record = f"customer {customer.external_id}"
        if external_id:
            xml = customer_to_bpc(customer, settings=self.settings, code=external_id)
            self._with_record(
                lambda: self.client.modify(public, {"BPCNUM": external_id}, xml),
                record,
            )
            return RemoteRef(external_id=external_id, external_code=external_id)
        reference = _reference_for(idempotency_key)

        def lookup() -> RemoteRef | None:
            return self.find_customer(customer) or self._find_by_reference(reference)

        existing = lookup()
        if existing:
            return existing
        field = self.settings.customer_reference_field
        xml = customer_to_bpc(
            customer,
            settings=self.settings,
            extra={field: reference} if field else None,
        )
        can_look_up = bool(customer.vat or self.settings.customer_reference_field)
        result = self._save_once_known(
            public, xml, record=record, lookup=lookup if can_look_up else None
        )
        if isinstance(result, RemoteRef):
            return result
        code = parse_object_xml(result.result_xml).get("BPCNUM", "")
        if not code:
            raise SageDataError("X3 saved the customer without BPCNUM", record=record)
        _logger.info("X3 customer created")
        return RemoteRef(external_id=code, external_code=code, created=True)

    # ----------------------------------------------------------- InvoiceSink

    def find_invoice(self, invoice: Invoice) -> RemoteRef | None:
        """The X3 sales invoice whose reference field holds the Odoo number."""
        keys = {self.settings.invoice_reference_field: invoice.number}
        for line in self._query(self.settings.invoice_publication, keys):
            if line.get("NUM"):
                return RemoteRef(external_id=line["NUM"], external_code=line["NUM"])
        return None

    def push_invoice(self, invoice: Invoice, *, idempotency_key: str) -> RemoteRef:
        """Book a posted Odoo invoice unless a lookup by reference finds it."""
        existing = self.find_invoice(invoice)
        if existing:
            return existing
        record = f"invoice {invoice.number}"
        code = invoice.buyer_external_id
        if not code and invoice.buyer.vat:
            buyer = Customer(
                external_id=record,
                name=invoice.buyer.name,
                vat=invoice.buyer.vat,
                address=invoice.buyer.address,
            )
            found = self.find_customer(buyer)
            code = found.external_id if found else None
        if not code:
            raise SageDataError(
                "the buyer has no X3 customer (push the customer first)",
                record=record,
                field="buyer.vat",
            )
        xml = invoice_to_sih(invoice, customer_code=code, settings=self.settings)
        result = self._save_once_known(
            self.settings.invoice_publication,
            xml,
            record=record,
            lookup=lambda: self.find_invoice(invoice),
        )
        if isinstance(result, RemoteRef):
            return result
        number = parse_object_xml(result.result_xml).get("NUM", "")
        if not number:
            raise SageDataError("X3 saved the invoice without NUM", record=record)
        return RemoteRef(external_id=number, external_code=number, created=True)

    # ------------------------------------------------------------- helpers

    def _query(self, public: str, keys: Mapping[str, str]) -> list[dict[str, str]]:
        result = self.client.query(public, keys, self.settings.query_list_size)
        return parse_query_lines(result.result_xml)

    def _with_record(self, call: Callable[[], X3Result], record: str) -> X3Result:
        try:
            return call()
        except X3DataError as err:
            raise X3DataError(
                err.message, record=record, messages=err.messages, details=err.details
            ) from err

    def _save_once_known(
        self,
        public: str,
        xml: str,
        *,
        record: str,
        lookup: Callable[[], RemoteRef | None] | None,
    ) -> X3Result | RemoteRef:
        """``save``; after an unknown outcome, look up by key before saving again."""
        attempts = self.settings.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return self._with_record(lambda: self.client.save(public, xml), record)
            except RetryableError as err:
                if lookup is None:
                    # No key to look the object up by: never save it twice.
                    err.details["outcome_unknown"] = True
                    raise
                if attempt == attempts:
                    raise
                _logger.warning(
                    "X3 save %s for %s failed (%s); looking it up before any re-send",
                    public,
                    record,
                    type(err).__name__,
                )
                self._sleep(self.settings.backoff_seconds * attempt)
                found = lookup()
                if found is not None:
                    return found
        raise AssertionError("unreachable")  # pragma: no cover


def _reference_for(idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()
    return "OD" + digest[:10].upper()
