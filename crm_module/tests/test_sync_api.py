from datetime import datetime

from odoo.exceptions import UserError, ValidationError
from odoo.tests import tagged

from .common import CrmModuleCommon


@tagged("post_install", "-at_install", "crm_module")
class TestSyncRunApi(CrmModuleCommon):
    def test_start_and_finish_runs(self):
        Run = self.env["crm.sync.run"].with_user(self.user_daemon)
        run_ids = Run.daemon_start_runs(
            [{"backend_id": self.backend.id, "started_at": "2026-12-03 09:00:00"}]
        )
        self.assertEqual(len(run_ids), 1)
        run = self.env["crm.sync.run"].browse(run_ids)
        self.assertEqual(run.outcome, "running")
        self.assertEqual(run.company_id, self.company)
        self.assertEqual(self.backend.last_run_state, "running")
        self.assertEqual(self.backend.last_run_at, datetime(2026, 12, 3, 9, 0))
        self.assertEqual(self.backend.next_run, datetime(2026, 12, 3, 10, 0))
        self.assertTrue(
            Run.daemon_finish_runs(
                [
                    {
                        "run_id": run.id,
                        "ended_at": "2026-12-03 09:01:30",
                        "outcome": "success",
                        "counts": {
                            "pulled": 63,
                            "created": 2,
                            "linked": 60,
                            "unchanged": 1,
                        },
                        "log": "63 accounts read",
                    }
                ]
            )
        )
        self.assertEqual(run.outcome, "success")
        self.assertEqual(run.count_pulled, 63)
        self.assertEqual(run.count_linked, 60)
        self.assertEqual(run.duration, 90.0)
        self.assertEqual(self.backend.last_run_state, "success")
        self.assertEqual(self.backend.last_success_at, datetime(2026, 12, 3, 9, 1, 30))
        self.assertEqual(self.backend.run_count, 1)
        self.assertIn("Exact Belgium", run.display_name)

    def test_failed_run_records_error(self):
        Run = self.env["crm.sync.run"].with_user(self.user_daemon)
        run_ids = Run.daemon_start_runs(
            [{"backend_id": self.backend.id, "started_at": "2026-12-03 09:00:00"}]
        )
        Run.daemon_finish_runs(
            [
                {
                    "run_id": run_ids[0],
                    "ended_at": "2026-12-03 09:00:05",
                    "outcome": "failed",
                    "counts": {"errors": 1},
                    "log": "HTTP 401 from Exact\nsecond line",
                }
            ]
        )
        self.assertEqual(self.backend.last_run_state, "failed")
        self.assertEqual(self.backend.last_error, "HTTP 401 from Exact")
        self.assertFalse(self.backend.last_success_at)

    def test_run_bad_input(self):
        Run = self.env["crm.sync.run"].with_user(self.user_daemon)
        with self.assertRaisesRegex(ValidationError, r"runs\[0\].*started_at"):
            Run.daemon_start_runs(
                [{"backend_id": self.backend.id, "started_at": "yesterday"}]
            )
        run_ids = Run.daemon_start_runs(
            [{"backend_id": self.backend.id, "started_at": "2026-12-03 09:00:00"}]
        )
        with self.assertRaisesRegex(ValidationError, "outcome"):
            Run.daemon_finish_runs(
                [
                    {
                        "run_id": run_ids[0],
                        "ended_at": "2026-12-03 09:10:00",
                        "outcome": "ok",
                    }
                ]
            )
        with self.assertRaisesRegex(ValidationError, "unknown counter bogus"):
            Run.daemon_finish_runs(
                [
                    {
                        "run_id": run_ids[0],
                        "ended_at": "2026-12-03 09:10:00",
                        "outcome": "success",
                        "counts": {"bogus": 1},
                    }
                ]
            )
        with self.assertRaisesRegex(ValidationError, "ended_at"):
            Run.daemon_finish_runs(
                [
                    {
                        "run_id": run_ids[0],
                        "ended_at": "2026-12-03 08:00:00",
                        "outcome": "success",
                    }
                ]
            )
        with self.assertRaisesRegex(ValidationError, "run_id"):
            Run.daemon_finish_runs(
                [
                    {
                        "run_id": 999999,
                        "ended_at": "2026-12-03 09:10:00",
                        "outcome": "success",
                    }
                ]
            )


@tagged("post_install", "-at_install", "crm_module")
class TestSyncLinkApi(CrmModuleCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.other = cls.env["res.partner"].create({"name": "Atelier Imaginaire SRL"})
        cls.Link = cls.env["crm.sync.link"].with_user(cls.user_daemon)

    def _vals(self, partner, external_id, **extra):
        return dict(
            {
                "backend_id": self.backend.id,
                "res_model": "res.partner",
                "res_id": partner.id,
                "external_id": external_id,
                "external_code": "1001",
                "sync_hash": "abc",
                "synced_at": "2026-12-03 09:00:00",
                "state": "linked",
            },
            **extra,
        )

    def test_upsert_creates_then_updates(self):
        ids = self.Link.daemon_upsert_links(
            [self._vals(self.customer, "guid-1"), self._vals(self.other, "guid-2")]
        )
        links = self.env["crm.sync.link"].browse(ids)
        self.assertEqual(links.mapped("partner_id"), self.customer | self.other)
        self.assertEqual(links[0].company_id, self.company)
        self.assertEqual(links[0].synced_at, datetime(2026, 12, 3, 9, 0))
        self.assertEqual(links[0].record_ref, self.customer)
        self.assertEqual(self.customer.sync_link_ids, links[0])
        self.assertEqual(self.customer.sync_link_count, 1)
        again = self.Link.daemon_upsert_links(
            [
                self._vals(self.other, "guid-2", sync_hash="def"),
                self._vals(self.customer, "guid-1"),
            ]
        )
        self.assertEqual(again, [ids[1], ids[0]])
        self.assertEqual(links[1].sync_hash, "def")
        self.assertEqual(
            self.env["crm.sync.link"].search_count(
                [("backend_id", "=", self.backend.id)]
            ),
            2,
        )

    def test_upsert_rejects_second_external_id_for_a_record(self):
        self.Link.daemon_upsert_links([self._vals(self.customer, "guid-1")])
        with self.assertRaises(ValidationError) as catcher:
            self.Link.daemon_upsert_links([self._vals(self.customer, "guid-9")])
        message = str(catcher.exception)
        self.assertIn("guid-1", message)
        self.assertIn("guid-9", message)
        self.assertIn("Fictief Software", message)
        with self.assertRaisesRegex(ValidationError, "appears twice"):
            self.Link.daemon_upsert_links(
                [self._vals(self.other, "guid-5"), self._vals(self.other, "guid-6")]
            )

    def test_upsert_bad_input(self):
        with self.assertRaisesRegex(
            ValidationError, r"res.partner 999999 \(field res_id\)"
        ):
            self.Link.daemon_upsert_links(
                [self._vals(self.customer, "x", res_id=999999)]
            )
        with self.assertRaisesRegex(ValidationError, "unknown model"):
            self.Link.daemon_upsert_links(
                [self._vals(self.customer, "x", res_model="no.such")]
            )
        with self.assertRaisesRegex(ValidationError, "external_id"):
            self.Link.daemon_upsert_links([self._vals(self.customer, "")])
        with self.assertRaisesRegex(ValidationError, "state"):
            self.Link.daemon_upsert_links(
                [self._vals(self.customer, "x", state="gone")]
            )
        with self.assertRaisesRegex(ValidationError, "backend_id"):
            self.Link.daemon_upsert_links(
                [self._vals(self.customer, "x", backend_id=self.backend_2.id)]
            )
        self.assertEqual(self.Link.daemon_upsert_links([]), [])

    def test_read_links_keyset(self):
        partners = self.env["res.partner"].create(
            [{"name": f"Linked {index}"} for index in range(5)]
        )
        ids = self.Link.daemon_upsert_links(
            [self._vals(partner, f"guid-{partner.id}") for partner in partners]
        )
        page = self.Link.daemon_read_links(self.backend.id, "res.partner", 0, 2)
        self.assertEqual([row["id"] for row in page], ids[:2])
        self.assertEqual(
            set(page[0]),
            {
                "id",
                "res_id",
                "external_id",
                "external_code",
                "sync_hash",
                "synced_at",
                "state",
            },
        )
        self.assertEqual(page[0]["synced_at"], "2026-12-03 09:00:00")
        page = self.Link.daemon_read_links(
            self.backend.id, "res.partner", page[-1]["id"], 2
        )
        self.assertEqual([row["id"] for row in page], ids[2:4])
        page = self.Link.daemon_read_links(self.backend.id, "res.partner", ids[-1])
        self.assertEqual(page, [])
        self.assertEqual(
            self.Link.daemon_read_links(self.backend.id, "account.move"), []
        )

    def test_unlink_links_keeps_row_and_notes_partner(self):
        ids = self.Link.daemon_upsert_links([self._vals(self.customer, "guid-1")])
        count = self.Link.daemon_unlink_links(
            [
                {
                    "backend_id": self.backend.id,
                    "res_model": "res.partner",
                    "external_id": "guid-1",
                    "note": "deleted in Exact on 2024-03-15",
                },
                {
                    "backend_id": self.backend.id,
                    "res_model": "res.partner",
                    "external_id": "unknown",
                },
            ]
        )
        self.assertEqual(count, 1)
        link = self.env["crm.sync.link"].browse(ids)
        self.assertEqual(link.state, "unlinked")
        self.assertTrue(self.customer.exists())
        self.assertIn(
            "deleted in Exact on 2024-03-15", self.customer.message_ids[0].body
        )
        # relinking the same external record reactivates the row
        again = self.Link.daemon_upsert_links([self._vals(self.customer, "guid-1")])
        self.assertEqual(again, ids)
        self.assertEqual(link.state, "linked")

    def test_daemon_user_without_email_notes_unlinks_and_resolutions(self):
        """The technical user is a bot: its notes must not need an address."""
        self.user_daemon.partner_id.email = False
        self.Link.daemon_upsert_links([self._vals(self.customer, "guid-9")])
        self.Link.daemon_unlink_links(
            [
                {
                    "backend_id": self.backend.id,
                    "res_model": "res.partner",
                    "external_id": "guid-9",
                    "note": "deleted in Exact",
                }
            ]
        )
        self.assertIn("deleted in Exact", self.customer.message_ids[0].body)
        Issue = self.env["crm.sync.issue"].with_user(self.user_daemon)
        [issue_id] = Issue.daemon_raise_issues(
            [
                {
                    "backend_id": self.backend.id,
                    "kind": "invalid_data",
                    "external_id": "guid-9",
                    "message": "bad record",
                }
            ]
        )
        issue = self.env["crm.sync.issue"].browse(issue_id)
        issue.with_user(self.user_sync_admin).action_retry()
        Issue.daemon_resolve_issues(
            [{"issue_id": issue_id, "state": "done", "note": "retried fine"}]
        )
        self.assertEqual(issue.state, "done")
        self.assertIn("retried fine", issue.message_ids[0].body)

    def test_unlinked_row_is_reused_for_a_new_external_record(self):
        ids = self.Link.daemon_upsert_links([self._vals(self.customer, "guid-1")])
        self.Link.daemon_unlink_links(
            [
                {
                    "backend_id": self.backend.id,
                    "res_model": "res.partner",
                    "external_id": "guid-1",
                }
            ]
        )
        new_ids = self.Link.daemon_upsert_links([self._vals(self.customer, "guid-2")])
        self.assertEqual(new_ids, ids)
        self.assertEqual(self.env["crm.sync.link"].browse(ids).external_id, "guid-2")

    def test_sql_constraints(self):
        from psycopg2 import IntegrityError

        from odoo.tools import mute_logger

        self.env["crm.sync.link"].create(
            {
                "backend_id": self.backend.id,
                "res_model": "res.partner",
                "res_id": self.customer.id,
                "external_id": "guid-1",
            }
        )
        # a duplicate is refused with a message naming the record and the field
        for external_id, res_id, field in (
            ("guid-1", self.other.id, "External ID"),
            ("guid-2", self.customer.id, "Odoo Record"),
        ):
            with self.assertRaises(ValidationError) as catcher:
                self.env["crm.sync.link"].create(
                    {
                        "backend_id": self.backend.id,
                        "res_model": "res.partner",
                        "res_id": res_id,
                        "external_id": external_id,
                    }
                )
            self.assertIn(f"(field {field})", str(catcher.exception))
            self.assertIn("Fictief Software", str(catcher.exception))
        # the SQL constraints stay as the last safeguard
        for external_id, res_id in (
            ("guid-1", self.other.id),
            ("guid-2", self.customer.id),
        ):
            with (
                self.assertRaises(IntegrityError),
                mute_logger("odoo.sql_db"),
                self.env.cr.savepoint(),
            ):
                self.env.cr.execute(
                    "INSERT INTO crm_sync_link (backend_id, res_model, res_id, "
                    "external_id, state) VALUES (%s, 'res.partner', %s, %s, 'linked')",
                    [self.backend.id, res_id, external_id],
                )
        with self.assertRaisesRegex(ValidationError, "res_model"):
            self.env["crm.sync.link"].create(
                {
                    "backend_id": self.backend.id,
                    "res_model": "no.such.model",
                    "res_id": 1,
                    "external_id": "guid-3",
                }
            )


@tagged("post_install", "-at_install", "crm_module")
class TestSyncIssueApi(CrmModuleCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Issue = cls.env["crm.sync.issue"].with_user(cls.user_daemon)
        cls.candidate = cls.env["res.partner"].create(
            {"name": "Fictief Software BV", "is_company": True}
        )

    def _issue_vals(self, **extra):
        return dict(
            {
                "backend_id": self.backend.id,
                "kind": "conflict",
                "res_model": "res.partner",
                "res_id": self.customer.id,
                "external_id": "guid-7",
                "field": "vat",
                "message": "Fictief Software: VAT differs (Odoo BE0447123478, "
                "Exact BE0765881217)",
                "payload": {"VATNumber": "BE0765881217", "Name": "Fictief Software"},
                "suggestions": [
                    {
                        "partner_id": self.customer.id,
                        "score": 0.9,
                        "reason": "same name",
                    },
                    {
                        "partner_id": self.candidate.id,
                        "score": 0.6,
                        "reason": "similar",
                    },
                ],
            },
            **extra,
        )

    def test_raise_issue_and_deduplicate(self):
        ids = self.Issue.daemon_raise_issues([self._issue_vals()])
        issue = self.env["crm.sync.issue"].browse(ids)
        self.assertEqual(issue.partner_id, self.customer)
        self.assertEqual(issue.state, "open")
        self.assertEqual(issue.company_id, self.company)
        self.assertEqual(len(issue.suggestion_ids), 2)
        self.assertIn('"VATNumber": "BE0765881217"', issue.payload)
        self.assertIn("Fictief Software", issue.display_name)
        again = self.Issue.daemon_raise_issues(
            [self._issue_vals(message="still different", suggestions=[])]
        )
        self.assertEqual(again, ids)
        self.assertEqual(issue.occurrence_count, 2)
        self.assertEqual(issue.message, "still different")
        self.assertFalse(issue.suggestion_ids)
        other = self.Issue.daemon_raise_issues(
            [self._issue_vals(field="name"), self._issue_vals(field="name")]
        )
        self.assertNotEqual(other[0], ids[0])
        self.assertEqual(other[0], other[1])
        self.assertEqual(self.backend.open_issue_count, 2)

    def test_issue_buttons_are_recorded_and_fetched(self):
        ids = self.Issue.daemon_raise_issues([self._issue_vals()])
        issue = self.env["crm.sync.issue"].browse(ids).with_user(self.user_sale_manager)
        issue.action_link_suggestion()
        self.assertEqual(issue.state, "action_pending")
        self.assertEqual(issue.requested_action, "link")
        self.assertEqual(issue.chosen_partner_id, self.customer, "best score chosen")
        self.assertEqual(issue.action_requested_by_id, self.user_sale_manager)
        self.assertTrue(issue.action_requested_at)
        self.assertIn("link to", issue.message_ids[0].body)
        issue.suggestion_ids.filtered(
            lambda s: s.partner_id == self.candidate
        ).action_link()
        self.assertEqual(issue.chosen_partner_id, self.candidate)
        actions = self.Issue.daemon_fetch_actions(self.backend.id)
        self.assertEqual(
            actions,
            [
                {
                    "issue_id": issue.id,
                    "action": "link",
                    "external_id": "guid-7",
                    "res_model": "res.partner",
                    "res_id": self.customer.id,
                    "partner_id": self.candidate.id,
                    "payload": issue.payload,
                }
            ],
        )
        self.assertTrue(
            self.Issue.daemon_resolve_issues(
                [{"issue_id": issue.id, "state": "done", "note": "linked to 1001"}]
            )
        )
        self.assertEqual(issue.state, "done")
        self.assertTrue(issue.resolved_at)
        self.assertIn("linked to 1001", issue.message_ids[0].body)
        self.assertEqual(self.Issue.daemon_fetch_actions(self.backend.id), [])
        with self.assertRaises(UserError):
            issue.action_retry()

    def test_retry_create_ignore_and_reopen(self):
        ids = self.Issue.daemon_raise_issues(
            [
                self._issue_vals(field="a"),
                self._issue_vals(field="b"),
                self._issue_vals(field="c"),
            ]
        )
        retry, create, ignore = (
            self.env["crm.sync.issue"].browse(ids).with_user(self.user_sync_admin)
        )
        retry.action_retry()
        create.action_create_new()
        ignore.action_ignore()
        self.assertEqual(retry.requested_action, "retry")
        self.assertEqual(create.requested_action, "create")
        self.assertEqual(ignore.state, "ignored")
        fetched = self.Issue.daemon_fetch_actions(self.backend.id)
        self.assertEqual({row["action"] for row in fetched}, {"retry", "create"})
        # the daemon meets the ignored problem again: no new issue
        again = self.Issue.daemon_raise_issues([self._issue_vals(field="c")])
        self.assertEqual(again, [ignore.id])
        self.assertEqual(ignore.state, "ignored")
        # the daemon could not do it: the issue goes back to the workbench
        self.Issue.daemon_resolve_issues(
            [{"issue_id": retry.id, "state": "open", "note": "timeout"}]
        )
        self.assertEqual(retry.state, "open")
        self.assertFalse(retry.requested_action)
        ignore.action_reopen()
        self.assertEqual(ignore.state, "open")

    def test_link_without_partner_raises(self):
        ids = self.Issue.daemon_raise_issues(
            [self._issue_vals(suggestions=[], res_model=False, res_id=False)]
        )
        issue = self.env["crm.sync.issue"].browse(ids)
        with self.assertRaisesRegex(UserError, "Chosen Partner"):
            issue.action_link_suggestion()

    def test_issue_bad_input(self):
        with self.assertRaisesRegex(ValidationError, "kind"):
            self.Issue.daemon_raise_issues([self._issue_vals(kind="oops")])
        with self.assertRaisesRegex(ValidationError, "message"):
            self.Issue.daemon_raise_issues([self._issue_vals(message="")])
        with self.assertRaisesRegex(
            ValidationError, r"res.partner 999999 \(field res_id\)"
        ):
            self.Issue.daemon_raise_issues(
                [self._issue_vals(suggestions=[{"partner_id": 999999, "score": 1}])]
            )
        with self.assertRaisesRegex(ValidationError, "issue_id"):
            self.Issue.daemon_resolve_issues([{"issue_id": 999999, "state": "done"}])
        with self.assertRaisesRegex(ValidationError, "state"):
            self.Issue.daemon_resolve_issues([{"issue_id": 1, "state": "maybe"}])


@tagged("post_install", "-at_install", "crm_module")
class TestSyncApiHostileInput(CrmModuleCommon):
    """Values a buggy or hostile daemon may send: each is refused with a
    ValidationError naming the item and the field, before anything is written.

    Found by a tester: ``res_id=True`` linked the external record to partner 1
    (``int(True)``) and 7.9 to partner 7; an object as external id was stored as
    its repr; a NUL character or a list as ``res_model`` failed with a bare
    ValueError/TypeError; ``None`` as the batch or ``inf`` as a limit with a
    TypeError/OverflowError.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Link = cls.env["crm.sync.link"].with_user(cls.user_daemon)

    def _vals(self, **extra):
        return dict(
            {
                "backend_id": self.backend.id,
                "res_model": "res.partner",
                "res_id": self.customer.id,
                "external_id": "X-1",
            },
            **extra,
        )

    def assertRefused(self, pattern, vals):
        with self.assertRaisesRegex(ValidationError, pattern):
            self.Link.daemon_upsert_links([vals])
        self.assertFalse(
            self.env["crm.sync.link"].search([("backend_id", "=", self.backend.id)])
        )

    def test_ids_that_are_no_whole_numbers(self):
        self.assertRefused(
            r"links\[0\]: field res_id must be an integer id", self._vals(res_id=True)
        )
        self.assertRefused(
            r"links\[0\]: field res_id .* got 7.9", self._vals(res_id=7.9)
        )
        self.assertRefused(
            r"field backend_id must be an integer id",
            self._vals(backend_id=self.backend.id + 0.5),
        )
        # a whole float or a numeric string is still an id
        [link_id] = self.Link.daemon_upsert_links(
            [self._vals(res_id=float(self.customer.id))]
        )
        self.assertEqual(
            self.env["crm.sync.link"].browse(link_id).res_id, self.customer.id
        )

    def test_text_fields_that_are_no_text(self):
        self.assertRefused(
            r"links\[0\]: field external_id must be text without NUL",
            self._vals(external_id={"a": 1}),
        )
        self.assertRefused(
            r"field external_id must be text without NUL",
            self._vals(external_id="A\x00B"),
        )
        self.assertRefused(r"field sync_hash must be text", self._vals(sync_hash=[1]))
        self.assertRefused(
            r"field external_code must be text", self._vals(external_code={"c": 1})
        )
        self.assertRefused(
            r"links\[0\]: field res_model names an unknown model",
            self._vals(res_model=["res.partner"]),
        )
        self.assertRefused(
            r"links\[0\]: missing value for external_id", self._vals(external_id="   ")
        )
        with self.assertRaisesRegex(
            ValidationError, r"links\[0\]: field res_model must"
        ):
            self.Link.daemon_unlink_links(
                [
                    {
                        "backend_id": self.backend.id,
                        "res_model": ["x"],
                        "external_id": "X",
                    }
                ]
            )

    def test_batches_and_limits_that_are_no_batches_or_limits(self):
        for method in ("daemon_upsert_links", "daemon_unlink_links"):
            with self.assertRaisesRegex(ValidationError, f"{method}: expected a list"):
                getattr(self.Link, method)(None)
        Run = self.env["crm.sync.run"].with_user(self.user_daemon)
        with self.assertRaisesRegex(
            ValidationError, "daemon_start_runs: expected a list"
        ):
            Run.daemon_start_runs(None)
        Partner = self.env["res.partner"].with_user(self.user_daemon)
        for limit in (float("inf"), True):
            with self.assertRaisesRegex(ValidationError, "'limit' must be a number"):
                Partner.daemon_partner_keys(0, limit)

    def test_issue_values_from_a_hostile_remote(self):
        Issue = self.env["crm.sync.issue"].with_user(self.user_daemon)
        vals = {"backend_id": self.backend.id, "kind": "invalid_data", "message": "m"}
        with self.assertRaisesRegex(
            ValidationError, r"issues\[0\]: field external_id must be text"
        ):
            Issue.daemon_raise_issues([dict(vals, external_id={"x": 1})])
        with self.assertRaisesRegex(
            ValidationError, r"issues\[0\]: field res_model names an unknown model"
        ):
            Issue.daemon_raise_issues([dict(vals, res_model=["res.partner"], res_id=1)])
        # free text quoted from the remote keeps the issue instead of losing the batch
        [issue_id] = Issue.daemon_raise_issues(
            [dict(vals, external_id="X-9", message="bad\x00name", payload="p\x00")]
        )
        issue = self.env["crm.sync.issue"].browse(issue_id)
        self.assertEqual(issue.message, "bad\ufffdname")
        self.assertEqual(issue.payload, "p\ufffd")
