"""C022: Sage X3 SOAP results — status 0 with messages, warnings, busy pool,
"no web services accepted", accented names, and look-up before any re-save."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import requests

from connectors.sage.errors import (
    SageConfigurationError,
    SageTimeout,
    X3DataError,
    X3NoWebServices,
    X3PoolBusy,
)
from connectors.sage.sandbox_x3 import SageX3Sandbox, _result
from connectors.sage.x3 import SageX3Connector, load_settings
from connectors.sage.x3_client import OfflineTransport, X3Client, rpc_envelope
from connectors.sage.x3_payloads import (
    build_object_xml,
    customer_to_bpc,
    parse_object_xml,
)
from sync_daemon.kernel.errors import DataError, RetryableError
from sync_daemon.kernel.models import Address, Customer

from .helpers import make_invoice

MakeX3 = Callable[..., SageX3Connector]


def _partner(case: dict[str, Any]) -> Customer:
    partner = case["odoo_partner"]
    return Customer(
        external_id=str(partner["id"]),
        name=partner["name"],
        vat=partner["vat"],
        address=Address(city=partner["city"], country_code=partner["country"]),
    )


class RawAdapter(requests.adapters.BaseAdapter):
    """Answers SOAP posts from a function of the operation name; no network."""

    def __init__(self, answer: Callable[[str], bytes]) -> None:
        super().__init__()
        self.answer = answer
        self.operations: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> Any:
        body = request.body if isinstance(request.body, bytes) else b""
        operation = next(
            op
            for op in ("getDescription", "query", "read", "save", "modify", "run")
            if f":{op}".encode() in body or f"<{op}".encode() in body
        )
        self.operations.append(operation)
        response = requests.Response()
        response.status_code = 200
        response._content = self.answer(operation)
        response.headers["Content-Type"] = "text/xml; charset=utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def _scripted_connector(case: dict[str, Any], answer: Callable[[str], bytes]) -> Any:
    adapter = RawAdapter(answer)
    session = requests.Session()
    session.mount("https://", adapter)
    settings = load_settings(
        {
            "endpoint_url": "https://x3.invalid/soap-generic/syracuse/collaboration/"
            "syracuse/CAdxWebServiceXmlCC",
            "username": "WS",
            "password": "p",
            "pool_alias": case["x3_call"]["poolAlias"],
            "language": case["x3_call"]["codeLang"],
            "customer_defaults": {"BCGCOD": case["x3_call"]["fields"]["BCGCOD"]},
        }
    )
    sleeps: list[float] = []
    return SageX3Connector(settings, sleep=sleeps.append, session=session), adapter


def test_status_zero_raises_data_error_with_accented_text(load_case: Any) -> None:
    case = load_case("C022_x3_save_customer_request_input.json")
    answer_file = load_case("C022_x3_save_customer_status0_response.xml")
    empty = _result("query", 1, "<RESULT><TAB ID='BPC_1' SIZE='0'/></RESULT>", [])
    connector, adapter = _scripted_connector(
        case, lambda op: answer_file if op == "save" else empty
    )
    with pytest.raises(X3DataError) as caught:
        connector.push_customer(
            _partner(case), external_id=None, idempotency_key="odoo-311"
        )
    err = caught.value
    assert "Groupe comptable client « BEXX » : fiche inexistante" in err.message
    assert "Numéro de TVA" not in err.message  # the warning is not the error
    assert (2, "Numéro de TVA non contrôlé (service VIES indisponible)") in err.messages
    assert isinstance(err, DataError) and not isinstance(err, RetryableError)
    assert err.record == "customer 311"
    assert adapter.operations.count("save") == 1  # no retry


def test_request_carries_case_fields_and_call_context(load_case: Any) -> None:
    case = load_case("C022_x3_save_customer_request_input.json")
    connector, _ = _scripted_connector(case, lambda op: b"")
    xml = customer_to_bpc(_partner(case), settings=connector.settings)
    fields = parse_object_xml(xml.replace("PARAM", "RESULT"))
    wanted = case["x3_call"]["fields"]
    assert {k: fields.get(k) for k in wanted} == wanted
    context = connector.client.call_context
    assert context["codeLang"] == "FRA" and context["poolAlias"] == "CRMSYNC"


def test_accented_name_round_trips_as_utf8(
    x3_sandbox: SageX3Sandbox, make_x3: MakeX3, load_case: Any
) -> None:
    case = load_case("C022_x3_save_customer_request_input.json")
    connector = make_x3(x3_sandbox)
    customer = _partner(case)
    ref = connector.push_customer(customer, external_id=None, idempotency_key="311")
    assert ref.created
    save_body = next(
        b for b in x3_sandbox.bodies if b"save" in b[:600] or b":save" in b
    )
    assert "Société d'Électricité Fictive de Liège".encode() in save_body
    assert "SociÃ©tÃ©".encode() not in save_body and b"Soci?t?" not in save_body
    assert x3_sandbox.customers[ref.external_id]["BPCNAM"] == customer.name
    pulled = {
        c.external_id: c for p in connector.pull_customers(None) for c in p.records
    }
    assert pulled[ref.external_id].name == customer.name
    assert pulled[ref.external_id].address.city == "Liège"


def test_sandbox_answers_status_zero_like_the_case(
    x3_sandbox: SageX3Sandbox, make_x3: MakeX3, load_case: Any
) -> None:
    case = load_case("C022_x3_save_customer_request_input.json")
    connector = make_x3(x3_sandbox, customer_defaults={"BCGCOD": "BEXX"})
    before = dict(x3_sandbox.customers)
    with pytest.raises(X3DataError) as caught:
        connector.push_customer(_partner(case), external_id=None, idempotency_key="k")
    assert case["expected"]["on_status_0_with_type3"].split("'")[1] in str(caught.value)
    assert x3_sandbox.customers == before  # nothing created, nothing to link
    assert [op for op, _ in x3_sandbox.calls].count("save") == 1


def test_warnings_alone_do_not_fail_a_status_one_call(
    x3_sandbox: SageX3Sandbox, make_x3: MakeX3, caplog: pytest.LogCaptureFixture
) -> None:
    connector = make_x3(x3_sandbox)
    customer = Customer(
        external_id="12",
        name="Brasserie Wouters SRL",
        vat="BE0412345614",
        address=Address(country_code="BE"),
    )
    with caplog.at_level(logging.WARNING, logger="connectors.sage.x3_client"):
        ref = connector.push_customer(customer, external_id=None, idempotency_key="12")
    assert ref.created
    assert "2 warning(s)" in caplog.text
    assert "Wouters" not in caplog.text  # no personal data above DEBUG


def test_import_run_status_is_not_the_result_status(
    x3_sandbox: SageX3Sandbox, make_x3: MakeX3
) -> None:
    connector = make_x3(x3_sandbox)
    xml = build_object_xml({"I_MODIMP": "BPC", "I_FILE": "clients.csv"}, groups={})
    result = connector.client.run("AOWSIMPORT", xml)
    assert result.status == 1  # generic result: 1 = success
    assert parse_object_xml(result.result_xml)["O_STATUS"] == "0"  # import: 0 = OK
    with pytest.raises(X3DataError):
        connector.client.run("AOWSIMPORT", build_object_xml({}, groups={}))


def test_pool_busy_is_retried_at_most_three_times(
    x3_sandbox: SageX3Sandbox, make_x3: MakeX3
) -> None:
    connector = make_x3(x3_sandbox)
    x3_sandbox.faults.force("busy", "read")
    x3_sandbox.faults.force("5xx", "read")
    assert connector.client.read("BPC", {"BPCNUM": "C00001"}).status == 1
    for _ in range(3):
        x3_sandbox.faults.force("busy", "read")
    posts = x3_sandbox.posts
    with pytest.raises(X3PoolBusy):
        connector.client.read("BPC", {"BPCNUM": "C00001"})
    assert x3_sandbox.posts - posts == 3
    assert x3_sandbox.faults.injected["busy"] == 4


def test_read_timeout_is_bounded_and_retried(
    x3_sandbox: SageX3Sandbox, make_x3: MakeX3
) -> None:
    connector = make_x3(x3_sandbox)
    assert connector.client._transport.operation_timeout == 1.0
    x3_sandbox.faults.force("timeout", "read")
    assert connector.client.read("BPC", {"BPCNUM": "C00002"}).status == 1
    assert [op for op, _ in x3_sandbox.calls].count("read") == 2


def test_no_web_services_accepted_fails_fast(
    x3_sandbox: SageX3Sandbox, make_x3: MakeX3
) -> None:
    connector = make_x3(x3_sandbox)
    x3_sandbox.no_web_services = True
    with pytest.raises(X3NoWebServices) as caught:
        connector.client.read("BPC", {"BPCNUM": "C00001"})
    assert isinstance(caught.value, SageConfigurationError)
    assert "Number of Web services children" in str(caught.value)
    assert x3_sandbox.posts == 1  # one call, no retry
    report = connector.check()
    assert report.credentials_state == "unknown"
    assert "Web services children" in report.message


def test_save_lost_after_commit_is_found_by_key(
    x3_sandbox: SageX3Sandbox, make_x3: MakeX3
) -> None:
    connector = make_x3(x3_sandbox)
    customer = Customer(
        external_id="41",
        name="Imprimerie Hérault SARL",
        vat="FR40503219875",
        company_registry="503219875",
        address=Address(country_code="FR"),
    )
    x3_sandbox.faults.force("timeout", "save")
    ref = connector.push_customer(customer, external_id=None, idempotency_key="41")
    assert not ref.created
    same = [c for c in x3_sandbox.customers.values() if c["EECNUM"] == "FR40503219875"]
    assert len(same) == 1 and same[0]["BPCNUM"] == ref.external_id
    assert [op for op, _ in x3_sandbox.calls].count("save") == 1


def test_save_refused_before_commit_is_sent_again(
    x3_sandbox: SageX3Sandbox, make_x3: MakeX3
) -> None:
    connector = make_x3(x3_sandbox)
    customer = Customer(
        external_id="42",
        name="Fromagerie Peeters NV",
        vat="BE0523456738",
        company_registry="0523456738",
        address=Address(country_code="BE"),
    )
    x3_sandbox.faults.force("5xx", "save")
    ref = connector.push_customer(customer, external_id=None, idempotency_key="42")
    assert ref.created
    assert [op for op, _ in x3_sandbox.calls].count("save") == 1  # 503 not counted
    assert x3_sandbox.faults.injected["5xx"] == 1
    assert (
        sum(1 for c in x3_sandbox.customers.values() if c["BPCNAM"] == customer.name)
        == 1
    )


def test_save_without_lookup_key_is_never_repeated(
    x3_sandbox: SageX3Sandbox, make_x3: MakeX3
) -> None:
    connector = make_x3(x3_sandbox)
    customer = Customer(
        external_id="43", name="Librairie Lambert", address=Address(country_code="FR")
    )
    x3_sandbox.faults.force("reset", "save")
    with pytest.raises(RetryableError) as caught:
        connector.push_customer(customer, external_id=None, idempotency_key="43")
    assert caught.value.details["outcome_unknown"] is True
    assert [op for op, _ in x3_sandbox.calls].count("save") == 1


def test_reference_field_allows_lookup_without_vat(
    x3_sandbox: SageX3Sandbox, make_x3: MakeX3
) -> None:
    connector = make_x3(x3_sandbox, customer_reference_field="ZCRMREF")
    customer = Customer(
        external_id="44", name="Librairie Lambert", address=Address(country_code="FR")
    )
    x3_sandbox.faults.force("reset", "save")
    ref = connector.push_customer(customer, external_id=None, idempotency_key="44")
    assert not ref.created
    assert sum(1 for c in x3_sandbox.customers.values() if c.get("ZCRMREF")) == 1


def test_invoice_is_looked_up_before_any_resave(
    x3_sandbox: SageX3Sandbox, make_x3: MakeX3, load_case: Any
) -> None:
    number = load_case("C032_post_invoice_reset_after_commit.json")["odoo_invoice"][
        "name"
    ]
    connector = make_x3(x3_sandbox)
    invoice = make_invoice(
        number, buyer_name="x", buyer_vat=None, buyer_external_id="C00002"
    )
    x3_sandbox.faults.force("reset", "save")
    ref = connector.push_invoice(invoice, idempotency_key="9001")
    assert not ref.created
    stored = [i for i in x3_sandbox.invoices.values() if i["BPRVCR"] == number]
    assert len(stored) == 1 and stored[0]["NUM"] == ref.external_id
    assert connector.push_invoice(invoice, idempotency_key="9001") == ref
    assert [op for op, _ in x3_sandbox.calls].count("save") == 1


def test_invoice_mapping_errors_name_the_line_before_any_call(
    x3_sandbox: SageX3Sandbox, make_x3: MakeX3
) -> None:
    connector = make_x3(x3_sandbox)
    invoice = make_invoice(
        "FV-9", buyer_name="x", buyer_vat=None, buyer_external_id="C00001", percent="12"
    )
    with pytest.raises(DataError) as caught:
        connector.push_invoice(invoice, idempotency_key="FV-9")
    assert caught.value.field == "lines[0].tax"
    assert "save" not in [op for op, _ in x3_sandbox.calls]


def test_wsdl_is_loaded_offline() -> None:
    def refuse(_: str) -> bytes:
        raise AssertionError("the client must not call X3 while loading")

    adapter = RawAdapter(refuse)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    settings = load_settings(
        {
            "endpoint_url": "https://x3.invalid/x",
            "username": "u",
            "password": "p",
            "pool_alias": "P",
        }
    )
    client = X3Client(settings, sleep=lambda _: None, session=session)
    assert client._transport.operation_timeout == settings.operation_timeout
    assert adapter.operations == []
    transport = OfflineTransport(session=session)
    with pytest.raises(SageConfigurationError):
        transport.load("https://schemas.example.org/other.xsd")
    with pytest.raises(SageConfigurationError):
        transport.load("/etc/passwd")


def test_object_keys_envelope_is_a_proper_encoded_array() -> None:
    envelope = rpc_envelope(
        "read",
        {"codeLang": "FRA", "poolAlias": "P"},
        publicName="BPC",
        objectKeys={"BPCNUM": "C00001"},
    )
    keys = envelope.find(".//objectKeys")
    assert keys is not None
    enc = "{http://schemas.xmlsoap.org/soap/encoding/}arrayType"
    xsi = "{http://www.w3.org/2001/XMLSchema-instance}type"
    assert keys.get(enc) == "wss:CAdxParamKeyValue[1]"
    item = keys.find("item")
    assert item is not None and item.get(xsi) == "wss:CAdxParamKeyValue"
    assert item.findtext("key") == "BPCNUM" and item.findtext("value") == "C00001"


def test_timeout_on_save_is_typed() -> None:
    assert issubclass(SageTimeout, RetryableError)


def test_publication_names_come_from_configuration(load_case: Any) -> None:
    refused = _result("save", 0, None, [(3, "refused on purpose")])
    empty = _result("query", 1, "<RESULT><TAB ID='X_1' SIZE='0'/></RESULT>", [])
    bodies: list[bytes] = []

    class Capture(RawAdapter):
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> Any:
            bodies.append(request.body if isinstance(request.body, bytes) else b"")
            return super().send(request, **kwargs)

    session = requests.Session()
    session.mount("https://", Capture(lambda op: refused if op == "save" else empty))
    settings = load_settings(
        {
            "endpoint_url": "https://x3.invalid/soap-generic/x",
            "username": "WS",
            "password": "p",
            "pool_alias": "CRMSYNC",
            "customer_publication": "ZBPCRM",
            "invoice_publication": "ZSIHCRM",
            "sales_site": "FR011",
            "default_item": "PRESTA",
            "tax_codes": {"S:21": "BEN"},
        }
    )
    connector = SageX3Connector(settings, sleep=lambda _: None, session=session)
    customer = Customer(
        external_id="7",
        name="Imprimerie Hérault SARL",
        vat="FR40503219875",
        address=Address(country_code="FR"),
    )
    with pytest.raises(X3DataError):
        connector.push_customer(customer, external_id=None, idempotency_key="7")
    invoice = make_invoice(
        "FV-1", buyer_name="x", buyer_vat=None, buyer_external_id="C00001"
    )
    with pytest.raises(X3DataError):
        connector.push_invoice(invoice, idempotency_key="FV-1")
    names = [
        body.split(b"publicName", 2)[1].split(b">", 1)[1].split(b"<", 1)[0]
        for body in bodies
        if b"publicName" in body
    ]
    assert b"ZBPCRM" in names and b"ZSIHCRM" in names
    assert set(names) <= {b"ZBPCRM", b"ZSIHCRM"}  # never the default BPC/SIH
