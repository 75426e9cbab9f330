"""HTTP transport to the Exact Online REST API: auth, limits, errors, paging.

:class:`ExactClient` sends every call with a timeout through an injected
``requests.Session``, adds the bearer token from :class:`~.auth.TokenManager`,
respects the per-division limits of :class:`~.ratelimit.RateLimiter`, and turns
every failure into one class of :mod:`connectors.exact.errors`:

========================  ==============================================
answer                    outcome
========================  ==============================================
2xx                       parsed JSON (``None`` for 204)
2xx, broken JSON          ``ExactUnavailable`` (retryable)
401                       one retry with a refreshed token, then auth error
403 / 404                 ``ExactPermissionDenied`` / ``ExactNotFound``
429 minutely              wait until the reset, then the same GET once more
429 daily                 ``ExactRateLimited(scope="daily")``; division paused
other 4xx                 ``ExactRejected`` — never retried (Exact blocks an
                          app after 10 such errors an hour)
5xx, network, timeout     retryable errors
========================  ==============================================

GET and PUT are retried with tenacity (bounded, jittered, retryable errors only, a
daily limit never). POST is never retried here: whether a failed POST was stored is
unknown, so the caller looks the record up before sending it again.

Paging follows ``__next`` verbatim: Exact's absolute URL already carries
``$select``, ``$filter`` and the skip token. A relative ``__next`` is resolved
against the page it came from; one that leaves our host (another host, plain
``http``, user info) is refused before the bearer token could follow it, and one
that points back at a page already read is refused instead of looping.
"""

from __future__ import annotations

import codecs
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from sync_daemon.kernel.errors import RateLimited, RetryableError

from .auth import TokenManager
from .errors import (
    ExactAuthError,
    ExactDataError,
    ExactError,
    ExactNetworkError,
    ExactNotFound,
    ExactPermissionDenied,
    ExactRateLimited,
    ExactRejected,
    ExactTimeout,
    ExactUnavailable,
)
from .ratelimit import MAX_MINUTELY_WAIT, RateLimiter, retry_after_seconds
from .settings import ExactSettings

__all__ = ["CallStats", "ExactClient", "build_query", "error_message"]

_logger = logging.getLogger(__name__)

#: Characters left as they are in OData query values ($select lists, quotes…).
_SAFE = "$,'()=:/*"
#: Longest remote error text kept on an exception (HTML pages, stack traces…).
MAX_MESSAGE = 500


def build_query(params: Mapping[str, str]) -> str:
    """``$select=A,B&$filter=Timestamp%20gt%201`` the way Exact writes it."""
    return "&".join(
        f"{quote(key, safe='$')}={quote(value, safe=_SAFE)}"
        for key, value in params.items()
    )


def error_message(body: Any) -> str:
    """Exact's error text from ``{"error": {"message": {"value": …}}}``."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            if isinstance(message, dict):
                return str(message.get("value") or "")
            if message:
                return str(message)
        elif error:
            return str(body.get("error_description") or error)
    return ""


class CallStats:
    """Counts of what the client sent, for tests, checks and benchmarks."""

    def __init__(self) -> None:
        self.calls = 0
        self.by_method: dict[str, int] = {}
        self.urls: list[str] = []

    def record(self, method: str, url: str) -> None:
        self.calls += 1
        self.by_method[method] = self.by_method.get(method, 0) + 1
        self.urls.append(url)


def _retryable(err: BaseException) -> bool:
    if isinstance(err, RateLimited) and err.scope == "daily":
        return False
    return isinstance(err, RetryableError)


class ExactClient:
    """Calls of one Exact division.

    :param settings: validated backend settings.
    :param tokens: the backend's token manager.
    :param limiter: the rate limiter (shared per connector).
    :param session: the injected HTTP session; closed only if created here.
    """

    def __init__(
        self,
        *,
        settings: ExactSettings,
        tokens: TokenManager,
        limiter: RateLimiter,
        session: requests.Session,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.limiter = limiter
        self.session = session
        self._clock = clock
        self._sleep = sleep
        self.division = settings.division
        self.stats = CallStats()

    # ------------------------------------------------------------------ URLs

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        """Absolute URL of ``path`` in the configured division."""
        base = f"{self.settings.host}/api/v1/{self.division}/{path.lstrip('/')}"
        return f"{base}?{build_query(params)}" if params else base

    def current_url(self, path: str) -> str:
        """URL of a call without division (``current/Me``)."""
        return f"{self.settings.host}/api/v1/{path.lstrip('/')}"

    # ------------------------------------------------------------- public verbs

    def get(self, url: str) -> Any:
        """GET an absolute URL with bounded, jittered retries of retryable errors."""
        return self._retrying(lambda: self._send("GET", url))

    def put(self, url: str, body: Mapping[str, Any]) -> Any:
        """PUT is idempotent, so it is retried like a GET."""
        return self._retrying(lambda: self._send("PUT", url, body))

    def post(self, url: str, body: Mapping[str, Any]) -> Any:
        """POST once; the caller decides, after a lookup, whether to send again."""
        return self._send("POST", url, body)

    def pages(self, url: str) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """Each page's rows and its ``__next`` URL, followed verbatim until absent."""
        next_url: str | None = url
        seen: set[str] = set()
        while next_url:
            seen.add(next_url)
            body = self.get(next_url)
            rows, raw_next = _results(body, next_url)
            next_url = self._next_url(raw_next, next_url, seen)
            yield rows, next_url

    def _next_url(self, raw: str | None, current: str, seen: set[str]) -> str | None:
        """``__next`` as an absolute URL on our own host, or ``None`` at the end."""
        if raw is None:
            return None
        resolved = urljoin(current, raw)
        try:
            # Same host, division and entity: the skip token only moves the offset.
            same = self.on_host(resolved) and (
                urlsplit(resolved).path == urlsplit(current).path
            )
        except ValueError:
            same = False
        if not same:
            raise ExactDataError(
                f"__next leaves {_short(current)} on {self.settings.host}; "
                "not followed",
                record=_short(current),
                field="d.__next",
                details={"next_host": urlsplit(resolved).netloc[:100]},
            )
        if resolved in seen:
            raise ExactDataError(
                "__next points back at a page already read; paging stopped",
                record=_short(current),
                field="d.__next",
            )
        return resolved

    # ---------------------------------------------------------------- internals

    def _retrying(self, call: Callable[[], Any]) -> Any:
        retrying = Retrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self.settings.max_attempts),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
            before_sleep=_log_retry,
        )
        return retrying(call)

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_random_exponential(multiplier=0.5, max=self.settings.max_backoff)
        seconds = backoff(state)
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RetryableError) and error.retry_after:
            # A minute at most for a limit, our own ceiling for anything else.
            ceiling = (
                MAX_MINUTELY_WAIT
                if isinstance(error, RateLimited)
                else self.settings.max_backoff
            )
            seconds = max(seconds, min(error.retry_after, ceiling))
        return seconds

    def on_host(self, url: str) -> bool:
        """Whether ``url`` is on the configured Exact host (scheme, host and port)."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        ours = urlsplit(self.settings.host)
        return (
            parts.scheme == ours.scheme
            and parts.netloc.lower() == ours.netloc.lower()
            and parts.username is None
        )

    def _send(
        self,
        method: str,
        url: str,
        body: Mapping[str, Any] | None = None,
        *,
        retried_429: bool = False,
        retried_401: bool = False,
    ) -> Any:
        if not self.on_host(url):
            # The bearer token goes with every call: never to another address.
            raise ExactDataError(
                f"{method} refused: the URL is not on {self.settings.host}",
                record=_short(url)[:100],
                field="url",
            )
        division = self._division_of(url)
        if division is not None:
            self.limiter.before_call(division)
        token = self.tokens.access_token()
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
        }
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            headers["Prefer"] = "return=representation"
            data = json.dumps(body)
        self.stats.record(method, url)
        try:
            response = self.session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
            )
        except requests.Timeout as err:
            raise ExactTimeout(
                f"{method} timed out", record=_short(url), details={"method": method}
            ) from err
        except requests.RequestException as err:
            raise ExactNetworkError(
                f"{method} failed: {type(err).__name__}",
                record=_short(url),
                details={"method": method},
            ) from err
        status = response.status_code
        _logger.debug("%s %s -> %s", method, url, status)
        if division is not None:
            self.limiter.after_response(division, status, response.headers)

        if status == 401 and not retried_401:
            self.tokens.after_unauthorised(token)
            return self._send(
                method, url, body, retried_429=retried_429, retried_401=True
            )
        if status == 429:
            wait = self.limiter.on_429(division or 0, response.headers)
            if method == "GET" and not retried_429:
                _logger.warning(
                    "Exact division %s: minutely limit hit, waiting %.1f s",
                    division,
                    wait,
                )
                self._sleep(wait)
                return self._send(method, url, body, retried_429=True)
            raise ExactRateLimited(
                "Exact minutely call limit reached",
                scope="minutely",
                retry_after=wait,
                record=_short(url),
                details={"division": division, "method": method},
            )
        if status >= 400:
            raise _status_error(method, url, response)
        if status == 204 or not response.content:
            return None
        try:
            return _json_body(response.content)
        except ValueError as err:
            raise ExactUnavailable(
                f"{method} answered {status} with a body that is not JSON (truncated?)",
                record=_short(url),
                details={"status": status, "method": method},
            ) from err

    def _division_of(self, url: str) -> int | None:
        prefix = f"{self.settings.host}/api/v1/"
        if not url.startswith(prefix):
            return None
        head = url[len(prefix) :].split("/", 1)[0]
        return int(head) if head.isascii() and head.isdigit() else None


def _results(body: Any, url: str) -> tuple[list[dict[str, Any]], str | None]:
    """Rows and ``__next`` of a list envelope; a single ``{"d": {…}}`` is one row.

    Anything else (no ``d``, ``results`` that is not a list, a row that is not an
    object, a ``__next`` that is not text) is refused as a whole: dropping the odd
    parts would silently lose records.
    """
    record = _short(url)
    if not isinstance(body, dict) or "d" not in body:
        raise ExactUnavailable(
            "answer without the OData 'd' envelope", record=record, field="d"
        )
    inner = body["d"]
    if isinstance(inner, list):
        return _rows(inner, record, "d"), None
    if not isinstance(inner, dict) or not inner:
        raise ExactUnavailable(
            "unexpected OData envelope", record=record, field="d.results"
        )
    if "results" not in inner:
        if "__next" in inner:
            raise ExactUnavailable(
                "__next without results", record=record, field="d.results"
            )
        return [inner], None
    results = inner["results"]
    rows = _rows([] if results is None else results, record, "d.results")
    next_url = inner.get("__next")
    if next_url is not None and not isinstance(next_url, str):
        raise ExactUnavailable(
            f"__next is not a URL: {type(next_url).__name__}",
            record=record,
            field="d.__next",
        )
    return rows, next_url or None


def _rows(rows: Any, record: str, field: str) -> list[dict[str, Any]]:
    if not isinstance(rows, list):
        raise ExactUnavailable(
            f"{field} is not a list but {type(rows).__name__}",
            record=record,
            field=field,
        )
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ExactUnavailable(
                f"row {index} is not an object but {type(row).__name__}",
                record=record,
                field=f"{field}[{index}]",
            )
    return rows


def _status_error(method: str, url: str, response: requests.Response) -> ExactError:
    status = response.status_code
    try:
        body = _json_body(response.content)
    except ValueError:
        body = None
    text = error_message(body) or response.reason or ""
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + "…"
    details = {"status": status, "method": method, "message": text}
    record = _short(url)
    message = f"{method} answered {status}: {text}".rstrip(": ")
    if status >= 500:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return ExactUnavailable(
            message, retry_after=retry_after, record=record, details=details
        )
    if status == 401:
        return ExactAuthError(message, record=record, details=details)
    if status == 403:
        return ExactPermissionDenied(message, record=record, details=details)
    if status == 404:
        return ExactNotFound(message, record=record, details=details)
    return ExactRejected(message, record=record, details=details)


def _json_body(content: bytes) -> Any:
    """JSON from the raw bytes; bytes that are not UTF-8 are read as Windows-1252.

    Decoding by a declared ``charset=utf-8`` would silently turn every such byte
    into U+FFFD (a name like ``Caf� No�l``); Windows-1252 is what Dutch and
    Belgian data in the wrong encoding almost always is.
    """
    content = content.removeprefix(codecs.BOM_UTF8)
    try:
        return json.loads(content)
    except UnicodeDecodeError:
        _logger.warning("Exact answered bytes that are not UTF-8; read as cp1252")
        try:
            text = content.decode("cp1252")
        except UnicodeDecodeError:
            text = content.decode("latin-1")
        return json.loads(text)


def _short(url: str) -> str:
    """The endpoint part of a URL, without host and query, for messages."""
    path = url.split("?", 1)[0]
    marker = "/api/v1/"
    return path[path.index(marker) + len(marker) :] if marker in path else path


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    _logger.warning(
        "Exact call failed (%s), attempt %s; retrying",
        type(error).__name__ if error else "?",
        state.attempt_number,
    )
