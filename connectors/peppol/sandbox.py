"""A local Peppol world on 127.0.0.1: fake access point, fake SMP and fake SML.

One HTTP server answers

- the access-point API used by :class:`~.transport.RestAccessPoint` under ``/api``
  (Bearer API key): ``GET /v1/me``, ``POST /v1/participants/verify``,
  ``POST /v1/documents`` (validated with the official rules: HTTP 422 listing the
  fatal rule ids; an ``Idempotency-Key`` already seen returns the first answer),
  ``GET /v1/documents?number=…``, ``GET /v1/documents/{id}`` (``accepted`` turns
  ``delivered`` on the first status read), ``GET /v1/inbox`` and
  ``POST /v1/inbox/{id}/read``;
- an SMP under ``/smp``: ServiceGroup and SignedServiceMetadata for every registered
  participant, for the BIS 3 invoice and credit-note document types;

and a UDP DNS responder on the same port number answers the SML's NAPTR question
(``Meta:SMP`` pointing at ``/smp``) for registered participants in its zone.

The inbox is seeded from a folder of UBL files (default: the official examples in
``shared/examples/peppol`` when found). Use :class:`PeppolSandbox` in-process
(``start()``, ``url``, ``stop()``) or ``main(argv)`` from the command line.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import dns.flags
import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from .discovery import (
    CREDIT_NOTE_DOCTYPE,
    DOCTYPE_SCHEME,
    INVOICE_DOCTYPE,
    PARTICIPANT_SCHEME,
    PROCESS_ID,
    sml_hostname,
)
from .errors import PeppolError, RulesNotFound
from .parse import parse_document
from .validate import Validator, get_validator

__all__ = ["DEFAULT_PARTICIPANTS", "SANDBOX_ZONE", "PeppolSandbox", "main"]

_logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
SANDBOX_ZONE = "sml.sandbox.invalid"
#: Participants registered by default (the buyers of the field cases).
DEFAULT_PARTICIPANTS = ("0208:0765881217", "0208:0447123478")
_SMP_NS = "http://busdox.org/serviceMetadata/publishing/1.0/"
_ID_NS = "http://busdox.org/transport/identifiers/1.0/"
_WSA_NS = "http://www.w3.org/2005/08/addressing"


def default_examples_dir() -> Path | None:
    """The official example folder beside the checkout, when there is one."""
    shared = os.environ.get("CRM_SHARED_DIR")
    if shared and (Path(shared) / "examples" / "peppol").is_dir():
        return Path(shared) / "examples" / "peppol"
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "examples" / "peppol"
        if candidate.is_dir():
            return candidate
    return None


class PeppolSandbox:
    """Fake access point + SMP + SML on 127.0.0.1.

    :param port: TCP port of the HTTP server (0: any free port); the DNS responder
        uses the same number over UDP when free, else any free UDP port.
    :param inbox_dir: folder whose ``*.xml`` files seed the inbox; ``None`` means
        the official examples when found; a missing folder gives an empty inbox.
    :param participants: participant ids registered in the SML/SMP and known to
        the access point as receivers.
    :param validate: validate submitted documents with the official rules.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        inbox_dir: str | Path | None = None,
        participants: Iterable[str] = DEFAULT_PARTICIPANTS,
        api_key: str = "sandbox-key",
        validate: bool = True,
        validator: Validator | None = None,
        zone: str = SANDBOX_ZONE,
    ) -> None:
        self.api_key = api_key
        self.zone = zone
        self.participants = {p.lower() for p in participants}
        self._want_port = port
        self._validate = validate
        self._validator = validator
        self._lock = threading.Lock()
        self.documents: dict[str, dict[str, Any]] = {}
        self.idempotency: dict[str, dict[str, Any]] = {}
        self.inbox: dict[str, dict[str, Any]] = {}
        folder = Path(inbox_dir) if inbox_dir is not None else default_examples_dir()
        if folder is not None:
            self.seed_inbox(folder)
        self._http: ThreadingHTTPServer | None = None
        self._udp: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # ------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if self._http is None:
            raise RuntimeError("sandbox not started")
        return int(self._http.server_address[1])

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def url(self) -> str:
        """Root of the access-point API (``base_url`` of RestAccessPoint)."""
        return f"{self.base}/api"

    @property
    def smp_url(self) -> str:
        return f"{self.base}/smp"

    @property
    def dns_port(self) -> int:
        if self._udp is None:
            raise RuntimeError("sandbox not started")
        return int(self._udp.getsockname()[1])

    def connector_settings(self) -> dict[str, Any]:
        """Backend settings that point the Peppol connector at this sandbox."""
        return {
            "transport": "rest",
            "base_url": self.url,
            "api_key": self.api_key,
            "sml_zone": self.zone,
            "dns_nameserver": HOST,
            "dns_port": self.dns_port,
            "timeout": 10,
        }

    def start(self) -> PeppolSandbox:
        handler = type("Handler", (_Handler,), {"sandbox": self})
        # bind first: a bad or taken port is reported before missing rules
        http = ThreadingHTTPServer((HOST, self._want_port), handler)
        if self._validate and self._validator is None:
            try:
                self._validator = get_validator()
            except BaseException:
                http.server_close()
                raise
        self._http = http
        self._http.daemon_threads = True
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._udp.bind((HOST, self.port))
        except OSError:
            self._udp.bind((HOST, 0))
        self._udp.settimeout(0.05)
        self._stopping.clear()
        self._threads = [
            threading.Thread(
                target=self._http.serve_forever, kwargs={"poll_interval": 0.05}
            ),
            threading.Thread(target=self._serve_dns),
        ]
        for thread in self._threads:
            thread.start()
        _logger.info(
            "peppol sandbox listening on %s (dns udp %s)", self.base, self.dns_port
        )
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        for thread in self._threads:
            thread.join(timeout=2)
        if self._udp is not None:
            self._udp.close()
        self._threads = []

    def __enter__(self) -> PeppolSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- state

    def register(self, participant_id: str) -> None:
        with self._lock:
            self.participants.add(participant_id.lower())

    def seed_inbox(self, folder: Path) -> int:
        """Put every ``*.xml`` of ``folder`` in the inbox; returns how many."""
        if not folder.is_dir():
            return 0
        count = 0
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() == ".xml":
                self.add_inbox(path.read_bytes(), item_id=path.name)
                count += 1
        return count

    def add_inbox(self, document: bytes, *, item_id: str | None = None) -> str:
        item_id = item_id or uuid.uuid4().hex
        try:
            seller = parse_document(document, source=item_id).seller
        except (PeppolError, ValueError):
            sender = None
        else:
            sender = f"{seller.endpoint_scheme}:{seller.endpoint_id}"
        with self._lock:
            self.inbox[item_id] = {
                "id": item_id,
                "sender": sender,
                "received_at": datetime.now(UTC).isoformat(),
                "document": document,
                "read": False,
            }
        return item_id

    # ------------------------------------------------------------------ DNS

    def _serve_dns(self) -> None:
        assert self._udp is not None
        while not self._stopping.is_set():
            try:
                wire, peer = self._udp.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                answer = self._dns_answer(wire)
            except Exception:  # a malformed query must not kill the responder
                _logger.debug("sandbox dns: bad query from %s", peer, exc_info=True)
                continue
            try:
                self._udp.sendto(answer, peer)
            except OSError:
                return

    def _dns_answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        known = {sml_hostname(p, self.zone): p for p in self.participants}
        if name not in known:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.NAPTR:
            rdata = dns.rdata.from_text(
                dns.rdataclass.IN,
                dns.rdatatype.NAPTR,
                f'100 10 "U" "Meta:SMP" "!.*!{self.smp_url}!" .',
            )
            rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, question.rdtype)
            rrset.add(rdata, ttl=60)
            response.answer.append(rrset)
        return response.to_wire()

    # ------------------------------------------------------------------ SMP

    def smp_response(self, path: str) -> tuple[int, bytes]:
        """(status, XML body) for an SMP path below ``/smp/``."""
        head, _, tail = unquote(path).partition("/services/")
        prefix = f"{PARTICIPANT_SCHEME}::"
        if not head.startswith(prefix):
            return 404, b""
        participant = head[len(prefix) :].lower()
        if participant not in self.participants:
            return 404, b""
        quoted = quote(f"{PARTICIPANT_SCHEME}::{participant}", safe="")
        if not tail:
            refs = "".join(
                f'<ServiceMetadataReference href="{self.smp_url}/{quoted}/services/'
                f'{quote(f"{DOCTYPE_SCHEME}::{doctype}", safe="")}"/>'
                for doctype in (INVOICE_DOCTYPE, CREDIT_NOTE_DOCTYPE)
            )
            body = (
                f'<ServiceGroup xmlns="{_SMP_NS}" xmlns:id="{_ID_NS}">'
                f'<id:ParticipantIdentifier scheme="{PARTICIPANT_SCHEME}">'
                f"{participant}</id:ParticipantIdentifier>"
                f"<ServiceMetadataReferenceCollection>{refs}"
                "</ServiceMetadataReferenceCollection></ServiceGroup>"
            )
            return 200, body.encode()
        doctype = tail.removeprefix(f"{DOCTYPE_SCHEME}::")
        if doctype not in (INVOICE_DOCTYPE, CREDIT_NOTE_DOCTYPE):
            return 404, b""
        body = (
            f'<SignedServiceMetadata xmlns="{_SMP_NS}" xmlns:id="{_ID_NS}" '
            f'xmlns:wsa="{_WSA_NS}"><ServiceMetadata><ServiceInformation>'
            f'<id:ParticipantIdentifier scheme="{PARTICIPANT_SCHEME}">{participant}'
            f'</id:ParticipantIdentifier><id:DocumentIdentifier scheme="'
            f'{DOCTYPE_SCHEME}">{_xml_text(doctype)}</id:DocumentIdentifier>'
            f'<ProcessList><Process><id:ProcessIdentifier scheme="cenbii-procid-ubl">'
            f"{PROCESS_ID}</id:ProcessIdentifier><ServiceEndpointList>"
            f'<Endpoint transportProfile="peppol-transport-as4-v2_0">'
            f"<wsa:EndpointReference><wsa:Address>{self.base}/as4</wsa:Address>"
            f"</wsa:EndpointReference><RequireBusinessLevelSignature>false"
            f"</RequireBusinessLevelSignature><Certificate>c2FuZGJveA==</Certificate>"
            f"<ServiceDescription>Peppol sandbox</ServiceDescription>"
            f"<TechnicalContactUrl>{self.base}</TechnicalContactUrl></Endpoint>"
            f"</ServiceEndpointList></Process></ProcessList></ServiceInformation>"
            f"</ServiceMetadata></SignedServiceMetadata>"
        )
        return 200, body.encode()

    # ------------------------------------------------------------ documents

    def submit(self, body: dict[str, Any], key: str | None) -> tuple[int, Any]:
        """Handle ``POST /v1/documents``."""
        with self._lock:
            if key and key in self.idempotency:
                return 200, self.idempotency[key]
        try:
            document = base64.b64decode(str(body.get("document") or ""), validate=True)
        except ValueError:
            return 400, {"message": "document is not base64"}
        number = str(body.get("number") or "")
        recipient = str(body.get("recipient") or "").lower()
        if not number or not recipient:
            return 400, {"message": "number and recipient are required"}
        if self._validator is not None:
            try:
                result = self._validator.validate(document, source=number)
            except PeppolError as err:
                return 422, {"message": str(err), "errors": []}
            if not result.valid:
                return 422, {
                    "message": "document is not valid Peppol BIS 3",
                    "errors": [a.as_dict() for a in result.fatal],
                }
        if recipient not in self.participants:
            return 422, {
                "message": f"recipient {recipient} is not a Peppol participant",
                "errors": [{"rule": "RECIPIENT-UNKNOWN", "flag": "fatal"}],
            }
        record: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "number": number,
            "recipient": recipient,
            "document_type": body.get("document_type"),
            "status": "accepted",
            "created_at": datetime.now(UTC).isoformat(),
        }
        with self._lock:
            self.documents[record["id"]] = {**record, "document": document}
            if key:
                self.idempotency[key] = record
        return 201, record

    def find(self, number: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                _public(d) for d in self.documents.values() if d["number"] == number
            ]

    def status(self, doc_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self.documents.get(doc_id)
            if record is None:
                return None
            answer = _public(record)
            if record["status"] == "accepted":
                record["status"] = "delivered"  # delivered by the next poll
            return answer

    def unread(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "id": item["id"],
                    "sender": item["sender"],
                    "received_at": item["received_at"],
                    "document": base64.b64encode(item["document"]).decode("ascii"),
                }
                for item in self.inbox.values()
                if not item["read"]
            ]

    def mark_read(self, item_id: str) -> bool:
        with self._lock:
            item = self.inbox.get(item_id)
            if item is None:
                return False
            item["read"] = True
            return True


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "document"}


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Handler(BaseHTTPRequestHandler):
    sandbox: PeppolSandbox
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        _logger.debug("sandbox %s", format % args)

    def _send(self, status: int, body: Any, content_type: str = "") -> None:
        if isinstance(body, bytes):
            data = body
            content_type = content_type or "application/xml"
        elif body is None:
            data = b""
        else:
            data = json.dumps(body).encode()
            content_type = content_type or "application/json"
        self.send_response(status)
        if data:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _json_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _authorised(self) -> bool:
        expected = f"Bearer {self.sandbox.api_key}"
        if self.headers.get("Authorization") == expected:
            return True
        self._send(401, {"message": "missing or wrong API key"})
        return False

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        if path.startswith("/smp/"):
            status, body = self.sandbox.smp_response(path[len("/smp/") :])
            self._send(status, body if status == 200 else None)
            return
        if not path.startswith("/api/"):
            self._send(404, {"message": "not found"})
            return
        if not self._authorised():
            return
        route = path[len("/api") :]
        if route == "/v1/me":
            self._send(200, {"name": "Peppol sandbox access point"})
        elif route == "/v1/documents":
            number = (query.get("number") or [""])[0]
            self._send(200, {"items": self.sandbox.find(number)})
        elif route.startswith("/v1/documents/"):
            record = self.sandbox.status(route.rsplit("/", 1)[1])
            if record is None:
                self._send(404, {"message": "no such document"})
            else:
                self._send(200, record)
        elif route == "/v1/inbox":
            self._send(200, {"items": self.sandbox.unread()})
        else:
            self._send(404, {"message": "not found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if not path.startswith("/api/"):
            self._send(404, {"message": "not found"})
            return
        body = self._json_body()
        if not self._authorised():
            return
        route = path[len("/api") :]
        if route == "/v1/participants/verify":
            participant = str(body.get("participant") or "").lower()
            self._send(200, {"registered": participant in self.sandbox.participants})
        elif route == "/v1/documents":
            status, answer = self.sandbox.submit(
                body, self.headers.get("Idempotency-Key")
            )
            self._send(status, answer)
        elif route.startswith("/v1/inbox/") and route.endswith("/read"):
            item_id = route[len("/v1/inbox/") : -len("/read")]
            found = self.sandbox.mark_read(unquote(item_id))
            self._send(204 if found else 404, None if found else {"message": "none"})
        else:
            self._send(404, {"message": "not found"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox until interrupted; prints where it listens."""
    parser = argparse.ArgumentParser(
        prog="crm-sync sandbox peppol",
        description="Fake Peppol access point, SMP and SML on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=8790, help="TCP/UDP port")
    parser.add_argument(
        "--inbox",
        type=Path,
        default=None,
        help="folder of UBL files seeding the inbox (default: official examples)",
    )
    parser.add_argument(
        "--participant",
        action="append",
        default=None,
        help="registered participant id, e.g. 0208:0765881217 (repeatable)",
    )
    parser.add_argument("--api-key", default="sandbox-key")
    parser.add_argument("--zone", default=SANDBOX_ZONE, help="SML zone answered")
    parser.add_argument(
        "--no-validate", action="store_true", help="accept documents unvalidated"
    )
    args = parser.parse_args(argv)
    # Handlers first: whoever reads the banner below may signal us at once, and a
    # SIGTERM before the handler exists would kill the process (exit -15).
    # Explicit handlers also because a background job may inherit SIGINT ignored.
    stop = threading.Event()
    try:
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    except ValueError:  # not the main thread: only KeyboardInterrupt applies
        pass
    sandbox = PeppolSandbox(
        port=args.port,
        inbox_dir=args.inbox,
        participants=args.participant or DEFAULT_PARTICIPANTS,
        api_key=args.api_key,
        validate=not args.no_validate,
        zone=args.zone,
    )
    try:
        sandbox.start()
    except RulesNotFound as err:
        print(f"crm-sync sandbox peppol: {err}", file=sys.stderr)
        print("(README: 'Peppol artefacts'; or --no-validate)", file=sys.stderr)
        return 2
    try:
        print(f"access point : {sandbox.url} (Bearer {args.api_key})")
        print(f"SMP          : {sandbox.smp_url}")
        print(f"SML (dns)    : udp {HOST}:{sandbox.dns_port}, zone {sandbox.zone}")
        print(f"inbox        : {len(sandbox.inbox)} document(s)", flush=True)
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    print("stopped", flush=True)
    return 0
