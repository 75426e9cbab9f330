"""Participant lookup: SML hashing, NAPTR, SMP, Belgian fallback, unknown states."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
from pytest_httpserver import HTTPServer

from connectors.peppol.discovery import (
    INVOICE_DOCTYPE,
    Discovery,
    participant_candidates,
    participant_status,
    sml_hostname,
    sml_label,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_sml_label_is_lowercase_unpadded_base32_of_sha256() -> None:
    digest = hashlib.sha256(b"0208:0765881217").digest()
    expected = base64.b32encode(digest).decode().rstrip("=").lower()
    assert sml_label("0208:0765881217") == expected
    assert sml_label("0088:ABC") == sml_label("0088:abc")  # lower-cased first
    assert "=" not in expected and len(expected) == 52
    assert sml_hostname("0208:0765881217", "acc.edelivery.tech.ec.europa.eu") == (
        f"{expected}.iso6523-actorid-upis.acc.edelivery.tech.ec.europa.eu"
    )


def test_candidates_per_country() -> None:
    assert participant_candidates(vat="BE 0765.881.217", country="BE") == [
        "0208:0765881217",
        "9925:BE0765881217",
        "0208:BE0765881217",
    ]
    assert participant_candidates("0208:BE0765881217")[0] == "0208:0765881217"
    assert participant_candidates(company_registry="4123456", country="NL")[0] == (
        "0106:04123456"
    )
    assert participant_candidates(vat="NO123456785MVA", country="NO") == [
        "0192:123456785"
    ]
    assert participant_candidates(vat="SE556036079301", country="SE") == [
        "0007:5560360793"
    ]
    assert (
        participant_candidates(company_registry="73282932000074", country="FR")[0]
        == "0009:73282932000074"
    )
    assert participant_candidates() == []


class FakeResolver:
    """Answers NAPTR from a dict; anything else raises what it was given."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def resolve(self, qname: str, rdtype: str) -> list[Any]:
        self.asked.append(qname)
        answer = self.answers.get(qname, dns.resolver.NXDOMAIN())
        if isinstance(answer, Exception):
            raise answer
        return answer


def _naptr(text: str) -> Any:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.NAPTR, text)


def _smp(httpserver: HTTPServer, participant: str, doctypes: list[str]) -> None:
    path = f"/iso6523-actorid-upis::{participant}"
    refs = "".join(
        f'<ServiceMetadataReference href="{httpserver.url_for(path)}/services/'
        f'busdox-docid-qns%3A%3A{d.replace("#", "%23")}"/>'
        for d in doctypes
    )
    httpserver.expect_request(path).respond_with_data(
        '<ServiceGroup xmlns="http://busdox.org/serviceMetadata/publishing/1.0/">'
        f"<ServiceMetadataReferenceCollection>{refs}"
        "</ServiceMetadataReferenceCollection></ServiceGroup>",
        content_type="application/xml",
    )


def test_naptr_regexp_leads_to_the_smp(httpserver: HTTPServer) -> None:
    pid = "0208:0765881217"
    name = sml_hostname(pid, "sml.test")
    resolver = FakeResolver(
        {
            name: [
                _naptr('10 10 "U" "Meta:Other" "!.*!http://wrong!" .'),
                _naptr(f'100 10 "U" "Meta:SMP" "!.*!{httpserver.url_for("")}!" .'),
            ]
        }
    )
    _smp(httpserver, pid, ["urn:other::doc"])
    finder = Discovery(zone="sml.test", resolver=resolver, clock=lambda: NOW)
    status = finder.lookup(pid)
    assert status.state == "cannot"
    assert "not for Peppol BIS Billing 3" in status.reason
    assert status.smp_url == httpserver.url_for("").rstrip("/")
    assert status.checked_at == NOW
    assert resolver.asked == [name]


def test_unregistered_and_failing_lookups(httpserver: HTTPServer) -> None:
    pid = "0208:0765881217"
    finder = Discovery(zone="sml.test", resolver=FakeResolver({}), clock=lambda: NOW)
    assert finder.lookup(pid).state == "cannot"  # NXDOMAIN

    timeout = FakeResolver({sml_hostname(pid, "sml.test"): dns.exception.Timeout()})
    down = Discovery(zone="sml.test", resolver=timeout, clock=lambda: NOW)
    status = down.lookup(pid)
    assert status.state == "unknown" and "DNS" in status.reason

    httpserver.expect_request(f"/iso6523-actorid-upis::{pid}").respond_with_data(
        "busy", status=503
    )
    smp_down = Discovery(smp_url=httpserver.url_for(""), clock=lambda: NOW)
    assert smp_down.lookup(pid).state == "unknown"
    nowhere = Discovery(smp_url="http://127.0.0.1:9", timeout=1, clock=lambda: NOW)
    assert nowhere.lookup(pid).state == "unknown"


def test_sandbox_sml_and_smp_over_real_dns(sandbox_factory) -> None:
    box = sandbox_factory(inbox_dir="/nonexistent")
    finder = Discovery(
        zone=box.zone, nameserver="127.0.0.1", nameserver_port=box.dns_port, timeout=2
    )
    status = finder.participant_status(vat="BE 0765.881.217", country="BE")
    assert status.state == "can_receive"
    assert status.participant_id == "0208:0765881217"
    assert set(status.document_types) == {"invoice", "credit_note"}
    assert status.endpoint_url == f"{box.base}/as4"
    assert status.as_dict()["state"] == "can_receive"
    unknown = finder.participant_status(vat="BE0000000097", country="BE")
    assert unknown.state == "cannot"
    assert unknown.tried == (
        "0208:0000000097",
        "9925:BE0000000097",
        "0208:BE0000000097",
    )


def test_belgium_falls_back_to_the_vat_scheme(sandbox_factory) -> None:
    box = sandbox_factory(inbox_dir="/nonexistent", participants=["9925:BE0765881217"])
    finder = Discovery(
        zone=box.zone, nameserver="127.0.0.1", nameserver_port=box.dns_port, timeout=2
    )
    status = finder.participant_status(vat="BE0765881217", country="BE")
    assert status.state == "can_receive"
    assert status.participant_id == "9925:BE0765881217"
    assert status.tried == ("0208:0765881217", "9925:BE0765881217")


def test_smp_document_lists_invoice_doctype(sandbox_factory) -> None:
    box = sandbox_factory(inbox_dir="/nonexistent")
    finder = Discovery(smp_url=box.smp_url)
    hrefs = finder.service_group(box.smp_url, "0208:0765881217")
    assert hrefs and any("Invoice-2" in h for h in hrefs)
    assert finder.service_group(box.smp_url, "0208:0000000097") is None
    assert INVOICE_DOCTYPE.endswith("::2.1")


def test_module_level_participant_status_for_callers_without_connector(
    sandbox_factory,
) -> None:
    box = sandbox_factory(inbox_dir="/nonexistent")
    finder = Discovery(smp_url=box.smp_url, clock=lambda: NOW)
    status = participant_status(vat="BE0447123478", country="BE", discovery=finder)
    assert (status.state, status.participant_id) == ("can_receive", "0208:0447123478")
    assert status.checked_at == NOW
    nobody = participant_status(discovery=finder)
    assert (nobody.state, nobody.reason) == ("cannot", "no identifier to look up")
