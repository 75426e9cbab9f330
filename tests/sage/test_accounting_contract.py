"""Contract tests of the Sage Accounting connector against its sandbox.

Covers X-Business pinning, error arrays, deltas and deletions, payments, the C032
rule (look up before any re-POST) and a run under 10 % injected faults.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from connectors.sage.accounting import SageAccountingConnector
from connectors.sage.errors import (
    BusinessMismatch,
    SageDataError,
    SageNeedsReauthorisation,
    SagePermissionDenied,
    SageRateLimited,
)
from connectors.sage.sandbox_accounting import (
    BE_BUSINESS,
    LEAD_BUSINESS,
    OTHER_BUSINESS,
    SageAccountingSandbox,
)
from connectors.sage.sandbox_http import FaultPlan
from connectors.sage.seed import seed_customers
from sync_daemon.kernel.errors import RetryableError
from sync_daemon.kernel.models import Address, Customer, RemoteRef
from sync_daemon.kernel.protocol import (
    AuthorizationCodeFlow,
    Connector,
    CustomerSink,
    CustomerSource,
    DeletionSource,
    InvoiceSink,
    PaymentSource,
)

from .conftest import MakeConnector
from .helpers import make_invoice


def _customer(index: int, *, seed: int = 999) -> Customer:
    spec = seed_customers(index + 1, seed=seed)[index]
    return Customer(
        external_id=f"odoo-{index}",
        name=spec.name,
        vat=spec.vat,
        email=spec.email,
        phone=spec.phone,
        address=Address(
            street=spec.street, zip=spec.zip, city=spec.city, country_code=spec.country
        ),
    )


def _posts(sandbox: SageAccountingSandbox, path: str) -> int:
    return sum(1 for method, p, _ in sandbox.requests if method == "POST" and p == path)


def test_connector_implements_the_kernel_protocols(
    accounting_sandbox: SageAccountingSandbox, make_connector: MakeConnector
) -> None:
    connector = make_connector(accounting_sandbox)
    for protocol in (
        Connector,
        CustomerSource,
        DeletionSource,
        CustomerSink,
        InvoiceSink,
        PaymentSource,
    ):
        assert isinstance(connector, protocol), protocol.__name__


def test_every_request_names_the_business(
    accounting_sandbox: SageAccountingSandbox, make_connector: MakeConnector
) -> None:
    connector = make_connector(accounting_sandbox, business_id=LEAD_BUSINESS)
    list(connector.pull_customers(None))
    connector.push_customer(_customer(0), external_id=None, idempotency_key="k0")
    assert accounting_sandbox.requests
    assert {sent for _, _, sent in accounting_sandbox.requests} == {LEAD_BUSINESS}


def test_answer_for_another_business_aborts_before_writing(
    accounting_sandbox: SageAccountingSandbox, make_connector: MakeConnector
) -> None:
    connector = make_connector(accounting_sandbox)
    accounting_sandbox.echo_business_override = LEAD_BUSINESS
    invoice = make_invoice("FV-2025-00042", buyer_name="X", buyer_vat=None)
    with pytest.raises(BusinessMismatch) as caught:
        connector.push_invoice(invoice, idempotency_key="k")
    assert caught.value.field == "business_id"
    assert _posts(accounting_sandbox, "/sales_invoices") == 0


def test_error_array_names_the_field_and_is_not_retried(
    accounting_sandbox: SageAccountingSandbox, make_connector: MakeConnector
) -> None:
    connector = make_connector(accounting_sandbox)
    bad = _customer(1).model_copy(update={"vat": "BE0123456780"})
    with pytest.raises(SageDataError) as caught:
        connector.push_customer(bad, external_id=None, idempotency_key="bad")
    assert caught.value.field == "tax_number"
    assert caught.value.details["code"] == "RecordInvalid"
    assert _posts(accounting_sandbox, "/contacts") == 1


def test_unmapped_tax_rate_is_reported_before_any_post(
    accounting_sandbox: SageAccountingSandbox, make_connector: MakeConnector
) -> None:
    connector = make_connector(accounting_sandbox)
    ref = connector.push_customer(_customer(1), external_id=None, idempotency_key="c1")
    invoice = make_invoice(
        "FV-2025-00050",
        buyer_name="x",
        buyer_vat=None,
        percent="12",
        buyer_external_id=ref.external_id,
    )
    with pytest.raises(SageDataError) as caught:
        connector.push_invoice(invoice, idempotency_key="i")
    assert caught.value.record == "invoice FV-2025-00050"
    assert caught.value.field == "lines[0].tax"
    assert _posts(accounting_sandbox, "/sales_invoices") == 0


@pytest.mark.parametrize("fault", ["reset", "timeout"])
def test_c032_invoice_post_lost_after_commit_is_found_not_reposted(
    fault: str,
    make_connector: MakeConnector,
    load_case: object,
) -> None:
    case = load_case("C032_post_invoice_reset_after_commit.json")  # type: ignore[operator]
    number = case["odoo_invoice"]["name"]
    with SageAccountingSandbox(customers=3, faults=FaultPlan(delay=0.4)) as sandbox:
        connector = make_connector(sandbox, read_timeout=0.2)
        buyer = connector.push_customer(
            _customer(2), external_id=None, idempotency_key="c2"
        )
        invoice = make_invoice(
            number, buyer_name="x", buyer_vat=None, buyer_external_id=buyer.external_id
        )
        sandbox.faults.force(fault, "POST")
        ref = connector.push_invoice(invoice, idempotency_key="inv-9001")
        stored = [
            doc
            for doc in sandbox.businesses[BE_BUSINESS].sales_invoices.values()
            if doc["reference"] == number
        ]
        assert len(stored) == case["expected"]["invoices_in_exact_with_yourref"]
        assert _posts(sandbox, "/sales_invoices") == case["expected"]["post_attempts"]
        assert ref.external_id == stored[0]["id"] and not ref.created
        # Asking again (the engine retrying the job) finds it, posts nothing.
        assert connector.push_invoice(invoice, idempotency_key="inv-9001") == ref
        assert _posts(sandbox, "/sales_invoices") == 1


def test_post_refused_before_commit_is_sent_again_after_negative_lookup(
    make_connector: MakeConnector,
) -> None:
    with SageAccountingSandbox(customers=3) as sandbox:
        connector = make_connector(sandbox)
        sandbox.faults.force("5xx", "POST")
        ref = connector.push_customer(
            _customer(3), external_id=None, idempotency_key="c3"
        )
        assert ref.created
        assert _posts(sandbox, "/contacts") == 2
        contacts = sandbox.businesses[BE_BUSINESS].contacts.values()
        assert sum(1 for c in contacts if c["reference"] == ref.external_code) == 1


def test_customer_round_trip_and_update(
    accounting_sandbox: SageAccountingSandbox, make_connector: MakeConnector
) -> None:
    connector = make_connector(accounting_sandbox)
    customer = _customer(4)
    ref = connector.push_customer(customer, external_id=None, idempotency_key="c4")
    assert connector.find_customer(customer) is not None
    again = connector.push_customer(customer, external_id=None, idempotency_key="c4")
    assert again.external_id == ref.external_id and not again.created
    renamed = customer.model_copy(update={"name": customer.name + " (Liège)"})
    updated = connector.push_customer(
        renamed, external_id=ref.external_id, idempotency_key="update-4-abc"
    )
    assert updated.external_code == ref.external_code  # reference kept on update
    pulled = {
        c.external_id: c
        for page in connector.pull_customers(None)
        for c in page.records
    }
    assert pulled[ref.external_id].name.endswith("(Liège)")
    assert pulled[ref.external_id].address.city == customer.address.city


def test_deltas_and_deletions_move_their_cursors(
    accounting_sandbox: SageAccountingSandbox, make_connector: MakeConnector
) -> None:
    connector = make_connector(accounting_sandbox, items_per_page=10)
    pages = list(connector.pull_customers(None))
    assert len(pages) == 3
    assert [p.cursor is None for p in pages] == [True, True, False]
    cursor = pages[-1].cursor
    accounting_sandbox.advance(5)
    ref = connector.push_customer(_customer(5), external_id=None, idempotency_key="c5")
    changed = [c for page in connector.pull_customers(cursor) for c in page.records]
    assert ref.external_id in {c.external_id for c in changed}
    # The cursor is inclusive: besides the new contact, only the newest one seen
    # before (whose timestamp is the cursor) is read again.
    again = [c for c in changed if c.external_id != ref.external_id]
    assert len(again) == 1 and again[0].updated_at.strftime("%FT%TZ") == cursor

    deleted_cursor = None
    assert [d for p in connector.pull_deletions(None) for d in p.records] == []
    accounting_sandbox.advance(5)
    connector.client._send(
        "DELETE",
        connector.client.url_for(f"/contacts/{ref.external_id}"),
        None,
        None,
        None,
    )
    pages_d = list(connector.pull_deletions(deleted_cursor))
    gone = [d for p in pages_d for d in p.records]
    assert [d.external_id for d in gone] == [ref.external_id]
    assert gone[0].entity == "contact"
    assert [
        d for p in connector.pull_deletions(pages_d[-1].cursor) for d in p.records
    ] == []


def test_payment_status_comes_back(
    accounting_sandbox: SageAccountingSandbox, make_connector: MakeConnector
) -> None:
    connector = make_connector(accounting_sandbox)
    buyer = connector.push_customer(
        _customer(6), external_id=None, idempotency_key="c6"
    )
    for number in ("FV-1", "FV-2"):
        connector.push_invoice(
            make_invoice(
                number,
                buyer_name="x",
                buyer_vat=None,
                buyer_external_id=buyer.external_id,
            ),
            idempotency_key=number,
        )
    credit = make_invoice(
        "NC-1",
        buyer_name="x",
        buyer_vat=None,
        credit_note=True,
        amount="10.00",
        buyer_external_id=buyer.external_id,
    )
    assert connector.push_invoice(credit, idempotency_key="NC-1").created
    business = accounting_sandbox.businesses[BE_BUSINESS]
    credits = list(business.sales_credit_notes.values())
    assert len(credits) == 1 and credits[0]["reference"] == "NC-1"
    assert "NC-1" not in {d.get("reference") for d in business.sales_invoices.values()}
    pages = list(connector.pull_payments(None))
    cursor = pages[-1].cursor
    accounting_sandbox.advance(5)
    accounting_sandbox.pay("FV-1", "121.00")
    accounting_sandbox.pay("FV-2", "21.00")
    states = {
        s.invoice_number: s
        for page in connector.pull_payments(cursor)
        for s in page.records
    }
    assert states["FV-1"].state == "paid" and states["FV-1"].amount_residual == 0
    assert states["FV-2"].state == "partial"
    assert states["FV-2"].amount_residual == Decimal("100.00")
    assert states["FV-2"].customer_external_id == buyer.external_id


def test_buyer_found_by_vat_when_not_linked(
    accounting_sandbox: SageAccountingSandbox, make_connector: MakeConnector
) -> None:
    connector = make_connector(accounting_sandbox)
    customer = _customer(7)
    ref = connector.push_customer(customer, external_id=None, idempotency_key="c7")
    invoice = make_invoice(
        "FV-77",
        buyer_name=customer.name,
        buyer_vat=customer.vat,
        country=customer.country_code or "BE",
        percent="21",
    )
    connector.push_invoice(invoice, idempotency_key="FV-77")
    doc = next(
        d
        for d in accounting_sandbox.businesses[BE_BUSINESS].sales_invoices.values()
        if d["reference"] == "FV-77"
    )
    assert doc["contact"]["id"] == ref.external_id
    missing = make_invoice("FV-78", buyer_name="Nobody SRL", buyer_vat="BE0765881217")
    with pytest.raises(SageDataError) as caught:
        connector.push_invoice(missing, idempotency_key="FV-78")
    assert caught.value.field == "buyer.vat"


def _push_until_done(connector: SageAccountingConnector, action) -> RemoteRef:  # type: ignore[no-untyped-def]
    for _ in range(6):
        try:
            return action()
        except RetryableError:
            continue
    raise AssertionError("gave up after 6 engine-level attempts")


def test_ten_percent_faults_end_state_is_exact(make_connector: MakeConnector) -> None:
    faults = FaultPlan(rate=0.10, delay=0.3, seed=11)
    with SageAccountingSandbox(customers=30, access_ttl=120, faults=faults) as sandbox:
        connector = make_connector(sandbox, read_timeout=0.15, items_per_page=7)
        links: dict[str, RemoteRef] = {}
        for index in range(12):
            customer = _customer(index, seed=2024)
            key = f"customer-{index}"
            links[key] = _push_until_done(
                connector,
                lambda c=customer, k=key: (
                    connector.find_customer(c)
                    or connector.push_customer(c, external_id=None, idempotency_key=k)
                ),
            )
            invoice = make_invoice(
                f"FV-2025-{index:05d}",
                buyer_name=customer.name,
                buyer_vat=None,
                buyer_external_id=links[key].external_id,
            )
            _push_until_done(
                connector,
                lambda i=invoice: connector.push_invoice(i, idempotency_key=i.number),
            )
            sandbox.advance(25)  # tokens expire during the run
        pulled = _push_until_done(
            connector,
            lambda: [c for p in connector.pull_customers(None) for c in p.records],
        )

        business = sandbox.businesses[BE_BUSINESS]
        references = [c["reference"] for c in business.contacts.values()]
        assert len(references) == len(set(references)) == 42
        numbers = [d["reference"] for d in business.sales_invoices.values()]
        assert sorted(numbers) == [f"FV-2025-{i:05d}" for i in range(12)]
        assert len({c.external_id for c in pulled}) == len(pulled) == 42
        assert len({ref.external_id for ref in links.values()}) == 12
        assert sum(faults.injected.values()) >= 5
        assert len(sandbox.refresh_log) >= 3
        assert len(set(sandbox.refresh_log)) == len(sandbox.refresh_log)


def test_consent_flow_through_the_sandbox(
    accounting_sandbox: SageAccountingSandbox, make_connector: MakeConnector
) -> None:
    connector = make_connector(accounting_sandbox, authorise=False)
    assert isinstance(connector, AuthorizationCodeFlow)
    assert connector.check().credentials_state == "missing"
    redirect = "http://127.0.0.1:8765/callback"
    url = connector.authorization_url(redirect_uri=redirect, state="st-1")
    query = parse_qs(urlsplit(url).query)
    assert query["client_id"] == ["sandbox-client"]
    assert query["filter"] == ["apiv3.1"] and query["state"] == ["st-1"]
    answer = requests.get(url, allow_redirects=False, timeout=5)
    location = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert location["state"] == ["st-1"]
    tokens = connector.exchange_code(code=location["code"][0], redirect_uri=redirect)
    assert tokens.refresh_token and tokens.refresh_expires_at
    assert connector.check().credentials_state == "valid"
    with pytest.raises(SageNeedsReauthorisation):  # codes are single-use
        connector.exchange_code(code=location["code"][0], redirect_uri=redirect)
    assert connector.check().credentials_state == "valid"  # stored tokens intact


def test_rate_limit_waits_the_announced_delay(make_connector: MakeConnector) -> None:
    with SageAccountingSandbox(customers=3, rate_limit=1) as sandbox:
        sandbox.clock.advance(-sandbox.clock().second + 50)  # 10 s left this minute
        connector = make_connector(sandbox, backoff_max_seconds=30)
        sleeps = connector.client._sleep.calls  # type: ignore[attr-defined]
        original = connector.client._sleep

        def sleep_and_move(seconds: float) -> None:
            original(seconds)
            sandbox.advance(seconds)

        connector.client._sleep = sleep_and_move  # type: ignore[method-assign]
        assert connector.check().credentials_state == "valid"
        pages = list(connector.pull_customers(None))
        assert len(pages[0].records) == 3
        assert any(wait >= 10 for wait in sleeps)


def test_long_retry_after_is_not_waited_out_in_process(
    make_connector: MakeConnector,
) -> None:
    with SageAccountingSandbox(customers=3, rate_limit=1) as sandbox:
        sandbox.clock.advance(-sandbox.clock().second + 1)  # 59 s left this minute
        connector = make_connector(sandbox, backoff_max_seconds=5)
        connector.check()
        with pytest.raises(SageRateLimited) as caught:
            list(connector.pull_customers(None))
        assert caught.value.retry_after == 59
        assert connector.client._sleep.calls == []  # type: ignore[attr-defined]


def test_business_outside_the_users_access_is_refused(
    accounting_sandbox: SageAccountingSandbox, make_connector: MakeConnector
) -> None:
    connector = make_connector(accounting_sandbox, business_id=OTHER_BUSINESS)
    with pytest.raises(SagePermissionDenied) as caught:
        list(connector.pull_customers(None))
    assert caught.value.details["code"] == "MultiUserAccessDenied"
