"""A small fake of Odoo 18's JSON-RPC API, served on 127.0.0.1, for tests and CI.

It implements only what the gateway uses: ``/web/webclient/version_info``,
``/jsonrpc`` (``common.login``, ``object.execute_kw``), ``/web/session/authenticate``
and ``/web/dataset/call_kw`` with a session cookie, and on the ORM side
``search_read``/``read``/``search``/``search_count``/``create``/``write``/
``unlink``/``fields_get`` over an in-memory store, with Odoo's many2many command
semantics, company-dependent values read in the active company, and the add-on's
``daemon_*`` API of ``crm.sync.*`` and ``res.partner``. Everything else answers
the fault Odoo gives for an unknown method.

Faults are injected with :meth:`FakeOdoo.inject` (session expiry, ``AccessError``,
a dropped connection after the write was committed, HTTP 5xx…); every call is
recorded in :attr:`FakeOdoo.calls` with its context, for assertions. Data lives in
this process: child processes connect over HTTP, so it survives their death.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..kernel import identifiers

__all__ = ["Call", "FakeOdoo", "OdooFault"]

_NOW = lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731


class OdooFault(Exception):
    """Raised inside the fake to answer a JSON-RPC error like Odoo does."""

    def __init__(self, name: str, message: str, code: int = 200) -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": "Odoo Server Error"
            if self.code == 200
            else "Odoo Session Expired",
            "data": {
                "name": self.name,
                "message": self.message,
                "arguments": [self.message],
                "context": {},
                "debug": "(fake)",
            },
        }


def _access(message: str) -> OdooFault:
    return OdooFault("odoo.exceptions.AccessError", message)


def _validation(message: str) -> OdooFault:
    return OdooFault("odoo.exceptions.ValidationError", message)


@dataclass
class Call:
    """One ``execute_kw``/``call_kw`` as the fake received it."""

    path: str
    model: str
    method: str
    args: list[Any]
    kwargs: dict[str, Any]

    @property
    def context(self) -> dict[str, Any]:
        return dict(self.kwargs.get("context") or {})


@dataclass
class _Injection:
    fault: str | dict[str, Any] | OdooFault
    model: str | None
    method: str | None
    times: int
    when: Callable[[Call], bool] | None = None


F = dict[str, Any]


def _f(ftype: str, relation: str | None = None, **extra: Any) -> F:
    return {"type": ftype, "relation": relation, "store": True, "string": "", **extra}


_PARTNER_FIELDS: dict[str, F] = {
    "name": _f("char"),
    "display_name": _f("char"),
    "is_company": _f("boolean"),
    "type": _f("selection"),
    "parent_id": _f("many2one", "res.partner"),
    "commercial_partner_id": _f("many2one", "res.partner"),
    "child_ids": _f("one2many", "res.partner", inverse="parent_id"),
    "company_id": _f("many2one", "res.company"),
    "vat": _f("char"),
    "company_registry": _f("char"),
    "peppol_eas": _f("selection"),
    "peppol_endpoint": _f("char"),
    "email": _f("char"),
    "phone": _f("char"),
    "mobile": _f("char"),
    "website": _f("char"),
    "function": _f("char"),
    "street": _f("char"),
    "street2": _f("char"),
    "zip": _f("char"),
    "city": _f("char"),
    "country_id": _f("many2one", "res.country"),
    "lang": _f("char"),
    "category_id": _f("many2many", "res.partner.category"),
    "active": _f("boolean"),
    "customer_rank": _f("integer"),
    "supplier_rank": _f("integer"),
    "property_payment_term_id": _f(
        "many2one", "account.payment.term", company_dependent=True
    ),
    "comment": _f("html"),
    "ref": _f("char"),
    "create_uid": _f("many2one", "res.users"),
    "create_date": _f("datetime"),
    "write_date": _f("datetime"),
}

_DEFAULTS: dict[str, dict[str, Any]] = {
    "res.partner": {"active": True, "is_company": False, "customer_rank": 0},
}

_COUNTRIES = ["BE", "NL", "FR", "DE", "GR", "LU", "GB", "US", "ES", "IT", "AT", "DK"]
_EU = {"BE", "NL", "FR", "DE", "GR", "LU", "ES", "IT", "AT", "DK"}


class FakeOdoo:
    """An in-memory Odoo 18 behind a real HTTP server on 127.0.0.1.

    :param database: the database name logins must use.
    :param users: login -> (secret, uid, [company ids, default first]).
    :param max_limit: ``search_read`` without a limit or above it answers 504, as a
        proxy in front of a slow Odoo would.
    """

    def __init__(
        self,
        *,
        database: str = "crm",
        users: dict[str, tuple[str, int, list[int]]] | None = None,
        max_limit: int = 1000,
        version: str = "18.0",
    ) -> None:
        self.database = database
        self.users = users or {"sync-bot": ("secret", 7, [1, 2])}
        self.max_limit = max_limit
        self.version = version
        self.calls: list[Call] = []
        self.requests = 0
        self.lock = threading.RLock()
        self.sessions: dict[str, int] = {}
        self.injections: list[_Injection] = []
        self.hooks: list[Callable[[FakeOdoo, Call], None]] = []
        self.notes: list[tuple[int, str]] = []
        self._ids = itertools.count(1000)
        self.schema: dict[str, dict[str, F]] = {
            "res.partner": dict(_PARTNER_FIELDS),
            "res.country": {"code": _f("char"), "name": _f("char")},
            "res.partner.category": {"name": _f("char")},
            "res.company": {
                "name": _f("char"),
                "partner_id": _f("many2one", "res.partner"),
                "currency_id": _f("many2one", "res.currency"),
            },
            "res.currency": {"name": _f("char")},
            "res.users": {
                "login": _f("char"),
                "name": _f("char"),
                "company_id": _f("many2one", "res.company"),
                "company_ids": _f("many2many", "res.company"),
            },
            "account.payment.term": {"name": _f("char")},
        }
        self.data: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in self.schema}
        for model in (
            "crm.sync.backend",
            "crm.sync.run",
            "crm.sync.link",
            "crm.sync.issue",
        ):
            self.data[model] = {}
        self._seed()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up ---------------------------------------------------------------------

    def _seed(self) -> None:
        for index, code in enumerate(_COUNTRIES, start=1):
            self.data["res.country"][index] = {"id": index, "code": code, "name": code}
        self.data["res.currency"][1] = {"id": 1, "name": "EUR"}
        company_partners = {1: "Fictief België NV", 2: "Fictief Nederland BV"}
        for company_id, name in company_partners.items():
            partner_id = company_id
            self.data["res.partner"][partner_id] = self._partner_defaults(
                {"id": partner_id, "name": name, "is_company": True}
            )
            self.data["res.company"][company_id] = {
                "id": company_id,
                "name": name,
                "partner_id": partner_id,
                "currency_id": 1,
            }
        for login, (_secret, uid, companies) in self.users.items():
            self.data["res.users"][uid] = {
                "id": uid,
                "login": login,
                "name": login,
                "company_id": companies[0],
                "company_ids": list(companies),
            }
        for term_id, name in enumerate(
            ["Immediate Payment", "15 Days", "30 Days", "45 Days"], start=1
        ):
            self.data["account.payment.term"][term_id] = {"id": term_id, "name": name}

    def _partner_defaults(self, values: dict[str, Any]) -> dict[str, Any]:
        record = {name: False for name in self.schema["res.partner"]}
        record.update(_DEFAULTS["res.partner"])
        record.update(
            {
                "category_id": [],
                "child_ids": [],
                "property_payment_term_id": {},
                "create_date": _NOW(),
                "write_date": _NOW(),
            }
        )
        record.update(values)
        return record

    def add_model(self, model: str, fields: dict[str, F]) -> None:
        """Declare an extra model (account.move…) with its fields."""
        with self.lock:
            self.schema[model] = fields
            self.data.setdefault(model, {})

    def add_field(
        self, model: str, name: str, ftype: str, relation: str | None = None
    ) -> None:
        """Declare an extra field (as an add-on would), e.g. ``crm_erased``."""
        with self.lock:
            self.schema[model][name] = _f(ftype, relation)
            for record in self.data[model].values():
                record.setdefault(name, [] if ftype.endswith("2many") else False)

    def add_backend(self, **values: Any) -> int:
        """A ``crm.sync.backend`` as the add-on would hold it."""
        with self.lock:
            backend_id = (
                values.pop("id", None) or len(self.data["crm.sync.backend"]) + 1
            )
            record = {
                "id": backend_id,
                "name": f"Backend {backend_id}",
                "kind": "exact",
                "company_id": 1,
                "company_name": self.data["res.company"][1]["name"],
                "tz": "Europe/Brussels",
                "lang": "en_US",
                "schedule_type": "interval",
                "interval_minutes": 60,
                "daily_time": 2.0,
                "next_run": False,
                "run_requested": False,
                "ownership": {
                    "legal_name": "finance",
                    "vat": "finance",
                    "registry": "finance",
                    "billing_address": "finance",
                    "payment_terms": "finance",
                    "contacts": "sales",
                    "phones": "sales",
                    "emails": "sales",
                    "tags": "sales",
                },
                "last_success": False,
                "credentials_state": "unknown",
                "active": True,
            }
            record.update(values)
            if "company_id" in values and "company_name" not in values:
                company = self.data["res.company"].get(values["company_id"])
                record["company_name"] = company["name"] if company else ""
            self.data["crm.sync.backend"][backend_id] = record
            return backend_id

    def seed(self, model: str, values: dict[str, Any]) -> int:
        """Insert a record directly (no RPC, no rules); returns its id."""
        with self.lock:
            return self._create_one(model, dict(values), context={}, check=False)

    # -- server ---------------------------------------------------------------------

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._reply(200, {"status": "pass"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                cookie = self.headers.get("Cookie") or ""
                match = re.search(r"session_id=([A-Za-z0-9]+)", cookie)
                status, answer, headers = fake.handle(
                    self.path, body, match.group(1) if match else None
                )
                if status == 0:  # drop the connection without an answer
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self._reply(status, answer, headers)

            def _reply(
                self, status: int, answer: Any, headers: dict[str, str] | None = None
            ) -> None:
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOdoo:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- fault injection ------------------------------------------------------------

    def inject(
        self,
        fault: str | dict[str, Any] | OdooFault,
        *,
        model: str | None = None,
        method: str | None = None,
        times: int = 1,
        when: Callable[[Call], bool] | None = None,
    ) -> None:
        """Answer the next matching call(s) with a fault.

        ``fault`` is ``"session_expired"``, ``"access_error"``, ``"http_503"``,
        ``"drop_after_commit"`` (do the work, then close the connection), ``"sleep:N"``
        (stall N seconds first), a JSON-RPC error body, or an :class:`OdooFault`.
        """
        with self.lock:
            self.injections.append(_Injection(fault, model, method, times, when))

    def expire_sessions(self) -> None:
        with self.lock:
            self.sessions.clear()

    def _take_injection(self, call: Call) -> _Injection | None:
        for injection in self.injections:
            if injection.model and injection.model != call.model:
                continue
            if injection.method and injection.method != call.method:
                continue
            if injection.when and not injection.when(call):
                continue
            injection.times -= 1
            if injection.times <= 0:
                self.injections.remove(injection)
            return injection
        return None

    # -- dispatch -------------------------------------------------------------------

    def handle(
        self, path: str, body: dict[str, Any], session: str | None
    ) -> tuple[int, Any, dict[str, str] | None]:
        rpc_id = body.get("id")
        params = body.get("params") or {}
        self.requests += 1

        def ok(result: Any) -> tuple[int, Any, None]:
            return 200, {"jsonrpc": "2.0", "id": rpc_id, "result": result}, None

        def fault(err: OdooFault) -> tuple[int, Any, None]:
            return 200, {"jsonrpc": "2.0", "id": rpc_id, "error": err.body()}, None

        if path == "/web/webclient/version_info":
            major = int(self.version.split(".")[0])
            return ok(
                {
                    "server_version": self.version,
                    "server_version_info": [major, 0, 0, "final", 0, ""],
                    "server_serie": self.version,
                    "protocol_version": 1,
                }
            )
        if path == "/web/session/authenticate":
            uid = self._authenticate(
                params.get("db"), params.get("login"), params.get("password")
            )
            if not uid:
                return fault(OdooFault("odoo.exceptions.AccessDenied", "Access Denied"))
            token = secrets.token_hex(16)
            with self.lock:
                self.sessions[token] = uid
            status, answer, _ = ok({"uid": uid, "db": self.database})
            return status, answer, {"Set-Cookie": f"session_id={token}; Path=/"}
        if path == "/jsonrpc":
            service, method = params.get("service"), params.get("method")
            args = params.get("args") or []
            if service == "common" and method == "login":
                return ok(self._authenticate(*args[:3]) or False)
            if service == "common" and method == "version":
                return ok({"server_version": self.version})
            if service == "object" and method == "execute_kw":
                db, uid, secret, model, meth = args[:5]
                call_args = args[5] if len(args) > 5 else []
                call_kwargs = args[6] if len(args) > 6 else {}
                user = self._user_by_uid(uid)
                if db != self.database or not user or self.users[user][0] != secret:
                    return fault(
                        OdooFault("odoo.exceptions.AccessDenied", "Access Denied")
                    )
                return self._dispatch(
                    path, model, meth, call_args, call_kwargs, uid, ok, fault
                )
            return fault(OdooFault("builtins.KeyError", f"unknown service {service}"))
        if path.startswith("/web/dataset/call_kw"):
            call = Call(
                path,
                params.get("model", ""),
                params.get("method", ""),
                params.get("args") or [],
                params.get("kwargs") or {},
            )
            with self.lock:
                uid = self.sessions.get(session or "")
            if uid is None:
                self.calls.append(call)
                return fault(
                    OdooFault(
                        "odoo.http.SessionExpiredException", "Session expired", 100
                    )
                )
            return self._dispatch(
                path, call.model, call.method, call.args, call.kwargs, uid, ok, fault
            )
        return 404, {"error": "not found"}, None

    def _authenticate(self, db: Any, login: Any, secret: Any) -> int | None:
        if db != self.database or login not in self.users:
            return None
        stored, uid, _companies = self.users[login]
        return uid if secret == stored else None

    def _user_by_uid(self, uid: Any) -> str | None:
        return next((login for login, u in self.users.items() if u[1] == uid), None)

    def _dispatch(
        self,
        path: str,
        model: str,
        method: str,
        args: list[Any],
        kwargs: dict[str, Any],
        uid: int,
        ok: Callable[[Any], Any],
        fault: Callable[[OdooFault], Any],
    ) -> Any:
        call = Call(path, model, method, list(args), dict(kwargs))
        with self.lock:
            self.calls.append(call)
            for hook in list(self.hooks):
                hook(self, call)
            injection = self._take_injection(call)
        drop = False
        if injection is not None:
            spec = injection.fault
            if isinstance(spec, OdooFault):
                return fault(spec)
            if isinstance(spec, dict):
                return 200, {"jsonrpc": "2.0", "id": 1, "error": spec}, None
            if spec == "session_expired":
                with self.lock:
                    self.sessions.clear()
                return fault(
                    OdooFault(
                        "odoo.http.SessionExpiredException", "Session expired", 100
                    )
                )
            if spec == "access_error":
                return fault(_access("Access denied by the fake."))
            if spec.startswith("http_"):
                return int(spec[5:]), {"error": spec}, None
            if spec.startswith("sleep:"):
                time.sleep(float(spec[6:]))
            if spec == "drop_after_commit":
                drop = True
        try:
            with self.lock:
                result = self._execute(model, method, args, kwargs, uid)
        except OdooFault as err:
            return fault(err)
        except _HttpStatus as status:
            return status.code, {"error": str(status)}, None
        if drop:
            return 0, None, None
        return ok(result)

    # -- ORM ------------------------------------------------------------------------

    def _company(self, context: dict[str, Any], uid: int) -> int:
        allowed = context.get("allowed_company_ids") or []
        if allowed:
            return int(allowed[0])
        return int(self.data["res.users"][uid]["company_id"])

    def _execute(
        self, model: str, method: str, args: list[Any], kwargs: dict[str, Any], uid: int
    ) -> Any:
        context = dict(kwargs.pop("context", None) or {})
        handler = getattr(self, f"_m_{model.replace('.', '_')}_{method}", None)
        if handler is not None:
            return handler(*args, **kwargs)
        if model not in self.schema:
            raise OdooFault("builtins.KeyError", f"Object {model} doesn't exist")
        if method == "fields_get":
            keep = ("type", "relation", "store", "string")
            answer = {
                name: {k: v for k, v in spec.items() if k in keep}
                for name, spec in self.schema[model].items()
            }
            answer["id"] = {"type": "integer", "relation": None, "store": True}
            return answer
        if method == "search_read":
            domain = args[0] if args else kwargs.get("domain", [])
            limit = kwargs.get("limit")
            if self.max_limit and (not limit or limit > self.max_limit):
                raise _HttpStatus(504, "search_read without a bounded limit timed out")
            ids = self._search(
                model,
                domain,
                context,
                kwargs.get("order"),
                limit,
                kwargs.get("offset", 0),
            )
            return self._read(model, ids, kwargs.get("fields"), context, uid)
        if method == "search":
            domain = args[0] if args else kwargs.get("domain", [])
            return self._search(
                model,
                domain,
                context,
                kwargs.get("order"),
                kwargs.get("limit"),
                kwargs.get("offset", 0),
            )
        if method == "search_count":
            return len(
                self._search(model, args[0] if args else [], context, None, None, 0)
            )
        if method == "read":
            ids = args[0] if args else kwargs["ids"]
            fields = args[1] if len(args) > 1 else kwargs.get("fields")
            missing = [i for i in ids if i not in self.data[model]]
            if missing:
                raise OdooFault(
                    "odoo.exceptions.MissingError",
                    f"Records {missing} of {model} do not exist",
                )
            return self._read(model, ids, fields, context, uid)
        if method == "create":
            values = args[0]
            values_list = values if isinstance(values, list) else [values]
            ids = [
                self._create_one(model, dict(v), context, uid=uid) for v in values_list
            ]
            return ids if isinstance(values, list) else ids[0]
        if method == "write":
            ids, values = args[0], args[1]
            for record_id in ids:
                self._write_one(model, record_id, dict(values), context, uid)
            return True
        if method == "load":
            return self._load(model, args[0], args[1], context, uid)
        if method == "unlink":
            for record_id in args[0]:
                self.data[model].pop(record_id, None)
            return True
        raise OdooFault(
            "builtins.AttributeError",
            f"The method '{method}' does not exist on the model '{model}'",
        )

    # domain -----------------------------------------------------------------------

    def _value(
        self, model: str, record: dict[str, Any], path: str, context: dict[str, Any]
    ) -> Any:
        head, _, rest = path.partition(".")
        if head == "id":
            return record["id"]
        spec = self.schema[model].get(head)
        if spec is None:
            raise _validation(f"Invalid field {head!r} on model {model!r}")
        value = record.get(head, False)
        if spec.get("company_dependent"):
            value = (value or {}).get(str(self._company(context, 7)), False)
        if rest:
            if not value:
                return False
            target = self.data[spec["relation"]].get(
                value if isinstance(value, int) else value[0]
            )
            return (
                self._value(spec["relation"], target, rest, context)
                if target
                else False
            )
        return value

    def _match(
        self,
        model: str,
        record: dict[str, Any],
        domain: list[Any],
        context: dict[str, Any],
    ) -> bool:
        stack: list[bool] = []
        for item in reversed(domain or []):
            if item == "&":
                a, b = stack.pop(), stack.pop()
                stack.append(a and b)
            elif item == "|":
                a, b = stack.pop(), stack.pop()
                stack.append(a or b)
            elif item == "!":
                stack.append(not stack.pop())
            else:
                stack.append(self._leaf(model, record, item, context))
        return all(stack)

    def _leaf(
        self,
        model: str,
        record: dict[str, Any],
        leaf: list[Any],
        context: dict[str, Any],
    ) -> bool:
        name, op, expected = leaf
        value = self._value(model, record, name, context)
        if (
            isinstance(value, list)
            and self.schema[model].get(name, {}).get("type") == "many2one"
        ):
            value = value[0]
        if op == "=":
            return value == expected or (expected is False and value in (None, [], ""))
        if op == "!=":
            return not (
                value == expected or (expected is False and value in (None, [], ""))
            )
        if op in ("in", "not in"):
            values = value if isinstance(value, list) else [value]
            hit = any(v in expected for v in values)
            return hit if op == "in" else not hit
        if op in ("ilike", "like", "=ilike"):
            text, needle = str(value or ""), str(expected or "")
            if op == "=ilike":
                return text.lower() == needle.lower()
            return needle.lower() in text.lower() if op == "ilike" else needle in text
        if value is False or value is None:
            return False
        return {
            ">": value > expected,
            ">=": value >= expected,
            "<": value < expected,
            "<=": value <= expected,
        }[op]

    def _search(
        self,
        model: str,
        domain: list[Any],
        context: dict[str, Any],
        order: str | None,
        limit: int | None,
        offset: int,
    ) -> list[int]:
        active_test = context.get("active_test", True)
        has_active = "active" in self.schema.get(model, {})
        mentions_active = any(
            isinstance(leaf, list | tuple) and leaf[0] == "active"
            for leaf in domain or []
        )
        ids = []
        for record_id in sorted(self.data[model]):
            record = self.data[model][record_id]
            if (
                has_active
                and active_test
                and not mentions_active
                and not record.get("active", True)
            ):
                continue
            if self._match(model, record, list(domain or []), context):
                ids.append(record_id)
        if order and order.strip().lower().startswith("id desc"):
            ids.reverse()
        ids = ids[offset:]
        return ids[:limit] if limit else ids

    def _read(
        self,
        model: str,
        ids: list[int],
        fields: list[str] | None,
        context: dict[str, Any],
        uid: int,
    ) -> list[dict[str, Any]]:
        schema = self.schema[model]
        names = fields or list(schema)
        rows = []
        for record_id in ids:
            record = self.data[model][record_id]
            row: dict[str, Any] = {"id": record_id}
            for name in names:
                if name == "id":
                    continue
                if name not in schema:
                    raise _validation(f"Invalid field {name!r} on model {model!r}")
                spec = schema[name]
                value = record.get(name, False)
                if spec.get("company_dependent"):
                    value = (value or {}).get(str(self._company(context, uid)), False)
                if spec["type"] == "many2one" and value:
                    target = self.data.get(spec["relation"], {}).get(value, {})
                    value = [
                        value,
                        target.get("name") or target.get("display_name") or "",
                    ]
                if name == "commercial_partner_id" and model == "res.partner":
                    commercial = self._commercial(record_id)
                    value = [commercial, self.data[model][commercial].get("name")]
                if name == "display_name":
                    value = record.get("name")
                if name == "child_ids" and model == "res.partner":
                    value = sorted(
                        i
                        for i, r in self.data[model].items()
                        if r.get("parent_id") == record_id
                    )
                row[name] = value
            rows.append(row)
        return rows

    def _load(
        self,
        model: str,
        columns: list[str],
        rows: list[list[str]],
        context: dict[str, Any],
        uid: int,
    ) -> dict[str, Any]:
        """Odoo's batch import, updating by ``.id``; all or nothing."""
        import copy

        saved = copy.deepcopy(self.data[model])
        ids = []
        try:
            for row in rows:
                values: dict[str, Any] = {}
                record_id = 0
                for column, text in zip(columns, row, strict=True):
                    if column == ".id":
                        record_id = int(text)
                    elif column.endswith("/.id"):
                        values[column[:-4]] = int(text) if text else False
                    else:
                        values[column] = text or False
                self._write_one(model, record_id, values, context, uid)
                ids.append(record_id)
        except OdooFault as err:
            self.data[model] = saved
            return {
                "ids": False,
                "messages": [{"type": "error", "message": err.message}],
            }
        return {"ids": ids, "messages": []}

    def _commercial(self, partner_id: int) -> int:
        record = self.data["res.partner"][partner_id]
        while record.get("parent_id") and not record.get("is_company"):
            record = self.data["res.partner"][record["parent_id"]]
        return int(record["id"])

    def _check_values(self, model: str, values: dict[str, Any]) -> None:
        for name in values:
            if name not in self.schema[model]:
                raise _validation(f"Invalid field {name!r} on model {model!r}")

    def _apply_x2many(
        self,
        model: str,
        record: dict[str, Any],
        name: str,
        commands: Any,
        context: dict[str, Any],
        uid: int,
    ) -> None:
        spec = self.schema[model][name]
        if not isinstance(commands, list) or any(
            not isinstance(c, list | tuple) for c in commands
        ):
            raise _validation(
                f"Wrong value for {model}.{name}: {commands!r} "
                "(expected a list of commands)"
            )
        if spec["type"] == "one2many":
            for command in commands:
                if command[0] == 0:
                    child = dict(command[2])
                    child[spec["inverse"]] = record["id"]
                    self._create_one(spec["relation"], child, context, uid=uid)
                else:
                    raise _validation(f"unsupported one2many command {command!r}")
            return
        current = list(record.get(name) or [])
        for command in commands:
            op = command[0]
            if op == 6:
                current = list(command[2])
            elif op == 4:
                if command[1] not in current:
                    current.append(command[1])
            elif op == 3:
                current = [i for i in current if i != command[1]]
            elif op == 5:
                current = []
            elif op == 2:
                current = [i for i in current if i != command[1]]
                self.data[spec["relation"]].pop(command[1], None)
            elif op == 0:
                current.append(
                    self._create_one(
                        spec["relation"], dict(command[2]), context, uid=uid
                    )
                )
            else:
                raise _validation(f"unsupported many2many command {command!r}")
        record[name] = current

    def _company_rule(
        self, model: str, values: dict[str, Any], context: dict[str, Any], uid: int
    ) -> None:
        company = values.get("company_id")
        if (
            model == "res.partner"
            and company
            and company != self._company(context, uid)
        ):
            name = self.data["res.company"].get(company, {}).get("name", company)
            raise _access(
                f"Record belongs to company '{name}' (id {company}) which is not "
                "active in this request."
            )

    def _create_one(
        self,
        model: str,
        values: dict[str, Any],
        context: dict[str, Any],
        *,
        uid: int = 7,
        check: bool = True,
    ) -> int:
        if check:
            self._check_values(model, values)
            self._company_rule(model, values, context, uid)
        record_id = values.pop("id", None) or next(self._ids)
        while record_id in self.data[model]:
            record_id = next(self._ids)
        x2many = {
            k: values.pop(k)
            for k in list(values)
            if self.schema[model].get(k, {}).get("type") in ("many2many", "one2many")
        }
        if model == "res.partner":
            record = self._partner_defaults({"id": record_id, "create_uid": uid})
            term = values.pop("property_payment_term_id", None)
            if term is not None:
                record["property_payment_term_id"] = {
                    str(self._company(context, uid)): term
                }
            if check and not (values.get("name") or "").strip():
                raise _validation("res.partner: the field 'name' is required")
        else:
            record = {
                name: ([] if spec["type"].endswith("2many") else False)
                for name, spec in self.schema[model].items()
            }
            record["id"] = record_id
        record.update(values)
        if (
            "commercial_partner_id" in self.schema[model]
            and not values.get("commercial_partner_id")
            and values.get("partner_id")
        ):
            # Odoo's stored related field: the partner's commercial entity
            partner = self.data["res.partner"].get(values["partner_id"]) or {}
            record["commercial_partner_id"] = (
                partner.get("parent_id") or values["partner_id"]
            )
        self.data[model][record_id] = record
        for name, commands in x2many.items():
            if not check:  # seeding: plain id lists
                record[name] = list(commands)
                continue
            self._apply_x2many(model, record, name, commands, context, uid)
        return record_id

    def _write_one(
        self,
        model: str,
        record_id: int,
        values: dict[str, Any],
        context: dict[str, Any],
        uid: int,
    ) -> None:
        if record_id not in self.data[model]:
            raise OdooFault(
                "odoo.exceptions.MissingError",
                f"Record {model}({record_id}) does not exist",
            )
        self._check_values(model, values)
        record = self.data[model][record_id]
        self._company_rule(model, values, context, uid)
        for name, value in values.items():
            spec = self.schema[model][name]
            if spec["type"] in ("many2many", "one2many"):
                self._apply_x2many(model, record, name, value, context, uid)
            elif spec.get("company_dependent"):
                record.setdefault(name, {})
                record[name] = dict(record[name] or {}) | {
                    str(self._company(context, uid)): value
                }
            else:
                record[name] = value
        if "write_date" in self.schema[model]:
            record["write_date"] = _NOW()

    # -- the add-on's daemon API ----------------------------------------------------

    def _m_crm_sync_backend_daemon_get_config(self) -> list[dict[str, Any]]:
        keys = [
            "id",
            "name",
            "kind",
            "company_id",
            "company_name",
            "tz",
            "lang",
            "schedule_type",
            "interval_minutes",
            "daily_time",
            "next_run",
            "run_requested",
            "ownership",
            "last_success",
        ]
        return [
            {k: b[k] for k in keys}
            for b in self.data["crm.sync.backend"].values()
            if b.get("active", True)
        ]

    def _m_crm_sync_backend_daemon_report_health(
        self, vals_list: list[dict[str, Any]]
    ) -> bool:
        for vals in vals_list:
            backend = self.data["crm.sync.backend"][vals["backend_id"]]
            backend["credentials_state"] = vals["credentials_state"]
            backend["credentials_message"] = vals.get("message")
        return True

    def _m_crm_sync_backend_daemon_ack_run_requests(
        self, backend_ids: list[int]
    ) -> bool:
        for backend_id in backend_ids:
            self.data["crm.sync.backend"][backend_id]["run_requested"] = False
        return True

    def _m_crm_sync_run_daemon_start_runs(
        self, vals_list: list[dict[str, Any]]
    ) -> list[int]:
        ids = []
        for vals in vals_list:
            run_id = len(self.data["crm.sync.run"]) + 1
            self.data["crm.sync.run"][run_id] = {
                "id": run_id,
                "outcome": "running",
                **vals,
            }
            ids.append(run_id)
        return ids

    def _m_crm_sync_run_daemon_finish_runs(
        self, vals_list: list[dict[str, Any]]
    ) -> bool:
        for vals in vals_list:
            run = self.data["crm.sync.run"][vals["run_id"]]
            run.update(vals)
            backend = self.data["crm.sync.backend"][run["backend_id"]]
            if vals.get("outcome") == "success":
                backend["last_success"] = vals.get("ended_at")
        return True

    def _m_crm_sync_link_daemon_upsert_links(
        self, vals_list: list[dict[str, Any]]
    ) -> list[int]:
        index = {
            (link["backend_id"], link["res_model"], link["external_id"]): link_id
            for link_id, link in self.data["crm.sync.link"].items()
        }
        ids = []
        for vals in vals_list:
            for key in ("backend_id", "res_model", "res_id", "external_id"):
                if not vals.get(key):
                    raise _validation(f"links[{len(ids)}]: missing value for {key}")
            key = (vals["backend_id"], vals["res_model"], vals["external_id"])
            for other in self.data["crm.sync.link"].values():
                if (
                    (other["backend_id"], other["res_model"], other["res_id"])
                    == (vals["backend_id"], vals["res_model"], vals["res_id"])
                    and other["external_id"] != vals["external_id"]
                    and other["state"] != "unlinked"
                ):
                    raise _validation(
                        f"Cannot link {vals['res_model']} {vals['res_id']} to external "
                        f"id {vals['external_id']!r}: it is already linked to external "
                        f"id {other['external_id']!r} (field external_id)"
                    )
            link_id = index.get(key)
            if link_id is None:
                link_id = len(self.data["crm.sync.link"]) + 1
                self.data["crm.sync.link"][link_id] = {"id": link_id, "state": "linked"}
                index[key] = link_id
            self.data["crm.sync.link"][link_id].update(vals)
            ids.append(link_id)
        return ids

    def _m_crm_sync_link_daemon_read_links(
        self, backend_id: int, res_model: str, after_id: int = 0, limit: int = 500
    ) -> list[dict[str, Any]]:
        limit = max(1, min(int(limit), 500))
        rows = [
            {
                k: link.get(k, False)
                for k in (
                    "id",
                    "res_id",
                    "external_id",
                    "external_code",
                    "sync_hash",
                    "synced_at",
                    "state",
                )
            }
            for link_id, link in sorted(self.data["crm.sync.link"].items())
            if link_id > after_id
            and link["backend_id"] == backend_id
            and link["res_model"] == res_model
        ]
        return rows[:limit]

    def _m_crm_sync_link_daemon_unlink_links(
        self, vals_list: list[dict[str, Any]]
    ) -> int:
        count = 0
        for vals in vals_list:
            for link in self.data["crm.sync.link"].values():
                if (link["backend_id"], link["res_model"], link["external_id"]) == (
                    vals["backend_id"],
                    vals["res_model"],
                    vals["external_id"],
                ) and link["state"] != "unlinked":
                    link["state"] = "unlinked"
                    self.notes.append((link["res_id"], vals.get("note") or ""))
                    count += 1
        return count

    def _m_crm_sync_issue_daemon_raise_issues(
        self, vals_list: list[dict[str, Any]]
    ) -> list[int]:
        ids = []
        for vals in vals_list:
            key = (
                vals["backend_id"],
                vals["kind"],
                vals.get("external_id"),
                vals.get("field"),
            )
            found = next(
                (
                    issue_id
                    for issue_id, issue in self.data["crm.sync.issue"].items()
                    if issue["state"] == "open"
                    and (
                        issue["backend_id"],
                        issue["kind"],
                        issue.get("external_id"),
                        issue.get("field"),
                    )
                    == key
                ),
                None,
            )
            if found is None:
                found = len(self.data["crm.sync.issue"]) + 1
                self.data["crm.sync.issue"][found] = {
                    "id": found,
                    "state": "open",
                    "occurrences": 0,
                }
            issue = self.data["crm.sync.issue"][found]
            issue.update(vals)
            issue["occurrences"] += 1
            ids.append(found)
        return ids

    def _m_crm_sync_issue_daemon_fetch_actions(
        self, backend_id: int
    ) -> list[dict[str, Any]]:
        return [
            {
                "issue_id": issue_id,
                "action": issue["requested_action"],
                "external_id": issue.get("external_id") or False,
                "res_model": issue.get("res_model") or False,
                "res_id": issue.get("res_id") or False,
                "partner_id": issue.get("chosen_partner_id") or False,
                "payload": issue.get("payload") or False,
            }
            for issue_id, issue in self.data["crm.sync.issue"].items()
            if issue["backend_id"] == backend_id and issue["state"] == "action_pending"
        ]

    def _m_crm_sync_issue_daemon_resolve_issues(
        self, vals_list: list[dict[str, Any]]
    ) -> bool:
        for vals in vals_list:
            issue = self.data["crm.sync.issue"][vals["issue_id"]]
            issue["state"] = vals["state"]
            issue["note"] = vals.get("note")
        return True

    def request_action(
        self, issue_id: int, action: str, partner_id: int | None = None
    ) -> None:
        """What an admin does in the workbench: ask the daemon for an action."""
        with self.lock:
            issue = self.data["crm.sync.issue"][issue_id]
            issue["state"] = "action_pending"
            issue["requested_action"] = action
            issue["chosen_partner_id"] = partner_id or False

    def _m_res_partner_daemon_partner_keys(
        self, after_id: int = 0, limit: int = 500
    ) -> list[dict[str, Any]]:
        rows = []
        for partner_id, partner in sorted(self.data["res.partner"].items()):
            if partner_id <= after_id:
                continue
            country = (
                self.data["res.country"]
                .get(partner.get("country_id") or 0, {})
                .get("code")
            )
            rows.append(
                {
                    "id": partner_id,
                    "name": partner.get("name") or "",
                    "is_company": partner.get("is_company"),
                    "parent_id": partner.get("parent_id") or False,
                    "commercial_partner_id": self._commercial(partner_id),
                    "company_id": partner.get("company_id") or False,
                    "vat_key": identifiers.vat_key(partner.get("vat"), country)
                    or False,
                    "registry_key": identifiers.registry_key(
                        partner.get("company_registry"), country
                    )
                    or False,
                    "peppol_key": False,
                    "email_key": identifiers.email_key(partner.get("email")) or False,
                    "zip": partner.get("zip") or False,
                    "country_code": country or False,
                    "active": partner.get("active", True),
                }
            )
            if len(rows) >= min(int(limit), 500):
                break
        return rows

    def _m_res_partner_daemon_set_peppol_readiness(
        self, vals_list: list[dict[str, Any]]
    ) -> bool:
        """Like the add-on: declare the fields first (``add_peppol_fields``)."""
        if "crm_peppol_readiness" not in self.schema["res.partner"]:
            raise OdooFault(
                "builtins.AttributeError",
                "The method 'daemon_set_peppol_readiness' does not exist on the "
                "model 'res.partner'",
            )
        for index, vals in enumerate(vals_list):
            item = f"readiness[{index}]"
            if vals.get("readiness") not in ("can_receive", "cannot", "unknown"):
                raise _validation(f"{item}: field readiness must be one of ...")
            if vals.get("partner_id") not in self.data["res.partner"]:
                raise _validation(
                    f"{item}: res.partner {vals.get('partner_id')} (field "
                    "partner_id) does not exist or is not visible to you"
                )
        for vals in vals_list:
            self.data["res.partner"][vals["partner_id"]].update(
                {
                    "crm_peppol_readiness": vals["readiness"],
                    "crm_peppol_participant_id": vals.get("participant_id") or False,
                    "crm_peppol_checked_at": vals.get("checked_at") or _NOW(),
                }
            )
        return True

    def _m_account_move_daemon_set_peppol_status(
        self, vals_list: list[dict[str, Any]]
    ) -> bool:
        """Like the add-on: declare the fields first (``add_peppol_fields``)."""
        states = {
            "to_send",
            "to_fix",
            "sent",
            "delivered",
            "failed",
            "not_applicable",
        }
        for index, vals in enumerate(vals_list):
            item = f"moves[{index}]"
            if vals.get("state") not in states:
                raise _validation(f"{item}: field state must be one of ...")
            if vals.get("move_id") not in self.data.get("account.move", {}):
                raise _validation(
                    f"{item}: account.move {vals.get('move_id')} (field move_id) "
                    "does not exist or is not visible to you"
                )
        for vals in vals_list:
            self.data["account.move"][vals["move_id"]].update(
                {
                    "crm_peppol_state": vals["state"],
                    "crm_peppol_message": vals.get("message") or False,
                    "crm_peppol_rules": ", ".join(vals.get("rules") or []) or False,
                    "crm_peppol_status_at": vals.get("at") or _NOW(),
                    "write_date": _NOW(),
                }
            )
        return True

    def add_peppol_fields(self) -> None:
        """Declare the add-on's Peppol fields on res.partner and account.move."""
        for name, ftype in (
            ("crm_peppol_readiness", "selection"),
            ("crm_peppol_checked_at", "datetime"),
            ("crm_peppol_participant_id", "char"),
        ):
            self.add_field("res.partner", name, ftype)
        for record in self.data["res.partner"].values():
            record["crm_peppol_readiness"] = "unknown"
        if "account.move" in self.schema:
            for name, ftype in (
                ("crm_peppol_state", "selection"),
                ("crm_peppol_message", "text"),
                ("crm_peppol_rules", "char"),
                ("crm_peppol_status_at", "datetime"),
            ):
                self.add_field("account.move", name, ftype)

    # -- helpers for assertions -----------------------------------------------------

    def records(self, model: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for _, r in sorted(self.data[model].items())]

    def country_id(self, code: str) -> int:
        return next(i for i, c in self.data["res.country"].items() if c["code"] == code)

    def eu_countries(self) -> set[str]:
        return set(_EU)


class _HttpStatus(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
