"""The contract between the sync engine and a connector.

A connector is an object built by a factory registered under the entry-point group
``crm_sync.connectors`` (name = backend kind: ``exact``, ``sage_accounting``,
``sage_x3``, ``peppol``). The factory receives a :class:`ConnectorContext` and
returns an object implementing :class:`Connector` plus any of the capability
protocols below; the engine checks which with ``isinstance`` and runs only those
streams.

Cursors are opaque strings owned by the connector (an Exact timestamp, a Sage
``updated_or_created_since`` value…). A page's cursor is where to resume *after* the
engine has committed that page; the engine stores it only then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from .models import Customer, Deletion, Invoice, PaymentStatus, RemoteRef

__all__ = [
    "AuthorizationCodeFlow",
    "Connector",
    "ConnectorContext",
    "ConnectorFactory",
    "CustomerSink",
    "CustomerSource",
    "DeletionSource",
    "DeliveryAnswer",
    "DeliveryTracker",
    "EInvoiceSource",
    "HealthReport",
    "InvoiceSink",
    "MarketingSink",
    "Page",
    "ParticipantAnswer",
    "ParticipantLookup",
    "PaymentSource",
    "TokenSet",
    "TokenStore",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of remote records and the cursor to resume after it."""

    records: list[T]
    cursor: str | None
    #: Records of this page that could not be mapped: (external id, error).
    rejected: list[tuple[str, Exception]] = field(default_factory=list)


class TokenSet(BaseModel):
    """OAuth tokens of one backend, as persisted by the token store."""

    model_config = ConfigDict(frozen=True)

    # Secrets stay out of repr() so that a logged or raised TokenSet leaks nothing.
    access_token: str = Field(repr=False)
    refresh_token: str | None = Field(default=None, repr=False)
    issued_at: datetime
    expires_at: datetime
    refresh_expires_at: datetime | None = None
    base_url: str | None = None
    extra: dict[str, Any] = {}


class TokenStore(Protocol):
    """Persistent, process-safe storage of one backend's tokens.

    ``lock`` is held around read-refresh-save so that two workers never spend the same
    single-use refresh token; ``save`` is atomic and happens before the new access
    token is used.
    """

    def load(self, key: str) -> TokenSet | None: ...

    def save(self, key: str, tokens: TokenSet) -> None: ...

    def lock(self, key: str) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class HealthReport:
    """What ``check`` found: credentials state and a human sentence."""

    credentials_state: str  # unknown | missing | valid | invalid | needs_reauth
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConnectorContext:
    """Everything a connector factory may use; nothing global.

    :param backend_id: the ``crm.sync.backend`` id in Odoo.
    :param settings: the backend's section of the daemon configuration (credentials,
        URLs, division/business ids…), already validated by the daemon.
    :param tokens: the token store shared by all workers of this daemon.
    :param clock: returns the current UTC time; tests pass a fake.
    :param sleep: waits; tests pass a fake that advances ``clock``.
    """

    backend_id: int
    settings: Mapping[str, Any]
    tokens: TokenStore
    clock: Callable[[], datetime]
    sleep: Callable[[float], None]


@runtime_checkable
class Connector(Protocol):
    """What every connector offers."""

    kind: str

    def check(self) -> HealthReport:
        """Reach the remote with the stored credentials and say how it went."""
        ...

    def close(self) -> None:
        """Release sessions and files."""
        ...


@runtime_checkable
class CustomerSource(Protocol):
    """Customers changed in the remote since a cursor (``None``: everything)."""

    def pull_customers(self, cursor: str | None) -> Iterator[Page[Customer]]: ...


@runtime_checkable
class DeletionSource(Protocol):
    """Records deleted in the remote since a cursor."""

    def pull_deletions(self, cursor: str | None) -> Iterator[Page[Deletion]]: ...


@runtime_checkable
class CustomerSink(Protocol):
    """Create or update customers in the remote."""

    def find_customer(self, customer: Customer) -> RemoteRef | None:
        """Look the customer up by its identifiers or code before any create."""
        ...

    def push_customer(
        self, customer: Customer, *, external_id: str | None, idempotency_key: str
    ) -> RemoteRef: ...


@runtime_checkable
class MarketingSink(Protocol):
    """A remote that keeps a marketing (mailing) opt-out flag on its customers.

    The engine calls it for consent withdrawals and expiries recorded in Odoo's
    consent ledger (``crm.consent.event.daemon_consent_changes``) of partners
    linked to a remote record; it only ever excludes, it never opts a customer in.
    """

    def exclude_from_marketing(self, external_id: str, *, purpose: str) -> None:
        """Set the remote record's opt-out flag; repeating it changes nothing."""
        ...


@runtime_checkable
class InvoiceSink(Protocol):
    """Send posted Odoo invoices and credit notes to the remote."""

    def find_invoice(self, invoice: Invoice) -> RemoteRef | None:
        """Look the invoice up by its reference; called before any (re-)send."""
        ...

    def push_invoice(self, invoice: Invoice, *, idempotency_key: str) -> RemoteRef: ...


@runtime_checkable
class PaymentSource(Protocol):
    """Payment status of invoices, changed since a cursor."""

    def pull_payments(self, cursor: str | None) -> Iterator[Page[PaymentStatus]]: ...


@runtime_checkable
class EInvoiceSource(Protocol):
    """Incoming e-invoices (vendor bills) waiting in an inbox."""

    def pull_einvoices(self, cursor: str | None) -> Iterator[Page[Invoice]]: ...

    def acknowledge(self, external_ids: list[str]) -> None:
        """Mark documents as taken once the engine has stored them."""
        ...


@runtime_checkable
class AuthorizationCodeFlow(Protocol):
    """Optional: a connector whose remote uses the OAuth2 authorization-code flow.

    ``crm-sync auth <backend-id>`` drives it: it asks for :meth:`authorization_url`
    with a ``redirect_uri`` on 127.0.0.1 and a random ``state``, sends the person's
    browser there, receives the redirect once on a one-shot local listener, checks
    ``state``, and hands the ``code`` to :meth:`exchange_code`. The connector
    exchanges it at its token endpoint and saves the tokens through the
    :class:`TokenStore` before returning them. Codes are single-use and short-lived:
    ``exchange_code`` is called at most once per code and never retried.
    """

    def authorization_url(self, *, redirect_uri: str, state: str) -> str: ...

    def exchange_code(self, *, code: str, redirect_uri: str) -> TokenSet: ...


class ParticipantAnswer(Protocol):
    """What a participant lookup found (read-only)."""

    @property
    def state(self) -> str:
        """``can_receive``, ``cannot`` or ``unknown`` (the directory failed)."""
        ...

    @property
    def checked_at(self) -> datetime: ...

    @property
    def participant_id(self) -> str | None:
        """The participant id (``scheme:id``) that answered best."""
        ...


@runtime_checkable
class ParticipantLookup(Protocol):
    """Optional: a connector that can tell whether a partner receives e-invoices.

    The engine caches the answer on the commercial partner in Odoo and sends
    invoices only to partners that can receive them.
    """

    def participant_status(
        self,
        peppol_id: str | None = None,
        *,
        vat: str | None = None,
        company_registry: str | None = None,
        country: str | None = None,
    ) -> ParticipantAnswer: ...


class DeliveryAnswer(Protocol):
    """Where a sent document is (read-only)."""

    @property
    def status(self) -> str:
        """``accepted`` (queued), ``sent``/``delivered`` or ``failed``."""
        ...

    @property
    def message(self) -> str: ...


@runtime_checkable
class DeliveryTracker(Protocol):
    """Optional: a sink whose documents are delivered later than they are sent."""

    def delivery_status(self, external_id: str) -> DeliveryAnswer: ...


ConnectorFactory = Callable[[ConnectorContext], Connector]
