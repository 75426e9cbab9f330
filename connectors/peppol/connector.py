"""The Peppol connector: canonical invoices out, incoming e-invoices in.

Built by :func:`create` from a ``crm.sync.backend`` of kind ``peppol``. It offers
the kernel capabilities

- :class:`~sync_daemon.kernel.protocol.InvoiceSink`: ``find_invoice`` looks the
  number up at the access point before any (re-)send; ``push_invoice`` builds the
  UBL, validates it (XSD + CEN + PEPPOL) and refuses with :class:`ValidationFailed`
  (a permanent error carrying the rule ids) on any fatal assert, so an invalid
  document never leaves; only then it submits with the idempotency key;
- :class:`~sync_daemon.kernel.protocol.EInvoiceSource`: ``pull_einvoices`` reads
  the inbox, parses and validates each document and yields canonical invoices
  (the original XML attached); documents that are unsafe, unreadable or invalid come
  back in ``Page.rejected`` with the reason; ``acknowledge`` marks documents read;

plus ``participant_status`` (SML/SMP readiness of a partner) and
``delivery_status`` (where a sent document is).

Settings (the backend's section of the daemon configuration):

- ``transport``: ``rest`` (default) or ``directory``;
- ``base_url``, ``api_key``: REST access point API root and key;
- ``outbox_dir``, ``inbox_dir``: directory transport folders;
- ``rules_dir``: validation artefacts (default ``$PEPPOL_RULES_DIR`` / shared copy);
- ``sml_zone``: SML DNS zone (default the production zone);
- ``dns_nameserver``, ``dns_port``: ask only this DNS server for NAPTR records;
- ``smp_url``: skip DNS and use this SMP for every lookup;
- ``timeout``: seconds per remote call (default 30);
- ``sending``: ``daemon`` (default), or ``odoo`` when Odoo's own account_peppol
  sends; then ``push_invoice`` refuses, so nothing is sent twice;
- ``odoo_account_peppol``: true when the daemon found account_peppol active for
  the company; the factory then refuses to build unless ``sending`` is set;
- ``page_size``: inbox documents per page (default 50).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync_daemon.kernel.errors import (
    AuthError,
    ConfigurationError,
    PermanentError,
    SyncError,
)
from sync_daemon.kernel.models import Invoice, RemoteRef
from sync_daemon.kernel.protocol import ConnectorContext, HealthReport, Page

from .build import build_document, party_identifiers
from .discovery import SML_PRODUCTION, Discovery, ParticipantStatus
from .errors import DocumentError, UnsafeDocument, ValidationFailed
from .parse import parse_tree
from .safexml import parse_xml
from .transport import AccessPoint, DirectoryTransport, RestAccessPoint, Submission
from .validate import ValidationResult, Validator, get_validator

__all__ = ["PeppolConnector", "PreparedDocument", "create"]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedDocument:
    """A built and validated outgoing document."""

    number: str
    document: bytes
    recipient: str
    validation: ValidationResult


class PeppolConnector:
    """Send and receive Peppol BIS Billing 3 documents through an access point."""

    kind = "peppol"

    def __init__(
        self,
        *,
        access_point: AccessPoint,
        validator: Validator | Callable[[], Validator] | None = None,
        discovery: Discovery | None = None,
        sending: str = "daemon",
        page_size: int = 50,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if sending not in {"daemon", "odoo"}:
            raise ConfigurationError(
                f"sending must be 'daemon' or 'odoo', not {sending!r}",
                field="sending",
            )
        self.access_point = access_point
        self._validator = validator
        self.discovery = discovery
        self.sending = sending
        self.page_size = max(1, page_size)
        self._clock = clock or (lambda: datetime.now(UTC))

    # ----------------------------------------------------------------- basics

    @property
    def validator(self) -> Validator:
        """The compiled validator, built on first use (compiling costs ~1 s)."""
        if self._validator is None:
            self._validator = get_validator()
        elif not isinstance(self._validator, Validator):
            self._validator = self._validator()
        return self._validator

    def check(self) -> HealthReport:
        try:
            description = self.access_point.ping()
        except AuthError as err:
            return HealthReport("invalid", f"access point refused us: {err}")
        except SyncError as err:
            return HealthReport("unknown", f"access point not reachable: {err}")
        try:
            rules = self.validator.rules_dir
        except PermanentError as err:
            return HealthReport(
                "valid", f"{description}; validation unavailable: {err}"
            )
        return HealthReport(
            "valid",
            f"{description}; rules from {rules}",
            {"sending": self.sending},
        )

    def close(self) -> None:
        self.access_point.close()
        if self.discovery is not None:
            self.discovery.close()

    # --------------------------------------------------------------- outbound

    def prepare(self, invoice: Invoice) -> PreparedDocument:
        """Build and validate without sending; raises on any fatal assert."""
        record = f"invoice {invoice.number}"
        document = build_document(invoice)
        result = self.validator.validate(document, source=record)
        result.raise_for_fatal(record=record)
        recipient = party_identifiers(
            invoice.buyer, record=f"{record} buyer"
        ).participant_id
        return PreparedDocument(invoice.number, document, recipient, result)

    def find_invoice(self, invoice: Invoice) -> RemoteRef | None:
        found = self.access_point.find(invoice.number)
        if found is None:
            return None
        return RemoteRef(external_id=found.id, external_code=found.status)

    def push_invoice(self, invoice: Invoice, *, idempotency_key: str) -> RemoteRef:
        """Build → validate → send; an already sent number is not sent again.

        :raises InvoiceDataError: the invoice lacks what the document needs.
        :raises ValidationFailed: fatal asserts; ``rules`` lists their ids.
        :raises ConfigurationError: Odoo owns sending for this backend.
        """
        if self.sending != "daemon":
            raise ConfigurationError(
                "Odoo's account_peppol sends this company's invoices; the daemon "
                "does not send (setting 'sending' = 'odoo')",
                record=f"invoice {invoice.number}",
                field="sending",
            )
        existing = self.find_invoice(invoice)
        if existing is not None:
            _logger.info(
                "peppol invoice %s already at the access point as %s",
                invoice.number,
                existing.external_id,
            )
            return existing
        prepared = self.prepare(invoice)
        submission = self.access_point.submit(
            prepared.document,
            number=invoice.number,
            recipient=prepared.recipient,
            kind=invoice.document_type,
            idempotency_key=idempotency_key,
        )
        return RemoteRef(
            external_id=submission.id, external_code=submission.status, created=True
        )

    def delivery_status(self, external_id: str) -> Submission:
        """Where a sent document is (``accepted``, ``delivered``, ``failed``…)."""
        return self.access_point.status(external_id)

    # ---------------------------------------------------------------- inbound

    def read_document(self, data: bytes, *, source: str) -> Invoice:
        """Parse and validate one incoming document; raise when it is not usable."""
        tree = parse_xml(data, source=source)
        result = self.validator.validate(tree, source=source)
        result.raise_for_fatal(record=source)
        invoice = parse_tree(tree, source=source)
        attachment = (f"{invoice.number}.xml", "application/xml", bytes(data))
        return invoice.model_copy(
            update={
                "external_id": source,
                "attachments": (attachment, *invoice.attachments),
            }
        )

    def pull_einvoices(self, cursor: str | None) -> Iterator[Page[Invoice]]:
        """Unread inbox documents, a page at a time.

        The inbox holds only documents not yet acknowledged, so ``cursor`` is not
        needed to resume; each page's cursor is the id of its last document. A
        rejected document stays unread until the engine acknowledges it (after
        recording the issue), so nothing is lost if the run stops in between.
        """
        items = self.access_point.inbox()
        for start in range(0, len(items), self.page_size):
            batch = items[start : start + self.page_size]
            records: list[Invoice] = []
            rejected: list[tuple[str, Exception]] = []
            for item in batch:
                try:
                    records.append(self.read_document(item.document, source=item.id))
                except (UnsafeDocument, DocumentError, ValidationFailed) as err:
                    _logger.info("peppol inbox document %s refused: %s", item.id, err)
                    rejected.append((item.id, err))
            yield Page(records=records, cursor=batch[-1].id, rejected=rejected)

    def acknowledge(self, external_ids: list[str]) -> None:
        for item_id in external_ids:
            self.access_point.mark_read(item_id)

    # -------------------------------------------------------------- discovery

    def participant_status(
        self,
        peppol_id: str | None = None,
        *,
        vat: str | None = None,
        company_registry: str | None = None,
        registry_scheme: str | None = None,
        country: str | None = None,
    ) -> ParticipantStatus:
        """Can this partner receive Peppol BIS 3 invoices? (SML/SMP, then AP).

        When the SML/SMP answer is unknown, the access point's own participant
        check decides if it can.
        """
        if self.discovery is None:
            self.discovery = Discovery(clock=self._clock)
        status = self.discovery.participant_status(
            peppol_id,
            vat=vat,
            company_registry=company_registry,
            registry_scheme=registry_scheme,
            country=country,
        )
        if status.state != "unknown" or not status.participant_id:
            return status
        try:
            answer = self.access_point.check_participant(status.participant_id)
        except SyncError as err:
            _logger.info("access point participant check failed: %s", err)
            return status
        if answer is None:
            return status
        return ParticipantStatus(
            "can_receive" if answer else "cannot",
            self._clock(),
            status.participant_id,
            ("invoice", "credit_note") if answer else (),
            reason="answered by the access point",
            tried=status.tried,
        )


def _setting(settings: Mapping[str, Any], name: str) -> Any:
    value = settings.get(name)
    if value in (None, ""):
        raise ConfigurationError(f"setting {name!r} is required", field=name)
    return value


def create(ctx: ConnectorContext) -> PeppolConnector:
    """Connector factory registered under ``crm_sync.connectors`` as ``peppol``."""
    settings = ctx.settings
    if settings.get("odoo_account_peppol") and not settings.get("sending"):
        # Odoo 18 can send through its own access point: never both at once.
        raise ConfigurationError(
            "Odoo's account_peppol is active for this company: set 'sending' to "
            "'odoo' (Odoo sends, the daemon only receives) or 'daemon' (disable "
            "sending in Odoo) before starting this backend",
            record=f"crm.sync.backend {ctx.backend_id}",
            field="sending",
        )
    timeout = float(settings.get("timeout") or 30.0)
    transport = settings.get("transport") or "rest"
    access_point: AccessPoint
    if transport == "rest":
        access_point = RestAccessPoint(
            str(_setting(settings, "base_url")),
            api_key=str(_setting(settings, "api_key")),
            timeout=timeout,
        )
    elif transport == "directory":
        access_point = DirectoryTransport(
            _setting(settings, "outbox_dir"), _setting(settings, "inbox_dir")
        )
    else:
        raise ConfigurationError(
            f"unknown Peppol transport {transport!r} (rest or directory)",
            field="transport",
        )
    rules_dir = settings.get("rules_dir")
    discovery = Discovery(
        zone=str(settings.get("sml_zone") or SML_PRODUCTION),
        nameserver=settings.get("dns_nameserver"),
        nameserver_port=int(settings.get("dns_port") or 53),
        smp_url=settings.get("smp_url"),
        timeout=timeout,
        clock=ctx.clock,
    )
    return PeppolConnector(
        access_point=access_point,
        validator=lambda: get_validator(rules_dir),
        discovery=discovery,
        sending=str(settings.get("sending") or "daemon"),
        page_size=int(settings.get("page_size") or 50),
        clock=ctx.clock,
    )
