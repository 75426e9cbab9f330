"""The daemon's configuration: one TOML file, overridden by environment variables.

The file says how to reach Odoo, where the local state lives, how to log, and holds
one section per sync backend, keyed by the backend's id in Odoo::

    [odoo]
    url = "http://127.0.0.1:8069"
    database = "crm"
    login = "sync-bot@example.com"
    api_key = "..."

    [backends.3]          # crm.sync.backend id 3 (an Exact Online backend)
    client_id = "..."

Schedules are *not* configured here: admins set them on ``crm.sync.backend`` in Odoo
and the daemon follows. Every value can be overridden by an environment variable
``CRM_SYNC_<SECTION>__<KEY>`` (``CRM_SYNC_ODOO__API_KEY``,
``CRM_SYNC_BACKENDS__3__CLIENT_SECRET``); secrets are best passed that way.
A backend section is handed, as it is, to the connector as
``ConnectorContext.settings``; the connector validates its own keys.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from .kernel.errors import ConfigurationError

__all__ = [
    "DEFAULT_CONFIG_PATHS",
    "DaemonSettings",
    "OdooSettings",
    "configure_logging",
    "example_config",
    "load_settings",
]

#: Where the configuration is looked for when ``--config`` is not given.
DEFAULT_CONFIG_PATHS = (Path("crm-sync.toml"), Path(".crm-sync/crm-sync.toml"))
ENV_CONFIG = "CRM_SYNC_CONFIG"


class OdooSettings(BaseModel):
    """How the daemon reaches Odoo.

    ``transport`` ``jsonrpc`` calls ``/jsonrpc`` ``execute_kw`` (works with API
    keys); ``session`` logs in through ``/web/session/authenticate`` and calls
    ``/web/dataset/call_kw`` with the session cookie (password logins only).
    A misspelt key is refused rather than silently replaced by its default.
    """

    model_config = ConfigDict(extra="forbid")

    url: str = "http://127.0.0.1:8069"
    database: str
    login: str
    api_key: SecretStr
    transport: Literal["jsonrpc", "session"] = "jsonrpc"
    timeout: float = Field(default=120.0, gt=0, allow_inf_nan=False)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None:
            # never echoed: the user part may hold a password
            raise ValueError(
                "odoo.url must not carry a user or password; use odoo.login and "
                "odoo.api_key"
            )
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"odoo.url must start with http:// or https://: {value}")
        try:
            parts.port  # noqa: B018 - raises on a port out of range
        except ValueError as err:
            raise ValueError(f"odoo.url has a bad port ({err}): {value}") from None
        if parts.path.strip("/") or parts.query or parts.fragment:
            # the daemon talks to /jsonrpc of the host: a path would be ignored
            raise ValueError(
                f"odoo.url must be scheme://host[:port] only, without a path, "
                f"query or fragment: {value}"
            )
        return value.rstrip("/")


class DaemonSettings(BaseSettings):
    """Everything the daemon reads at start-up, validated once."""

    model_config = SettingsConfigDict(
        env_prefix="CRM_SYNC_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    odoo: OdooSettings
    state_dir: Path = Path(".crm-sync")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    #: How often the daemon re-reads the backends and their schedules from Odoo.
    poll_seconds: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    #: Records per Odoo write batch and per keyset page (Odoo's add-on caps at 500).
    page_size: int = Field(default=500, ge=1, le=500)
    #: Remote records written to Odoo per batch (one create + one link upsert).
    batch_size: int = Field(default=1000, ge=1, le=5000)
    #: Auto-link a record without identifiers on an exact name + postcode match
    #: when neither side has an identifier (else it becomes a proposal).
    link_on_name_and_postcode: bool = True
    backends: dict[str, dict[str, Any]] = {}

    @field_validator("backends")
    @classmethod
    def _check_backend_ids(
        cls, value: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        # a section the daemon never looks up would be silently unused
        for key in value:
            if not (key.isascii() and key.isdigit()):
                raise ValueError(
                    f"[backends.{key}]: the section name must be the numeric id of "
                    "the crm.sync.backend in Odoo, e.g. [backends.3]"
                )
        return {str(int(key)): section for key, section in value.items()}

    @field_validator("state_dir")
    @classmethod
    def _check_state_dir(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} exists and is not a folder")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # environment first, then the file (``toml_file`` is set by load_settings)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)

    def backend_settings(self, backend_id: int) -> dict[str, Any]:
        """The configuration section of one backend (empty when there is none)."""
        return dict(self.backends.get(str(backend_id), {}))


def _find_config(path: str | os.PathLike[str] | None) -> Path | None:
    if path:
        return Path(path)
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate
    return None


def load_settings(path: str | os.PathLike[str] | None = None) -> DaemonSettings:
    """Read the TOML file (explicit, ``$CRM_SYNC_CONFIG`` or a default path) and
    the environment; raise :class:`ConfigurationError` naming each bad field."""
    found = _find_config(path)
    if found is not None and found.is_dir():
        raise ConfigurationError(f"configuration file {found} is a directory")
    if found is not None and not found.is_file():
        raise ConfigurationError(f"configuration file {found} does not exist")

    class _FileSettings(DaemonSettings):
        model_config = SettingsConfigDict(toml_file=found)

    try:
        settings: DaemonSettings = _FileSettings()  # type: ignore[call-arg]
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        source = (
            f"{found} and CRM_SYNC_* environment variables"
            if found
            else "no configuration file: give one with -c FILE (crm-sync init "
            "writes an example) or set CRM_SYNC_CONFIG; CRM_SYNC_* environment "
            "variables"
        )
        raise ConfigurationError(
            f"invalid configuration ({source}): {problems}"
        ) from err
    except SettingsError as err:  # CRM_SYNC_ODOO='…' that is no JSON object
        raise ConfigurationError(
            f"cannot read the CRM_SYNC_* environment variables: {err} (a whole "
            "section such as CRM_SYNC_ODOO must hold a JSON object; single keys "
            "are CRM_SYNC_ODOO__URL …)"
        ) from err
    except ValueError as err:  # malformed TOML
        raise ConfigurationError(f"cannot read configuration {found}: {err}") from err
    return settings


def example_config() -> str:
    """The commented example that ``crm-sync init`` writes."""
    return """\
# crm-sync configuration. Every key can be overridden by an environment variable
# CRM_SYNC_<SECTION>__<KEY>, e.g. CRM_SYNC_ODOO__API_KEY or
# CRM_SYNC_BACKENDS__3__CLIENT_SECRET: keep secrets out of this file if you can.
# Schedules are not set here: configure them on the sync backends in Odoo.

# Where the daemon keeps its SQLite state (cursors, tokens, outbox, dead letters).
state_dir = ".crm-sync"
# DEBUG, INFO, WARNING or ERROR; "text" or "json" (one JSON object per line).
log_level = "INFO"
log_format = "text"
# How often (seconds) the backends and their schedules are re-read from Odoo.
poll_seconds = 60
# Rows per Odoo read (at most 500) and remote records per Odoo write batch.
page_size = 500
batch_size = 1000
# Link records that carry no identifier on an exact name + postcode match.
link_on_name_and_postcode = true

[odoo]
url = "http://127.0.0.1:8069"
database = "crm"
# A user in the group "Sync daemon (technical)"; an API key works with the
# default "jsonrpc" transport ("session" needs a password).
login = "sync-bot@example.com"
api_key = "change-me"
transport = "jsonrpc"
timeout = 120

# One section per crm.sync.backend, keyed by its id in Odoo (see the backend's
# form in Odoo). The keys are those of the backend's connector.
# [backends.1]
# client_id = "..."
# client_secret = "..."
# redirect_uri = "http://127.0.0.1:8765/callback"
"""


class _JsonFormatter(logging.Formatter):
    """One JSON object per log record: time, level, logger, message (+ error)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Route the root logger to stderr in the configured level and format."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
