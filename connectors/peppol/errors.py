"""Errors of the Peppol connector, rooted at :class:`PeppolError`.

Each class mixes the connector root with one branch of the kernel's error tree, so
callers can catch ``PeppolError`` (anything from this package) or the kernel classes
(``RetryableError``, ``PermanentError``…) without knowing this package::

    PeppolError
    ├── UnsafeDocument        (DataError)          DTD, entities, oversize input
    ├── DocumentError         (DataError)          not a UBL Invoice/CreditNote
    ├── InvoiceDataError      (DataError)          the canonical invoice cannot be built
    ├── ValidationFailed      (DataError)          fatal Peppol/CEN/XSD asserts
    ├── RulesNotFound         (ConfigurationError) the official artefacts are missing
    ├── AccessPointRejected   (RemoteRejected)     4xx from the access point
    ├── AccessPointAuthError  (AuthError)          401/403 from the access point
    ├── AccessPointNotFound   (NotFound)           404 for a document or participant
    ├── AccessPointRateLimited(RateLimited)        429
    ├── AccessPointUnavailable(RemoteUnavailable)  5xx
    ├── AccessPointTimeout    (RemoteTimeout)
    └── AccessPointNetworkError(NetworkError)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sync_daemon.kernel.errors import (
    AuthError,
    ConfigurationError,
    DataError,
    NetworkError,
    NotFound,
    RateLimited,
    RemoteRejected,
    RemoteTimeout,
    RemoteUnavailable,
    SyncError,
)

__all__ = [
    "AccessPointAuthError",
    "AccessPointNetworkError",
    "AccessPointNotFound",
    "AccessPointRateLimited",
    "AccessPointRejected",
    "AccessPointTimeout",
    "AccessPointUnavailable",
    "DocumentError",
    "InvoiceDataError",
    "PeppolError",
    "RulesNotFound",
    "UnsafeDocument",
    "ValidationFailed",
]


class PeppolError(SyncError):
    """Root of every error raised on purpose by the Peppol connector."""


class UnsafeDocument(PeppolError, DataError):
    """The XML was refused before parsing: DTD, entity declarations or too large."""


class DocumentError(PeppolError, DataError):
    """The XML is well-formed but is not a usable UBL Invoice or CreditNote."""


class InvoiceDataError(PeppolError, DataError):
    """The canonical invoice lacks something a Peppol document needs."""


class ValidationFailed(PeppolError, DataError):
    """The document has fatal asserts; ``rules`` lists their ids, in document order.

    ``details["errors"]`` carries every failed assert as a dict (rule, flag, message,
    location) so that the daemon can write them into a ``crm.sync.issue``.
    """

    def __init__(
        self,
        message: str,
        *,
        rules: Iterable[str],
        errors: Iterable[dict[str, str]] = (),
        **kwargs: Any,
    ) -> None:
        self.rules = list(dict.fromkeys(rules))
        details = dict(kwargs.pop("details", None) or {})
        details.setdefault("rules", self.rules)
        details.setdefault("errors", list(errors))
        super().__init__(message, details=details, **kwargs)


class RulesNotFound(PeppolError, ConfigurationError):
    """The UBL schemas or the compiled Schematron stylesheets cannot be found."""


class RulesUnusable(RulesNotFound):
    """A schema or stylesheet is where it should be but cannot be loaded."""


class AccessPointRejected(PeppolError, RemoteRejected):
    """The access point refused the request (4xx); ``rules`` when it validated."""

    def __init__(
        self, message: str, *, rules: Iterable[str] = (), **kwargs: Any
    ) -> None:
        self.rules = list(rules)
        details = dict(kwargs.pop("details", None) or {})
        if self.rules:
            details.setdefault("rules", self.rules)
        super().__init__(message, details=details, **kwargs)


class AccessPointAuthError(PeppolError, AuthError):
    """The access point refused our credentials."""


class AccessPointNotFound(PeppolError, NotFound):
    """The access point does not know this document or participant."""


class AccessPointRateLimited(PeppolError, RateLimited):
    """The access point asked us to slow down."""


class AccessPointUnavailable(PeppolError, RemoteUnavailable):
    """The access point answered with a server error."""


class AccessPointTimeout(PeppolError, RemoteTimeout):
    """The access point did not answer in time."""


class AccessPointNetworkError(PeppolError, NetworkError):
    """The access point could not be reached."""
