"""The error tree shared by the daemon and every connector.

Every error raised on purpose by our code derives from :class:`SyncError` and sits on
exactly one of two branches::

    SyncError
    ├── RetryableError          the same call may succeed later
    │   ├── NetworkError        connection refused/reset, DNS, TLS
    │   ├── RemoteTimeout       no answer in time
    │   ├── RateLimited         429 or a quota; ``retry_after`` says when
    │   └── RemoteUnavailable   5xx, maintenance, a busy pool
    └── PermanentError          repeating the call cannot help
        ├── DataError           a record or field is wrong (ours or theirs)
        ├── RemoteRejected      the remote refused the request (4xx, fault)
        ├── NotFound            the remote object does not exist
        ├── AuthError           credentials missing or refused
        │   └── NeedsReauthorisation   a person must redo the consent flow
        ├── PermissionDenied    authenticated, but not allowed
        └── ConfigurationError  our configuration is incomplete or contradictory

Only the retry layer catches :class:`RetryableError`. Everything permanent ends as a
dead letter or as a backend health state, so the facts an admin needs (record, field,
remote status, rule id) travel on the exception object, not only in its message.
Each connector defines its own root (``ExactError`` …) and mixes it with these classes,
so ``except ExactError`` and ``except RetryableError`` both work.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthError",
    "ConfigurationError",
    "DataError",
    "NeedsReauthorisation",
    "NetworkError",
    "NotFound",
    "PermanentError",
    "PermissionDenied",
    "RateLimited",
    "RemoteRejected",
    "RemoteTimeout",
    "RemoteUnavailable",
    "RetryableError",
    "SyncError",
]


class SyncError(Exception):
    """Root of every error the project raises on purpose.

    :param message: what went wrong, in words an admin understands.
    :param record: the record concerned (``res.partner 101``, ``Exact account 1001``).
    :param field: the field concerned, when one is to blame.
    :param details: structured extras (status code, remote error code, rule ids…).
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        record: str | None = None,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.record = record
        self.field = field
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        where = " / ".join(part for part in (self.record, self.field) if part)
        return f"{where}: {self.message}" if where else self.message


class RetryableError(SyncError):
    """The call may succeed if repeated later.

    :param retry_after: seconds to wait before the next attempt, when the remote said.
    """

    retryable = True

    def __init__(
        self, message: str, *, retry_after: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class NetworkError(RetryableError):
    """The remote could not be reached (refused, reset, name resolution)."""


class RemoteTimeout(RetryableError):
    """The remote did not answer within the configured timeout."""


class RateLimited(RetryableError):
    """The remote refused the call because a rate limit or quota was reached.

    ``scope`` names the limit (``minutely``, ``daily``…); a daily limit usually means
    pausing that backend until ``retry_after`` rather than retrying now.
    """

    def __init__(self, message: str, *, scope: str = "unknown", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.scope = scope


class RemoteUnavailable(RetryableError):
    """The remote answered with a server-side failure (5xx, busy, maintenance)."""


class PermanentError(SyncError):
    """Repeating the same call cannot succeed; a person or a data fix is needed."""


class DataError(PermanentError, ValueError):
    """A record is invalid or incomplete; ``record`` and ``field`` say where."""


class RemoteRejected(PermanentError):
    """The remote refused the request (HTTP 4xx, SOAP fault, validation message)."""


class NotFound(PermanentError):
    """The remote object does not exist (any more)."""


class AuthError(PermanentError):
    """Credentials are missing, expired or refused."""


class NeedsReauthorisation(AuthError):
    """A person must redo the OAuth consent; retrying would only burn tokens."""


class PermissionDenied(PermanentError):
    """Authenticated, but not allowed to do this (wrong company, missing right)."""


class ConfigurationError(PermanentError):
    """Our own configuration is missing or contradictory for this backend."""
