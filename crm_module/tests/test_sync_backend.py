from datetime import datetime

from freezegun import freeze_time
from psycopg2 import IntegrityError

from odoo.exceptions import AccessError, ValidationError
from odoo.tests import tagged
from odoo.tools import mute_logger

from .common import CrmModuleCommon


@tagged("post_install", "-at_install", "crm_module")
class TestSyncBackend(CrmModuleCommon):
    def test_default_ownership(self):
        ownership = self.backend._get_ownership()
        self.assertEqual(
            ownership,
            {
                "legal_name": "finance",
                "vat": "finance",
                "registry": "finance",
                "billing_address": "finance",
                "payment_terms": "finance",
                "contacts": "sales",
                "phones": "sales",
                "emails": "sales",
                "tags": "sales",
            },
        )
        self.assertEqual(len(self.backend.ownership_ids), 9)

    def test_ownership_configurable(self):
        lines = self.backend.ownership_ids
        line = lines.filtered(lambda line: line.field_group == "emails")
        line.owner = "finance"
        self.assertEqual(self.backend._get_ownership()["emails"], "finance")
        # a missing line falls back to the default owner
        lines.filtered(lambda line: line.field_group == "tags").unlink()
        self.assertEqual(self.backend._get_ownership()["tags"], "sales")
        with (
            mute_logger("odoo.sql_db"),
            self.assertRaises(IntegrityError),
            self.env.cr.savepoint(),
        ):
            self.env["crm.sync.ownership"].create(
                {
                    "backend_id": self.backend.id,
                    "field_group": "vat",
                    "owner": "sales",
                }
            )

    @freeze_time("2026-12-03 10:00:00")
    def test_next_run_interval(self):
        backend = self.env["crm.sync.backend"].create(
            {"name": "Interval", "kind": "peppol", "interval_minutes": 15}
        )
        self.assertEqual(backend.next_run, datetime(2026, 12, 3, 10, 0))
        backend.sudo().last_run_at = datetime(2026, 12, 3, 9, 50)
        self.assertEqual(backend.next_run, datetime(2026, 12, 3, 10, 5))
        backend.interval_minutes = 120
        self.assertEqual(backend.next_run, datetime(2026, 12, 3, 11, 50))
        backend.action_archive()
        self.assertFalse(backend.next_run)

    @freeze_time("2026-12-03 10:00:00")
    def test_next_run_daily_in_company_time_zone(self):
        backend = self.env["crm.sync.backend"].create(
            {
                "name": "Daily",
                "kind": "sage_x3",
                "schedule_type": "daily",
                "daily_time": 2.5,
                "tz": "Europe/Brussels",
            }
        )
        # 02:30 in Brussels (UTC+1 in winter) is 01:30 UTC, tomorrow
        self.assertEqual(backend.next_run, datetime(2026, 12, 4, 1, 30))
        backend.sudo().last_run_at = datetime(2026, 12, 3, 0, 45)
        self.assertEqual(backend.next_run, datetime(2026, 12, 3, 1, 30))
        backend.tz = "UTC"
        self.assertEqual(backend.next_run, datetime(2026, 12, 3, 2, 30))

    @freeze_time("2026-07-01 12:00:00")
    def test_next_run_daily_summer_time(self):
        backend = self.env["crm.sync.backend"].create(
            {
                "name": "Summer",
                "kind": "exact",
                "schedule_type": "daily",
                "daily_time": 2.5,
                "tz": "Europe/Brussels",
            }
        )
        self.assertEqual(backend.next_run, datetime(2026, 7, 2, 0, 30))

    def test_schedule_constraints(self):
        with (
            mute_logger("odoo.sql_db"),
            self.assertRaises(IntegrityError),
            self.env.cr.savepoint(),
        ):
            self.backend.write({"interval_minutes": 0})
            self.env.flush_all()
        with (
            mute_logger("odoo.sql_db"),
            self.assertRaises(IntegrityError),
            self.env.cr.savepoint(),
        ):
            self.backend.write({"schedule_type": "daily", "daily_time": 24.0})
            self.env.flush_all()

    def test_run_now_sets_flag_and_logs(self):
        backend = self.backend.with_user(self.user_sync_admin)
        backend.action_run_now()
        self.assertTrue(self.backend.run_requested)
        self.assertIn("Run requested", self.backend.message_ids[0].body)
        config = self.env["crm.sync.backend"].with_user(self.user_daemon)
        self.assertTrue(
            next(c for c in config.daemon_get_config() if c["id"] == self.backend.id)[
                "run_requested"
            ]
        )
        config.daemon_ack_run_requests([self.backend.id])
        self.assertFalse(self.backend.run_requested)

    def test_daemon_get_config(self):
        self.backend.sudo().last_success_at = datetime(2026, 1, 2, 3, 4, 5)
        configs = (
            self.env["crm.sync.backend"].with_user(self.user_daemon).daemon_get_config()
        )
        config = next(c for c in configs if c["id"] == self.backend.id)
        self.assertEqual(
            set(config),
            {
                "id",
                "name",
                "kind",
                "company_id",
                "company_name",
                "tz",
                "lang",
                "schedule_type",
                "interval_minutes",
                "daily_time",
                "next_run",
                "run_requested",
                "ownership",
                "last_success",
            },
        )
        self.assertEqual(config["company_id"], self.company.id)
        self.assertEqual(config["company_name"], self.company.name)
        self.assertEqual(config["tz"], "Europe/Brussels")
        self.assertEqual(config["last_success"], "2026-01-02 03:04:05")
        self.assertRegex(config["next_run"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
        self.assertEqual(config["ownership"]["vat"], "finance")
        # the daemon of company 1 does not see the backend of company 2
        self.assertNotIn(self.backend_2.id, [c["id"] for c in configs])
        # archived backends are not returned
        self.backend.action_archive()
        configs = (
            self.env["crm.sync.backend"].with_user(self.user_daemon).daemon_get_config()
        )
        self.assertNotIn(self.backend.id, [c["id"] for c in configs])

    def test_daemon_report_health(self):
        Backend = self.env["crm.sync.backend"].with_user(self.user_daemon)
        self.assertTrue(
            Backend.daemon_report_health(
                [
                    {
                        "backend_id": self.backend.id,
                        "credentials_state": "needs_reauth",
                        "message": "refresh token rejected: invalid_grant",
                    }
                ]
            )
        )
        self.assertEqual(self.backend.credentials_state, "needs_reauth")
        self.assertIn("invalid_grant", self.backend.credentials_message)
        self.assertTrue(self.backend.credentials_checked_at)
        with self.assertRaisesRegex(ValidationError, "credentials_state"):
            Backend.daemon_report_health(
                [{"backend_id": self.backend.id, "credentials_state": "broken"}]
            )
        with self.assertRaisesRegex(
            ValidationError, r"crm.sync.backend 999999.*backend_id"
        ):
            Backend.daemon_report_health(
                [{"backend_id": 999999, "credentials_state": "valid"}]
            )
        with self.assertRaisesRegex(ValidationError, "backend_id"):
            Backend.daemon_report_health(
                [{"backend_id": self.backend_2.id, "credentials_state": "valid"}]
            )

    def test_daemon_cannot_edit_backend(self):
        with self.assertRaises(AccessError):
            self.backend.with_user(self.user_daemon).write({"interval_minutes": 5})

    def test_counts_and_actions(self):
        self.assertEqual(self.backend.link_count, 0)
        for method in ("action_view_links", "action_view_issues", "action_view_runs"):
            action = getattr(self.backend, method)()
            self.assertIn(("backend_id", "=", self.backend.id), action["domain"])
