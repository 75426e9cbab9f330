"""Sandbox command lines, seed data, settings validation and pure mapping rules."""

from __future__ import annotations

import signal
import subprocess
import sys
from decimal import Decimal
from importlib.metadata import entry_points

import pytest
import requests
from stdnum.be import vat as be_vat
from stdnum.fr import siret, tva

from connectors.sage.accounting import load_settings
from connectors.sage.accounting_client import error_from_response
from connectors.sage.accounting_mapping import (
    contact_to_customer,
    invoice_to_payment_status,
)
from connectors.sage.errors import (
    SageConfigurationError,
    SageDataError,
    SageNotFound,
    SagePermissionDenied,
    SageRateLimited,
    SageUnavailable,
)
from connectors.sage.seed import seed_customers
from connectors.sage.settings import tax_key
from connectors.sage.x3 import load_settings as load_x3_settings


@pytest.mark.parametrize(
    ("module", "probe"),
    [
        ("connectors.sage.sandbox_accounting", "/v3.1/contacts"),
        (
            "connectors.sage.sandbox_x3",
            "/soap-wsdl/syracuse/collaboration/syracuse/CAdxWebServiceXmlCC?wsdl",
        ),
    ],
)
def test_sandbox_main_serves_on_loopback_and_stops_on_sigterm(
    module: str, probe: str
) -> None:
    code = f"import sys; from {module} import main; sys.exit(main(['--port', '0']))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        url = first.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        answer = requests.get(url + probe, timeout=5)
        assert answer.status_code in (200, 401)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_sandboxes_and_connectors_are_registered() -> None:
    sandboxes = {ep.name: ep.value for ep in entry_points(group="crm_sync.sandboxes")}
    assert sandboxes["sage_accounting"] == "connectors.sage.sandbox_accounting:main"
    connectors = {ep.name: ep for ep in entry_points(group="crm_sync.connectors")}
    assert callable(connectors["sage_accounting"].load())
    assert callable(connectors["sage_x3"].load())


def test_seed_is_deterministic_with_valid_check_digits() -> None:
    first = seed_customers(30, seed=3)
    assert first == seed_customers(30, seed=3)
    assert first != seed_customers(30, seed=4)
    for customer in first:
        if customer.country == "FR":
            assert tva.is_valid(customer.vat)
            assert siret.is_valid(customer.registry)
        else:
            assert be_vat.is_valid(customer.vat)
    assert any(" " in c.vat or "." in c.vat for c in first)  # messy on purpose
    assert any(any(ch in c.name for ch in "éèç") for c in seed_customers(60))


def test_settings_errors_name_the_field() -> None:
    with pytest.raises(SageConfigurationError) as caught:
        load_settings({"client_id": "a", "client_secret": "s"})
    assert caught.value.field == "business_id"
    with pytest.raises(SageConfigurationError) as caught:
        load_settings(
            {
                "client_id": "a",
                "client_secret": "s",
                "business_id": "b",
                "items_per_page": 500,
            }
        )
    assert caught.value.field == "items_per_page"
    with pytest.raises(SageConfigurationError) as caught:
        load_x3_settings(
            {"endpoint_url": "x3", "username": "u", "password": "p", "pool_alias": "P"}
        )
    assert caught.value.field == "endpoint_url"
    with pytest.raises(SageConfigurationError) as caught:
        load_x3_settings(
            {
                "endpoint_url": "https://x3.invalid/x",
                "username": "u",
                "password": "p",
                "pool_alias": "P",
                "max_attempts": 5,
            }
        )
    assert caught.value.field == "max_attempts"


def test_secrets_do_not_show_in_settings_repr() -> None:
    settings = load_settings(
        {"client_id": "a", "client_secret": "very-secret", "business_id": "b"}
    )
    assert "very-secret" not in repr(settings)


def test_tax_keys_are_normalised() -> None:
    assert tax_key("s", "21.00") == "S:21"
    assert tax_key("S", Decimal("5.50")) == "S:5.5"
    assert tax_key("Z", 0) == "Z:0"
    settings = load_settings(
        {
            "client_id": "a",
            "client_secret": "s",
            "business_id": "b",
            "tax_rates": {"S:21.0": "BE_STANDARD"},
        }
    )
    assert settings.tax_rates == {"S:21": "BE_STANDARD"}


def _response(status: int, body: object, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    import json

    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers.update(headers or {})
    return response


def _errors(code: str, source: str = "") -> list[dict[str, str]]:
    return [
        {
            "$severity": "error",
            "$dataCode": code,
            "$message": "This field is required.",
            "$source": source,
        }
    ]


def test_error_arrays_become_typed_errors() -> None:
    invalid = error_from_response(
        _response(422, _errors("RecordInvalid", "line_items.tax_rate_id")),
        record="invoice FV-1",
    )
    assert isinstance(invalid, SageDataError)
    assert invalid.field == "line_items.tax_rate_id"
    assert "line_items.tax_rate_id: This field is required." in str(invalid)
    assert isinstance(
        error_from_response(_response(404, _errors("RecordNotFound"))), SageNotFound
    )
    assert isinstance(
        error_from_response(_response(403, _errors("MultiUserAccessDenied"))),
        SagePermissionDenied,
    )
    limited = error_from_response(_response(429, [], {"Retry-After": "12"}))
    assert isinstance(limited, SageRateLimited) and limited.retry_after == 12
    assert isinstance(error_from_response(_response(502, {})), SageUnavailable)
    assert limited.retryable and not invalid.retryable


def test_payment_status_mapping_rejects_unknown_status() -> None:
    item = {
        "id": "abc",
        "reference": "FV-1",
        "status": {"id": "LOST"},
        "outstanding_amount": "1.00",
    }
    with pytest.raises(SageDataError) as caught:
        invoice_to_payment_status(item)
    assert caught.value.field == "status" and "abc" in str(caught.value)
    item["status"] = {"id": "PART_PAID"}
    item["contact"] = {"id": "c1"}
    status = invoice_to_payment_status(item)
    assert status.state == "partial" and status.customer_external_id == "c1"


def test_contact_mapping_names_bad_fields() -> None:
    item = {
        "id": "c1",
        "name": "Atelier Dubois SA",
        "tax_number": "FR40503219875",
        "contact_types": [{"id": "CUSTOMER"}],
        "main_address": {"country": {"id": "France"}},
    }
    with pytest.raises(SageDataError) as caught:
        contact_to_customer(item)
    assert caught.value.record == "Sage contact c1"
    assert caught.value.field == "main_address.country"
    item["main_address"] = {"country": {"id": "FR"}}
    item["updated_at"] = "yesterday"
    with pytest.raises(SageDataError) as caught:
        contact_to_customer(item)
    assert caught.value.field == "updated_at"
