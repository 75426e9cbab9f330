"""OAuth 2 of Sage Accounting v3.1: consent, code exchange and rotating refresh.

Sage issues 5-minute access tokens and refresh tokens that rotate on every use and
die after 31 days without use (``refresh_token_expires_in``). The rules kept here:

- one refresh at a time per backend: the token store's lock is taken, the store is
  read again (another worker may have refreshed meanwhile), and only then is the
  refresh token spent;
- the rotated pair is saved *before* the new access token is handed out, so a crash
  can never lose the only valid refresh token;
- the access token is renewed proactively when less than ``refresh_margin_seconds``
  are left, never on a 401 loop;
- ``invalid_grant`` means a person must consent again: the connection is marked as
  needing re-authorisation, one error is logged, and nothing is retried; the
  refusal is kept next to the tokens in the store, so no later run or process
  sends the dead refresh token again before a new consent;
- every token request goes through a brand-new HTTP session, so no cookie from an
  earlier API call can influence it;
- a warning is raised ``refresh_warning_days`` before the refresh token would die.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from sync_daemon.kernel.protocol import TokenSet, TokenStore

from .errors import (
    SageConfigurationError,
    SageNeedsReauthorisation,
    SageNetworkError,
    SageRateLimited,
    SageRejected,
    SageTimeout,
    SageUnavailable,
)
from .retry import call_with_retry
from .settings import SageAccountingSettings

__all__ = ["SageOAuth"]

_logger = logging.getLogger(__name__)

#: Key in ``TokenSet.extra`` of a pair whose refresh token Sage refused.
REFUSED = "refresh_refused"


def _never_sent(err: requests.RequestException) -> bool:
    """True when the request cannot have reached the server (refused, DNS, connect)."""
    if isinstance(err, requests.ConnectTimeout):
        return True
    reason = err.args[0] if err.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


class SageOAuth:
    """Tokens of one Sage Accounting backend, kept in the shared token store.

    :param settings: the backend settings (client id/secret, URLs, margins).
    :param store: the daemon's token store (lock, load, save).
    :param key: the store key of this backend.
    :param clock: current UTC time.
    :param sleep: waits between attempts (tests pass a fake).
    :param session_factory: builds the fresh HTTP session of each token request.
    """

    def __init__(
        self,
        settings: SageAccountingSettings,
        *,
        store: TokenStore,
        key: str,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
        session_factory: Callable[[], requests.Session] = requests.Session,
    ) -> None:
        self._settings = settings
        self._store = store
        self._key = key
        self._clock = clock
        self._sleep = sleep
        self._session_factory = session_factory
        self._reauth_error: SageNeedsReauthorisation | None = None
        self._warned_for: str | None = None
        self.warning: str | None = None

    # ---------------------------------------------------------------- consent flow

    def authorization_url(self, *, state: str, redirect_uri: str | None = None) -> str:
        """The browser URL where a person grants access to the application."""
        redirect = redirect_uri or self._settings.redirect_uri
        if not redirect:
            raise SageConfigurationError(
                "no redirect_uri configured for the consent flow",
                record=self._record,
                field="redirect_uri",
            )
        params = {
            "response_type": "code",
            "client_id": self._settings.client_id,
            "redirect_uri": redirect,
            "scope": self._settings.scope,
            "state": state,
        }
        base = self._settings.authorize_url
        joiner = "&" if urlsplit(base).query else "?"
        return f"{base}{joiner}{urlencode(params)}"

    def exchange_code(self, *, code: str, redirect_uri: str | None = None) -> TokenSet:
        """Trade a consent code for tokens and persist them; codes are single-use."""
        redirect = redirect_uri or self._settings.redirect_uri
        if not redirect:
            raise SageConfigurationError(
                "no redirect_uri configured for the consent flow",
                record=self._record,
                field="redirect_uri",
            )
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
        }
        with self._store.lock(self._key):
            tokens = self._token_request(form, retry=False)
        self._reauth_error = None
        _logger.info("Sage business %s authorised", self._settings.business_id)
        return tokens

    # -------------------------------------------------------------- access tokens

    @property
    def needs_reauthorisation(self) -> bool:
        """True once Sage refused the refresh token in this process."""
        return self._reauth_error is not None

    def access_token(self) -> str:
        """A valid access token, refreshed first when it is about to expire."""
        if self._reauth_error is not None:
            raise self._reauth_error
        tokens = self._store.load(self._key)
        if tokens is not None and self._fresh(tokens):
            self.check_refresh_expiry(tokens)
            return tokens.access_token
        with self._store.lock(self._key):
            # Another worker may have refreshed while we waited for the lock.
            tokens = self._store.load(self._key)
            if tokens is None or not self._fresh(tokens):
                tokens = self._refresh(tokens)
        self.check_refresh_expiry(tokens)
        return tokens.access_token

    def renew_after_rejection(self, rejected_token: str) -> str:
        """A new access token after Sage refused ``rejected_token`` with a 401.

        When another worker already replaced the rejected token, that one is used and
        no refresh token is spent.
        """
        if self._reauth_error is not None:
            raise self._reauth_error
        with self._store.lock(self._key):
            tokens = self._store.load(self._key)
            if tokens is None or tokens.access_token == rejected_token:
                tokens = self._refresh(tokens)
        return tokens.access_token

    def stored(self) -> TokenSet | None:
        """The tokens currently in the store (for health reports)."""
        return self._store.load(self._key)

    # ------------------------------------------------------------------ internals

    @property
    def _record(self) -> str:
        return f"Sage business {self._settings.business_id}"

    def _fresh(self, tokens: TokenSet) -> bool:
        margin = timedelta(seconds=self._settings.refresh_margin_seconds)
        return tokens.expires_at - self._clock() > margin

    def check_refresh_expiry(self, tokens: TokenSet) -> None:
        """Set :attr:`warning` (and log it once) when the refresh token dies soon."""
        if tokens.refresh_expires_at is None:
            self.warning = None
            return
        left = tokens.refresh_expires_at - self._clock()
        if left > timedelta(days=self._settings.refresh_warning_days):
            self.warning = None
            return
        self.warning = (
            f"the Sage refresh token of business {self._settings.business_id} "
            f"expires on {tokens.refresh_expires_at:%Y-%m-%d %H:%M} UTC; run a sync "
            "or 'crm-sync auth' before then"
        )
        if self._warned_for != tokens.refresh_token:
            self._warned_for = tokens.refresh_token
            _logger.warning("%s", self.warning)

    def _refresh(self, tokens: TokenSet | None) -> TokenSet:
        """Spend the stored refresh token; the caller holds the store lock."""
        if tokens is None or not tokens.refresh_token:
            raise self._needs_reauth("no refresh token stored; run 'crm-sync auth'")
        if (
            tokens.refresh_expires_at is not None
            and tokens.refresh_expires_at <= self._clock()
        ):
            raise self._needs_reauth(
                f"the refresh token expired on {tokens.refresh_expires_at:%Y-%m-%d}"
            )
        refused = tokens.extra.get(REFUSED)
        if refused:
            # refused in an earlier run or another process: never sent again
            raise self._needs_reauth(f"{refused} (not sent again)")
        form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}
        _logger.debug("refreshing the Sage access token of %s", self._record)
        try:
            return self._token_request(form, retry=True)
        except SageNeedsReauthorisation as err:
            if err.details.get("error") == "invalid_grant":
                self._mark_refused(tokens, reason=str(err.details["reason"]))
            raise

    def _mark_refused(self, tokens: TokenSet, *, reason: str) -> None:
        """Remember in the store that ``tokens`` can no longer be refreshed."""
        marked = tokens.model_copy(update={"extra": {**tokens.extra, REFUSED: reason}})
        try:
            self._store.save(self._key, marked)
        except Exception:  # the refusal itself is what matters to the caller
            _logger.warning("could not remember the refusal of %s", self._record)

    def _needs_reauth(
        self, reason: str, *, error: str | None = None
    ) -> SageNeedsReauthorisation:
        details: dict[str, Any] = {"business_id": self._settings.business_id}
        if error:
            details.update(error=error, reason=reason)
        err = SageNeedsReauthorisation(
            f"Sage needs a new consent: {reason}",
            record=self._record,
            details=details,
        )
        self._reauth_error = err
        _logger.error("%s: %s", self._record, err.message)
        return err

    def _token_request(self, form: dict[str, str], *, retry: bool) -> TokenSet:
        """POST to the token endpoint and persist the answer before returning it.

        Only failures that prove the refresh token was not consumed (nothing sent,
        5xx, 429) are retried; an answer lost after sending is reported, not
        retried, so a refresh token is never sent twice within one call.
        """
        body = {
            **form,
            "client_id": self._settings.client_id,
            "client_secret": self._settings.client_secret.get_secret_value(),
        }

        def attempt() -> TokenSet:
            return self._post_token(body)

        try:
            if not retry:
                return attempt()
            return call_with_retry(
                attempt,
                attempts=self._settings.max_attempts,
                backoff=self._settings.backoff_seconds,
                ceiling=self._settings.backoff_max_seconds,
                sleep=self._sleep,
                what=f"token refresh of {self._record}",
            )
        except _NoRetry as carrier:
            raise carrier.error from carrier.__cause__

    def _post_token(self, body: dict[str, str]) -> TokenSet:
        timeout = (self._settings.connect_timeout, self._settings.read_timeout)
        # A fresh session per token call: no cookie of an API call can leak in.
        with self._session_factory() as session:
            try:
                response = session.post(
                    self._settings.token_url,
                    data=body,
                    headers={"Accept": "application/json"},
                    timeout=timeout,
                )
            except requests.RequestException as err:
                raise self._transport_error(err) from err
        issued = self._clock()
        if response.status_code == 200:
            tokens = self._parse_tokens(response, issued)
            self._store.save(self._key, tokens)
            return tokens
        payload = _json_or_empty(response)
        error = str(payload.get("error") or "")
        if error == "invalid_grant" and body.get("grant_type") == "refresh_token":
            raise self._needs_reauth(
                "Sage refused the refresh token (invalid_grant)", error="invalid_grant"
            )
        if error == "invalid_grant":
            # A spent or expired consent code: the stored tokens are unaffected.
            raise SageNeedsReauthorisation(
                "Sage refused the consent code (invalid_grant); start 'crm-sync "
                "auth' again",
                record=self._record,
            )
        if error in {"invalid_client", "unauthorized_client"}:
            raise SageConfigurationError(
                f"Sage refused the OAuth client ({error}); check client_id/secret",
                record=self._record,
                field="client_secret",
            )
        if response.status_code == 429:
            raise SageRateLimited(
                "token endpoint rate limited",
                record=self._record,
                retry_after=_retry_after(response),
            )
        if response.status_code >= 500:
            raise SageUnavailable(
                f"token endpoint answered {response.status_code}",
                record=self._record,
                details={"status": response.status_code},
            )
        raise SageRejected(
            f"token endpoint answered {response.status_code} {error}".rstrip(),
            record=self._record,
            details={"status": response.status_code, "error": error},
        )

    def _transport_error(self, err: requests.RequestException) -> Exception:
        if _never_sent(err):
            return SageNetworkError(
                f"token endpoint unreachable: {type(err).__name__}", record=self._record
            )
        # The refresh token may have been consumed: report without retrying.
        cls = SageTimeout if isinstance(err, requests.Timeout) else SageNetworkError
        wrapped = cls(
            f"token endpoint answer lost: {type(err).__name__}",
            record=self._record,
            details={"refresh_token_may_be_spent": True},
        )
        return _NoRetry(wrapped)

    def _parse_tokens(self, response: requests.Response, issued: datetime) -> TokenSet:
        payload = _json_or_empty(response)
        try:
            access = str(payload["access_token"])
            expires_in = int(payload["expires_in"])
        except (KeyError, TypeError, ValueError) as err:
            raise SageRejected(
                "token endpoint answer without access_token/expires_in",
                record=self._record,
            ) from err
        refresh_in = payload.get("refresh_token_expires_in")
        refresh_expires = (
            issued + timedelta(seconds=int(refresh_in))
            if refresh_in not in (None, "")
            else None
        )
        extra: dict[str, Any] = {
            "business_id": self._settings.business_id,
            "scope": payload.get("scope"),
            "refresh_token_expires_in": refresh_in,
        }
        return TokenSet(
            access_token=access,
            refresh_token=payload.get("refresh_token"),
            issued_at=issued,
            expires_at=issued + timedelta(seconds=expires_in),
            refresh_expires_at=refresh_expires,
            base_url=self._settings.api_base,
            extra=extra,
        )


class _NoRetry(Exception):
    """Carrier that lets a retryable-looking error pass the retry layer unretried."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _json_or_empty(response: requests.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
