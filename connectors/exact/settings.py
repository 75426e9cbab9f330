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
    base_url: str | None = None
    #: Country of the Exact host (``nl``, ``be``, ``fr``, ``de``, ``es``, ``uk``,
    #: ``us``), used when ``base_url`` is not given.
    country: str | None = None
    #: OAuth client id and secret of the app registered in the Exact App Center.
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    #: The Exact division (administration) number; mandatory, never guessed.
    division: int = Field(gt=0)
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
            if not text.isdigit():
                raise ValueError(
                    f"ambiguous division {value!r}: give exactly one number"
                )
            return int(text)
        return value

    @model_validator(mode="after")
    def _host_known(self) -> ExactSettings:
        if self.base_url is None and self.country is None:
            raise ValueError("give base_url or country (the Exact host)")
        if self.base_url is None and self.country not in COUNTRY_HOSTS:
            raise ValueError(
                f"unknown country {self.country!r}; one of {sorted(COUNTRY_HOSTS)}"
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
            first = err.errors()[0]
            key = ".".join(str(part) for part in first["loc"]) or "settings"
            raise ExactConfigurationError(
                first["msg"],
                record=f"backend {backend}",
                field=key,
                details={"errors": err.errors(include_url=False)},
            ) from err
