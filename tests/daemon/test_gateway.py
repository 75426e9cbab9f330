"""The Odoo gateway against the fake Odoo: field cases C001, C003, C004, C005."""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

import pytest

from sync_daemon.gateway import Command, OdooGateway
from sync_daemon.kernel.errors import (
    AuthError,
    ConfigurationError,
    DataError,
    NetworkError,
    PermissionDenied,
    RemoteTimeout,
    RemoteUnavailable,
)
from sync_daemon.retry import RetryPolicy
from sync_daemon.testing.fake_odoo import Call, FakeOdoo

from .conftest import make_gateway


def _calls(fake: FakeOdoo, method: str, model: str | None = None) -> list[Call]:
    return [
        c
        for c in fake.calls
        if c.method == method and (model is None or c.model == model)
    ]


# -- C001: session expiry --------------------------------------------------------------


def test_c001_session_expiry_relogin_once_and_replay(
    fake_odoo: FakeOdoo, load_case: Any, caplog: pytest.LogCaptureFixture
) -> None:
    case = load_case("C001_session_expired_then_ok.json")
    expired = case["exchanges"][0]["response"]["body"]["error"]
    assert expired["code"] == 100
    fake_odoo.seed(
        "res.partner",
        {
            "id": 41,
            "name": "Atelier Imaginaire SRL",
            "is_company": True,
            "vat": "BE0765881217",
        },
    )
    gateway = make_gateway(fake_odoo, "session")
    logins = fake_odoo.requests
    fake_odoo.inject(expired, model="res.partner", method="search_read")
    caplog.set_level(logging.DEBUG)
    rows = gateway.call(
        "res.partner",
        "search_read",
        [["is_company", "=", True], ["id", "=", 41]],
        fields=["id", "name", "vat"],
        limit=200,
        order="id asc",
    )
    assert rows == [{"id": 41, "name": "Atelier Imaginaire SRL", "vat": "BE0765881217"}]
    # the failed call, one authenticate, the replay
    assert fake_odoo.requests - logins == 3
    assert len(_calls(fake_odoo, "search_read")) == 2
    assert "secret" not in caplog.text


def test_c001_second_expiry_is_a_typed_auth_error(fake_odoo: FakeOdoo) -> None:
    gateway = make_gateway(fake_odoo, "session")
    fake_odoo.inject("session_expired", method="search_read", times=2)
    with pytest.raises(AuthError) as info:
        gateway.call("res.partner", "search_read", [], fields=["name"], limit=10)
    assert "secret" not in str(info.value)
    assert len(_calls(fake_odoo, "search_read")) == 2


def test_c001_expired_session_cookie_is_detected_by_code(fake_odoo: FakeOdoo) -> None:
    gateway = make_gateway(fake_odoo, "session")
    fake_odoo.expire_sessions()
    assert gateway.call("res.country", "search_count", []) > 0


def test_wrong_secret_is_an_auth_error(fake_odoo: FakeOdoo) -> None:
    gateway = OdooGateway(fake_odoo.url, fake_odoo.database, "sync-bot", "nope")
    with pytest.raises(AuthError, match="refused the login") as info:
        gateway.connect()
    assert "nope" not in str(info.value)


# -- C003: large reads -----------------------------------------------------------------


def test_c003_keyset_paging_while_rows_are_added(fake_odoo: FakeOdoo) -> None:
    for index in range(5250):
        fake_odoo.seed("res.partner", {"name": f"Company {index}", "is_company": True})
    reads = {"n": 0}

    def add_during_page_three(fake: FakeOdoo, call: Call) -> None:
        if call.method == "search_read" and call.model == "res.partner":
            reads["n"] += 1
            if reads["n"] == 3:
                for extra in range(3):
                    fake._create_one(
                        "res.partner",
                        {"name": f"New {extra}", "is_company": True},
                        {},
                        check=False,
                    )

    fake_odoo.hooks.append(add_during_page_three)
    gateway = make_gateway(fake_odoo)
    ids: list[int] = []
    for page in gateway.search_read_pages(
        "res.partner", [("is_company", "=", True), ("id", ">", 2)], ["name", "vat"]
    ):
        ids.extend(row["id"] for row in page)
    assert len(ids) == len(set(ids)) == 5253
    reads_done = _calls(fake_odoo, "search_read", "res.partner")
    assert len(reads_done) <= math.ceil(5253 / 500) + 1
    for call in reads_done:
        assert 0 < call.kwargs["limit"] <= 500
        assert call.kwargs["order"] == "id asc"
        assert "image_1920" not in call.kwargs["fields"]
        assert set(call.kwargs["fields"]) == {"id", "name", "vat"}


def test_unbounded_read_is_what_the_fake_refuses(fake_odoo: FakeOdoo) -> None:
    gateway = make_gateway(fake_odoo)
    with pytest.raises(RemoteUnavailable):
        gateway.call("res.partner", "search_read", [], fields=["name"])


def test_unknown_fields_are_never_sent_or_asked(fake_odoo: FakeOdoo) -> None:
    gateway = make_gateway(fake_odoo)
    rows = gateway.read("res.partner", [1], ["name", "x_not_there"])
    assert rows == [{"id": 1, "name": "Fictief België NV"}]
    [new_id] = gateway.create("res.partner", [{"name": "A", "x_not_there": 1}])
    assert fake_odoo.data["res.partner"][new_id]["name"] == "A"
    assert len(_calls(fake_odoo, "fields_get", "res.partner")) == 1
    gateway.new_run()
    gateway.fields("res.partner")
    assert len(_calls(fake_odoo, "fields_get", "res.partner")) == 2


def test_reads_by_id_go_in_chunks_of_a_thousand(fake_odoo: FakeOdoo) -> None:
    # An update batch reads the partners it changes in one call per 1,000 ids,
    # which keeps a synced record at no more than 3 calls per 1,000.
    gateway = make_gateway(fake_odoo)
    ids = [
        fake_odoo.seed("res.partner", {"name": f"P{n}", "is_company": True})
        for n in range(2300)
    ]
    rows = gateway.read("res.partner", ids + ids[:50], ["name"])
    assert sorted(r["id"] for r in rows) == sorted(ids)  # asked twice, read once
    reads = _calls(fake_odoo, "read", "res.partner")
    assert [len(c.args[0]) for c in reads] == [1000, 1000, 300]


# -- C004: many2many commands ----------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "sent", "result"),
    [
        (lambda: [Command.set([3, 7])], [[6, 0, [3, 7]]], [3, 7]),
        (lambda: [Command.link(9)], [[4, 9, 0]], [3, 5, 9]),
        (lambda: [Command.unlink(3)], [[3, 3, 0]], [5]),
        (lambda: [Command.clear()], [[5, 0, 0]], []),
    ],
)
def test_c004_many2many_as_odoo18_commands(
    fake_odoo: FakeOdoo, command: Any, sent: list[Any], result: list[int]
) -> None:
    for tag_id in (3, 5, 7, 9):
        fake_odoo.seed("res.partner.category", {"id": tag_id, "name": f"T{tag_id}"})
    fake_odoo.seed("res.partner", {"id": 101, "name": "P", "category_id": [3, 5]})
    gateway = make_gateway(fake_odoo)
    gateway.write("res.partner", [101], {"category_id": command()})
    [write] = _calls(fake_odoo, "write", "res.partner")
    assert json.loads(json.dumps(write.args[1]["category_id"])) == sent
    assert sorted(fake_odoo.data["res.partner"][101]["category_id"]) == result
    assert len(fake_odoo.data["res.partner.category"]) == 4


def test_c004_bare_id_list_is_what_odoo_refuses(fake_odoo: FakeOdoo) -> None:
    fake_odoo.seed("res.partner", {"id": 101, "name": "P", "category_id": [3, 5]})
    gateway = make_gateway(fake_odoo)
    with pytest.raises(DataError, match="Wrong value"):
        gateway.write("res.partner", [101], {"category_id": [3, 7]})


# -- C005: company-first context -------------------------------------------------------


def test_c005_company_first_context_and_company_dependent_read(
    fake_odoo: FakeOdoo, load_case: Any
) -> None:
    gateway = make_gateway(fake_odoo)
    gateway.use_company(2, lang="nl_BE", tz="Europe/Brussels")
    [partner_id] = gateway.create(
        "res.partner",
        [{"name": "Voorbeeld BV", "company_id": 2, "property_payment_term_id": 3}],
    )
    fake_odoo.data["res.partner"][partner_id]["property_payment_term_id"]["1"] = 1
    [row] = gateway.read("res.partner", [partner_id], ["property_payment_term_id"])
    assert row["property_payment_term_id"] == [3, "30 Days"]
    assert fake_odoo.data["res.partner"][partner_id]["company_id"] == 2
    after_login = [c for c in fake_odoo.calls if c.model != "res.users"]
    assert after_login
    for call in after_login:
        assert call.context == {
            "allowed_company_ids": [2, 1],
            "lang": "nl_BE",
            "tz": "Europe/Brussels",
        }
    gateway.use_company(1)
    [row] = gateway.read("res.partner", [partner_id], ["property_payment_term_id"])
    assert row["property_payment_term_id"] == [1, "Immediate Payment"]

    error = load_case("C005_access_error_wrong_company.json")["response"]["body"]
    fake_odoo.inject(error["error"], method="create")
    before = len(fake_odoo.calls)
    with pytest.raises(PermissionDenied, match="Fictief Nederland BV"):
        gateway.create("res.partner", [{"name": "X", "company_id": 2}])
    assert len(fake_odoo.calls) - before == 1  # no retry


def test_c005_wrong_company_rule_of_the_fake(fake_odoo: FakeOdoo) -> None:
    gateway = make_gateway(fake_odoo)
    gateway.use_company(1)
    with pytest.raises(PermissionDenied, match="not active in this request"):
        gateway.create("res.partner", [{"name": "X", "company_id": 2}])


# -- lost answers: no blind re-send ----------------------------------------------------


def test_lost_create_answer_is_looked_up_before_any_resend(fake_odoo: FakeOdoo) -> None:
    gateway = make_gateway(fake_odoo)
    fake_odoo.inject("drop_after_commit", method="create")
    looked: list[list[str]] = []

    def find(values: list[dict[str, Any]]) -> list[int | None]:
        looked.append([v["name"] for v in values])
        found = {r["name"]: r["id"] for r in fake_odoo.records("res.partner")}
        return [found.get(v["name"]) for v in values]

    ids = gateway.create(
        "res.partner", [{"name": "Once A"}, {"name": "Once B"}], find_existing=find
    )
    names = [r["name"] for r in fake_odoo.records("res.partner")]
    assert names.count("Once A") == names.count("Once B") == 1
    assert looked == [["Once A", "Once B"]]
    assert len(ids) == 2
    assert len(_calls(fake_odoo, "create")) == 1


def test_lost_create_answer_without_lookup_is_not_resent(fake_odoo: FakeOdoo) -> None:
    gateway = make_gateway(fake_odoo)
    fake_odoo.inject("drop_after_commit", method="create")
    with pytest.raises(NetworkError):
        gateway.create("res.partner", [{"name": "Once"}])
    assert len(_calls(fake_odoo, "create")) == 1


def test_reads_are_retried_on_5xx(fake_odoo: FakeOdoo) -> None:
    gateway = make_gateway(fake_odoo)
    fake_odoo.inject("http_503", method="search_count")
    assert gateway.call("res.country", "search_count", []) == 12
    assert len(_calls(fake_odoo, "search_count")) == 2


def test_lost_write_is_read_back(fake_odoo: FakeOdoo) -> None:
    fake_odoo.seed("res.partner", {"id": 50, "name": "Old"})
    gateway = make_gateway(fake_odoo)
    fake_odoo.inject("drop_after_commit", method="write")
    gateway.write("res.partner", [50], {"name": "New"})
    assert len(_calls(fake_odoo, "write")) == 1
    assert fake_odoo.data["res.partner"][50]["name"] == "New"


def test_write_many_batches_and_isolates(fake_odoo: FakeOdoo) -> None:
    for pid in (201, 202, 203, 204, 205):
        fake_odoo.seed("res.partner", {"id": pid, "name": f"P{pid}"})
    gateway = make_gateway(fake_odoo)
    fake_odoo.data["res.partner"].pop(203)  # deleted meanwhile: its write fails
    failures = gateway.write_many(
        "res.partner",
        {
            201: {"name": "A", "city": "Gent"},
            202: {"name": "B", "city": "Gent"},
            203: {"name": "C", "city": "Gent"},
            204: {"zip": "1000"},
            205: {"zip": "1000"},
        },
    )
    assert set(failures) == {203}
    data = fake_odoo.data["res.partner"]
    assert (data[201]["name"], data[202]["name"]) == ("A", "B")
    assert data[204]["zip"] == data[205]["zip"] == "1000"
    methods = [c.method for c in fake_odoo.calls if c.model == "res.partner"]
    # one load (refused as a whole), then one write per record of that batch,
    # and one write for the two records sharing their values
    assert methods.count("load") == 1
    assert methods.count("write") == 4


def test_write_many_uses_one_load_for_different_values(fake_odoo: FakeOdoo) -> None:
    for pid in range(300, 340):
        fake_odoo.seed("res.partner", {"id": pid, "name": f"P{pid}"})
    gateway = make_gateway(fake_odoo)
    be = fake_odoo.country_id("BE")
    failures = gateway.write_many(
        "res.partner",
        {pid: {"name": f"New {pid}", "country_id": be} for pid in range(300, 340)},
    )
    assert failures == {}
    assert [c.method for c in fake_odoo.calls if c.model == "res.partner"].count(
        "load"
    ) == 1
    assert fake_odoo.data["res.partner"][339]["name"] == "New 339"
    assert fake_odoo.data["res.partner"][339]["country_id"] == be


def test_lost_load_answer_is_read_back_not_resent(fake_odoo: FakeOdoo) -> None:
    for pid in range(400, 420):
        fake_odoo.seed("res.partner", {"id": pid, "name": f"P{pid}"})
    gateway = make_gateway(fake_odoo)
    fake_odoo.inject("drop_after_commit", method="load")
    failures = gateway.write_many(
        "res.partner", {pid: {"name": f"New {pid}"} for pid in range(400, 420)}
    )
    assert failures == {}
    assert fake_odoo.data["res.partner"][419]["name"] == "New 419"
    methods = [c.method for c in fake_odoo.calls if c.model == "res.partner"]
    assert methods.count("load") == 1 and methods.count("write") == 0
    assert methods.count("read") == 1


def test_lost_load_that_did_not_commit_is_written(fake_odoo: FakeOdoo) -> None:
    for pid in range(400, 410):
        fake_odoo.seed("res.partner", {"id": pid, "name": f"P{pid}"})
    gateway = make_gateway(fake_odoo)
    fake_odoo.inject("http_503", method="load")
    failures = gateway.write_many(
        "res.partner", {pid: {"name": f"New {pid}"} for pid in range(400, 410)}
    )
    assert failures == {}
    assert [fake_odoo.data["res.partner"][p]["name"] for p in (400, 409)] == [
        "New 400",
        "New 409",
    ]
    methods = [c.method for c in fake_odoo.calls if c.model == "res.partner"]
    assert methods.count("load") == 1 and methods.count("write") == 10


@pytest.mark.parametrize("transport", ["jsonrpc", "session"])
def test_api_key_never_reaches_the_wire_log(
    fake_odoo: FakeOdoo, caplog: pytest.LogCaptureFixture, transport: str
) -> None:
    # odoorpc logs every request at DEBUG (crm-sync -vv); the key travels in the
    # ``args`` of the login and of every execute_kw call
    fake_odoo.seed("res.partner", {"id": 7, "name": "Wire Log BV"})
    caplog.set_level(logging.DEBUG)
    gateway = make_gateway(fake_odoo, transport)
    gateway.call("res.partner", "search_read", [], fields=["name"], limit=5)
    wire = [r for r in caplog.records if r.name.startswith("odoorpc")]
    assert wire, "odoorpc's wire log is what this test reads"
    assert "secret" not in caplog.text
    assert "**********" in caplog.text


def test_timed_out_create_is_looked_up_not_blindly_repeated(
    fake_odoo: FakeOdoo,
) -> None:
    gateway = OdooGateway(
        fake_odoo.url,
        fake_odoo.database,
        "sync-bot",
        "secret",
        timeout=0.3,
        retry=RetryPolicy(attempts=3, initial=0.01, maximum=0.05, jitter=0.01),
    ).connect()
    # Odoo is slow: it commits the create after the client stopped waiting,
    # so the lookup right after the timeout does not see it yet
    fake_odoo.inject("sleep:0.6", method="create")
    looked: list[str] = []

    def find(values: list[dict[str, Any]]) -> list[int | None]:
        looked.extend(v["name"] for v in values)
        found = {r["name"]: r["id"] for r in fake_odoo.records("res.partner")}
        return [found.get(v["name"]) for v in values]

    with pytest.raises(RemoteTimeout):
        gateway.create("res.partner", [{"name": "Slow Once"}], find_existing=find)
    assert looked == ["Slow Once"]
    assert len(_calls(fake_odoo, "create")) == 1  # not sent again
    time.sleep(0.5)  # Odoo finishes the request nobody waits for any more
    names = [r["name"] for r in fake_odoo.records("res.partner")]
    assert names.count("Slow Once") == 1
    # the next attempt finds it before creating anything
    assert find([{"name": "Slow Once"}]) != [None]


def test_server_version_is_read_once_and_old_servers_refused() -> None:
    with (
        FakeOdoo(version="16.0") as old,
        pytest.raises(ConfigurationError, match=r"Odoo 16\.0 .* too old"),
    ):
        make_gateway(old)
    with FakeOdoo() as fake:
        gateway = make_gateway(fake)
        assert gateway.version == "18.0"
        before = fake.requests
        gateway.new_run()
        gateway.call("res.country", "search_count", [])
        assert fake.requests - before == 1  # a new run does not ask again
