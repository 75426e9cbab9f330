"""Peppol participant lookup: SML (DNS NAPTR) then SMP (REST).

1. SML: the participant id (``0208:0765881217``) is lower-cased, hashed with
   SHA-256, base32-encoded without ``=`` padding and lower-cased; the DNS name
   ``{hash}.iso6523-actorid-upis.{zone}`` has NAPTR records, and the one with flag
   ``U`` and service ``Meta:SMP`` rewrites (its regexp) to the SMP's base URL.
   No record (NXDOMAIN) means the participant is not registered.
2. SMP: ``GET {smp}/iso6523-actorid-upis::{id}`` lists the document types the
   participant receives (ServiceGroup); ``GET`` on the BIS 3 invoice reference gives
   the access point endpoint (ServiceMetadata).

The result is ``can_receive`` (registered for BIS Billing 3 invoices or credit
notes), ``cannot`` (not registered, or not for these documents) or ``unknown``
(DNS or SMP failed), with the time of the check. For Belgium the enterprise number
(0208) is tried first, then the VAT number (9925).

The DNS resolver is injectable (anything with ``resolve(name, "NAPTR")``), or built
for a given nameserver and port, and the SMP can be forced (``smp_url``), so tests
and the sandbox never leave 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import quote, unquote

import dns.exception
import dns.resolver
import requests

from sync_daemon.kernel.identifiers import (
    compact_registry,
    compact_vat,
    peppol_key,
)

from .build import VAT_SCHEME_BY_COUNTRY
from .errors import DocumentError, UnsafeDocument
from .safexml import parse_xml

__all__ = [
    "CREDIT_NOTE_DOCTYPE",
    "INVOICE_DOCTYPE",
    "PROCESS_ID",
    "SML_PRODUCTION",
    "SML_TEST",
    "Discovery",
    "ParticipantStatus",
    "participant_candidates",
    "participant_status",
    "sml_hostname",
    "sml_label",
]

_logger = logging.getLogger(__name__)

SML_PRODUCTION = "edelivery.tech.ec.europa.eu"
SML_TEST = "acc.edelivery.tech.ec.europa.eu"
PARTICIPANT_SCHEME = "iso6523-actorid-upis"
DOCTYPE_SCHEME = "busdox-docid-qns"
_BIS3 = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
INVOICE_DOCTYPE = (
    f"urn:oasis:names:specification:ubl:schema:xsd:Invoice-2::Invoice##{_BIS3}::2.1"
)
CREDIT_NOTE_DOCTYPE = (
    "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2::CreditNote"
    f"##{_BIS3}::2.1"
)
PROCESS_ID = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
_SMP_NS = "http://busdox.org/serviceMetadata/publishing/1.0/"
_AS4 = "peppol-transport-as4-v2_0"

State = Literal["can_receive", "cannot", "unknown"]


class NaptrResolver(Protocol):
    """The part of :class:`dns.resolver.Resolver` used here."""

    def resolve(self, qname: str, rdtype: str) -> Iterable[Any]: ...


def sml_label(participant_id: str) -> str:
    """The DNS label of a participant: base32(SHA-256(lower-case id)), no padding.

    >>> sml_label("0208:0765881217") == sml_label("0208:0765881217".upper())
    True
    """
    digest = hashlib.sha256(participant_id.strip().lower().encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


def sml_hostname(participant_id: str, zone: str = SML_PRODUCTION) -> str:
    """The name whose NAPTR records point at the participant's SMP."""
    return f"{sml_label(participant_id)}.{PARTICIPANT_SCHEME}.{zone.strip('.')}"


def _apply_regexp(regexp: str, name: str) -> str | None:
    """Apply a NAPTR substitution expression (``!.*!https://smp.example!``)."""
    if len(regexp) < 3:
        return None
    delimiter = regexp[0]
    parts = regexp[1:].split(delimiter)
    if len(parts) < 2:
        return None
    pattern, replacement = parts[0], parts[1]
    # NAPTR back-references are written \1; Python's re uses the same syntax.
    try:
        return re.sub(pattern, replacement, name, count=1)
    except re.error:
        return None


def participant_candidates(
    peppol_id: str | None = None,
    *,
    vat: str | None = None,
    company_registry: str | None = None,
    registry_scheme: str | None = None,
    country: str | None = None,
) -> list[str]:
    """Participant ids to try, best first, from what is known about a partner.

    Belgium: ``0208:<enterprise number>`` then ``9925:BE<number>`` and, last, the
    legacy prefixed ``0208:BE…`` some directories still hold (field case C026).
    """
    cc = (country or "").strip().upper()
    found: list[str] = []

    def add(value: str | None) -> None:
        if value and value not in found:
            found.append(value)

    if peppol_id:
        add(peppol_key(peppol_id) or str(peppol_id).strip())
    vat_c = compact_vat(vat, cc) if vat else ""
    if not cc and vat_c[:2].isalpha():
        cc = vat_c[:2]
    registry = compact_registry(company_registry, cc) if company_registry else ""
    if registry_scheme and registry:
        add(peppol_key(registry, registry_scheme))
    if cc == "BE":
        number = registry or (vat_c[2:] if vat_c.startswith("BE") else "")
        add(peppol_key(number, "0208"))
        add(peppol_key(vat_c or number, "9925"))
        if number:
            add(f"0208:BE{number}")
    elif cc in {"NL", "NO", "SE", "DK"}:
        scheme = {"NL": "0106", "NO": "0192", "SE": "0007", "DK": "0184"}[cc]
        number = registry
        if not number and cc in {"NO", "DK"} and vat_c:
            number = re.sub(r"\D", "", vat_c)
        if not number and cc == "SE" and len(vat_c) == 14:
            number = vat_c[2:12]
        add(peppol_key(number, scheme) if number else None)
    elif cc == "FR" and registry:
        add(peppol_key(registry, "0009" if len(registry) == 14 else "0002"))
    if vat_c and cc in VAT_SCHEME_BY_COUNTRY:
        add(peppol_key(vat_c, VAT_SCHEME_BY_COUNTRY[cc]))
    return found


@dataclass(frozen=True)
class ParticipantStatus:
    """What a lookup found; ``participant_id`` is the id that answered best."""

    state: State
    checked_at: datetime
    participant_id: str | None = None
    document_types: tuple[str, ...] = ()
    smp_url: str | None = None
    endpoint_url: str | None = None
    reason: str = ""
    tried: tuple[str, ...] = field(default=())

    @property
    def can_receive(self) -> bool:
        return self.state == "can_receive"

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "checked_at": self.checked_at.isoformat(),
            "participant_id": self.participant_id,
            "document_types": list(self.document_types),
            "smp_url": self.smp_url,
            "endpoint_url": self.endpoint_url,
            "reason": self.reason,
            "tried": list(self.tried),
        }


class _Unknown(Exception):
    """DNS or SMP failure: the answer is unknown, not negative."""


class Discovery:
    """SML + SMP lookups.

    :param zone: the SML DNS zone (:data:`SML_PRODUCTION` or :data:`SML_TEST`).
    :param resolver: anything with ``resolve(name, "NAPTR")``; default: dnspython.
    :param nameserver: build a dnspython resolver asking only this server.
    :param smp_url: skip DNS and ask this SMP for every participant.
    :param session: the HTTP session for SMP calls (closed only if created here).
    :param timeout: seconds for each DNS query and HTTP call.
    :param clock: returns the current UTC time (tests pass a fake).
    """

    def __init__(
        self,
        *,
        zone: str = SML_PRODUCTION,
        resolver: NaptrResolver | None = None,
        nameserver: str | None = None,
        nameserver_port: int = 53,
        smp_url: str | None = None,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.zone = zone
        self._resolver = resolver
        self._nameserver = nameserver
        self._nameserver_port = nameserver_port
        self._smp_url = smp_url.rstrip("/") if smp_url else None
        self._own_session = session is None
        self._session = session or requests.Session()
        self._timeout = timeout
        self._clock = clock or (lambda: datetime.now(UTC))

    def close(self) -> None:
        if self._own_session:
            self._session.close()

    # ------------------------------------------------------------------ SML

    def _naptr_resolver(self) -> NaptrResolver:
        """The injected resolver, or a dnspython one made on first use."""
        if self._resolver is None:
            made = dns.resolver.Resolver(configure=self._nameserver is None)
            if self._nameserver is not None:
                made.nameservers = [self._nameserver]
                made.port = self._nameserver_port
            made.lifetime = self._timeout
            self._resolver = made
        return self._resolver

    def smp_url(self, participant_id: str) -> str | None:
        """The SMP base URL of a participant, or ``None`` when not registered."""
        if self._smp_url:
            return self._smp_url
        name = sml_hostname(participant_id, self.zone)
        try:
            answer = self._naptr_resolver().resolve(name, "NAPTR")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.DNSException as err:
            raise _Unknown(f"DNS lookup failed: {err.__class__.__name__}") from err
        records = sorted(answer, key=lambda r: (r.order, r.preference))
        for record in records:
            flags = _text(record.flags).upper()
            service = _text(record.service)
            if flags == "U" and service == "Meta:SMP":
                url = _apply_regexp(_text(record.regexp), name)
                if url:
                    return url.rstrip("/")
        return None

    # ------------------------------------------------------------------ SMP

    def _get(self, url: str) -> bytes | None:
        try:
            response = self._session.get(url, timeout=self._timeout)
        except requests.RequestException as err:
            raise _Unknown(f"SMP unreachable: {err.__class__.__name__}") from err
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise _Unknown(f"SMP answered HTTP {response.status_code}")
        return response.content

    def service_group(self, smp: str, participant_id: str) -> list[str] | None:
        """Hrefs of the participant's ServiceMetadataReferences (None: unknown id)."""
        path = quote(f"{PARTICIPANT_SCHEME}::{participant_id}", safe="")
        body = self._get(f"{smp}/{path}")
        if body is None:
            return None
        root = _smp_xml(body, "ServiceGroup")
        return [
            ref.get("href") or ""
            for ref in root.iter(f"{{{_SMP_NS}}}ServiceMetadataReference")
        ]

    def endpoint(self, href: str) -> str | None:
        """The AS4 endpoint address in a ServiceMetadata document, if any."""
        body = self._get(href)
        if body is None:
            return None
        root = _smp_xml(body, "ServiceMetadata")
        for endpoint in root.iter(f"{{{_SMP_NS}}}Endpoint"):
            if endpoint.get("transportProfile") == _AS4:
                address = endpoint.findtext(
                    "{http://www.w3.org/2005/08/addressing}EndpointReference/"
                    "{http://www.w3.org/2005/08/addressing}Address"
                )
                return (address or "").strip() or None
        return None

    # -------------------------------------------------------------- lookups

    def lookup(self, participant_id: str) -> ParticipantStatus:
        """Check one participant id."""
        now = self._clock()
        try:
            smp = self.smp_url(participant_id)
            if smp is None:
                return ParticipantStatus(
                    "cannot", now, participant_id, reason="not registered in the SML"
                )
            hrefs = self.service_group(smp, participant_id)
            if hrefs is None:
                return ParticipantStatus(
                    "cannot", now, participant_id, smp_url=smp, reason="unknown to SMP"
                )
            supported = []
            invoice_href = None
            for href in hrefs:
                decoded = unquote(href)
                if INVOICE_DOCTYPE in decoded:
                    supported.append("invoice")
                    invoice_href = href
                elif CREDIT_NOTE_DOCTYPE in decoded:
                    supported.append("credit_note")
            if not supported:
                return ParticipantStatus(
                    "cannot",
                    now,
                    participant_id,
                    smp_url=smp,
                    reason="registered, but not for Peppol BIS Billing 3",
                )
            endpoint = self.endpoint(invoice_href) if invoice_href else None
        except _Unknown as err:
            _logger.info("peppol lookup of %s inconclusive: %s", participant_id, err)
            return ParticipantStatus("unknown", now, participant_id, reason=str(err))
        return ParticipantStatus(
            "can_receive",
            now,
            participant_id,
            document_types=tuple(supported),
            smp_url=smp,
            endpoint_url=endpoint,
        )

    def participant_status(
        self,
        peppol_id: str | None = None,
        *,
        vat: str | None = None,
        company_registry: str | None = None,
        registry_scheme: str | None = None,
        country: str | None = None,
        candidates: Sequence[str] | None = None,
    ) -> ParticipantStatus:
        """Readiness of a partner: the first candidate id that can receive wins.

        All candidates ``cannot`` gives ``cannot``; otherwise any ``unknown`` gives
        ``unknown``. No candidate at all gives ``cannot`` with a reason saying so.
        """
        ids = list(candidates or ()) or participant_candidates(
            peppol_id,
            vat=vat,
            company_registry=company_registry,
            registry_scheme=registry_scheme,
            country=country,
        )
        if not ids:
            return ParticipantStatus(
                "cannot", self._clock(), reason="no identifier to look up"
            )
        results: list[ParticipantStatus] = []
        for pid in ids:
            status = self.lookup(pid)
            if status.can_receive:
                return _with_tried(status, ids[: len(results) + 1])
            results.append(status)
        unknown = [s for s in results if s.state == "unknown"]
        chosen = unknown[0] if unknown else results[0]
        return _with_tried(chosen, ids)


def _with_tried(status: ParticipantStatus, tried: Sequence[str]) -> ParticipantStatus:
    return ParticipantStatus(
        status.state,
        status.checked_at,
        status.participant_id,
        status.document_types,
        status.smp_url,
        status.endpoint_url,
        status.reason,
        tuple(tried),
    )


def _text(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _smp_xml(body: bytes, expected: str) -> Any:
    try:
        root = parse_xml(body, source="SMP answer", max_bytes=2 * 1024 * 1024).getroot()
    except (UnsafeDocument, DocumentError) as err:
        raise _Unknown(f"unusable SMP answer: {err.message}") from err
    # SignedServiceMetadata wraps ServiceMetadata; both are acceptable.
    if expected not in root.tag and not root.tag.endswith("SignedServiceMetadata"):
        raise _Unknown(f"unexpected SMP answer {root.tag}")
    return root


def participant_status(
    peppol_id: str | None = None,
    *,
    vat: str | None = None,
    company_registry: str | None = None,
    registry_scheme: str | None = None,
    country: str | None = None,
    discovery: Discovery | None = None,
) -> ParticipantStatus:
    """Peppol readiness of a partner, from its Peppol id or its identifiers.

    A convenience for callers without a connector (the daemon's partner check):
    uses ``discovery`` or a production-SML :class:`Discovery` made for the call.
    """
    owned = discovery is None
    finder = discovery or Discovery()
    try:
        return finder.participant_status(
            peppol_id,
            vat=vat,
            company_registry=company_registry,
            registry_scheme=registry_scheme,
            country=country,
        )
    finally:
        if owned:
            finder.close()
