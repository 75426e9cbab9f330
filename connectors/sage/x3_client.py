"""zeep client of the Sage X3 classic SOAP service ``CAdxWebServiceXmlCC``.

How the traps of X3 and zeep are handled:

- **Offline WSDL.** The WSDL and the SOAP-encoding schema ship in ``wsdl/``;
  :class:`OfflineTransport` serves them and refuses every other load, so building
  the client never touches the network (X3's WSDL imports the encoding namespace
  without a location, which zeep would otherwise download).
- **Timeouts.** zeep's ``timeout`` only bounds WSDL loading; ``operation_timeout``
  is set too, so no SOAP call can hang.
- **Encoded arrays.** zeep serialises ``soapenc:Array`` parameters (``objectKeys``)
  without item wrappers, ``xsi:type`` or ``soapenc:arrayType``, which X3's Axis
  stack does not accept. The envelopes of ``read``, ``query`` and ``modify`` are
  therefore built with lxml here (:func:`rpc_envelope`); ``run``, ``save`` and
  ``getDescription`` (strings and the call context only) are serialised by zeep.
  Every answer is parsed by zeep's binding.
- **Results, not faults.** A call can succeed at HTTP and SOAP level and still fail:
  ``status`` 0 with type-3 messages becomes :class:`~connectors.sage.errors.X3DataError`
  carrying the message text; type-2 warnings are logged and never fail a ``status``
  1 call. ``technicalInfos.busy`` and HTTP 503 mean a busy pool (retryable); HTTP 500
  "No Web services accepted" means the pool has no web-service child and fails
  fast (:class:`~connectors.sage.errors.X3NoWebServices`).
- **Retries.** ``read``/``query``/``modify``/``getDescription`` are retried (at
  most ``max_attempts``, jittered); ``save`` and ``run`` are sent once — the
  connector looks a record up by key before any second ``save``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import zeep
import zeep.exceptions
from lxml import etree
from zeep.transports import Transport

from .errors import (
    SageAuthError,
    SageConfigurationError,
    SageNetworkError,
    SageRejected,
    SageTimeout,
    SageUnavailable,
    X3DataError,
    X3NoWebServices,
    X3PoolBusy,
)
from .retry import call_with_retry
from .settings import SageX3Settings

__all__ = [
    "WSDL_PATH",
    "OfflineTransport",
    "X3Client",
    "X3Result",
    "rpc_envelope",
]

_logger = logging.getLogger(__name__)

WSDL_DIR = Path(__file__).resolve().parent / "wsdl"
WSDL_PATH = WSDL_DIR / "CAdxWebServiceXmlCC.wsdl"
WSS_NS = "http://www.adonix.com/WSS"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_ENC = "http://schemas.xmlsoap.org/soap/encoding/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
_SERVICE = f"{{{WSS_NS}}}CAdxWebServiceXmlCCSoapBinding"
_NO_WS = b"no web services accepted"

#: Remote schema locations answered from the package instead of the network.
_LOCAL_SCHEMAS = {
    SOAP_ENC: WSDL_DIR / "soap-encoding.xsd",
    SOAP_ENC.rstrip("/"): WSDL_DIR / "soap-encoding.xsd",
}


class OfflineTransport(Transport):
    """A zeep transport that loads only the files shipped with the package."""

    def load(self, url: str) -> bytes:
        local = _LOCAL_SCHEMAS.get(url)
        if local is None:
            path = Path(url.removeprefix("file://")).resolve()
            if path.is_file() and path.is_relative_to(WSDL_DIR):
                local = path
        if local is None:
            raise SageConfigurationError(
                f"refusing to fetch {url}: the X3 WSDL is loaded offline",
                field="wsdl",
            )
        return local.read_bytes()


@dataclass(frozen=True)
class X3Result:
    """A ``CAdxResultXml`` answer: status, payload string and messages."""

    status: int
    result_xml: str | None
    messages: list[tuple[int, str]] = field(default_factory=list)
    busy: bool = False

    @property
    def errors(self) -> list[str]:
        return [text for kind, text in self.messages if kind >= 3]

    @property
    def warnings(self) -> list[str]:
        return [text for kind, text in self.messages if kind == 2]


def _message_type(value: object) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        return 3


def rpc_envelope(
    operation: str, call_context: Mapping[str, str], **params: Any
) -> etree._Element:
    """An RPC/encoded SOAP 1.1 envelope as X3's own samples write it.

    String parameters get ``xsi:type="xsd:string"``, integers ``xsd:int``, and a
    mapping becomes an ``ArrayOfCAdxParamKeyValue`` with one ``item`` per pair and
    its ``soapenc:arrayType`` — the part zeep cannot serialise correctly.
    """
    nsmap = {
        "soapenv": SOAP_ENV,
        "soapenc": SOAP_ENC,
        "xsi": XSI,
        "xsd": XSD,
        "wss": WSS_NS,
    }
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap=nsmap)
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    call = etree.SubElement(body, f"{{{WSS_NS}}}{operation}")
    call.set(f"{{{SOAP_ENV}}}encodingStyle", SOAP_ENC)
    context = etree.SubElement(call, "callContext")
    context.set(f"{{{XSI}}}type", "wss:CAdxCallContext")
    for name in ("codeLang", "codeUser", "password", "poolAlias", "poolId"):
        _typed(context, name, call_context.get(name, ""))
    _typed(context, "requestConfig", call_context.get("requestConfig", ""))
    for name, value in params.items():
        if isinstance(value, Mapping):
            array = etree.SubElement(call, name)
            array.set(f"{{{XSI}}}type", "soapenc:Array")
            array.set(
                f"{{{SOAP_ENC}}}arrayType", f"wss:CAdxParamKeyValue[{len(value)}]"
            )
            for key, item_value in value.items():
                item = etree.SubElement(array, "item")
                item.set(f"{{{XSI}}}type", "wss:CAdxParamKeyValue")
                _typed(item, "key", key)
                _typed(item, "value", item_value)
        elif isinstance(value, int):
            element = etree.SubElement(call, name)
            element.set(f"{{{XSI}}}type", "xsd:int")
            element.text = str(value)
        else:
            _typed(call, name, value)
    return envelope


def _typed(parent: etree._Element, name: str, value: object) -> None:
    element = etree.SubElement(parent, name)
    element.set(f"{{{XSI}}}type", "xsd:string")
    element.text = "" if value is None else str(value)


class X3Client:
    """Calls to one X3 endpoint, with the call context taken from settings.

    :param settings: endpoint, credentials, pool, language, timeouts.
    :param sleep: waits between attempts (tests pass a fake).
    :param session: HTTP session (Basic auth is set on it); one is made if omitted.
    """

    def __init__(
        self,
        settings: SageX3Settings,
        *,
        sleep: Callable[[float], None],
        session: requests.Session | None = None,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self._owns_session = session is None
        self._session = session or requests.Session()
        self._session.auth = (settings.username, settings.password.get_secret_value())
        self._transport = OfflineTransport(  # type: ignore[no-untyped-call]
            session=self._session,
            timeout=settings.load_timeout,
            operation_timeout=settings.operation_timeout,
        )
        self._client = zeep.Client(  # type: ignore[no-untyped-call]
            str(WSDL_PATH),
            transport=self._transport,
            settings=zeep.Settings(
                strict=True,
                xml_huge_tree=True,
                forbid_dtd=True,
                forbid_entities=True,
                # External references are answered by OfflineTransport, which
                # refuses anything that is not shipped with the package.
                forbid_external=False,
            ),
        )
        self._service = self._client.create_service(  # type: ignore[no-untyped-call]
            _SERVICE, settings.endpoint_url
        )
        self._binding = self._service._binding

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    @property
    def call_context(self) -> dict[str, str]:
        """``CAdxCallContext``; credentials travel in HTTP Basic auth, not here."""
        return {
            "codeLang": self._settings.language,
            "codeUser": "",
            "password": "",
            "poolAlias": self._settings.pool_alias,
            "poolId": self._settings.pool_id,
            "requestConfig": self._settings.request_config,
        }

    # ------------------------------------------------------------- operations

    def run(self, public_name: str, input_xml: str) -> X3Result:
        """Run a sub-program publication once (it may not be idempotent)."""
        envelope = self._client.create_message(  # type: ignore[no-untyped-call]
            self._service,
            "run",
            callContext=self.call_context,
            publicName=public_name,
            inputXml=input_xml,
        )
        return self._call("run", envelope, public_name)

    def save(self, public_name: str, object_xml: str) -> X3Result:
        """Create an object; sent once, never retried here."""
        envelope = self._client.create_message(  # type: ignore[no-untyped-call]
            self._service,
            "save",
            callContext=self.call_context,
            publicName=public_name,
            objectXml=object_xml,
        )
        return self._call("save", envelope, public_name)

    def get_description(self, public_name: str) -> X3Result:
        """The publication's description (used as a health check)."""

        def attempt() -> X3Result:
            envelope = self._client.create_message(  # type: ignore[no-untyped-call]
                self._service,
                "getDescription",
                callContext=self.call_context,
                publicName=public_name,
            )
            return self._call("getDescription", envelope, public_name)

        return self._retried(attempt, f"X3 getDescription {public_name}")

    def read(self, public_name: str, keys: Mapping[str, str]) -> X3Result:
        """Read one object by key (retried)."""
        return self._retried(
            lambda: self._call(
                "read",
                rpc_envelope(
                    "read", self.call_context, publicName=public_name, objectKeys=keys
                ),
                public_name,
            ),
            f"X3 read {public_name}",
        )

    def query(
        self, public_name: str, keys: Mapping[str, str], list_size: int
    ) -> X3Result:
        """List objects matching ``keys`` (retried)."""
        return self._retried(
            lambda: self._call(
                "query",
                rpc_envelope(
                    "query",
                    self.call_context,
                    publicName=public_name,
                    objectKeys=keys,
                    listSize=list_size,
                ),
                public_name,
            ),
            f"X3 query {public_name}",
        )

    def modify(
        self, public_name: str, keys: Mapping[str, str], object_xml: str
    ) -> X3Result:
        """Update an object by key (same content, same result: retried)."""
        return self._retried(
            lambda: self._call(
                "modify",
                rpc_envelope(
                    "modify",
                    self.call_context,
                    publicName=public_name,
                    objectKeys=keys,
                    objectXml=object_xml,
                ),
                public_name,
            ),
            f"X3 modify {public_name}",
        )

    # -------------------------------------------------------------- internals

    def _retried(self, call: Callable[[], X3Result], what: str) -> X3Result:
        return call_with_retry(
            call,
            attempts=self._settings.max_attempts,
            backoff=self._settings.backoff_seconds,
            ceiling=self._settings.backoff_max_seconds,
            sleep=self._sleep,
            what=what,
        )

    def _call(
        self, operation: str, envelope: etree._Element, public_name: str
    ) -> X3Result:
        record = f"X3 {operation} {public_name}"
        headers = {"SOAPAction": '""', "Content-Type": "text/xml; charset=utf-8"}
        if _logger.isEnabledFor(logging.DEBUG):
            _logger.debug("%s request %s", record, etree.tostring(envelope))
        try:
            response = self._transport.post_xml(  # type: ignore[no-untyped-call]
                self._settings.endpoint_url, envelope, headers
            )
        except requests.Timeout as err:
            raise SageTimeout(
                f"no answer within {self._settings.operation_timeout} s", record=record
            ) from err
        except requests.ConnectionError as err:
            raise SageNetworkError(
                f"connection failed: {type(err).__name__}", record=record
            ) from err
        self._check_http(response, record)
        try:
            answer = self._binding.process_reply(
                self._client, self._binding.get(operation), response
            )
        except zeep.exceptions.Fault as err:
            text = str(err.message or "")
            if _NO_WS.decode() in text.lower():
                raise self._no_web_services(record) from err
            raise SageRejected(
                f"SOAP fault: {text}",
                record=record,
                details={"fault_code": str(err.code or "")},
            ) from err
        except zeep.exceptions.TransportError as err:
            raise SageUnavailable(
                f"unreadable answer (HTTP {err.status_code})", record=record
            ) from err
        except (zeep.exceptions.XMLSyntaxError, AttributeError) as err:
            # zeep raises AttributeError on some non-SOAP replies.
            raise SageRejected("answer is not a SOAP envelope", record=record) from err
        return self._result(answer, record)

    def _check_http(self, response: requests.Response, record: str) -> None:
        status = response.status_code
        if status == 200:
            return
        if status == 500 and _NO_WS in response.content.lower():
            raise self._no_web_services(record)
        if status == 401:
            raise SageAuthError("X3 refused the web-service user", record=record)
        if status == 403:
            raise SageAuthError(
                "X3 user not allowed to call the service", record=record
            )
        if status == 503:
            raise X3PoolBusy("X3 web-service pool busy (HTTP 503)", record=record)
        if status == 500 and b"Fault" in response.content:
            return  # a SOAP fault: zeep reads it next
        if status >= 500:
            raise SageUnavailable(f"X3 answered HTTP {status}", record=record)
        raise SageRejected(
            f"X3 answered HTTP {status}", record=record, details={"status": status}
        )

    def _no_web_services(self, record: str) -> X3NoWebServices:
        err = X3NoWebServices(
            "X3 accepts no web services: raise 'Number of Web services children' "
            f"of pool {self._settings.pool_alias} in Syracuse and restart the pool",
            record=record,
            field="pool_alias",
        )
        _logger.error("%s", err)
        return err

    def _result(self, answer: Any, record: str) -> X3Result:
        if answer is None:
            raise SageRejected("empty answer", record=record)
        infos = getattr(answer, "technicalInfos", None)
        messages = [
            (_message_type(m.type), str(m.message or ""))
            for m in (getattr(answer, "messages", None) or [])
        ]
        result = X3Result(
            status=int(answer.status),
            result_xml=answer.resultXml,
            messages=messages,
            busy=bool(getattr(infos, "busy", False)),
        )
        if result.busy:
            raise X3PoolBusy("X3 web-service pool busy", record=record)
        if result.warnings:
            _logger.warning("%s: %d warning(s) from X3", record, len(result.warnings))
            _logger.debug("%s warnings: %s", record, result.warnings)
        if result.status != 1:
            # The generic result status is 1 on success and 0 on failure (not to be
            # confused with the O_STATUS of the import/export services, 0 = OK).
            errors = result.errors or [f"status {result.status} without message"]
            raise X3DataError(
                "; ".join(errors),
                record=record,
                messages=messages,
                details={"status": result.status},
            )
        return result
