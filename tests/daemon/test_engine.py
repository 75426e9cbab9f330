"""The engine end to end: fake Odoo + the test-double connector (field case C032)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sync_daemon.engine import BackendConfig, BackendRun
from sync_daemon.kernel.models import (
    Address,
    ContactPerson,
    Customer,
    Invoice,
    InvoiceLine,
    Party,
)
from sync_daemon.state import StateStore
from sync_daemon.testing.double import DoubleConnector, DoubleLedger
from sync_daemon.testing.fake_odoo import FakeOdoo, OdooFault

from .conftest import add_accounting, make_gateway, seed_invoice


class Env:
    def __init__(self, fake: FakeOdoo, tmp_path: Path, **backend: Any) -> None:
        self.fake = fake
        self.backend_id = fake.add_backend(**backend)
        self.ledger = DoubleLedger(tmp_path / "ledger.sqlite3")
        self.state = StateStore(tmp_path / "state")

    def run(self, page_size: int = 500) -> Any:
        gateway = make_gateway(self.fake)
        [config] = [
            BackendConfig.from_odoo(row)
            for row in gateway.call("crm.sync.backend", "daemon_get_config")
            if row["id"] == self.backend_id
        ]
        connector = DoubleConnector(self.ledger, page_size=50)
        return BackendRun(
            gateway=gateway,
            state=self.state,
            backend=config,
            connector=connector,
            page_size=page_size,
        ).run()

    def partners(self, **match: Any) -> list[dict[str, Any]]:
        return [
            p
            for p in self.fake.records("res.partner")
            if all(p.get(k) == v for k, v in match.items())
        ]

    def links(self) -> dict[str, dict[str, Any]]:
        return {
            link["external_id"]: link
            for link in self.fake.records("crm.sync.link")
            if link["state"] != "unlinked"
        }

    def issues(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            i for i in self.fake.records("crm.sync.issue") if kind in (None, i["kind"])
        ]


def _customer(ext: str, name: str, vat: str | None = None, **extra: Any) -> Customer:
    country = extra.pop("country", "BE")
    return Customer(
        external_id=ext,
        name=name,
        vat=vat,
        address=Address(
            country_code=country,
            zip=extra.pop("zip", None),
            city=extra.pop("city", None),
        ),
        **extra,
    )


@pytest.fixture
def env(fake_odoo: FakeOdoo, tmp_path: Path) -> Env:
    return Env(fake_odoo, tmp_path)


def test_new_customers_are_created_once_with_links(env: Env) -> None:
    for n in range(120):
        env.ledger.put_customer(
            _customer(
                f"E{n}",
                f"Company {n}",
                zip=f"{1000 + n}",
                tags=("vip",),
                contacts=(ContactPerson(name=f"Person {n}", email=f"p{n}@x.be"),),
            )
        )
    result = env.run()
    assert result.outcome == "success", result.log
    assert (result.counts.pulled, result.counts.created) == (120, 120)
    created = env.partners(customer_rank=1)
    assert len(created) == 120
    assert all(p["company_id"] == 1 for p in created)
    assert len(env.links()) == 120
    tag_ids = {tuple(p["category_id"]) for p in created}
    assert len(tag_ids) == 1 and len(env.fake.records("res.partner.category")) == 1
    assert len([p for p in env.partners() if p.get("parent_id")]) == 120
    again = env.run()
    assert again.counts.created == 0 and again.counts.pulled == 0
    assert len(env.partners(customer_rank=1)) == 120
    [run1, run2] = env.fake.records("crm.sync.run")
    assert run1["counts"]["created"] == 120 and run2["outcome"] == "success"


def test_c007_scenario_links_existing_partner_without_rewrite(env: Env) -> None:
    env.fake.seed(
        "res.partner",
        {
            "id": 101,
            "name": "Fictief Software",
            "is_company": True,
            "vat": "BE 0447.123.478",
            "country_id": env.fake.country_id("BE"),
        },
    )
    env.ledger.put_customer(_customer("G1", "Fictief Software BV", "BE0447123478"))
    result = env.run()
    assert (result.counts.created, result.counts.linked) == (0, 1)
    assert env.links()["G1"]["res_id"] == 101
    assert env.fake.data["res.partner"][101]["vat"] == "BE 0447.123.478"


def test_review_is_an_issue_and_admin_actions_are_honoured(
    env: Env, load_case: Any
) -> None:
    case = load_case("C008_vat_missing_country_prefix.json")["cases"][3]
    env.fake.seed(
        "res.partner",
        {
            "id": 101,
            "name": case["odoo"]["name"],
            "is_company": True,
            "vat": case["odoo"]["vat"],
            "country_id": env.fake.country_id("FR"),
        },
    )
    exact = case["exact"]
    env.ledger.put_customer(_customer("X1", exact["Name"], exact["VATNumber"]))
    env.ledger.put_customer(_customer("X2", "Other BV", "BE0447123478"))
    env.run()
    assert len(env.partners(name=exact["Name"])) == 1
    [issue] = env.issues("duplicate")
    assert issue["external_id"] == "X1" and issue["suggestions"][0]["partner_id"] == 101
    env.fake.request_action(issue["id"], "link", 101)
    result = env.run()
    assert env.links()["X1"]["res_id"] == 101
    assert env.fake.data["crm.sync.issue"][issue["id"]]["state"] == "done"
    assert result.counts.linked == 1


def test_admin_create_action(env: Env) -> None:
    env.fake.seed(
        "res.partner",
        {
            "id": 101,
            "name": "Dupont",
            "is_company": True,
            "zip": "75001",
            "vat": "FR40503219875",
            "country_id": env.fake.country_id("FR"),
        },
    )
    env.ledger.put_customer(_customer("P1", "Dupont SARL", zip="75001", country="FR"))
    env.run()
    [issue] = env.issues("duplicate")
    assert "proposal" in issue["message"] or "never linked" in issue["message"]
    env.fake.request_action(issue["id"], "create")
    env.run()
    assert len(env.partners(name="Dupont SARL")) == 1
    assert env.links()["P1"]["res_id"] != 101


def test_ownership_conflicts_and_push_of_sales_fields(env: Env) -> None:
    env.ledger.put_customer(
        _customer(
            "E1", "Acme", "BE0765881217", email="a@acme.be", phone="+32 2 111 11 11"
        )
    )
    env.run()
    [partner] = env.partners(name="Acme")
    pid = partner["id"]
    # both sides change the e-mail (sales-owned): a conflict, Odoo keeps its value
    env.fake.data["res.partner"][pid]["email"] = "odoo@acme.be"
    env.fake.data["res.partner"][pid]["write_date"] = "2999-01-01 00:00:00"
    env.ledger.put_customer(
        _customer(
            "E1",
            "Acme NV",
            "BE0765881217",
            email="ledger@acme.be",
            phone="+32 2 111 11 11",
            city="Brussel",
        )
    )
    result = env.run()
    assert result.counts.conflicts == 1
    [conflict] = env.issues("conflict")
    assert conflict["field"] == "emails" and conflict["res_id"] == pid
    after = env.fake.data["res.partner"][pid]
    assert after["email"] == "odoo@acme.be"
    # finance-owned groups flowed from the ledger
    assert after["name"] == "Acme NV" and after["city"] == "Brussel"
    # a sales-owned change made only in Odoo is pushed to the ledger
    env.fake.data["res.partner"][pid]["phone"] = "+32 2 222 22 22"
    env.fake.data["res.partner"][pid]["customer_rank"] = 1
    env.run()
    [remote] = [c for c in env.ledger.customers() if c["external_id"] == "E1"]
    assert remote["phone"] == "+32 2 222 22 22"


def test_dead_letters_name_record_and_field_and_run_goes_on(env: Env) -> None:
    env.ledger.put_customer(
        _customer("B1", "Broken"), broken="VAT BE123 has a bad checksum"
    )
    for n in range(4):
        env.ledger.put_customer(_customer(f"OK{n}", f"Fine {n}"))
    env.fake.inject(
        OdooFault("odoo.exceptions.ValidationError", "The VAT number is not valid"),
        model="res.partner",
        method="create",
        times=10,
        when=lambda call: any(v.get("name") == "Fine 2" for v in call.args[0]),
    )
    result = env.run()
    assert result.outcome == "partial"
    assert result.counts.created == 3 and result.counts.errors == 2
    letters = {d.external_id: d for d in env.state.dead_letters(env.backend_id)}
    assert letters["B1"].field == "vat"
    assert "not valid" in letters["OK2"].message
    kinds = {i["external_id"]: i["kind"] for i in env.issues()}
    assert kinds == {"B1": "invalid_data", "OK2": "invalid_data"}
    assert env.state.get_cursor(env.backend_id, "customers") is not None


def test_deletion_clears_link_keeps_partner(env: Env) -> None:
    env.ledger.put_customer(_customer("D1", "Gone Soon", "BE0765881217"))
    env.run()
    [partner] = env.partners(name="Gone Soon")
    env.ledger.delete_customer("D1")
    env.run()
    assert "D1" not in env.links()
    assert env.fake.data["res.partner"][partner["id"]]["active"] is True
    [(res_id, note)] = env.fake.notes
    assert res_id == partner["id"] and note.startswith("deleted in Backend")


def _erase(env: Env, partner_id: int) -> None:
    """What the add-on's eraser does to a partner (crm_module/API.md, "GDPR")."""
    env.fake.data["res.partner"][partner_id].update(
        crm_erased=True,
        active=False,
        name="Erased person",
        email=False,
        phone=False,
        vat=False,
        zip=False,
    )


def test_erased_partner_is_never_updated_or_recreated(env: Env) -> None:
    env.fake.add_field("res.partner", "crm_erased", "boolean")
    marie = _customer(
        "M1", "Marie Exemple", email="marie@example.com", zip="1000", is_company=False
    )
    env.ledger.put_customer(marie)
    env.ledger.put_customer(_customer("K1", "Keep Me", "BE0447123478"))
    env.run()
    [partner] = env.partners(name="Marie Exemple")
    _erase(env, partner["id"])
    env.ledger.put_customer(marie.model_copy(update={"phone": "+32 2 555 01 01"}))
    env.ledger.put_customer(_customer("K1", "Keep Me", "BE0447123478", city="Gent"))
    result = env.run()
    assert result.outcome == "success", result.log
    erased = env.fake.data["res.partner"][partner["id"]]
    assert (erased["name"], erased["email"], erased["phone"]) == (
        "Erased person",
        False,
        False,
    )
    assert env.partners(name="Marie Exemple") == []
    # nothing of the erased person goes back to the ledger either
    assert all(c["origin"] != f"odoo:{partner['id']}" for c in env.ledger.customers())
    # even with the link gone, the person is not re-created from ledger data
    for link in env.fake.data["crm.sync.link"].values():
        link["state"] = "unlinked"
    env.ledger.put_customer(marie.model_copy(update={"city": "Gent"}))
    env.run()
    assert env.partners(name="Marie Exemple") == []
    [keep] = env.partners(name="Keep Me")
    assert keep["city"] == "Gent"
    targets: set[int] = set()
    for call in env.fake.calls:
        if call.model == "res.partner" and call.method == "write":
            targets.update(call.args[0])
        elif call.model == "res.partner" and call.method == "load":
            targets.update(int(row[0]) for row in call.args[1])
    assert keep["id"] in targets and partner["id"] not in targets


def test_without_the_erasure_field_the_run_goes_on(env: Env) -> None:
    assert "crm_erased" not in env.fake.schema["res.partner"]
    env.ledger.put_customer(_customer("M1", "Marie Exemple", email="m@example.com"))
    result = env.run()
    assert result.outcome == "success", result.log
    assert result.counts.created == 1
    sent = json.dumps([[c.args, c.kwargs] for c in env.fake.calls])
    assert "crm_erased" not in sent


def test_new_odoo_customer_is_pushed_once(env: Env) -> None:
    env.fake.seed(
        "res.partner",
        {
            "id": 300,
            "name": "Odoo Only",
            "is_company": True,
            "customer_rank": 1,
            "vat": "BE0447123478",
            "country_id": env.fake.country_id("BE"),
        },
    )
    env.ledger.fail_next("push_customer", "store_then_reset")
    result = env.run()
    assert result.outcome == "success", result.log
    remote = [c for c in env.ledger.customers() if c["origin"] == "odoo:300"]
    assert len(remote) == 1 and env.ledger.posts("customer") == 1
    assert env.links()[remote[0]["external_id"]]["res_id"] == 300
    env.run()
    assert env.ledger.posts("customer") == 1


def test_c032_invoice_post_reset_after_commit(env: Env, load_case: Any) -> None:
    case = load_case("C032_post_invoice_reset_after_commit.json")
    add_accounting(env.fake)
    env.fake.seed(
        "res.partner",
        {
            "id": 101,
            "name": "Atelier Imaginaire SRL",
            "is_company": True,
            "vat": "BE0765881217",
            "customer_rank": 1,
            "country_id": env.fake.country_id("BE"),
        },
    )
    invoice = case["odoo_invoice"]
    seed_invoice(env.fake, invoice["id"], invoice["name"], 101)
    env.ledger.fail_next("push_invoice", "store_then_reset")
    result = env.run()
    assert result.outcome == "success", result.log
    [stored] = env.ledger.invoices()
    assert stored["number"] == "FV-2025-00042"
    assert env.ledger.posts("invoice") == case["expected"]["post_attempts"]
    move_links = [
        link
        for link in env.fake.records("crm.sync.link")
        if link["res_model"] == "account.move"
    ]
    assert [(m["res_id"], m["external_id"]) for m in move_links] == [
        (9001, stored["external_id"])
    ]
    assert stored["buyer_external_id"] is not None
    assert Decimal(str(stored["payable_amount"])) == Decimal("121.00")
    env.run()
    assert env.ledger.posts("invoice") == 1


def test_incoming_einvoices_become_draft_bills_once(env: Env) -> None:
    add_accounting(env.fake)
    bill = Invoice(
        number="SUP-77",
        issue_date="2025-03-14",
        seller=Party(
            name="Leverancier BV",
            vat="NL807654322B01",
            address=Address(country_code="NL"),
        ),
        buyer=Party(name="Fictief België NV"),
        lines=(
            InvoiceLine(
                line_id="1",
                name="Paper",
                quantity=Decimal(2),
                unit_price=Decimal(50),
                net_amount=Decimal(100),
                tax_percent=Decimal(21),
            ),
        ),
        line_extension_amount=Decimal(100),
        tax_exclusive_amount=Decimal(100),
        tax_amount=Decimal(21),
        tax_inclusive_amount=Decimal(121),
        payable_amount=Decimal(121),
        attachments=(("SUP-77.pdf", "application/pdf", b"%PDF-1.4"),),
    )
    env.ledger.put_einvoice(bill)
    env.ledger.put_einvoice(bill)  # the same document delivered twice
    result = env.run()
    assert result.outcome == "success", result.log
    moves = env.fake.records("account.move")
    assert len(moves) == 1 and moves[0]["move_type"] == "in_invoice"
    assert moves[0]["ref"] == "SUP-77"
    [supplier] = env.partners(name="Leverancier BV")
    assert moves[0]["partner_id"] == supplier["id"]
    [attachment] = env.fake.records("ir.attachment")
    assert attachment["res_id"] == moves[0]["id"]


def test_two_remote_records_for_one_partner_are_a_duplicate(env: Env) -> None:
    env.fake.seed(
        "res.partner",
        {
            "id": 101,
            "name": "Fictief Software",
            "is_company": True,
            "vat": "BE0447123478",
            "country_id": env.fake.country_id("BE"),
        },
    )
    env.ledger.put_customer(_customer("A", "Fictief Software", "BE0447123478"))
    env.ledger.put_customer(_customer("B", "Fictief Software bis", "BE 0447 123 478"))
    result = env.run()
    assert env.links()["A"]["res_id"] == 101 and "B" not in env.links()
    [issue] = env.issues("duplicate")
    assert issue["external_id"] == "B" and "already linked" in issue["message"]
    assert result.counts.created == 0


def test_unexpected_connector_error_is_reported_as_failed(env: Env) -> None:
    class Broken(DoubleConnector):
        def pull_customers(self, cursor: str | None) -> Any:
            raise RuntimeError("bug in a connector")

    gateway = make_gateway(env.fake)
    [row] = gateway.call("crm.sync.backend", "daemon_get_config")
    run = BackendRun(
        gateway=gateway,
        state=env.state,
        backend=BackendConfig.from_odoo(row),
        connector=Broken(env.ledger),
    )
    with pytest.raises(RuntimeError):
        run.run()
    [odoo_run] = env.fake.records("crm.sync.run")
    assert odoo_run["outcome"] == "failed" and "bug in a connector" in odoo_run["log"]


def _bill(number: str, seller: Party, net: str = "100") -> Invoice:
    amount = Decimal(net)
    return Invoice(
        number=number,
        issue_date="2025-03-14",
        seller=seller,
        buyer=Party(name="Fictief België NV"),
        lines=(
            InvoiceLine(
                line_id="1",
                name="Paper",
                quantity=Decimal(1),
                unit_price=amount,
                net_amount=amount,
                tax_percent=Decimal(21),
            ),
        ),
        line_extension_amount=amount,
        tax_exclusive_amount=amount,
        tax_amount=amount * Decimal("0.21"),
        tax_inclusive_amount=amount * Decimal("1.21"),
        payable_amount=amount * Decimal("1.21"),
    )


def test_incoming_einvoices_dedupe_on_supplier_and_number(env: Env) -> None:
    add_accounting(env.fake)
    be = env.fake.country_id("BE")
    env.fake.seed(
        "res.partner",
        {"id": 201, "name": "Papier NV", "is_company": True, "vat": "BE0447123478",
         "country_id": be},
    )  # fmt: skip
    for pid in (202, 203):  # two Odoo customers share one VAT number
        env.fake.seed(
            "res.partner",
            {"id": pid, "name": f"Twin {pid}", "is_company": True,
             "vat": "BE0765881217", "country_id": be},
        )  # fmt: skip
    # SUP-1 of Papier NV was typed in by hand already
    env.fake.seed(
        "account.move",
        {"id": 500, "name": "BILL/1", "move_type": "in_invoice", "state": "draft",
         "partner_id": 201, "commercial_partner_id": 201, "company_id": 1,
         "ref": "SUP-1"},
    )  # fmt: skip
    papier = Party(name="Papier NV", vat="BE 0447.123.478")
    other = Party(name="Ander Papier BV", vat="NL807654322B01")
    twin = Party(name="Twin", vat="BE0765881217")
    for bill in (
        _bill("SUP-1", papier),  # already in Odoo
        _bill("SUP-2", papier),
        _bill("SUP-1", other),  # same number, other supplier: its own bill
        _bill("T-9", twin),  # supplier unclear: an issue, no bill
    ):
        env.ledger.put_einvoice(bill)
    result = env.run()
    bills = {
        (m["partner_id"], m["ref"])
        for m in env.fake.records("account.move")
        if m["move_type"] == "in_invoice"
    }
    [ander] = env.partners(name="Ander Papier BV")
    assert bills == {(201, "SUP-1"), (201, "SUP-2"), (ander["id"], "SUP-1")}
    assert len(env.fake.records("account.move")) == 3
    [issue] = [i for i in env.issues() if "T-9" in (i.get("message") or "")]
    assert "unclear" in issue["message"]
    assert result.outcome == "partial"
    env.ledger.put_einvoice(_bill("SUP-2", papier))  # delivered again later
    env.run()
    assert len(env.fake.records("account.move")) == 3


def test_admin_retry_and_ignore_actions(env: Env) -> None:
    env.ledger.put_customer(_customer("R1", "Retry Me"))
    env.ledger.put_customer(_customer("I1", "Ignore Me"))
    env.fake.inject(
        OdooFault("odoo.exceptions.ValidationError", "The VAT number is not valid"),
        model="res.partner",
        method="create",
        times=10,
        when=lambda call: any(
            v.get("name") in ("Retry Me", "Ignore Me") for v in call.args[0]
        ),
    )
    first = env.run()
    assert first.outcome == "partial"
    issues = {i["external_id"]: i for i in env.issues("invalid_data")}
    assert set(issues) == {"R1", "I1"}
    env.fake.injections.clear()  # the admin fixed what Odoo refused
    env.fake.request_action(issues["R1"]["id"], "retry")
    env.fake.request_action(issues["I1"]["id"], "ignore")
    second = env.run()
    assert second.outcome == "success", second.log
    assert len(env.partners(name="Retry Me")) == 1 and "R1" in env.links()
    assert env.partners(name="Ignore Me") == []
    states = {i["external_id"]: i["state"] for i in env.issues("invalid_data")}
    assert states == {"R1": "done", "I1": "done"}
    assert {d.external_id for d in env.state.dead_letters(env.backend_id)} == set()
    # an ignored record stays ignored when it changes in the ledger
    env.ledger.put_customer(_customer("I1", "Ignore Me", city="Gent"))
    env.run()
    assert env.partners(name="Ignore Me") == [] and "I1" not in env.links()


def test_refused_credentials_give_one_issue_and_the_backend_state(env: Env) -> None:
    from sync_daemon.kernel.errors import NeedsReauthorisation

    class Refused(DoubleConnector):
        def pull_customers(self, cursor: str | None) -> Any:
            raise NeedsReauthorisation(
                "the ledger refused the refresh token (invalid_grant)",
                field="refresh_token",
            )

    env.ledger.put_customer(_customer("E1", "Never Pulled"))
    gateway = make_gateway(env.fake)
    [row] = gateway.call("crm.sync.backend", "daemon_get_config")
    for _ in range(3):  # three scheduled runs while nobody re-authorises
        result = BackendRun(
            gateway=make_gateway(env.fake),
            state=env.state,
            backend=BackendConfig.from_odoo(row),
            connector=Refused(env.ledger),
        ).run()
        assert result.outcome == "failed"
    backend = env.fake.data["crm.sync.backend"][env.backend_id]
    assert backend["credentials_state"] == "needs_reauth"
    [issue] = env.issues("needs_reauth")
    assert (
        issue["state"] == "open"
        and f"crm-sync auth {env.backend_id}" in (issue["message"])
    )
    assert env.partners(name="Never Pulled") == []
