"""Browser tours of the flows users do most, one class per role.

Each class builds its own data and least-privileged user, runs one tour of
``static/tests/tours`` in a headless Chrome and then checks in the database that
the flow did what it says. Odoo skips browser tests when it finds no Chrome; these
classes fail instead, so that a machine without a browser cannot pass them.
"""

import re
import unittest
from datetime import timedelta
from urllib.parse import quote

from odoo import fields
from odoo.tests import HttpCase, tagged
from odoo.tests.common import _find_executable

from odoo.addons.account.tests.common import AccountTestInvoicingHttpCommon
from odoo.addons.mail.tests.common import mail_new_test_user


class BrowserRequiredMixin:
    """Fail, not skip, when the headless browser cannot be found or started."""

    @classmethod
    def setUpClass(cls):
        try:
            _find_executable()
        except unittest.SkipTest as error:
            raise AssertionError(
                f"{cls.__name__}: the browser tours need Chrome or Chromium on PATH "
                f"(google-chrome, chromium, chromium-browser), Odoo said: {error}. "
                "Install one (Debian: apt-get install chromium); scripts/odoo-test "
                "does so when run as root."
            ) from error
        super().setUpClass()

    def browser_js(self, *args, **kwargs):
        """Turn Odoo's skips (no websocket-client, no devtools) into failures."""
        try:
            return super().browser_js(*args, **kwargs)
        except unittest.SkipTest as error:
            self.fail(f"the browser tour could not run: {error}")

    @classmethod
    def _tour_user(cls, login, name, groups, company):
        """A user with only ``groups``; its password is its login (>= 8 chars)."""
        return mail_new_test_user(
            cls.env,
            login=login,
            name=name,
            groups=groups,
            company_id=company.id,
            company_ids=[(6, 0, company.ids)],
            tz="Europe/Brussels",
        )


@tagged("post_install", "-at_install", "crm_module", "crm_tours")
class TestTourSalesPipeline(BrowserRequiredMixin, AccountTestInvoicingHttpCommon):
    """Salesperson: stuck opportunities and what sales knows about the customer."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        company = cls.env.company
        cls.salesperson = cls._tour_user(
            "tour_salesperson", "Sofie Sales", "sales_team.group_sale_salesman", company
        )
        team = cls.env["crm.team"].create(
            {
                "name": "Tour Team",
                "company_id": company.id,
                "use_opportunities": True,
                "member_ids": [(6, 0, cls.salesperson.ids)],
            }
        )
        stage = cls.env["crm.stage"].create(
            {
                "name": "Tour Proposal",
                "sequence": 1,
                "team_id": team.id,
                "stuck_after_days": 14,
            }
        )
        cls.customer = cls.env["res.partner"].create(
            {
                "name": "Fictief Logistics NV",
                "is_company": True,
                "vat": "BE0447123478",
                "crm_peppol_readiness": "can_receive",
                "crm_peppol_participant_id": "0208:0447123478",
                "crm_peppol_checked_at": fields.Datetime.now() - timedelta(days=3),
            }
        )
        # one open invoice, due 40 days ago
        due = fields.Date.context_today(cls.customer) - timedelta(days=40)
        invoice = cls.init_invoice(
            "out_invoice",
            partner=cls.customer,
            invoice_date=due,
            amounts=[1250.0],
            taxes=[],
        )
        invoice.write({"invoice_payment_term_id": False, "invoice_date_due": due})
        invoice.action_post()
        leads = cls.env["crm.lead"].create(
            [
                {
                    "name": name,
                    "type": "opportunity",
                    "team_id": team.id,
                    "stage_id": stage.id,
                    "user_id": cls.salesperson.id,
                    "partner_id": cls.customer.id,
                    "expected_revenue": 18000,
                }
                for name in ("Tour Stuck Deal", "Tour Fresh Deal")
            ]
        )
        cls.stuck = leads[0]
        # the stuck one entered its stage 45 days ago (the ORM stamps "now")
        cls.env.flush_all()
        cls.env.cr.execute(
            "UPDATE crm_lead SET date_last_stage_update = %s WHERE id = %s",
            (fields.Datetime.now() - timedelta(days=45, hours=1), cls.stuck.id),
        )
        leads.invalidate_recordset(["date_last_stage_update"])

    def test_salesperson_sees_stuck_deal_and_customer_summary(self):
        self.assertTrue(self.stuck.with_user(self.salesperson).is_stuck)
        self.start_tour(
            "/odoo", "crm_module_sales_stuck_pipeline", login="tour_salesperson"
        )
        # a read-only flow: nothing changed, the deal is still stuck and open
        self.stuck.invalidate_recordset()
        self.assertTrue(self.stuck.is_stuck)
        self.assertEqual(self.stuck.days_in_stage, 45)
        self.assertEqual(self.stuck.customer_receivable, 1250.0)


@tagged("post_install", "-at_install", "crm_module", "crm_tours")
class TestTourSyncAdmin(BrowserRequiredMixin, HttpCase):
    """Sync administrator: a new backend, Run now, the latest run, a conflict."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        company = cls.env.company
        cls.sync_admin = cls._tour_user(
            "tour_sync_admin",
            "Sam Sync",
            "crm_module.crm_module_group_sync_admin",
            company,
        )
        daemon = cls._tour_user(
            "tour_sync_daemon",
            "Sync Daemon",
            "crm_module.crm_module_group_sync_daemon",
            company,
        )
        cls.backend = cls.env["crm.sync.backend"].create(
            {"name": "Exact Online Belgium", "kind": "exact", "company_id": company.id}
        )
        cls.suggested = cls.env["res.partner"].create(
            {"name": "Fictief Logistics NV", "is_company": True, "vat": "BE0447123478"}
        )
        cls.other = cls.env["res.partner"].create(
            {"name": "Fictief Logistiek BV", "is_company": True}
        )
        # what the daemon writes during one run, through its API
        env = cls.env(user=daemon)
        started = fields.Datetime.now() - timedelta(minutes=5)
        [run_id] = env["crm.sync.run"].daemon_start_runs(
            [
                {
                    "backend_id": cls.backend.id,
                    "started_at": fields.Datetime.to_string(started),
                }
            ]
        )
        issue_ids = env["crm.sync.issue"].daemon_raise_issues(
            [
                {
                    "backend_id": cls.backend.id,
                    "kind": "conflict",
                    "external_id": "EX-1042",
                    "field": "vat",
                    "message": "Exact account 1042 matches two customers by name; "
                    "one of them has the same VAT number.",
                    "payload": {"Code": "1042", "Name": "Fictief Logistics"},
                    "suggestions": [
                        {
                            "partner_id": cls.suggested.id,
                            "score": 0.93,
                            "reason": "Same VAT number",
                        },
                        {
                            "partner_id": cls.other.id,
                            "score": 0.41,
                            "reason": "Similar name",
                        },
                    ],
                }
            ]
        )
        env["crm.sync.run"].daemon_finish_runs(
            [
                {
                    "run_id": run_id,
                    "ended_at": fields.Datetime.to_string(
                        started + timedelta(seconds=42)
                    ),
                    "outcome": "partial",
                    "counts": {"pulled": 12, "linked": 11, "conflicts": 1},
                    "log": "12 accounts pulled, 11 linked, 1 conflict",
                }
            ]
        )
        cls.daemon_env = env
        cls.issue = cls.env["crm.sync.issue"].browse(issue_ids)

    def test_sync_admin_configures_backend_and_links_conflict(self):
        self.start_tour(
            "/odoo", "crm_module_sync_admin_workbench", login="tour_sync_admin"
        )

        backend = self.env["crm.sync.backend"].search([("name", "=", "Sage X3 France")])
        self.assertEqual(len(backend), 1, "the tour creates one backend")
        self.assertEqual(backend.kind, "sage_x3")
        self.assertEqual(backend.schedule_type, "daily")
        self.assertAlmostEqual(backend.daily_time, 3.5)
        self.assertTrue(backend.run_requested, "Run now asks the daemon for a run")

        self.issue.invalidate_recordset()
        self.assertEqual(self.issue.state, "action_pending")
        self.assertEqual(self.issue.requested_action, "link")
        self.assertEqual(self.issue.chosen_partner_id, self.suggested)
        self.assertEqual(self.issue.action_requested_by_id, self.sync_admin)

        # the daemon picks the decision up and reports the link as done
        actions = self.daemon_env["crm.sync.issue"].daemon_fetch_actions(
            self.backend.id
        )
        self.assertEqual(
            [(a["issue_id"], a["action"], a["partner_id"]) for a in actions],
            [(self.issue.id, "link", self.suggested.id)],
        )
        self.daemon_env["crm.sync.issue"].daemon_resolve_issues(
            [{"issue_id": self.issue.id, "state": "done"}]
        )
        self.assertEqual(self.issue.state, "done")
        self.assertTrue(self.issue.resolved_at)


@tagged("post_install", "-at_install", "crm_module", "crm_tours")
class TestTourPrivacyOfficer(BrowserRequiredMixin, AccountTestInvoicingHttpCommon):
    """Privacy officer: an access request, then an erasure with a retained invoice."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        company = cls.env.company
        company.country_id = cls.env.ref("base.be")
        # reading invoices is all the officer needs of accounting
        cls.officer = cls._tour_user(
            "tour_privacy_officer",
            "Pia Privacy",
            "crm_module.crm_module_group_privacy_officer,account.group_account_readonly",
            company,
        )
        cls.marie = cls.env["res.partner"].create(
            {
                "name": "Marie Exemple",
                "email": "marie.exemple@example.com",
                "phone": "+32 470 12 34 56",
                "street": "Rue de l'Exemple 1",
                "zip": "1000",
                "city": "Bruxelles",
                "country_id": cls.env.ref("base.be").id,
            }
        )
        cls.invoice = cls.init_invoice(
            "out_invoice",
            partner=cls.marie,
            invoice_date=fields.Date.context_today(cls.marie) - timedelta(days=30),
            amounts=[480.0],
            taxes=[],
            post=True,
        )
        cls.lead = cls.env["crm.lead"].create(
            {"name": "Marie's office move", "partner_id": cls.marie.id}
        )
        cls.env["crm.consent"]._crm_record_event(
            cls.marie, cls.env.ref("crm_module.crm_consent_purpose_newsletter"), "grant"
        )

    def test_privacy_officer_exports_then_erases(self):
        self.start_tour(
            "/odoo", "crm_module_privacy_requests", login="tour_privacy_officer"
        )
        # checked as superuser: the test's own user is the accounting one
        env = self.env(su=True)
        requests = env["crm.privacy.request"].search(
            [("create_uid", "=", self.officer.id)], order="id"
        )
        self.assertEqual(requests.mapped("request_type"), ["access", "erasure"])
        self.assertEqual(requests.mapped("state"), ["done", "done"])
        access, erasure = requests
        bundle = env["ir.attachment"].search(
            [("res_model", "=", access._name), ("res_id", "=", access.id)]
        )
        self.assertEqual(bundle.mimetype, "application/zip")
        self.assertTrue(erasure.erased_at)
        marie = self.marie.with_env(env)
        self.assertTrue(marie.crm_erased)
        self.assertNotEqual(marie.name, "Marie Exemple")
        self.assertFalse(marie.email)
        # the invoice is kept as issued, under legal hold
        invoice = self.invoice.with_env(env)
        self.assertEqual(invoice.state, "posted")
        self.assertTrue(invoice.crm_legal_hold_until)
        self.assertIn("Marie Exemple", invoice.crm_partner_snapshot)


@tagged("post_install", "-at_install", "crm_module", "crm_tours")
class TestTourConsentLinks(BrowserRequiredMixin, HttpCase):
    """Prospect (no login): double opt-in link, later the unsubscribe link."""

    def test_prospect_confirms_then_unsubscribes(self):
        newsletter = self.env.ref("crm_module.crm_consent_purpose_newsletter")
        consent = self.env["crm.consent"]._crm_request_opt_in(
            "prospect.tour@example.com", newsletter, name="Pat Prospect"
        )
        self.assertEqual(consent.state, "pending")
        # the link of the confirmation mail the prospect received
        mail = self.env["mail.mail"].search(
            [("recipient_ids", "in", consent.partner_id.ids)], order="id desc", limit=1
        )
        found = re.search(r"(/crm/consent/confirm/[\w-]+)", mail.body_html or "")
        self.assertTrue(found, "the sign-up mails a confirmation link")
        self.start_tour(
            f"/web/login?crm_link={quote(found.group(1))}", "crm_module_consent_confirm"
        )
        consent.invalidate_recordset()
        self.assertEqual(consent.state, "granted")

        url = consent.partner_id._crm_unsubscribe_url(newsletter)
        path = url[url.index("/crm/consent/") :]
        self.start_tour(
            f"/web/login?crm_link={quote(path)}", "crm_module_consent_unsubscribe"
        )
        consent.invalidate_recordset()
        self.assertEqual(consent.state, "withdrawn")
        self.assertEqual(consent.event_ids.sorted("id")[-1].source, "email_link")
