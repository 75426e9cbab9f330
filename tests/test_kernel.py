"""Canonical models and the error tree."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from sync_daemon.kernel import errors
from sync_daemon.kernel.models import Address, Customer, Invoice, InvoiceLine, Party
from sync_daemon.kernel.protocol import Connector, CustomerSource, Page


def test_every_error_is_on_exactly_one_branch() -> None:
    classes = [
        getattr(errors, name)
        for name in errors.__all__
        if name not in {"SyncError", "RetryableError", "PermanentError"}
    ]
    for cls in classes:
        retry = issubclass(cls, errors.RetryableError)
        permanent = issubclass(cls, errors.PermanentError)
        assert retry != permanent, cls


def test_error_carries_record_field_and_details() -> None:
    err = errors.DataError(
        "must not be empty", record="res.partner 101", field="vat", details={"a": 1}
    )
    assert str(err) == "res.partner 101 / vat: must not be empty"
    limited = errors.RateLimited("slow down", retry_after=30.0, scope="minutely")
    assert limited.retryable and limited.retry_after == 30.0
    assert limited.scope == "minutely"


def test_customer_rejects_bad_country_and_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="ISO 3166"):
        Address(country_code="Belgium")
    with pytest.raises(ValidationError):
        Customer(external_id="1", name="X", colour="red")  # type: ignore[call-arg]
    customer = Customer(external_id="1", name=" X ", address=Address(country_code="be"))
    assert customer.name == "X" and customer.country_code == "BE"


def test_invoice_keeps_money_as_decimal() -> None:
    party = Party(name="Seller")
    line = InvoiceLine(
        line_id="1", name="Work", quantity="40", unit_price="10.7025",
        net_amount="428.10", tax_percent="21",
    )  # fmt: skip
    invoice = Invoice(
        number="FV-1", issue_date=date(2025, 3, 14), seller=party, buyer=party,
        lines=(line,), line_extension_amount="428.10", tax_exclusive_amount="428.10",
        tax_amount="89.90", tax_inclusive_amount="518.00", payable_amount="518.00",
    )  # fmt: skip
    assert invoice.lines[0].unit_price == Decimal("10.7025")
    assert isinstance(invoice.payable_amount, Decimal)


def test_protocols_are_checked_structurally() -> None:
    class Dummy:
        kind = "dummy"

        def check(self):  # pragma: no cover - never called
            raise NotImplementedError

        def close(self) -> None:
            pass

        def pull_customers(self, cursor):
            yield Page(records=[], cursor=cursor)

    dummy = Dummy()
    assert isinstance(dummy, Connector) and isinstance(dummy, CustomerSource)
    assert next(iter(dummy.pull_customers("c1"))).cursor == "c1"


def test_token_set_never_shows_its_secrets() -> None:
    from datetime import UTC, datetime

    from sync_daemon.kernel.protocol import TokenSet

    now = datetime(2026, 1, 1, tzinfo=UTC)
    tokens = TokenSet(
        access_token="AT-secret", refresh_token="RT-secret", issued_at=now,
        expires_at=now,
    )  # fmt: skip
    assert "secret" not in repr(tokens) and "secret" not in str(tokens)
    assert tokens.access_token == "AT-secret"
