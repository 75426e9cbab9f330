"""Errors of the Sage connectors, on top of the kernel's error tree.

Every class mixes :class:`SageError` with one kernel class, so a caller can catch
``SageError`` (anything from these connectors), ``RetryableError`` (the retry layer)
or a precise kernel class (``NeedsReauthorisation`` for the health state)::

    SageError
    ├── SageNetworkError        NetworkError        connection refused/reset
    ├── SageTimeout             RemoteTimeout       no answer in time
    ├── SageRateLimited         RateLimited         HTTP 429
    ├── SageUnavailable         RemoteUnavailable   5xx
    │   └── X3PoolBusy                              X3 pool has no free child
    ├── SageDataError           DataError           a field is wrong ($source, X3)
    │   └── X3DataError                             status 0 with error messages
    ├── SageRejected            RemoteRejected      4xx or SOAP fault
    ├── SageNotFound            NotFound            404 / RecordNotFound
    ├── SageAuthError           AuthError           401, AuthorizationFailure
    ├── SageNeedsReauthorisation NeedsReauthorisation  invalid_grant
    ├── SagePermissionDenied    PermissionDenied    403, MultiUserAccessDenied
    │   └── BusinessMismatch                        answer for another business
    └── SageConfigurationError  ConfigurationError  our settings, X3 host setup
        └── X3NoWebServices                         "No Web services accepted"
"""

from __future__ import annotations

from typing import Any

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
    "BusinessMismatch",
    "SageAuthError",
    "SageConfigurationError",
    "SageDataError",
    "SageError",
    "SageNeedsReauthorisation",
    "SageNetworkError",
    "SageNotFound",
    "SagePermissionDenied",
    "SageRateLimited",
    "SageRejected",
    "SageTimeout",
    "SageUnavailable",
    "X3DataError",
    "X3NoWebServices",
    "X3PoolBusy",
]


class SageError(SyncError):
    """Root of every error raised by the Sage connectors."""


class SageNetworkError(SageError, NetworkError):
    """Sage could not be reached, or the connection broke before an answer."""


class SageTimeout(SageError, RemoteTimeout):
    """Sage did not answer within the configured timeout."""


class SageRateLimited(SageError, RateLimited):
    """Sage answered 429; ``retry_after`` carries its delay when it gave one."""


class SageUnavailable(SageError, RemoteUnavailable):
    """Sage answered with a server-side failure (5xx)."""


class X3PoolBusy(SageUnavailable):
    """The X3 web-service pool had no free child (``technicalInfos.busy``, 503)."""


class SageDataError(SageError, DataError):
    """Sage refused a record; ``field`` names the field Sage blamed."""


class X3DataError(SageDataError):
    """An X3 call came back with ``status`` 0 and error (type 3) messages.

    :param messages: every ``(type, text)`` pair of the answer, warnings included.
    """

    def __init__(
        self,
        message: str,
        *,
        messages: list[tuple[int, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.messages = list(messages or [])


class SageRejected(SageError, RemoteRejected):
    """Sage refused the request for a reason that is not a field of a record."""


class SageNotFound(SageError, NotFound):
    """The Sage object does not exist (any more)."""


class SageAuthError(SageError, AuthError):
    """Sage refused our credentials or access token."""


class SageNeedsReauthorisation(SageError, NeedsReauthorisation):
    """The refresh token is refused or gone: a person must redo the consent."""


class SagePermissionDenied(SageError, PermissionDenied):
    """Authenticated, but the user may not do this in this business."""


class BusinessMismatch(SagePermissionDenied):
    """Sage answered for another business than the configured one."""


class SageConfigurationError(SageError, ConfigurationError):
    """The backend settings (or the remote host set-up) prevent any call."""


class X3NoWebServices(SageConfigurationError):
    """X3 answered "No Web services accepted": the pool has no web-service child.

    An administrator must raise "Number of Web services children" of the SOAP pool in
    Syracuse and restart it; retrying cannot help.
    """
