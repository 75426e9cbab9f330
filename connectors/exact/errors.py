"""Errors of the Exact Online connector.

Every class mixes :class:`ExactError` (the connector's root) with one class of the
kernel error tree, so callers may catch either ``ExactError`` or the kernel branch
(``RetryableError``, ``PermanentError``, ``NeedsReauthorisation``…). The facts an
admin needs travel on the exception: ``record`` (``Exact account 1001``), ``field``,
and in ``details`` the HTTP status, Exact's error message and the division.
"""

from __future__ import annotations

from sync_daemon.kernel.errors import (
    AuthError,
    ConfigurationError,
    DataError,
    NeedsReauthorisation,
    NetworkError,
    NotFound,
    PermissionDenied,
    RateLimited,
    RemoteRejected,
    RemoteTimeout,
    RemoteUnavailable,
    SyncError,
)

__all__ = [
    "ExactAuthError",
    "ExactConfigurationError",
    "ExactDataError",
    "ExactError",
    "ExactNeedsReauthorisation",
    "ExactNetworkError",
    "ExactNotFound",
    "ExactPermissionDenied",
    "ExactRateLimited",
    "ExactRejected",
    "ExactTimeout",
    "ExactUnavailable",
]


class ExactError(SyncError):
    """Root of every error raised by the Exact Online connector."""


class ExactNetworkError(ExactError, NetworkError):
    """Exact could not be reached, or the connection broke mid-call."""


class ExactTimeout(ExactError, RemoteTimeout):
    """Exact did not answer within the configured timeout."""


class ExactRateLimited(ExactError, RateLimited):
    """A minutely or daily limit of one division (or the token endpoint) was hit.

    ``details["division"]`` names the division and ``details["reset_epoch_ms"]`` the
    moment Exact said the limit resets, when it said.
    """


class ExactUnavailable(ExactError, RemoteUnavailable):
    """Exact answered 5xx, or a body that is not the JSON it promised."""


class ExactDataError(ExactError, DataError):
    """A record coming from or going to Exact is invalid; record and field say where."""


class ExactRejected(ExactError, RemoteRejected):
    """Exact refused the request with a 4xx other than 401/403/404/429."""


class ExactNotFound(ExactError, NotFound):
    """The Exact object (or endpoint) does not exist."""


class ExactAuthError(ExactError, AuthError):
    """The token endpoint or an API call refused our credentials."""


class ExactNeedsReauthorisation(ExactError, NeedsReauthorisation):
    """The refresh token is spent, expired or missing: run ``crm-sync auth`` again."""


class ExactPermissionDenied(ExactError, PermissionDenied):
    """Authenticated, but the user may not use this division or endpoint."""


class ExactConfigurationError(ExactError, ConfigurationError):
    """The backend's Exact section is incomplete or contradictory."""
