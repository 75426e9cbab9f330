"""HTTP client of Sage Accounting v3.1: one business, bounded calls, typed errors.

- Every request carries ``Authorization`` and ``X-Business``; an answer whose
  ``X-Business`` header names another business aborts the run before anything is
  written (without the header Sage silently serves the user's "lead" business).
- Connect and read timeouts on every call.
- Lists are read with ``items_per_page`` (at most 200) and ``$next``; ``$next`` is
  relative to the API base *including* ``/v3.1``, so it is appended to the base, not
  resolved with ``urljoin`` (which would drop the version).
- Error answers are JSON arrays of ``{"$severity", "$dataCode", "$message",
  "$source"}``; they become typed errors with the blamed field in ``field``.
- GET and PUT are retried (bounded, jittered, retryable errors only); POST never is:
  the connector looks the record up before any second POST.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests

from .errors import (
    BusinessMismatch,
    SageAuthError,
    SageDataError,
    SageError,
    SageNetworkError,
    SageNotFound,
    SagePermissionDenied,
    SageRateLimited,
    SageRejected,
    SageTimeout,
    SageUnavailable,
)
from .oauth import SageOAuth
from .retry import call_with_retry
from .settings import SageAccountingSettings

__all__ = ["SageAccountingClient", "error_from_response"]

_logger = logging.getLogger(__name__)


class SageAccountingClient:
    """Calls to one Sage business through an injected :class:`requests.Session`."""

    def __init__(
        self,
        settings: SageAccountingSettings,
        *,
        oauth: SageOAuth,
        session: requests.Session,
        sleep: Callable[[float], None],
    ) -> None:
        self._settings = settings
        self._oauth = oauth
        self._session = session
        self._sleep = sleep
        self._base = settings.api_base.rstrip("/")
        self._base_path = urlsplit(self._base).path.rstrip("/")

    # ----------------------------------------------------------------- URLs

    def url_for(self, ref: str) -> str:
        """Absolute URL of an API path or of a ``$next``/``$path`` link.

        ``/contacts?page=2`` becomes ``{base}/contacts?page=2`` with the base's
        ``/v3.1`` kept; absolute URLs must lie under the configured base, so the
        access token is never sent elsewhere.
        """
        if ref.startswith(("http://", "https://")):
            if not (ref == self._base or ref.startswith(self._base + "/")):
                raise SageRejected(
                    f"link outside the configured API base: {ref}",
                    details={"base": self._base},
                )
            return ref
        path = ref if ref.startswith("/") else "/" + ref
        if self._base_path and path.startswith(self._base_path + "/"):
            path = path[len(self._base_path) :]
        return self._base + path

    def _next_url(self, ref: str, original: Mapping[str, Any]) -> str:
        """``$next`` resolved, with any original filter it dropped appended."""
        url = self.url_for(ref)
        parts = urlsplit(url)
        present = {key for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
        missing = [
            (key, str(value))
            for key, value in original.items()
            if key not in present and key != "page" and value is not None
        ]
        if not missing:
            return url
        joiner = "&" if parts.query else "?"
        return url + joiner + urlencode(missing)

    # ----------------------------------------------------------------- verbs

    def get(
        self,
        ref: str,
        params: Mapping[str, Any] | None = None,
        *,
        record: str | None = None,
    ) -> Any:
        """GET with retries; returns the decoded JSON."""
        url = self.url_for(ref)
        return self._retried(lambda: self._send("GET", url, params, None, record), url)

    def put(
        self, ref: str, body: Mapping[str, Any], *, record: str | None = None
    ) -> Any:
        """PUT (idempotent: same body, same result) with retries."""
        url = self.url_for(ref)
        return self._retried(lambda: self._send("PUT", url, None, body, record), url)

    def post(
        self, ref: str, body: Mapping[str, Any], *, record: str | None = None
    ) -> Any:
        """One POST attempt; the caller handles an unknown outcome."""
        return self._send("POST", self.url_for(ref), None, body, record)

    def iter_pages(
        self, ref: str, params: Mapping[str, Any], *, record: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every page envelope of a list, following ``$next`` until it is null."""
        query = {**params, "items_per_page": self._settings.items_per_page}
        url: str | None = self.url_for(ref)
        first = True
        while url:
            page = self.get(url, query if first else None, record=record)
            if not isinstance(page, dict) or not isinstance(page.get("$items"), list):
                raise SageRejected(
                    "list answer without $items", record=record, details={"url": url}
                )
            yield page
            next_ref = page.get("$next")
            url = self._next_url(next_ref, query) if next_ref else None
            first = False

    # ------------------------------------------------------------- internals

    def _retried(self, call: Callable[[], Any], url: str) -> Any:
        return call_with_retry(
            call,
            attempts=self._settings.max_attempts,
            backoff=self._settings.backoff_seconds,
            ceiling=self._settings.backoff_max_seconds,
            sleep=self._sleep,
            what=f"Sage {urlsplit(url).path}",
        )

    def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
        record: str | None,
    ) -> Any:
        token = self._oauth.access_token()
        response = self._http(method, url, params, body, token, record)
        if response.status_code == 401:
            # Revoked or expired early: renew once (unless another worker did).
            token = self._oauth.renew_after_rejection(token)
            response = self._http(method, url, params, body, token, record)
        self._check_business(response, url, record)
        if 200 <= response.status_code < 300:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError as err:
                raise SageRejected(
                    "answer is not JSON", record=record, details={"url": url}
                ) from err
        raise error_from_response(response, record=record)

    def _http(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
        token: str,
        record: str | None,
    ) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {token}",
            "X-Business": self._settings.business_id,
            "Accept": "application/json",
        }
        timeout = (self._settings.connect_timeout, self._settings.read_timeout)
        _logger.debug("Sage %s %s", method, url)
        try:
            return self._session.request(
                method,
                url,
                params=dict(params) if params else None,
                json=body,
                headers=headers,
                timeout=timeout,
            )
        except requests.Timeout as err:
            raise SageTimeout(
                f"no answer to {method} within {timeout[1]} s", record=record
            ) from err
        except requests.ConnectionError as err:
            raise SageNetworkError(
                f"{method} failed: {type(err).__name__}", record=record
            ) from err

    def _check_business(
        self, response: requests.Response, url: str, record: str | None
    ) -> None:
        echoed = response.headers.get("X-Business")
        if echoed and echoed != self._settings.business_id:
            _logger.error(
                "Sage answered for business %s instead of %s; stopping",
                echoed,
                self._settings.business_id,
            )
            raise BusinessMismatch(
                f"Sage answered for business {echoed}, expected "
                f"{self._settings.business_id}",
                record=record,
                field="business_id",
                details={"echoed": echoed, "url": url},
            )


def _error_items(response: requests.Response) -> list[dict[str, Any]]:
    try:
        payload = response.json()
    except ValueError:
        return []
    if isinstance(payload, dict):
        payload = payload.get("errors") or payload.get("$errors") or [payload]
    if not isinstance(payload, list):
        return []
    return [item for item in payload if isinstance(item, dict)]


def error_from_response(
    response: requests.Response, *, record: str | None = None
) -> SageError:
    """The typed error of a non-2xx Sage answer, naming the field it blames."""
    items = _error_items(response)
    status = response.status_code
    first = items[0] if items else {}
    code = str(first.get("$dataCode") or "")
    source = first.get("$source") or None
    texts = [
        f"{item.get('$source')}: {item.get('$message')}"
        if item.get("$source")
        else str(item.get("$message") or item.get("$dataCode") or "")
        for item in items
    ]
    message = "; ".join(text for text in texts if text) or f"HTTP {status}"
    details: dict[str, Any] = {"status": status, "code": code, "errors": items}
    kwargs: dict[str, Any] = {"record": record, "details": details}
    if status == 429:
        retry_after = response.headers.get("Retry-After")
        try:
            delay = float(retry_after) if retry_after else None
        except ValueError:
            delay = None
        return SageRateLimited(message, retry_after=delay, **kwargs)
    if status >= 500:
        return SageUnavailable(message, **kwargs)
    if status == 404 or code == "RecordNotFound":
        return SageNotFound(message, field=source, **kwargs)
    if status == 401 or code == "AuthorizationFailure":
        return SageAuthError(message, **kwargs)
    if status == 403 or code == "MultiUserAccessDenied":
        return SagePermissionDenied(message, field=source, **kwargs)
    if status in (400, 409, 422) or code == "RecordInvalid":
        return SageDataError(message, field=source, **kwargs)
    return SageRejected(message, field=source, **kwargs)
