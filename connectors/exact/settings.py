"""Settings of one Exact Online backend: the ``[backends.<name>]`` section.

Every key is documented on :class:`ExactSettings`. The division is always explicit:
the connector never falls back on the user's "current" division, because the same
user may reach several administrations and writing invoices into the wrong one is
worse than not syncing at all. A missing or ambiguous division (a list, a text that
is not one number) is a :class:`~connectors.exact.errors.ExactConfigurationError`
raised when the connector is built, naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ExactConfigurationError

__all__ = ["COUNTRY_HOSTS", "DEFAULT_DELETED_ENTITY_TYPES", "ExactSettings"]

#: Exact's hosts per country; tokens and administrations never cross hosts.
COUNTRY_HOSTS = {
    "nl": "https://start.exactonline.nl",
    "be": "https://start.exactonline.be",
    "fr": "https://start.exactonline.fr",
    "de": "https://start.exactonline.de",
    "es": "https://start.exactonline.es",
    "uk": "https://start.exactonline.co.uk",
    "us": "https://start.exactonline.com",
}

#: The only host a ``base_url`` may name besides Exact's: the local sandbox.
LOOPBACK_HOST = "127.0.0.1"

#: Largest division number accepted (Exact's divisions are 32-bit integers).
MAX_DIVISION = 2**31 - 1

#: ``sync/Deleted`` EntityType codes as Exact documents them, mapped to our names.
#: Kept in settings so that a change on Exact's side is a configuration edit.
DEFAULT_DELETED_ENTITY_TYPES = {
    1: "transaction_line",
    2: "account",
    3: "address",
    4: "attachment",
    5: "contact",
    6: "document",
    7: "gl_account",
    8: "item_price",
    9: "item",
    10: "payment_term",
    12: "sales_order",
    13: "sales_invoice",
}


class ExactSettings(BaseModel):
    """The configuration keys of an Exact Online backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Exact host of the administration's country (``https://start.exactonline.be``);
    #: the sandbox's ``http://127.0.0.1:PORT`` in tests. Either this or ``country``.
    #: Any other host, plain ``http`` to Exact, a port, a path or user info is
    #: refused: the bearer token and the client secret go to this address.
    base_url: str | None = None
    #: Country of the Exact host (``nl``, ``be``, ``fr``, ``de``, ``es``, ``uk``,
    #: ``us``), used when ``base_url`` is not given.
    country: str | None = None
    #: OAuth client id and secret of the app registered in the Exact App Center.
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    #: The Exact division (administration) number; mandatory, never guessed.
    division: int = Field(gt=0, le=MAX_DIVISION)
    #: Redirect URI registered with the app, used by ``crm-sync auth``.
    redirect_uri: str | None = None
    #: Key of this backend's tokens in the token store (default ``exact:<backend>``).
    token_key: str | None = None
    #: How invoices are booked: ledger postings (Odoo invoices, Exact books) or
    #: item-based sales invoices.
    invoice_mode: Literal["sales_entries", "sales_invoices"] = "sales_entries"
    #: Code of the sales journal (``70`` in most Dutch administrations).
    journal: str = "70"
    #: Odoo income account code -> Exact GL account code of the revenue account.
    gl_accounts: dict[str, str] = Field(default_factory=dict)
    #: Exact GL account code used when a line's Odoo account is not in the map.
    default_gl_account: str | None = None
    #: ``<UNCL5305 category>:<percent>`` (``S:21``, ``AE:0``) -> Exact VAT code.
    vat_codes: dict[str, str] = Field(default_factory=dict)
    #: Item code used on every line in ``sales_invoices`` mode.
    item_code: str | None = None
    #: ``sync/Deleted`` EntityType -> entity name; unlisted types are skipped.
    deleted_entity_types: dict[int, str] = Field(
        default_factory=lambda: dict(DEFAULT_DELETED_ENTITY_TYPES)
    )
    #: Initial customer load through ``bulk/CRM/Accounts`` (1 call per 1,000) or
    #: through ``sync/CRM/Accounts`` from timestamp 1.
    initial_load: Literal["bulk", "sync"] = "bulk"
    #: Connect and read timeouts of every HTTP call, seconds.
    connect_timeout: float = Field(default=10.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    #: Exact refuses a refresh within 570 s of the previous one.
    min_refresh_age: float = Field(default=570.0, ge=0)
    #: Refresh when the access token has fewer seconds left than this.
    refresh_margin: float = Field(default=30.0, ge=0)
    #: Wait for the minute to reset when this few calls are left in it.
    minutely_reserve: int = Field(default=2, ge=0)
    #: Our own ceiling of calls per rolling minute and division (Exact allows 60).
    max_calls_per_minute: int = Field(default=60, gt=0)
    #: Attempts of one retryable call (first try included).
    max_attempts: int = Field(default=4, ge=1, le=10)
    #: Ceiling of one backoff wait, seconds.
    max_backoff: float = Field(default=30.0, gt=0)
    #: Read by the daemon (an alternative connector factory), ignored here.
    factory: str | None = None

    @field_validator("division", mode="before")
    @classmethod
    def _one_division(cls, value: Any) -> Any:
        if value is None or value == "":
            raise ValueError("the division is mandatory (an Exact division number)")
        if isinstance(value, bool | list | tuple | set | dict):
            raise ValueError(f"ambiguous division {value!r}: give exactly one number")
        if isinstance(value, str):
            text = value.strip()
            if not (text.isascii() and text.isdigit()):
                raise ValueError(
                    f"ambiguous division {value!r}: give exactly one number"
                )
            return int(text)
        return value

    @field_validator("base_url", mode="before")
    @classmethod
    def _exact_or_loopback(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("base_url must be a URL text")
        return _checked_base_url(value)

    @field_validator("country", mode="before")
    @classmethod
    def _country_lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _host_known(self) -> ExactSettings:
        if self.base_url is None and self.country is None:
            raise ValueError("give base_url or country (the Exact host)")
        if self.country is not None and self.country not in COUNTRY_HOSTS:
            raise ValueError(
                f"unknown country {self.country!r}; one of {sorted(COUNTRY_HOSTS)}"
            )
        if (
            self.base_url is not None
            and self.country is not None
            and urlsplit(self.base_url).hostname != LOOPBACK_HOST
            and self.base_url != COUNTRY_HOSTS[self.country]
        ):
            raise ValueError(
                f"country {self.country!r} is served by "
                f"{COUNTRY_HOSTS[self.country]}, not by {self.base_url}"
            )
        return self

    @property
    def host(self) -> str:
        """The Exact base URL without trailing slash."""
        if self.base_url:
            return self.base_url.rstrip("/")
        return COUNTRY_HOSTS[str(self.country)]

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], *, backend: str = "exact"
    ) -> ExactSettings:
        """Validate a configuration section; any problem names backend and key."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as err:
            # Without the input: it would carry the whole section, secret included.
            errors = err.errors(include_url=False, include_input=False)
            first = errors[0]
            key = ".".join(str(part) for part in first["loc"]) or "settings"
            if key == "settings" and "country" in first["msg"]:
                key = "country"
            raise ExactConfigurationError(
                first["msg"],
                record=f"backend {backend}",
                field=key,
                details={"errors": _plain(errors)},
            ) from None


def _checked_base_url(value: str) -> str:
    """``scheme://host[:port]`` of an Exact host or of the loopback sandbox."""
    text = value.strip().rstrip("/")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as err:
        raise ValueError(f"base_url {value!r} is not a URL") from err
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if parts.username is not None or parts.password is not None:
        raise ValueError("base_url must not carry user or password")
    if parts.path or parts.query or parts.fragment:
        raise ValueError(f"base_url {value!r} must be the host only, without a path")
    if host == LOOPBACK_HOST and scheme in {"http", "https"}:
        return f"{scheme}://{host}" + (f":{port}" if port else "")
    exact = f"{scheme}://{host}"
    if port is None and exact in COUNTRY_HOSTS.values():
        return exact
    raise ValueError(
        f"base_url {value!r} is not an Exact host ({', '.join(COUNTRY_HOSTS.values())})"
        f" nor the {LOOPBACK_HOST} sandbox"
    )


def _plain(errors: list[Any]) -> list[dict[str, Any]]:
    """Pydantic errors reduced to location, type and message."""
    return [
        {"loc": list(error["loc"]), "type": error["type"], "msg": error["msg"]}
        for error in errors
    ]
