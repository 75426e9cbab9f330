"""Typed settings of the two Sage backends, read once at the edge.

The daemon hands each connector its backend section of the configuration as a plain
mapping (``ConnectorContext.settings``); the factories validate it into these models
so that a missing or contradictory value fails at start-up with the field named, not
in the middle of a run. Example TOML sections::

    [backends.sage_be]
    kind = "sage_accounting"
    client_id = "…"
    client_secret = "…"
    business_id = "3e0b…"
    default_ledger_account_id = "9a99…"
    [backends.sage_be.tax_rates]      # "<category>:<percent>" -> Sage tax_rate id
    "S:21" = "BE_STANDARD"
    "Z:0" = "BE_ZERO"

    [backends.x3_fr]
    kind = "sage_x3"
    endpoint_url = "https://x3.example.fr/soap-generic/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC"
    username = "WSUSER"
    password = "…"
    pool_alias = "CRMSYNC"
    language = "FRA"
    sales_site = "FR011"
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = ["SageAccountingSettings", "SageX3Settings", "tax_key"]


def tax_key(category: str, percent: Decimal | str | int) -> str:
    """The mapping key of a VAT category and rate: ``tax_key("S", "21.00") == "S:21"``.

    >>> tax_key("S", Decimal("5.50"))
    'S:5.5'
    """
    try:
        value = Decimal(str(percent))
    except InvalidOperation as err:
        raise ValueError(f"not a tax percentage: {percent!r}") from err
    text = format(value.normalize(), "f") if value else "0"
    return f"{category.strip().upper()}:{text}"


def _normalise_tax_keys(value: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, target in value.items():
        category, sep, percent = key.partition(":")
        if not sep:
            raise ValueError(
                f"tax mapping key {key!r} must read '<category>:<percent>'"
            )
        out[tax_key(category, percent)] = target
    return out


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class SageAccountingSettings(_Settings):
    """One Sage Accounting v3.1 business reached through one OAuth application."""

    #: OAuth application id and secret from developer.sage.com.
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    #: The business every request is pinned to (header ``X-Business``); never the
    #: user's implicit "lead" business.
    business_id: str = Field(min_length=1)
    #: Redirect URI registered with the application, used by ``crm-sync auth``.
    redirect_uri: str | None = None
    scope: Literal["full_access", "readonly"] = "full_access"
    #: Browser consent page, token endpoint and API base (overridden for sandboxes).
    authorize_url: str = "https://www.sageone.com/oauth2/auth/central?filter=apiv3.1"
    token_url: str = "https://oauth.accounting.sage.com/token"
    api_base: str = "https://api.accounting.sage.com/v3.1"
    #: Seconds to wait for a connection and for an answer; no call is unbounded.
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    #: Rows per list page; Sage accepts at most 200.
    items_per_page: int = Field(default=200, ge=1, le=200)
    #: Refresh the access token when fewer seconds than this are left.
    refresh_margin_seconds: int = Field(default=60, ge=0)
    #: Warn when the refresh token dies within this many days.
    refresh_warning_days: int = Field(default=5, ge=0)
    #: Attempts for idempotent calls (GET, lookups); jittered exponential back-off.
    max_attempts: int = Field(default=4, ge=1, le=10)
    backoff_seconds: float = Field(default=0.5, ge=0)
    backoff_max_seconds: float = Field(default=30.0, ge=0)
    #: Contact type pulled and created as customers.
    contact_type_id: str = "CUSTOMER"
    #: Odoo account code -> Sage ledger_account id for invoice lines.
    ledger_accounts: dict[str, str] = {}
    #: Ledger account for lines whose account code is not mapped.
    default_ledger_account_id: str | None = None
    #: ``"<category>:<percent>"`` (UNCL5305 category, e.g. ``"S:21"``) -> tax_rate id.
    tax_rates: dict[str, str] = {}

    _check_tax = field_validator("tax_rates")(_normalise_tax_keys)

    @field_validator("api_base", "token_url", "authorize_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value.rstrip("/")


class SageX3Settings(_Settings):
    """One Sage X3 folder reached through the classic SOAP web services."""

    #: ``…/soap-generic/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC``.
    endpoint_url: str
    #: HTTP Basic credentials of the web-service user (V12 PU9 and later).
    username: str = Field(min_length=1)
    password: SecretStr
    #: Call context: language code, SOAP pool alias, pool id and request options.
    language: str = Field(default="FRA", min_length=3, max_length=3)
    pool_alias: str = Field(min_length=1)
    pool_id: str = ""
    request_config: str = "adxwss.optreturn=XML&adxwss.beautify=false"
    #: Publication codes (GESAWE) of the customer and sales-invoice objects.
    customer_publication: str = Field(default="BPC", max_length=10)
    invoice_publication: str = Field(default="SIH", max_length=10)
    #: Seconds for loading the WSDL and for each SOAP operation; always bounded.
    load_timeout: float = Field(default=30.0, gt=0)
    operation_timeout: float = Field(default=60.0, gt=0)
    #: Attempts for pool-busy answers and timeouts (documented maximum: 3).
    max_attempts: int = Field(default=3, ge=1, le=3)
    backoff_seconds: float = Field(default=1.0, ge=0)
    backoff_max_seconds: float = Field(default=20.0, ge=0)
    #: Rows asked of ``query``.
    query_list_size: int = Field(default=500, ge=1, le=10000)
    #: Fixed customer fields X3 demands (e.g. ``{"BCGCOD": "FRA"}``).
    customer_defaults: dict[str, str] = {}
    #: Optional BPC field (e.g. a custom ``ZCRMREF``) that stores our idempotency
    #: reference, so a customer without VAT number can still be looked up after a
    #: save whose outcome is unknown. Without it such a save is never repeated.
    customer_reference_field: str | None = None
    #: Sales site, invoice types and the SIH field that carries Odoo's number.
    sales_site: str = ""
    invoice_type: str = "FAC"
    credit_note_type: str = "AVO"
    invoice_reference_field: str = "BPRVCR"
    #: Odoo account code -> X3 item reference; lines not mapped use the default.
    items: dict[str, str] = {}
    default_item: str | None = None
    #: ``"<category>:<percent>"`` -> X3 tax level code (VACITM).
    tax_codes: dict[str, str] = {}

    _check_tax = field_validator("tax_codes")(_normalise_tax_keys)

    @field_validator("endpoint_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value
