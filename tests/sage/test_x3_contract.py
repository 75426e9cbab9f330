"""Contract tests of the Sage X3 connector against its sandbox (incl. 10 % faults)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.sage.sandbox_http import FaultPlan
from connectors.sage.sandbox_x3 import SageX3Sandbox
from connectors.sage.seed import seed_customers
from connectors.sage.x3 import SageX3Connector
from sync_daemon.kernel.errors import RetryableError
from sync_daemon.kernel.models import Address, Customer, RemoteRef
from sync_daemon.kernel.protocol import (
    Connector,
    CustomerSink,
    CustomerSource,
    InvoiceSink,
)

from .helpers import make_invoice

MakeX3 = Callable[..., SageX3Connector]


def _customer(index: int, seed: int = 77) -> Customer:
    spec = seed_customers(index + 1, seed=seed)[index]
    return Customer(
        external_id=f"odoo-{index}",
        name=spec.name,
        vat=spec.vat,
        company_registry=spec.registry,
        address=Address(
            street=spec.street, zip=spec.zip, city=spec.city, country_code=spec.country
        ),
    )


def test_connector_implements_the_kernel_protocols(
    x3_sandbox: SageX3Sandbox, make_x3: MakeX3
) -> None:
    connector = make_x3(x3_sandbox)
    for protocol in (Connector, CustomerSource, CustomerSink, InvoiceSink):
        assert isinstance(connector, protocol), protocol.__name__
    assert connector.check().credentials_state == "valid"


def test_wrong_password_is_an_invalid_credential(
    x3_sandbox: SageX3Sandbox, make_x3: MakeX3
) -> None:
    connector = make_x3(x3_sandbox, password="wrong")
    report = connector.check()
    assert report.credentials_state == "invalid"


def test_pull_cursor_and_update(x3_sandbox: SageX3Sandbox, make_x3: MakeX3) -> None:
    connector = make_x3(x3_sandbox)
    [page] = list(connector.pull_customers(None))
    assert len(page.records) == 8 and not page.rejected
    assert page.records[0].vat is not None
    x3_sandbox.advance(5)
    first = page.records[0]
    renamed = first.model_copy(update={"name": first.name + " & Fils"})
    ref = connector.push_customer(
        renamed, external_id=first.external_id, idempotency_key="u1"
    )
    assert ref.external_id == first.external_id
    [later] = list(connector.pull_customers(page.cursor))
    names = {c.external_id: c.name for c in later.records}
    assert names[first.external_id].endswith("& Fils")
    assert len(later.records) <= 2  # the changed one (and the inclusive boundary)


def _until_done(action: Callable[[], Any]) -> Any:
    for _ in range(6):
        try:
            return action()
        except RetryableError:
            continue
    raise AssertionError("gave up after 6 engine-level attempts")


def test_ten_percent_faults_end_state_is_exact(make_x3: MakeX3) -> None:
    faults = FaultPlan(
        rate=0.10, kinds=("5xx", "timeout", "reset", "busy"), delay=0.3, seed=5
    )
    with SageX3Sandbox(customers=10, faults=faults) as sandbox:
        connector = make_x3(sandbox, operation_timeout=0.15)
        refs: list[RemoteRef] = []
        for index in range(10):
            customer = _customer(index)
            ref = _until_done(
                lambda c=customer, k=f"k{index}": (
                    connector.find_customer(c)
                    or connector.push_customer(c, external_id=None, idempotency_key=k)
                )
            )
            refs.append(ref)
            invoice = make_invoice(
                f"FV-2025-{index:05d}",
                buyer_name=customer.name,
                buyer_vat=None,
                buyer_external_id=ref.external_id,
                percent="21",
            )
            _until_done(
                lambda i=invoice: connector.push_invoice(i, idempotency_key=i.number)
            )
        pulled = _until_done(
            lambda: [c for p in connector.pull_customers(None) for c in p.records]
        )
        vats = [c["EECNUM"] for c in sandbox.customers.values()]
        assert len(sandbox.customers) == 20
        assert len({v.replace(" ", "").upper() for v in vats}) == 20
        numbers = sorted(i["BPRVCR"] for i in sandbox.invoices.values())
        assert numbers == [f"FV-2025-{i:05d}" for i in range(10)]
        assert len({r.external_id for r in refs}) == 10
        assert len({c.external_id for c in pulled}) == len(pulled) == 20
        assert sum(faults.injected.values()) >= 5
