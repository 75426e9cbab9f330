"""A local fake of the Sage X3 classic SOAP service, on 127.0.0.1.

It serves the package's WSDL at
``/soap-wsdl/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC?wsdl`` (with its
address pointing here) and answers RPC/encoded calls at
``/soap-generic/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC``:

- ``read``, ``query``, ``save``, ``modify`` on the customer (``BPC``) and sales
  invoice (``SIH``) publications, ``getDescription``, and ``run`` of an
  import sub-program (``AOWSIMPORT``, whose own ``O_STATUS`` is 0 when fine);
- answers are ``CAdxResultXml`` envelopes: ``status`` 1 or 0, ``resultXml`` as a
  string, ``messages`` as a SOAP-encoded array (type 1 info, 2 warning, 3 error)
  and ``technicalInfos``;
- business rules that produce status 0 as X3 does: unknown customer accounting
  group (``BCGCOD``) or invalid VAT on a customer, unknown customer, item or tax
  level on an invoice, unknown key on ``read``; a warning (type 2) when a customer
  has no registry number, which must not fail the call;
- HTTP Basic authentication and the configured pool alias;
- faults: ``busy`` (``technicalInfos.busy``), ``5xx`` (HTTP 503), ``timeout`` and
  ``reset`` after the work is done, ``no_ws`` (HTTP 500 "No Web services
  accepted"), drawn from a :class:`~connectors.sage.sandbox_http.FaultPlan`.

Seeded with French and Belgian customers (:mod:`connectors.sage.seed`). Run it with
``crm-sync sandbox sage_x3 --port 8802`` or programmatically with
``SageX3Sandbox().start()`` / ``.stop()`` / ``.url``.
"""

from __future__ import annotations

import argparse
import base64
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from sync_daemon.kernel.identifiers import compact_vat, vat_key

from .sandbox_http import (
    FaultPlan,
    LoopbackServer,
    MovableClock,
    QuietHandler,
    install_stop_signals,
    run_until_signalled,
)
from .seed import seed_customers
from .x3_client import SOAP_ENC, SOAP_ENV, WSDL_PATH, WSS_NS, XSD, XSI
from .x3_payloads import CUSTOMER_GROUPS, INVOICE_GROUPS, build_object_xml

__all__ = ["SageX3Sandbox", "main"]

_logger = logging.getLogger(__name__)

WSDL_PATH_URL = "/soap-wsdl/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC"
ENDPOINT_PATH = "/soap-generic/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC"
USERNAME = "WSCRM"
PASSWORD = "sandbox"
POOL_ALIAS = "CRMSYNC"
ACCOUNTING_GROUPS = {"FRA", "BEL", "UE", "EXP"}
ITEMS = {"PRESTA", "LICENCE", "FORMATION"}
TAX_LEVELS = {"FRN": "20", "FRR": "5.5", "BEN": "21", "BER": "6", "EXO": "0"}


class _Outcome(Exception):
    """A business answer with status 0."""

    def __init__(self, *messages: tuple[int, str]) -> None:
        super().__init__(messages[0][1] if messages else "")
        self.messages = list(messages)


class SageX3Sandbox:
    """In-memory X3 folder answering ``CAdxWebServiceXmlCC`` on 127.0.0.1.

    :param port: TCP port (0: any free port).
    :param customers: seeded customers.
    :param seed: seed of the generated data.
    :param faults: fault plan for SOAP calls.
    :param clock: time source for ``UPDDATTIM``.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        customers: int = 20,
        seed: int = 42,
        faults: FaultPlan | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.clock: Callable[[], datetime] = clock or MovableClock()
        self.faults = faults or FaultPlan()
        self.lock = threading.RLock()
        self.customers: dict[str, dict[str, str]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self._customer_seq = 0
        self._invoice_seq = 0
        #: ``(operation, publicName)`` of every SOAP call received.
        self.calls: list[tuple[str, str]] = []
        #: Raw request bodies, for encoding checks.
        self.bodies: list[bytes] = []
        #: HTTP POSTs received, faults included.
        self.posts = 0
        #: When True every call gets HTTP 500 "No Web services accepted".
        self.no_web_services = False
        self._server = LoopbackServer(
            port=port, handler=_Handler, name="sage-x3", app=self
        )
        self._seed(customers, seed)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> SageX3Sandbox:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> SageX3Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def endpoint_url(self) -> str:
        return self.url + ENDPOINT_PATH

    @property
    def wsdl_url(self) -> str:
        return self.url + WSDL_PATH_URL + "?wsdl"

    def advance(self, seconds: float) -> None:
        if not isinstance(self.clock, MovableClock):
            raise RuntimeError("advance() needs the sandbox's own clock")
        self.clock.advance(seconds)

    def settings(self, **extra: Any) -> dict[str, Any]:
        """A backend section pointing a connector at this sandbox."""
        return {
            "endpoint_url": self.endpoint_url,
            "username": USERNAME,
            "password": PASSWORD,
            "pool_alias": POOL_ALIAS,
            "language": "FRA",
            "sales_site": "FR011",
            "default_item": "PRESTA",
            "customer_defaults": {"BCGCOD": "UE"},
            "tax_codes": {"S:21": "BEN", "S:20": "FRN", "S:6": "BER", "Z:0": "EXO"},
            **extra,
        }

    # ------------------------------------------------------------------ seeding

    def _now(self) -> str:
        return self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")

    def _seed(self, count: int, seed: int) -> None:
        start = self.clock()
        for position, spec in enumerate(seed_customers(count, seed=seed)):
            self._customer_seq += 1
            touched = start - timedelta(minutes=count - position)
            code = f"C{self._customer_seq:05d}"
            self.customers[code] = {
                "BPCNUM": code,
                "BPCNAM": spec.name,
                "CRY": spec.country,
                "EECNUM": spec.vat,
                "CRN": spec.registry,
                "CUR": "EUR",
                "LAN": "FRA",
                "BCGCOD": "FRA" if spec.country == "FR" else "BEL",
                "BPAADDLIG1": spec.street,
                "POSCOD": spec.zip,
                "CTY": spec.city,
                "TEL": spec.phone,
                "WEB": spec.email,
                "UPDDATTIM": touched.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }

    # ---------------------------------------------------------------- requests

    def answer(self, body: bytes, auth: str | None) -> tuple[int, bytes]:
        """Answer one SOAP POST: HTTP status and envelope bytes."""
        if not self._authorised(auth):
            return 401, b"Unauthorized"
        try:
            root = etree.fromstring(
                body, etree.XMLParser(resolve_entities=False, no_network=True)
            )
        except etree.XMLSyntaxError:
            return 500, _fault("soapenv:Client", "Malformed SOAP envelope")
        call = root.find(f"{{{SOAP_ENV}}}Body/*")
        if call is None:
            return 500, _fault("soapenv:Client", "Empty SOAP body")
        operation = etree.QName(call).localname
        public = (call.findtext("publicName") or "").strip()
        with self.lock:
            self.calls.append((operation, public))
            self.bodies.append(body)
        context = call.find("callContext")
        pool = context.findtext("poolAlias") if context is not None else None
        if pool != POOL_ALIAS:
            return 500, _fault("soapenv:Server", f"Pool alias '{pool}' not found")
        keys = {
            (item.findtext("key") or ""): (item.findtext("value") or "")
            for item in call.iterfind("objectKeys/item")
        }
        handler = getattr(self, f"_op_{operation}", None)
        if handler is None:
            return 500, _fault("soapenv:Client", f"Unknown operation {operation}")
        try:
            with self.lock:
                result_xml, messages = handler(public, call, keys)
            return 200, _result(operation, 1, result_xml, messages)
        except _Outcome as outcome:
            return 200, _result(operation, 0, None, outcome.messages)

    def busy_answer(self, body: bytes) -> bytes:
        """The answer of a pool with no free child (``technicalInfos.busy``)."""
        try:
            root = etree.fromstring(body)
            call = root.find(f"{{{SOAP_ENV}}}Body/*")
            operation = etree.QName(call).localname if call is not None else "run"
        except etree.XMLSyntaxError:
            operation = "run"
        return _result(
            operation,
            0,
            None,
            [(3, "Délai d'attente dépassé : aucun processus disponible dans le pool")],
            busy=True,
        )

    def _authorised(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:]).decode("utf-8")
        except ValueError:
            return False
        return decoded == f"{USERNAME}:{PASSWORD}"

    # -------------------------------------------------------------- operations

    def _object(self, public: str) -> dict[str, dict[str, Any]]:
        if public == "BPC":
            return self.customers
        if public == "SIH":
            return self.invoices
        raise _Outcome((3, f"Publication {public} inexistante"))

    def _op_getDescription(
        self, public: str, call: etree._Element, keys: dict[str, str]
    ) -> tuple[str, list[tuple[int, str]]]:
        self._object(public)
        groups = CUSTOMER_GROUPS if public == "BPC" else INVOICE_GROUPS
        fields = dict.fromkeys(groups, "")
        return build_object_xml(fields, groups=groups).replace("PARAM", "RESULT"), []

    def _op_read(
        self, public: str, call: etree._Element, keys: dict[str, str]
    ) -> tuple[str, list[tuple[int, str]]]:
        store = self._object(public)
        key = keys.get("BPCNUM" if public == "BPC" else "NUM", "")
        found = store.get(key)
        if found is None:
            raise _Outcome((3, f"Fiche inexistante : {key}"))
        return _object_xml(public, found), []

    def _op_query(
        self, public: str, call: etree._Element, keys: dict[str, str]
    ) -> tuple[str, list[tuple[int, str]]]:
        store = self._object(public)
        size = int(call.findtext("listSize") or "10")
        rows = [
            row
            for row in store.values()
            if all(
                _same(name, row.get(name, ""), value) for name, value in keys.items()
            )
        ][:size]
        columns = (
            ("BPCNUM", "BPCNAM", "EECNUM", "CRY", "UPDDATTIM")
            if public == "BPC"
            else ("NUM", "BPCINV", "BPRVCR", "INVDAT", "AMTATI")
        )
        root = etree.Element("RESULT")
        table = etree.SubElement(
            root, "TAB", DIM=str(size), ID=f"{public}_1", SIZE=str(len(rows))
        )
        for number, row in enumerate(rows, start=1):
            line = etree.SubElement(table, "LIN", NUM=str(number))
            for name in columns:
                etree.SubElement(line, "FLD", NAME=name).text = str(row.get(name, ""))
        return etree.tostring(root, encoding="unicode"), []

    def _op_save(
        self, public: str, call: etree._Element, keys: dict[str, str]
    ) -> tuple[str, list[tuple[int, str]]]:
        fields, lines = _parse_param(call.findtext("objectXml") or "")
        if public == "BPC":
            return self._save_customer(fields, None)
        if public == "SIH":
            return self._save_invoice(fields, lines)
        raise _Outcome((3, f"Publication {public} inexistante"))

    def _op_modify(
        self, public: str, call: etree._Element, keys: dict[str, str]
    ) -> tuple[str, list[tuple[int, str]]]:
        if public != "BPC":
            raise _Outcome((3, f"Modification impossible sur {public}"))
        code = keys.get("BPCNUM", "")
        if code not in self.customers:
            raise _Outcome((3, f"Fiche inexistante : {code}"))
        fields, _ = _parse_param(call.findtext("objectXml") or "")
        return self._save_customer(fields, code)

    def _op_run(
        self, public: str, call: etree._Element, keys: dict[str, str]
    ) -> tuple[str, list[tuple[int, str]]]:
        if public != "AOWSIMPORT":
            raise _Outcome((3, f"Sous-programme {public} inexistant"))
        fields, _ = _parse_param(call.findtext("inputXml") or "")
        if not fields.get("I_MODIMP"):
            raise _Outcome((3, "Modèle d'import obligatoire"))
        result = build_object_xml(
            {"O_STATUS": "0", "O_FILE": fields.get("I_FILE", "")},
            groups={"O_STATUS": "GRP2", "O_FILE": "GRP2"},
        )
        return result.replace("PARAM", "RESULT"), [(1, "Import terminé")]

    def _save_customer(
        self, fields: dict[str, str], code: str | None
    ) -> tuple[str, list[tuple[int, str]]]:
        current = dict(self.customers.get(code or "", {}))
        merged = {**current, **{k: v for k, v in fields.items() if k != "BPCNUM"}}
        errors: list[tuple[int, str]] = []
        warnings: list[tuple[int, str]] = []
        if not merged.get("BPCNAM"):
            errors.append((3, "Raison sociale : zone obligatoire"))
        group = merged.get("BCGCOD", "")
        if group not in ACCOUNTING_GROUPS:
            errors.append(
                (3, f"Groupe comptable client « {group} » : fiche inexistante")
            )
        vat = merged.get("EECNUM")
        if vat and vat_key(vat, merged.get("CRY")) is None:
            errors.append((3, f"Numéro de TVA intracommunautaire incorrect : {vat}"))
        elif vat and merged.get("CRY") == "BE":
            warnings.append(
                (2, "Numéro de TVA non contrôlé (service VIES indisponible)")
            )
        if not merged.get("CRN"):
            warnings.append((2, "Numéro SIRET/entreprise non renseigné"))
        if errors:
            raise _Outcome(*errors, *warnings)
        if code is None:
            requested = fields.get("BPCNUM", "")
            if requested and requested in self.customers:
                raise _Outcome((3, f"Fiche existante : {requested}"))
            if not requested:
                self._customer_seq += 1
                requested = f"C{self._customer_seq:05d}"
            code = requested
        merged["BPCNUM"] = code
        merged["UPDDATTIM"] = self._now()
        self.customers[code] = merged
        return _object_xml("BPC", merged), warnings

    def _save_invoice(
        self, fields: dict[str, str], lines: list[dict[str, str]]
    ) -> tuple[str, list[tuple[int, str]]]:
        errors: list[tuple[int, str]] = []
        customer = fields.get("BPCINV", "")
        if customer not in self.customers:
            errors.append((3, f"Client facturé inexistant : {customer}"))
        if not lines:
            errors.append((3, "Facture sans ligne"))
        total = 0.0
        for number, line in enumerate(lines, start=1):
            if line.get("ITMREF") not in ITEMS:
                errors.append((3, f"Ligne {number} : article inexistant"))
            level = line.get("VACITM1", "")
            if level not in TAX_LEVELS:
                errors.append(
                    (3, f"Ligne {number} : niveau de taxe {level} inexistant")
                )
                continue
            try:
                net = float(line.get("QTY", "0")) * float(line.get("GROPRI", "0"))
            except ValueError:
                errors.append((3, f"Ligne {number} : montant incorrect"))
                continue
            total += round(net * (1 + float(TAX_LEVELS[level]) / 100), 2)
        if errors:
            raise _Outcome(*errors)
        self._invoice_seq += 1
        prefix = "AVO" if fields.get("SIVTYP") == "AVO" else "FAC"
        invoice_no = f"{prefix}{fields.get('SALFCY', '')}{self._invoice_seq:05d}"
        stored: dict[str, Any] = {
            **fields,
            "NUM": invoice_no,
            "AMTATI": f"{total:.2f}",
            "UPDDATTIM": self._now(),
            "_lines": lines,
        }
        self.invoices[invoice_no] = stored
        return _object_xml("SIH", stored), []


def _same(name: str, stored: str, wanted: str) -> bool:
    if name == "EECNUM":
        return compact_vat(stored) == compact_vat(wanted)
    return stored == wanted


def _parse_param(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    if not text:
        return {}, []
    root = etree.fromstring(
        text.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True)
    )
    fields = {f.get("NAME", ""): f.text or "" for f in root.iterfind("GRP/FLD")}
    lines = [
        {f.get("NAME", ""): f.text or "" for f in line.iterfind("FLD")}
        for line in root.iterfind("TAB/LIN")
    ]
    return fields, lines


def _object_xml(public: str, row: dict[str, Any]) -> str:
    groups = CUSTOMER_GROUPS if public == "BPC" else INVOICE_GROUPS
    fields = {k: str(v) for k, v in row.items() if not k.startswith("_")}
    tables = {"SIH4_1": row["_lines"]} if "_lines" in row else None
    return build_object_xml(fields, groups=groups, tables=tables).replace(
        "PARAM", "RESULT"
    )


def _result(
    operation: str,
    status: int,
    result_xml: str | None,
    messages: Sequence[tuple[int, str]],
    *,
    busy: bool = False,
) -> bytes:
    """A ``CAdxResultXml`` envelope in X3's RPC/encoded style."""
    nsmap = {"soapenv": SOAP_ENV, "soapenc": SOAP_ENC, "xsi": XSI, "xsd": XSD}
    nsmap["wss"] = WSS_NS
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap=nsmap)
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    response = etree.SubElement(body, f"{{{WSS_NS}}}{operation}Response")
    response.set(f"{{{SOAP_ENV}}}encodingStyle", SOAP_ENC)
    ret = etree.SubElement(response, f"{operation}Return")
    ret.set(f"{{{XSI}}}type", "wss:CAdxResultXml")
    array = etree.SubElement(ret, "messages")
    array.set(f"{{{XSI}}}type", "soapenc:Array")
    array.set(f"{{{SOAP_ENC}}}arrayType", f"wss:CAdxMessage[{len(messages)}]")
    for kind, text in messages:
        item = etree.SubElement(array, "item")
        item.set(f"{{{XSI}}}type", "wss:CAdxMessage")
        _typed(item, "message", "xsd:string", text)
        _typed(item, "type", "xsd:string", str(kind))
    result = etree.SubElement(ret, "resultXml")
    result.set(f"{{{XSI}}}type", "xsd:string")
    if result_xml is None:
        result.set(f"{{{XSI}}}nil", "true")
    else:
        result.text = result_xml
    _typed(ret, "status", "xsd:int", str(status))
    infos = etree.SubElement(ret, "technicalInfos")
    infos.set(f"{{{XSI}}}type", "wss:CAdxTechnicalInfos")
    _typed(infos, "busy", "xsd:boolean", "true" if busy else "false")
    _typed(infos, "changeLanguage", "xsd:boolean", "false")
    _typed(infos, "poolEntryIdx", "xsd:int", "1")
    _typed(infos, "poolExecDuration", "xsd:double", "12")
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def _typed(parent: etree._Element, name: str, kind: str, text: str) -> None:
    element = etree.SubElement(parent, name)
    element.set(f"{{{XSI}}}type", kind)
    element.text = text


def _fault(code: str, text: str) -> bytes:
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soapenv": SOAP_ENV})
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    fault = etree.SubElement(body, f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = text
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"))


def _operation_of(body: bytes) -> str | None:
    """The SOAP operation of a request body (for operation-specific faults)."""
    try:
        root = etree.fromstring(
            body, etree.XMLParser(resolve_entities=False, no_network=True)
        )
    except etree.XMLSyntaxError:
        return None
    call = root.find(f"{{{SOAP_ENV}}}Body/*")
    return etree.QName(call).localname if call is not None else None


_NO_WS_PAGE = b"<html><body><h1>500</h1><p>No Web services accepted</p></body></html>"


class _Handler(QuietHandler):
    """HTTP glue: WSDL, SOAP dispatch, fault injection."""

    @property
    def app(self) -> SageX3Sandbox:
        return self.server.app  # type: ignore[no-any-return]

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == WSDL_PATH_URL and parts.query.lower() == "wsdl":
            wsdl = WSDL_PATH.read_text(encoding="utf-8")
            wsdl = wsdl.replace(
                "http://127.0.0.1/soap-generic/syracuse/collaboration/syracuse/"
                "CAdxWebServiceXmlCC",
                self.app.endpoint_url,
            )
            self.send_bytes(200, wsdl.encode("utf-8"), "text/xml; charset=utf-8")
            return
        self.send_bytes(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        body = self.read_body()
        if urlsplit(self.path).path != ENDPOINT_PATH:
            self.send_bytes(404, b"not found", "text/plain")
            return
        with self.app.lock:
            self.app.posts += 1
        fault = self.app.faults.draw(_operation_of(body))
        if self.app.no_web_services or fault == "no_ws":
            self.send_bytes(500, _NO_WS_PAGE, "text/html")
            return
        if fault == "5xx":
            self.send_bytes(503, b"Service Unavailable", "text/plain")
            return
        if fault == "busy":
            answer = self.app.busy_answer(body)
            self.send_bytes(200, answer, "text/xml; charset=utf-8")
            return
        status, answer = self.app.answer(body, self.headers.get("Authorization"))
        if fault == "reset":
            self.reset_connection()
            return
        if fault == "timeout":
            threading.Event().wait(self.app.faults.delay)
        self.send_bytes(status, answer, "text/xml; charset=utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """``crm-sync sandbox sage_x3``: serve the fake until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="sage-x3-sandbox",
        description="Local fake of the Sage X3 SOAP web services on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any)")
    parser.add_argument("--customers", type=int, default=20, help="seeded customers")
    parser.add_argument("--seed", type=int, default=42, help="seed of the data")
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of failing calls"
    )
    parser.add_argument(
        "--pool-busy-rate",
        type=float,
        default=0.0,
        help="share of calls answered 'pool busy' (added to --fault-rate)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    stopping = install_stop_signals()
    kinds: tuple[str, ...] = ("5xx", "timeout", "reset")
    rate = args.fault_rate
    if args.pool_busy_rate:
        kinds = (*kinds, "busy") if rate else ("busy",)
        rate = min(1.0, rate + args.pool_busy_rate)
    sandbox = SageX3Sandbox(
        port=args.port,
        customers=args.customers,
        seed=args.seed,
        faults=FaultPlan(rate=rate, kinds=kinds),
    ).start()
    print(f"Sage X3 sandbox on {sandbox.url}")
    print(f"  wsdl      {sandbox.wsdl_url}")
    print(f"  endpoint  {sandbox.endpoint_url}")
    print(f"  user      {USERNAME} / {PASSWORD}, pool alias {POOL_ALIAS}")
    print("Ctrl-C (or SIGTERM) to stop.", flush=True)
    run_until_signalled(sandbox.stop, stopping)
    return 0
