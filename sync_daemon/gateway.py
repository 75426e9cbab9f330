"""The Odoo gateway: every call the daemon makes to Odoo goes through here.

Built on odoorpc's JSON-RPC connector, with the rules a long-running sync needs:

- **Batched**: reads page by keyset (``id > last``, ``order="id asc"``, an explicit
  field list, at most 500 rows), creates and writes take whole lists, and the
  add-on's ``daemon_*`` methods take whole lists too.
- **Schema-aware**: the server version is read once at connection and
  ``fields_get`` once per model per run (:meth:`OdooGateway.new_run`); a value for a
  field the server does not have is never sent, and never asked for.
- **Company-first context**: every call carries ``allowed_company_ids`` with the
  target company first, then the user's other companies, plus the configured
  ``lang`` and ``tz`` (Odoo takes the active company of a call from that list, not
  from the record values).
- **Session expiry** (JSON-RPC fault code 100, ``SessionExpiredException``): log in
  again once and replay the call once; a second expiry is an :class:`AuthError`.
- **Typed errors** on the kernel tree: ``AccessError`` is
  :class:`PermissionDenied` (never retried), ``ValidationError``/``UserError`` are
  :class:`DataError`, 5xx and busy databases :class:`RemoteUnavailable`, timeouts
  :class:`RemoteTimeout`, refused connections :class:`NetworkError`.
- **Retries** only for retryable errors and only for calls that are safe to repeat
  (reads and the add-on's idempotent upserts). A create whose answer was lost is
  never repeated blindly: the caller's lookup by external key runs first, and only
  what it cannot find is created again. A write is read back before it is repeated.

The password or API key is never logged and never put in an exception.
"""

from __future__ import annotations

import functools
import http.client
import json
import logging
import socket
import urllib.error
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

import odoorpc
import odoorpc.error

from .kernel.errors import (
    AuthError,
    ConfigurationError,
    DataError,
    NetworkError,
    NotFound,
    PermanentError,
    PermissionDenied,
    RateLimited,
    RemoteRejected,
    RemoteTimeout,
    RemoteUnavailable,
    RetryableError,
    SyncError,
)
from .retry import RetryPolicy

__all__ = ["PAGE_LIMIT", "Command", "OdooGateway"]

_logger = logging.getLogger(__name__)

#: The JSON-RPC services whose argument lists carry the secret at position 2
#: (``[db, login or uid, password, ...]``), and the one whose every argument may.
_SECRET_AT_2 = frozenset({"common", "object"})
_SECRET_EVERYWHERE = frozenset({"db"})
_HIDDEN = "**********"


class _WireRedactor(logging.Filter):
    """Hide the password or API key in odoorpc's wire log (``-vv``, DEBUG).

    odoorpc logs every JSON-RPC request and answer at DEBUG and hides only a
    parameter named ``password``; the ``call`` service passes the secret inside
    ``args`` instead, so this filter masks it there before anything is written.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, Mapping) and isinstance(args.get("data"), Mapping):
            record.args = {**args, "data": _redacted(args["data"])}
        return True


def _redacted(data: Mapping[str, Any]) -> Mapping[str, Any]:
    params = data.get("params")
    if not isinstance(params, Mapping) or not isinstance(params.get("args"), list):
        return data
    service, wire_args = params.get("service"), list(params["args"])
    if service in _SECRET_EVERYWHERE:
        wire_args = [_HIDDEN] * len(wire_args)
    elif service in _SECRET_AT_2 and len(wire_args) > 2:
        wire_args[2] = _HIDDEN
    else:
        return data
    return {**data, "params": {**params, "args": wire_args}}


logging.getLogger("odoorpc.rpc.jsonrpclib").addFilter(_WireRedactor())

#: The largest page the gateway ever asks for.
PAGE_LIMIT = 500
#: Ids per ``read``: the ids bound the answer, so one engine batch (1,000 records)
#: is read in one call, not two pages (that would be 4 calls per 1,000 updates).
READ_LIMIT = 1000

#: Methods that only read, or upsert by a key: safe to repeat after a lost answer.
_SAFE_METHODS = frozenset(
    {
        "search_read",
        "read",
        "search",
        "search_count",
        "fields_get",
        "name_search",
        "read_group",
        "context_get",
        "daemon_get_config",
        "daemon_read_links",
        "daemon_fetch_actions",
        "daemon_consent_changes",
        "daemon_partner_keys",
        "daemon_upsert_links",
        "daemon_unlink_links",
        "daemon_raise_issues",
        "daemon_resolve_issues",
        "daemon_report_health",
        "daemon_ack_run_requests",
        "daemon_finish_runs",
    }
)

_SESSION_EXPIRED = "odoo.http.SessionExpiredException"
_PERMISSION = {"odoo.exceptions.AccessError", "odoo.exceptions.AccessDenied"}
_DATA = {
    "odoo.exceptions.ValidationError",
    "odoo.exceptions.UserError",
    "builtins.ValueError",
    "builtins.TypeError",
    "builtins.KeyError",
}
_BUSY = {
    "psycopg2.errors.SerializationFailure",
    "psycopg2.errors.LockNotAvailable",
    "psycopg2.extensions.TransactionRollbackError",
    "odoo.exceptions.ConcurrencyError",
    "psycopg2.OperationalError",
}


class Command:
    """Odoo 18 x2many write commands, as the JSON-RPC API expects them.

    A many2many value is always a *list* of these triples, never a bare id list.

    >>> Command.set([3, 7]), Command.link(9), Command.unlink(3), Command.clear()
    ((6, 0, [3, 7]), (4, 9, 0), (3, 3, 0), (5, 0, 0))
    """

    @staticmethod
    def create(values: Mapping[str, Any]) -> tuple[int, int, dict[str, Any]]:
        return (0, 0, dict(values))

    @staticmethod
    def update(record_id: int, values: Mapping[str, Any]) -> tuple[int, int, Any]:
        return (1, record_id, dict(values))

    @staticmethod
    def unlink(record_id: int) -> tuple[int, int, int]:
        """Detach ``record_id`` (the tag itself is kept)."""
        return (3, record_id, 0)

    @staticmethod
    def link(record_id: int) -> tuple[int, int, int]:
        return (4, record_id, 0)

    @staticmethod
    def clear() -> tuple[int, int, int]:
        return (5, 0, 0)

    @staticmethod
    def set(record_ids: Iterable[int]) -> tuple[int, int, list[int]]:
        return (6, 0, list(record_ids))


class _SessionExpired(Exception):
    pass


def _error_data(info: Any) -> tuple[int | None, str, str]:
    if not isinstance(info, dict):
        return None, "", str(info)
    data = info.get("data") or {}
    return info.get("code"), str(data.get("name") or ""), str(data.get("message") or "")


#: Seconds the first call (the server version) may take: Odoo answers it at once.
CONNECT_TIMEOUT = 15.0


class OdooGateway:
    """One authenticated connection to one Odoo database.

    :param url: ``http(s)://host:port`` of the Odoo server.
    :param database: database name.
    :param login: the daemon user's login.
    :param secret: its API key (``jsonrpc``) or password (``session`` transport).
    :param transport: ``jsonrpc`` (``/jsonrpc`` execute_kw) or ``session``
        (``/web/session/authenticate`` + ``/web/dataset/call_kw``).
    :param timeout: seconds before one HTTP call is abandoned.
    :param retry: policy for retryable errors on calls that are safe to repeat.
    """

    def __init__(
        self,
        url: str,
        database: str,
        login: str,
        secret: str,
        *,
        transport: str = "jsonrpc",
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigurationError(f"odoo.url is not an http(s) URL: {url}")
        if transport not in ("jsonrpc", "session"):
            raise ConfigurationError(
                f"odoo.transport must be jsonrpc or session: {transport}"
            )
        self.url = url
        self.database = database
        self.login_name = login
        self._secret = secret
        self.transport = transport
        self._host = parsed.hostname
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._protocol = "jsonrpc+ssl" if parsed.scheme == "https" else "jsonrpc"
        self._timeout = timeout
        self.retry = retry or RetryPolicy()
        self._odoo: odoorpc.ODOO | None = None
        self.uid: int | None = None
        self.version: str | None = None
        self.version_info: list[Any] = []
        self.user_company_ids: list[int] = []
        self.calls = 0
        #: calls per "model.method" (plus "login"/"version"), for benchmarks
        self.call_counts: Counter[str] = Counter()
        self._fields: dict[str, dict[str, Any]] = {}
        self._context: dict[str, Any] = {}

    # -- connection -------------------------------------------------------------

    def connect(self) -> OdooGateway:
        """Read the server version, log in and learn the user's companies."""
        # a server that accepts the connection but never answers must not hold
        # ``check`` or start-up for the whole call timeout: the version probe is
        # short, later calls get ``timeout``
        probe = min(self._timeout, CONNECT_TIMEOUT)
        try:
            self.calls += 1
            self._odoo = odoorpc.ODOO(
                self._host,
                protocol=self._protocol,
                port=self._port,
                timeout=probe,
            )
        except Exception as err:  # odoorpc wraps little; classify what it raised
            raise self._transport_error(err, "version_info", probe) from err
        self._odoo.config["timeout"] = self._timeout
        self.version = str(self._odoo.version or "")
        major = self.version.split(".")[0].split("~")[-1]
        if major.isdigit() and int(major) < 17:
            raise ConfigurationError(
                f"Odoo {self.version} at {self.url} is too old: Odoo 18 is expected"
            )
        self._login()
        users = self.call(
            "res.users", "read", [self.uid], fields=["company_id", "company_ids"]
        )
        if users:
            default = users[0]["company_id"]
            default_id = default[0] if isinstance(default, list | tuple) else default
            others = [c for c in users[0].get("company_ids") or [] if c != default_id]
            self.user_company_ids = [default_id, *others] if default_id else others
        return self

    def _login(self) -> None:
        if self._odoo is None:
            raise ConfigurationError("connect() was not called")
        try:
            if self.transport == "session":
                data = self._post(
                    "/web/session/authenticate",
                    {
                        "db": self.database,
                        "login": self.login_name,
                        "password": self._secret,
                    },
                )
                result = data.get("result") or {}
                uid = result.get("uid") if isinstance(result, dict) else None
            else:
                data = self._post(
                    "/jsonrpc",
                    {
                        "service": "common",
                        "method": "login",
                        "args": [self.database, self.login_name, self._secret],
                    },
                )
                uid = data.get("result")
        except PermissionDenied as err:
            raise AuthError(
                f"Odoo refused the login of {self.login_name}",
                record=f"Odoo {self.database}",
            ) from err
        if not uid:
            raise AuthError(
                f"Odoo refused the login of {self.login_name} (wrong login or key)",
                record=f"Odoo {self.database}",
            )
        self.uid = int(uid)
        _logger.info("logged in to %s as uid %s", self.url, self.uid)

    def close(self) -> None:
        self._odoo = None

    # -- context -----------------------------------------------------------------

    def use_company(
        self, company_id: int | None, *, lang: str | None = None, tz: str | None = None
    ) -> None:
        """Make ``company_id`` the active company of every following call."""
        context: dict[str, Any] = {}
        if company_id:
            others = [c for c in self.user_company_ids if c != company_id]
            context["allowed_company_ids"] = [company_id, *others]
        if lang:
            context["lang"] = lang
        if tz:
            context["tz"] = tz
        self._context = context

    @property
    def context(self) -> dict[str, Any]:
        return dict(self._context)

    def new_run(self) -> None:
        """Forget cached schemas: ``fields_get`` is read again, once per model."""
        self._fields.clear()

    # -- schema ------------------------------------------------------------------

    def fields(self, model: str) -> dict[str, Any]:
        """``fields_get`` of ``model`` (type, relation, store), cached for the run."""
        if model not in self._fields:
            self._fields[model] = self.call(
                model, "fields_get", attributes=["type", "relation", "store", "string"]
            )
        return self._fields[model]

    def has_field(self, model: str, name: str) -> bool:
        return name in self.fields(model)

    def known_fields(self, model: str, names: Iterable[str]) -> list[str]:
        """Keep the names the server has, in order."""
        known = self.fields(model)
        return [name for name in names if name in known]

    def clean_values(self, model: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Drop keys the server does not have (logged at DEBUG)."""
        known = self.fields(model)
        dropped = [key for key in values if key not in known]
        if dropped:
            _logger.debug("%s: not sending unknown fields %s", model, dropped)
        return {key: value for key, value in values.items() if key in known}

    # -- low level ---------------------------------------------------------------

    def _post(self, url: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self._odoo is not None
        self.calls += 1
        try:
            return self._odoo.json(url, params)
        except odoorpc.error.RPCError as err:
            raise self._rpc_error(err.info, url) from None
        except Exception as err:
            raise self._transport_error(err, url) from err

    def _rpc_error(self, info: Any, where: str) -> Exception:
        code, name, message = _error_data(info)
        if code == 100 or name == _SESSION_EXPIRED:
            return _SessionExpired(message)
        if name in _PERMISSION:
            return PermissionDenied(f"Odoo refused access: {message}", record=where)
        if name == "odoo.exceptions.MissingError":
            return NotFound(f"Odoo: {message}", record=where)
        if name in _DATA:
            return DataError(f"Odoo rejected the data: {message}", record=where)
        if name in _BUSY:
            return RemoteUnavailable(f"Odoo is busy: {message}", record=where)
        return RemoteRejected(
            f"Odoo error {name or code}: {message}",
            record=where,
            details={"code": code, "name": name},
        )

    def _transport_error(
        self, err: Exception, where: str, timeout: float | None = None
    ) -> SyncError:
        if isinstance(err, SyncError):
            return err
        if isinstance(err, urllib.error.HTTPError):
            status = err.code
            if status == 429:
                after = err.headers.get("Retry-After") if err.headers else None
                return RateLimited(
                    f"Odoo answered 429 on {where}",
                    retry_after=float(after) if after and after.isdigit() else None,
                )
            if status in (502, 503, 504) or status >= 500:
                return RemoteUnavailable(f"Odoo answered HTTP {status} on {where}")
            if status == 404:
                return ConfigurationError(
                    f"Odoo answered 404 on {where}: check odoo.url and odoo.database"
                )
            return RemoteRejected(f"Odoo answered HTTP {status} on {where}")
        reason = getattr(err, "reason", None)
        if isinstance(err, TimeoutError | socket.timeout) or isinstance(
            reason, TimeoutError | socket.timeout
        ):
            waited = self._timeout if timeout is None else timeout
            return RemoteTimeout(f"Odoo did not answer {where} in {waited:g} s")
        if isinstance(
            err,
            urllib.error.URLError
            | ConnectionError
            | http.client.HTTPException
            | OSError,
        ):
            return NetworkError(f"cannot reach Odoo at {self.url}: {reason or err}")
        if isinstance(err, json.JSONDecodeError | ValueError):
            return RemoteUnavailable(f"Odoo sent an unreadable answer on {where}")
        return NetworkError(f"Odoo call {where} failed: {type(err).__name__}")

    def _execute(
        self, model: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        if self._odoo is None or self.uid is None:
            raise ConfigurationError("the Odoo gateway is not connected")
        self.call_counts[f"{model}.{method}"] += 1
        kwargs = dict(kwargs)
        context = {**self._context, **(kwargs.pop("context", None) or {})}
        if context:
            kwargs["context"] = context
        if self.transport == "session":
            data = self._post(
                f"/web/dataset/call_kw/{model}/{method}",
                {"model": model, "method": method, "args": args, "kwargs": kwargs},
            )
        else:
            data = self._post(
                "/jsonrpc",
                {
                    "service": "object",
                    "method": "execute_kw",
                    "args": [
                        self.database,
                        self.uid,
                        self._secret,
                        model,
                        method,
                        args,
                        kwargs,
                    ],
                },
            )
        return data.get("result")

    def _execute_relogin(
        self, model: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        """One call; on session expiry log in again once and replay it once."""
        try:
            return self._execute(model, method, args, kwargs)
        except _SessionExpired:
            _logger.info(
                "Odoo session expired during %s.%s: logging in again", model, method
            )
        self._login()
        try:
            return self._execute(model, method, args, kwargs)
        except _SessionExpired as err:
            raise AuthError(
                f"Odoo session expired again right after a new login "
                f"({model}.{method})",
                record=f"Odoo {self.database}",
            ) from err

    def call(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``model.method(*args, **kwargs)`` with the current context.

        Calls that are safe to repeat are retried on retryable errors; others are
        sent once (see :meth:`create` and :meth:`write` for recovery).
        """
        run = lambda: self._execute_relogin(model, method, list(args), kwargs)  # noqa: E731
        if method in _SAFE_METHODS:
            return self.retry.call(run)
        return run()

    # -- reads -------------------------------------------------------------------

    def search_read_pages(
        self,
        model: str,
        domain: Sequence[Any],
        fields: Sequence[str],
        *,
        page_size: int = PAGE_LIMIT,
        after_id: int = 0,
        context: Mapping[str, Any] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``search_read`` by keyset on id: stable while rows are added."""
        limit = max(1, min(page_size, PAGE_LIMIT))
        wanted = self.known_fields(model, ["id", *[f for f in fields if f != "id"]])
        last = after_id
        while True:
            rows = self.call(
                model,
                "search_read",
                [*domain, ("id", ">", last)],
                fields=wanted,
                limit=limit,
                order="id asc",
                context=dict(context or {}),
            )
            if rows:
                yield rows
                last = rows[-1]["id"]
            if len(rows) < limit:
                return

    def search_read_all(
        self,
        model: str,
        domain: Sequence[Any],
        fields: Sequence[str],
        **kwargs: Any,
    ) -> list[dict[str, Any]]:
        return [
            row
            for page in self.search_read_pages(model, domain, fields, **kwargs)
            for row in page
        ]

    def read(
        self, model: str, ids: Sequence[int], fields: Sequence[str]
    ) -> list[dict[str, Any]]:
        """``read`` in chunks of :data:`READ_LIMIT` ids, unknown fields left out."""
        wanted = self.known_fields(model, fields)
        rows: list[dict[str, Any]] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), READ_LIMIT):
            rows.extend(
                self.call(
                    model, "read", unique[start : start + READ_LIMIT], fields=wanted
                )
            )
        return rows

    # -- writes ------------------------------------------------------------------

    def create(
        self,
        model: str,
        values_list: Sequence[Mapping[str, Any]],
        *,
        find_existing: Callable[[list[dict[str, Any]]], list[int | None]] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> list[int]:
        """Create records in one call and return their ids, in order.

        When the answer is lost (timeout, reset, 5xx), ``find_existing`` is asked
        which of the values already exist in Odoo (by their external key); only the
        others are sent again, except after a timeout, when Odoo may still be
        working on the request: then the error goes up. Without ``find_existing``
        the error goes up too: a create is never repeated blindly.
        """
        if not values_list:
            return []
        cleaned = [self.clean_values(model, values) for values in values_list]
        attempts = 0
        ids: list[int | None] = [None] * len(cleaned)
        todo = list(range(len(cleaned)))
        while True:
            attempts += 1
            try:
                created = self._execute_relogin(
                    model,
                    "create",
                    [[cleaned[i] for i in todo]],
                    {"context": dict(context)} if context else {},
                )
            except RetryableError as err:
                if find_existing is None or attempts >= self.retry.attempts:
                    raise
                _logger.warning(
                    "%s.create of %d records: answer lost (%s); looking them up "
                    "before any re-send",
                    model,
                    len(todo),
                    type(err).__name__,
                )
                pending = [cleaned[i] for i in todo]
                found = self.retry.call(functools.partial(find_existing, pending))
                for index, existing in zip(list(todo), found, strict=True):
                    if existing:
                        ids[index] = existing
                todo = [i for i in todo if ids[i] is None]
                if not todo:
                    return [int(i) for i in ids if i is not None]
                if isinstance(err, RemoteTimeout):
                    # Odoo goes on with a request whose caller stopped waiting:
                    # the create may still commit after this lookup, so "not
                    # found" proves nothing. Nothing is sent again; the caller's
                    # next attempt looks the records up again first.
                    raise
                continue
            created_ids = created if isinstance(created, list) else [created]
            for index, new_id in zip(todo, created_ids, strict=True):
                ids[index] = new_id
            return [int(i) for i in ids if i is not None]

    def write_many(
        self, model: str, updates: Mapping[int, Mapping[str, Any]]
    ) -> dict[int, SyncError]:
        """Write different values on different records in as few calls as possible.

        Records getting the same values share one ``write``. Records with plain
        values (text, numbers, many2one ids) but different ones go through one
        ``load`` per set of fields, with the database id in the ``.id`` column:
        Odoo's batch import, which updates existing records in one transaction
        and rolls the whole batch back on any error. Many2many commands, and a
        batch that ``load`` refused, are written one record at a time so that
        only the faulty record fails. Returns the errors by record id.
        """
        failures: dict[int, SyncError] = {}
        cleaned = {rid: self.clean_values(model, v) for rid, v in updates.items()}
        cleaned = {rid: v for rid, v in cleaned.items() if v}
        groups: dict[str, list[int]] = {}
        for rid, values in cleaned.items():
            key = json.dumps(values, sort_keys=True, default=str)
            groups.setdefault(key, []).append(rid)
        singles: list[int] = []
        for ids in groups.values():
            if len(ids) > 1:
                self._write_or_isolate(model, ids, cleaned[ids[0]], failures)
            else:
                singles.extend(ids)
        by_fields: dict[tuple[str, ...], list[int]] = {}
        for rid in singles:
            values = cleaned[rid]
            if all(_loadable(v) for v in values.values()):
                by_fields.setdefault(tuple(sorted(values)), []).append(rid)
            else:
                self._write_or_isolate(model, [rid], values, failures)
        known = self.fields(model)
        for names, ids in by_fields.items():
            if len(ids) == 1:
                for rid in ids:
                    self._write_or_isolate(model, [rid], cleaned[rid], failures)
                continue
            columns = [".id"] + [
                f"{n}/.id" if known[n].get("type") == "many2one" else n for n in names
            ]
            rows = [
                [str(rid)] + [_load_text(cleaned[rid][n]) for n in names] for rid in ids
            ]
            try:
                answer = self._execute_relogin(model, "load", [columns, rows], {})
            except PermanentError:
                answer = {"ids": False}
            except RetryableError as err:
                # never re-sent blindly: read back, then write only what is missing
                _logger.warning(
                    "%s.load of %d records: answer lost (%s); reading back",
                    model,
                    len(ids),
                    type(err).__name__,
                )
                ids = self._not_written(model, ids, cleaned, list(names))
                answer = {"ids": False}
            if not answer or not answer.get("ids"):
                for rid in ids:
                    self._write_or_isolate(model, [rid], cleaned[rid], failures)
        return failures

    def _not_written(
        self,
        model: str,
        ids: list[int],
        values: Mapping[int, Mapping[str, Any]],
        names: list[str],
    ) -> list[int]:
        """The records among ``ids`` whose stored values differ from ``values``."""
        rows = {
            row["id"]: row
            for row in self.retry.call(lambda: self.read(model, ids, names))
        }
        return [
            rid
            for rid in ids
            if rid in rows
            and any(
                _plain(rows[rid].get(name)) != _plain(values[rid][name])
                for name in names
            )
        ]

    def _write_or_isolate(
        self,
        model: str,
        ids: list[int],
        values: Mapping[str, Any],
        failures: dict[int, SyncError],
    ) -> None:
        try:
            self.write(model, ids, values)
        except PermanentError as err:
            if len(ids) == 1:
                failures[ids[0]] = err
                return
            for rid in ids:
                self._write_or_isolate(model, [rid], values, failures)

    def write(self, model: str, ids: Sequence[int], values: Mapping[str, Any]) -> None:
        """Write the same values on ``ids``; after a lost answer, read back first."""
        cleaned = self.clean_values(model, values)
        if not ids or not cleaned:
            return
        try:
            self._execute_relogin(model, "write", [list(ids), cleaned], {})
        except RetryableError as err:
            _logger.warning(
                "%s.write on %d records: answer lost (%s); reading back",
                model,
                len(ids),
                type(err).__name__,
            )
            scalar = [k for k, v in cleaned.items() if not isinstance(v, list | tuple)]
            rows = (
                self.retry.call(lambda: self.read(model, ids, scalar)) if scalar else []
            )
            differs = not scalar or any(
                _plain(row.get(key)) != _plain(cleaned[key])
                for row in rows
                for key in scalar
            )
            if differs:
                self.retry.call(
                    lambda: self._execute_relogin(
                        model, "write", [list(ids), cleaned], {}
                    )
                )


def _loadable(value: Any) -> bool:
    """A value ``load`` can take as text: no x2many commands."""
    return value is None or isinstance(value, str | int | float | bool)


def _load_text(value: Any) -> str:
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    return str(value)


def _plain(value: Any) -> Any:
    """A many2one as read (``[id, name]``) compared with an id as written."""
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], int)
    ):
        return value[0]
    if value is None:
        return False
    return value
