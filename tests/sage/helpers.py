"""Small test helpers: a scripted requests adapter and invoice builders."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import requests
from requests.adapters import BaseAdapter

from sync_daemon.kernel.models import Address, Invoice, InvoiceLine, Party

Handler = Callable[[requests.PreparedRequest], tuple[int, Any]]


class ScriptedAdapter(BaseAdapter):
    """Answers every request from ``handler`` without touching the network."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> Any:
        self.requests.append(request)
        status, payload = self.handler(request)
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(payload).encode("utf-8")
        response.headers["Content-Type"] = "application/json"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def scripted_session(adapter: ScriptedAdapter) -> requests.Session:
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def make_invoice(
    number: str,
    *,
    buyer_name: str,
    buyer_vat: str | None,
    country: str = "BE",
    percent: str = "21",
    amount: str = "100.00",
    credit_note: bool = False,
    buyer_external_id: str | None = None,
    account_code: str | None = "700000",
) -> Invoice:
    net = Decimal(amount)
    tax = (net * Decimal(percent) / 100).quantize(Decimal("0.01"))
    return Invoice(
        document_type="credit_note" if credit_note else "invoice",
        number=number,
        issue_date=date(2025, 3, 14),
        due_date=date(2025, 4, 13),
        seller=Party(name="Fictief Advies BV", vat="BE0447123478"),
        buyer=Party(
            name=buyer_name, vat=buyer_vat, address=Address(country_code=country)
        ),
        buyer_external_id=buyer_external_id,
        lines=(
            InvoiceLine(
                line_id="1",
                name="Conseil",
                quantity=Decimal(1),
                unit_price=net,
                net_amount=net,
                tax_percent=Decimal(percent),
                account_code=account_code,
            ),
        ),
        line_extension_amount=net,
        tax_exclusive_amount=net,
        tax_amount=tax,
        tax_inclusive_amount=net + tax,
        payable_amount=net + tax,
    )
