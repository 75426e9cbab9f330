"""OAuth2 for Exact Online, as Exact runs it.

- The access token lives 600 s; ``expires_in`` arrives as a **string**.
- Every refresh returns a new, single-use refresh token; sending a spent one gives
  ``invalid_grant`` and a person must redo the consent.
- A refresh earlier than 570 s after the previous issue is refused
  (``access_denied`` with header ``Reason: TooEarlyToRefreshTokens``).

So :class:`TokenManager` refreshes only when the token is about to expire *and* is at
least ``min_refresh_age`` old, and always like this: take the token store's lock
(shared by threads and processes) → re-read the store (another worker may have
refreshed meanwhile) → refresh only if still needed → save the new pair → only then
hand out the new access token. ``invalid_grant`` raises
:class:`~connectors.exact.errors.ExactNeedsReauthorisation` at once, with no retry,
and the refusal is written next to the tokens in the store, so that no later run
or process sends the dead refresh token again before a new consent.

Once Exact has answered 200 the old refresh token is spent, so an odd answer
never costs the new pair: an unusable ``expires_in`` is taken as the documented
600 s, a missing ``refresh_token`` keeps the old one (RFC 6749 §6). The token
endpoint is called without following redirects (a 307 would re-send the secret),
and Exact's error texts are stripped of any secret we sent before they travel on
an exception.

The authorization-code helpers (:meth:`TokenManager.authorization_url`,
:meth:`TokenManager.exchange_code`) serve ``crm-sync auth``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests

from sync_daemon.kernel.protocol import TokenSet, TokenStore

from .errors import (
    ExactAuthError,
    ExactNeedsReauthorisation,
    ExactNetworkError,
    ExactRateLimited,
    ExactTimeout,
    ExactUnavailable,
)
from .ratelimit import retry_after_seconds
from .settings import ExactSettings

__all__ = ["REFRESH_TOKEN_LIFETIME", "TokenManager"]

_logger = logging.getLogger(__name__)

#: An unused refresh token expires after 30 days.
REFRESH_TOKEN_LIFETIME = timedelta(days=30)
#: Exact's documented access-token lifetime, used when ``expires_in`` is unusable.
DEFAULT_ACCESS_LIFETIME = 600
#: Longest ``expires_in`` believed; anything beyond is treated as unusable.
_MAX_ACCESS_LIFETIME = 86400
#: Key in ``TokenSet.extra`` of a pair whose refresh token Exact refused.
REFUSED = "refresh_refused"
#: Key in ``TokenSet.extra``: division -> end of its daily-limit pause (ISO, UTC).
PAUSED = "paused_until"
#: Key in ``TokenSet.extra``: division -> the last run's calls of its last minute.
MINUTE = "minute"


class TokenManager:
    """Hands out a valid access token for one Exact backend.

    :param settings: the backend settings (host, client id/secret, timeouts).
    :param store: the shared token store.
    :param key: this backend's key in the store.
    :param session: the HTTP session used for the token endpoint.
    :param clock: current UTC time.
    :param sleep: waits, for the rare case of an expired token younger than 570 s.
    """

    def __init__(
        self,
        *,
        settings: ExactSettings,
        store: TokenStore,
        key: str,
        session: requests.Session,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
    ) -> None:
        self._settings = settings
        self._store = store
        self._key = key
        self._session = session
        self._clock = clock
        self._sleep = sleep
        #: Calls made to the token endpoint by this manager (for tests and reports).
        self.token_calls = 0

    @property
    def token_url(self) -> str:
        return f"{self._settings.host}/api/oauth2/token"

    # ------------------------------------------------------------ access tokens

    def access_token(self) -> str:
        """A usable access token, refreshing it first when (and only when) due."""
        tokens = _utc(self._store.load(self._key))
        if tokens is not None and self._fresh(tokens):
            self._check_host(tokens)
            return tokens.access_token
        with self._store.lock(self._key):
            # Another worker may have refreshed while we waited for the lock.
            tokens = self._load_required()
            if self._fresh(tokens):
                return tokens.access_token
            try:
                return self._refresh(tokens).access_token
            except ExactRateLimited as err:
                # Exact says our clock runs ahead of its own: the current access
                # token is then still valid there, so keep using it meanwhile.
                if err.scope == "token_refresh" and self._clock() < tokens.expires_at:
                    return tokens.access_token
                raise

    def after_unauthorised(self, rejected: str) -> str:
        """A call answered 401 with ``rejected``: the token to try once more.

        When another worker stored a newer token, that one is returned; otherwise
        the token is refreshed if the 570 s rule allows it, else the 401 stands.
        """
        with self._store.lock(self._key):
            tokens = self._load_required()
            if tokens.access_token != rejected:
                return tokens.access_token
            age = (self._clock() - tokens.issued_at).total_seconds()
            # A negative age means the stored issue time is in our future (clock
            # skew or a bad store): the age is unknown, so let Exact decide.
            if 0 <= age < self._settings.min_refresh_age:
                raise ExactAuthError(
                    "Exact refused an access token that is only "
                    f"{age:.0f} s old; it cannot be refreshed before "
                    f"{self._settings.min_refresh_age:.0f} s",
                    record=f"token {self._key}",
                    details={"status": 401},
                )
            return self._refresh(tokens).access_token

    def _fresh(self, tokens: TokenSet) -> bool:
        now = self._clock()
        margin = timedelta(seconds=self._settings.refresh_margin)
        if now < tokens.expires_at - margin:
            return True
        # Due by our margin, but Exact refuses refreshes younger than 570 s: keep
        # using the current token as long as it has not really expired.
        age = (now - tokens.issued_at).total_seconds()
        return age < self._settings.min_refresh_age and now < tokens.expires_at

    def _load_required(self) -> TokenSet:
        tokens = _utc(self._store.load(self._key))
        if tokens is None:
            raise ExactNeedsReauthorisation(
                "no Exact tokens stored for this backend; run 'crm-sync auth'",
                record=f"token {self._key}",
            )
        self._check_host(tokens)
        return tokens

    def _check_host(self, tokens: TokenSet) -> None:
        if tokens.base_url and tokens.base_url.rstrip("/") != self._settings.host:
            raise ExactNeedsReauthorisation(
                f"the stored tokens belong to {tokens.base_url}, not to "
                f"{self._settings.host}; tokens do not cross Exact hosts",
                record=f"token {self._key}",
                field="base_url",
            )

    def _refresh(self, tokens: TokenSet) -> TokenSet:
        """Spend the stored refresh token; caller holds the store lock."""
        if not tokens.refresh_token:
            raise ExactNeedsReauthorisation(
                "no refresh token stored; run 'crm-sync auth'",
                record=f"token {self._key}",
                field="refresh_token",
            )
        refused = tokens.extra.get(REFUSED)
        if refused:
            # Exact refused this refresh token before (maybe in an earlier run or
            # another process): sending it again would only add errors to the
            # app's hourly count. Only a new consent brings the backend back.
            raise ExactNeedsReauthorisation(
                f"{refused} (not sent again)",
                record=f"token {self._key}",
                field="refresh_token",
            )
        age = (self._clock() - tokens.issued_at).total_seconds()
        if 0 <= age < self._settings.min_refresh_age:
            # Only reachable when Exact issued a token shorter-lived than 570 s.
            self._sleep(self._settings.min_refresh_age - age)
        try:
            new = self._token_call(
                {
                    "grant_type": "refresh_token",
                    "refresh_token": tokens.refresh_token,
                },
                previous=tokens,
            )
        except ExactNeedsReauthorisation as err:
            if err.details.get("error") == "invalid_grant":
                self._mark_refused(tokens, err)
            raise
        _logger.info("Exact tokens of %s refreshed", self._key)
        return new

    def _mark_refused(self, tokens: TokenSet, err: ExactNeedsReauthorisation) -> None:
        """Remember in the store that ``tokens`` can no longer be refreshed.

        Every later run, thread or process then stops before the token endpoint
        (C012: no retry loop) until ``crm-sync auth`` stores a new pair.
        """
        marked = tokens.model_copy(
            update={"extra": {**tokens.extra, REFUSED: err.message[:300]}}
        )
        try:
            self._store.save(self._key, marked)
        except Exception:  # the refusal itself is what matters to the caller
            _logger.warning("could not remember the refusal of %s", self._key)

    # ------------------------------------------------------- daily-limit pause

    def remember_pause(self, division: int, until: datetime) -> None:
        """Keep a division's daily-limit pause with the tokens, for later runs."""
        self._remember(PAUSED, division, until.astimezone(UTC).isoformat())

    def remember_minute(self, division: int, snapshot: dict[str, Any] | None) -> None:
        """Keep this minute's calls of a division for the next run's limiter."""
        self._remember(MINUTE, division, snapshot)

    def stored_minute(self, division: int) -> dict[str, Any] | None:
        """What :meth:`remember_minute` kept for ``division``, if anything."""
        value = self._stored(MINUTE, division)
        return value if isinstance(value, dict) else None

    def _remember(self, name: str, division: int, value: Any) -> None:
        with self._store.lock(self._key):
            tokens = self._store.load(self._key)
            if tokens is None:
                return
            kept = tokens.extra.get(name)
            by_division = dict(kept) if isinstance(kept, dict) else {}
            if value is None:
                by_division.pop(str(division), None)
            else:
                by_division[str(division)] = value
            self._store.save(
                self._key,
                tokens.model_copy(
                    update={"extra": {**tokens.extra, name: by_division}}
                ),
            )

    def _stored(self, name: str, division: int) -> Any:
        try:
            tokens = self._store.load(self._key)
        except Exception:  # an unreadable store shows up on the first call
            return None
        kept = tokens.extra.get(name) if tokens is not None else None
        return kept.get(str(division)) if isinstance(kept, dict) else None

    def stored_pause(self, division: int) -> datetime | None:
        """The end of a division's daily-limit pause kept in the store, if any."""
        value = self._stored(PAUSED, division)
        try:
            until = datetime.fromisoformat(str(value)) if value else None
        except ValueError:
            return None
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        return until

    # ----------------------------------------------------- authorization code

    def authorization_url(self, state: str, redirect_uri: str) -> str:
        """Where to send the browser for the consent of ``crm-sync auth``."""
        query = urlencode(
            {
                "client_id": self._settings.client_id,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "state": state,
                "force_login": "0",
            }
        )
        return f"{self._settings.host}/api/oauth2/auth?{query}"

    def exchange_code(self, code: str, redirect_uri: str) -> TokenSet:
        """Trade the one-time code for the first token pair and store it."""
        with self._store.lock(self._key):
            return self._token_call(
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                }
            )

    # --------------------------------------------------------- token endpoint

    def _token_call(
        self, form: dict[str, str], *, previous: TokenSet | None = None
    ) -> TokenSet:
        """POST the token endpoint, then save the answer before returning it."""
        form = {
            **form,
            "client_id": self._settings.client_id,
            "client_secret": self._settings.client_secret.get_secret_value(),
        }
        sent_at = self._clock()
        self.token_calls += 1
        try:
            response = self._session.post(
                self.token_url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=(self._settings.connect_timeout, self._settings.read_timeout),
                # A 307/308 would re-send the secret and the refresh token to
                # wherever it points: a redirect is an error here.
                allow_redirects=False,
            )
        except requests.Timeout as err:
            raise ExactTimeout(
                "the Exact token endpoint did not answer", record=f"token {self._key}"
            ) from err
        except requests.RequestException as err:
            raise ExactNetworkError(
                f"the Exact token endpoint could not be reached: {type(err).__name__}",
                record=f"token {self._key}",
            ) from err
        received_at = self._clock()
        body = _json_or_empty(response)
        secrets = [
            form[name]
            for name in ("refresh_token", "code", "client_secret")
            if form.get(name)
        ]
        if response.status_code != 200:
            raise self._token_error(response, body, secrets)
        if not body:
            # A proxy or login page, not Exact: the refresh token most likely never
            # reached Exact and is still good, so this may be tried again.
            raise ExactUnavailable(
                "the Exact token endpoint answered 200 without a JSON body",
                record=f"token {self._key}",
                details={"status": 200},
            )
        tokens = self._parse(body, sent_at, received_at, previous)
        # Persist before use: a crash after this line never loses the new pair.
        try:
            self._store.save(self._key, tokens)
        except Exception as err:
            # The old refresh token is spent and the new one is lost with the
            # failed write: only a new consent can bring the backend back.
            raise ExactNeedsReauthorisation(
                f"the new Exact tokens could not be saved ({type(err).__name__}); "
                "run 'crm-sync auth' again",
                record=f"token {self._key}",
                field="refresh_token",
            ) from err
        return tokens

    def _parse(
        self,
        body: dict[str, Any],
        sent_at: datetime,
        received_at: datetime,
        previous: TokenSet | None,
    ) -> TokenSet:
        record = f"token {self._key}"
        access = body.get("access_token")
        refresh = body.get("refresh_token")
        if not isinstance(access, str) or not access:
            raise ExactAuthError(
                "token answer without access_token", record=record, field="access_token"
            )
        if not isinstance(refresh, str) or not refresh:
            kept = previous.refresh_token if previous is not None else None
            if not kept:
                raise ExactAuthError(
                    "token answer without refresh_token",
                    record=record,
                    field="refresh_token",
                )
            # RFC 6749 section 6: no new refresh token means the old one stays.
            _logger.warning(
                "Exact token answer of %s without refresh_token; keeping the old one",
                self._key,
            )
            refresh = kept
        seconds = _lifetime(body.get("expires_in"))
        if seconds is None:
            # The new pair must be saved anyway: the old refresh token is spent.
            _logger.warning(
                "Exact token answer of %s has an unusable expires_in; assuming %d s",
                self._key,
                DEFAULT_ACCESS_LIFETIME,
            )
            seconds = DEFAULT_ACCESS_LIFETIME
        # Expiry counts from when we asked (conservative), age from when we heard
        # back (never earlier than Exact's own issue time, for the 570 s rule).
        return TokenSet(
            access_token=access,
            refresh_token=refresh,
            issued_at=received_at,
            expires_at=sent_at + timedelta(seconds=seconds),
            refresh_expires_at=received_at + REFRESH_TOKEN_LIFETIME,
            base_url=self._settings.host,
            extra={
                "token_type": body.get("token_type", "bearer"),
                # a daily-limit pause outlives the tokens it was stored with
                **(
                    {PAUSED: previous.extra[PAUSED]}
                    if previous is not None and PAUSED in previous.extra
                    else {}
                ),
            },
        )

    def _token_error(
        self, response: requests.Response, body: dict[str, Any], secrets: list[str]
    ) -> Exception:
        record = f"token {self._key}"
        code = _redact(str(body.get("error") or "")[:100], secrets)
        description = _redact(str(body.get("error_description") or "")[:500], secrets)
        details = {"status": response.status_code, "error": code}
        reason = response.headers.get("Reason", "")
        if reason == "TooEarlyToRefreshTokens" or (
            code == "access_denied" and "not expired" in description
        ):
            return ExactRateLimited(
                "Exact refused the refresh: the access token is younger than 570 s",
                scope="token_refresh",
                # Our own 570 s check passed, so only clock skew is left to wait.
                retry_after=30.0,
                record=record,
                details=details,
            )
        if response.status_code == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            return ExactRateLimited(
                "the Exact token endpoint refused more calls for now",
                scope="token_endpoint",
                retry_after=wait if wait is not None else 60.0,
                record=record,
                details=details,
            )
        if code in {"invalid_grant", "invalid_request", "unauthorized_client"}:
            return ExactNeedsReauthorisation(
                f"Exact refused the refresh token ({code}: {description}); "
                "run 'crm-sync auth' again",
                record=record,
                field="refresh_token",
                details=details,
            )
        if response.status_code >= 500:
            return ExactUnavailable(
                f"Exact token endpoint answered {response.status_code}",
                record=record,
                details=details,
            )
        return ExactAuthError(
            f"Exact token endpoint answered {response.status_code} {code}",
            record=record,
            details=details,
        )


def _json_or_empty(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _utc(tokens: TokenSet | None) -> TokenSet | None:
    """Stored times without a zone (a hand-edited store) read as UTC."""
    if tokens is None:
        return None
    update = {
        name: moment.replace(tzinfo=UTC)
        for name in ("issued_at", "expires_at", "refresh_expires_at")
        if (moment := getattr(tokens, name)) is not None and moment.tzinfo is None
    }
    return tokens.model_copy(update=update) if update else tokens


def _lifetime(value: Any) -> int | None:
    """Seconds of ``expires_in`` (``"600"``, ``600``, ``"600.0"``); ``None`` if odd."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        seconds = float(str(value).strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or not 0 < seconds <= _MAX_ACCESS_LIFETIME:
        return None
    return int(seconds)


def _redact(text: str, secrets: list[str]) -> str:
    """``text`` with every secret we sent replaced, should Exact echo one back."""
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    return text
