import base64
import csv
import io
import json
import zipfile
from datetime import date, datetime

from freezegun import freeze_time

from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import tagged
from odoo.tools import SQL

from odoo.addons.account.tests.common import AccountTestInvoicingCommon
from odoo.addons.mail.tests.common import mail_new_test_user

from ..tools.gdpr import subject_hash
from .common import load_case

#: tables and the text columns scanned for personal data after an erasure
SCANNED_TABLES = (
    "res_partner",
    "crm_lead",
    "mail_message",
    "mail_tracking_value",
    "ir_attachment",
)


class GdprRequestCommon(AccountTestInvoicingCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # data is prepared as superuser; the requests run as a privacy officer
        cls.env = cls.env(su=True, context=dict(cls.env.context, tracking_disable=True))
        cls.company = cls.env.company
        cls.company.country_id = cls.env.ref("base.be")
        cls.officer = mail_new_test_user(
            cls.env,
            login="gdpr_officer",
            groups="crm_module.crm_module_group_privacy_officer",
            company_id=cls.company.id,
            company_ids=[(6, 0, cls.company.ids)],
        )
        cls.salesman = mail_new_test_user(
            cls.env,
            login="gdpr_salesman",
            groups="sales_team.group_sale_salesman",
            company_id=cls.company.id,
            company_ids=[(6, 0, cls.company.ids)],
        )
        cls.daemon = mail_new_test_user(
            cls.env,
            login="gdpr_daemon",
            groups="crm_module.crm_module_group_sync_daemon",
            company_id=cls.company.id,
            company_ids=[(6, 0, cls.company.ids)],
        )
        cls.backend = cls.env["crm.sync.backend"].create(
            {"name": "Exact Belgium", "kind": "exact", "company_id": cls.company.id}
        )
        cls.newsletter = cls.env.ref("crm_module.crm_consent_purpose_newsletter")
        cls.Consent = cls.env["crm.consent"]

    @classmethod
    def make_invoice(cls, partner, invoice_date, amount=100.0):
        move = cls.init_invoice(
            "out_invoice",
            partner=partner,
            invoice_date=invoice_date,
            amounts=[amount],
            taxes=[],
        )
        move.action_post()
        return move

    def new_request(self, partner, request_type, **vals):
        request = (
            self.env["crm.privacy.request"]
            .with_user(self.officer)
            .create(
                {
                    "request_type": request_type,
                    "partner_id": partner.id,
                    "user_id": self.officer.id,
                    **vals,
                }
            )
        )
        request.action_verify_identity()
        return request

    def _scan(self, needles):
        """Return (table, column, needle) wherever a needle is stored: text columns
        of the scanned tables, and text attachments."""
        found = self._scan_tables(needles)
        attachments = self.env["ir.attachment"].search(
            [("mimetype", "=like", "text/%"), ("res_model", "!=", False)]
        )
        for attachment in attachments:
            text = (attachment.raw or b"").decode("utf-8", "replace").lower()
            for needle in needles:
                if needle.lower() in text:
                    found.append(("ir_attachment", f"raw of {attachment.id}", needle))
        return found

    def _scan_tables(self, needles):
        """Return (table, column, needle) wherever a needle is stored in a text
        column of the scanned tables."""
        self.env.flush_all()
        cr = self.env.cr
        found = []
        for table in SCANNED_TABLES:
            cr.execute(
                "SELECT column_name FROM information_schema.columns WHERE "
                "table_name = %s AND data_type IN ('text', 'character varying', "
                "'jsonb')",
                [table],
            )
            for (column,) in cr.fetchall():
                for needle in needles:
                    cr.execute(
                        SQL(
                            "SELECT count(*) FROM %s WHERE %s::text ILIKE %s",
                            SQL.identifier(table),
                            SQL.identifier(column),
                            f"%{needle}%",
                        )
                    )
                    if cr.fetchone()[0]:
                        found.append((table, column, needle))
        return found


@tagged("post_install", "-at_install", "crm_module", "crm_gdpr")
class TestErasure(GdprRequestCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.case = load_case("C033_erasure_with_retained_invoices.json")
        subject = cls.case["subject"]
        # the case pins the Belgian retention to 7 years
        cls.env.ref("crm_module.crm_legal_retention_be").years = cls.case[
            "retention_years_by_country"
        ]["BE"]
        cls.name = subject["name"]
        cls.email = subject["email"]
        cls.phone = subject["phone"]
        cls.marie = cls.env["res.partner"].create(
            {
                "name": cls.name,
                "email": cls.email,
                "phone": cls.phone,
                "website": "https://marie.example.com",
                "comment": "Prefers calls in the morning",
                "street": "Rue de l'Exemple 1",
                "zip": "1000",
                "city": "Bruxelles",
                "country_id": cls.env.ref("base.be").id,
            }
        )
        invoices = [r for r in cls.case["records"] if r["model"] == "account.move"]
        cls.invoice_old = cls.make_invoice(cls.marie, invoices[0]["invoice_date"])
        cls.invoice_new = cls.make_invoice(cls.marie, invoices[1]["invoice_date"])
        lead_name = next(
            r["name"] for r in cls.case["records"] if r["model"] == "crm.lead"
        )
        cls.lead = cls.env["crm.lead"].create(
            {"name": lead_name, "type": "opportunity", "partner_id": cls.marie.id}
        )
        cls.lead.message_post(
            body=f"Called {cls.name} on {cls.phone}, will mail {cls.email}",
            subject=f"Call with {cls.name}",
        )
        message = cls.invoice_new.message_post(body=f"Invoice sent to {cls.email}")
        cls.env["mail.tracking.value"].create(
            {
                "field_id": cls.env.ref("crm.field_crm_lead__contact_name").id,
                "old_value_char": cls.name,
                "new_value_char": "M. Exemple",
                "mail_message_id": message.id,
            }
        )
        cls.env["ir.attachment"].create(
            {
                "name": "call-notes.txt",
                "raw": f"{cls.name}\n{cls.phone}\n".encode(),
                "mimetype": "text/plain",
                "res_model": "crm.lead",
                "res_id": cls.lead.id,
            }
        )
        cls.env["ir.attachment"].create(
            {
                "name": f"id card of {cls.name}.txt",
                "raw": b"scan",
                "mimetype": "text/plain",
                "res_model": "res.partner",
                "res_id": cls.marie.id,
            }
        )
        cls.Consent._crm_record_event(
            cls.marie,
            cls.newsletter,
            "grant",
            source="web_form",
            action_at=datetime(2024, 5, 1),
            evidence={"ip_address": "198.51.100.23", "user_agent": "Firefox"},
        )
        cls.link = cls.env["crm.sync.link"].create(
            {
                "backend_id": cls.backend.id,
                "res_model": "res.partner",
                "res_id": cls.marie.id,
                "external_id": "exact-guid-102",
            }
        )

    def _invoice_state(self, move):
        move.invalidate_recordset()
        return {
            "name": move.name,
            "partner_id": move.partner_id.id,
            "invoice_partner_display_name": move.invoice_partner_display_name,
            "invoice_date": move.invoice_date,
            "amount_total": move.amount_total,
            "state": move.state,
            "lines": [
                (line.name, line.balance, line.partner_id.id) for line in move.line_ids
            ],
        }

    def test_c033_erasure_with_retained_invoices(self):
        needles = [self.name, self.email, self.phone]
        self.assertTrue(self._scan(needles), "the scan must see the data first")
        kept = self._invoice_state(self.invoice_new)
        request = self.new_request(
            self.marie,
            "erasure",
            requester_name=self.name,
            requester_email=self.email,
        )
        with freeze_time(self.case["today"]):
            request.action_process()

        self.assertEqual(request.state, "done")
        # the 2024 invoice is kept unchanged under legal hold until 2031-12-31
        self.assertEqual(self._invoice_state(self.invoice_new), kept)
        self.assertEqual(self.invoice_new.crm_legal_hold_until, date(2031, 12, 31))
        self.assertIn("2031-12-31", self.invoice_new.crm_legal_hold_note)
        snapshot = json.loads(self.invoice_new.crm_partner_snapshot)
        self.assertEqual(snapshot["name"], self.name)
        self.assertEqual(snapshot["city"], "Bruxelles")
        # the 2018 invoice is past its retention: no hold, nothing kept for it
        self.assertFalse(self.invoice_old.crm_legal_hold_until)
        self.assertFalse(self.invoice_old.crm_partner_snapshot)

        marie = self.marie.with_context(active_test=False)
        self.assertTrue(marie.crm_erased)
        self.assertEqual(marie.crm_legal_hold_until, date(2031, 12, 31))
        for fname in ("email", "phone", "mobile", "website", "comment"):
            self.assertFalse(marie[fname], fname)
        self.assertFalse(self.lead.email_from)
        self.assertNotIn("Website redesign", self.lead.name)

        consent = self.Consent.search([("partner_id", "=", marie.id)])
        self.assertEqual(consent.state, "withdrawn")
        self.assertFalse(consent.event_ids.filtered("ip_address"))
        self.assertEqual(self.env["crm.consent.event"]._crm_verify_ledger(), [])

        # proof without the e-mail in clear
        self.assertEqual(
            request.subject_hash, subject_hash(self.env, self.email.lower())
        )
        self.assertFalse(request.requester_email)
        scope = json.loads(request.erasure_scope)
        self.assertEqual(scope["legal_hold"][0]["until"], "2031-12-31")
        for needle in needles:
            self.assertNotIn(needle.lower(), request.erasure_scope.lower())

        # a task for the ledger per linked backend; the link stays for the daemon
        issue = self.env["crm.sync.issue"].search(
            [("kind", "=", "erasure"), ("partner_id", "=", marie.id)]
        )
        self.assertEqual(issue.backend_id, self.backend)
        self.assertTrue(self.link.exists())

        # the person appears nowhere any more
        self.assertEqual(self._scan(needles), [])

    def test_erasure_is_exposed_to_the_daemon(self):
        request = self.new_request(self.marie, "erasure")
        with freeze_time(self.case["today"]):
            request.action_process()
        changes = (
            self.env["crm.consent.event"]
            .with_user(self.daemon)
            .daemon_consent_changes(after_id=0)
        )
        erase = [change for change in changes if change["partner_id"] == self.marie.id]
        self.assertEqual(erase[-1]["kind"], "erase")
        self.assertTrue(erase[-1]["erased"])
        self.assertFalse(erase[-1]["email_key"])
        # the daemon finds the erased partner by the documented field
        partners = (
            self.env["res.partner"]
            .with_user(self.daemon)
            .with_context(active_test=False)
            .search([("crm_erased", "=", True)])
        )
        self.assertIn(self.marie, partners)
        with self.assertRaises(AccessError):
            self.env["crm.consent.event"].with_user(
                self.salesman
            ).daemon_consent_changes()

    def test_rejected_request_is_logged_and_kept(self):
        request = self.new_request(self.marie, "access", resolution_note="Not her")
        request.action_reject()
        self.assertEqual(request.state, "rejected")
        self.assertIn("Not her", request.message_ids[0].body)
        with self.assertRaises(UserError):
            request.unlink()
        self.assertFalse(self.marie.crm_erased)

    def test_erasure_needs_privacy_officer(self):
        with self.assertRaises(AccessError):
            self.env["crm.privacy.request"].with_user(self.salesman).create(
                {"request_type": "erasure", "partner_id": self.marie.id}
            )


@tagged("post_install", "-at_install", "crm_module", "crm_gdpr")
class TestAccessRequest(GdprRequestCommon):
    def test_access_bundle_contents(self):
        company = self.env["res.partner"].create(
            {"name": "Bundle Company", "is_company": True}
        )
        person = self.env["res.partner"].create(
            {
                "name": "Piet Bundel",
                "email": "piet.bundel@example.com",
                "phone": "+32 470 11 22 33",
                "parent_id": company.id,
            }
        )
        child = self.env["res.partner"].create(
            {"name": "Piet Bundel (home)", "parent_id": person.id, "type": "other"}
        )
        lead = self.env["crm.lead"].create(
            {"name": "Bundle deal", "type": "opportunity", "partner_id": person.id}
        )
        lead.message_post(body="Asked for a quote")
        lead.activity_schedule("mail.mail_activity_data_todo", summary="Call back")
        self.Consent._crm_record_event(
            person, self.newsletter, "grant", evidence={"ip_address": "192.0.2.1"}
        )
        invoice = self.make_invoice(person, "2025-06-01", amount=250.0)
        self.env["crm.sync.link"].create(
            {
                "backend_id": self.backend.id,
                "res_model": "res.partner",
                "res_id": person.id,
                "external_id": "exact-bundle",
            }
        )
        request = self.new_request(person, "access")
        request.action_process()
        attachment = self.env["ir.attachment"].search(
            [("res_model", "=", "crm.privacy.request"), ("res_id", "=", request.id)]
        )
        self.assertEqual(len(attachment), 1)
        archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(attachment.datas)))
        data = json.loads(archive.read("personal_data.json"))
        self.assertEqual(
            {row["name"] for row in data["partners"]}, {person.name, child.name}
        )
        self.assertEqual(data["opportunities"][0]["name"], "Bundle deal")
        self.assertIn(
            "Asked for a quote", " ".join(row["body"] for row in data["messages"])
        )
        self.assertEqual(data["activities"][0]["summary"], "Call back")
        self.assertEqual(data["consents"][0]["state"], "granted")
        self.assertEqual(data["consent_events"][0]["ip_address"], "192.0.2.1")
        self.assertEqual(data["invoices"][0]["name"], invoice.name)
        self.assertEqual(data["invoices"][0]["amount_total"], 250.0)
        self.assertEqual(data["sync_links"][0]["external_id"], "exact-bundle")
        rows = list(csv.DictReader(io.StringIO(archive.read("invoices.csv").decode())))
        self.assertEqual(rows[0]["name"], invoice.name)
        self.assertIn("partners.csv", archive.namelist())

    def test_request_deadline_extension_and_reminder(self):
        person = self.env["res.partner"].create({"name": "Deadline Person"})
        request = self.new_request(person, "access", received_date="2026-01-31")
        self.assertEqual(request.due_date, date(2026, 2, 28))
        with self.assertRaises(ValidationError):
            request.write({"extension_months": 2})
        request.write({"extension_months": 2, "extension_reason": "Many records"})
        self.assertEqual(request.due_date, date(2026, 4, 30))
        with freeze_time("2026-04-20"):
            self.env["crm.privacy.request"]._cron_deadline_reminders()
        self.assertFalse(request.activity_ids)
        with freeze_time("2026-04-24"):
            self.env["crm.privacy.request"]._cron_deadline_reminders()
        self.assertEqual(request.activity_ids.user_id, self.officer)
        self.assertEqual(request.activity_ids.date_deadline, date(2026, 4, 30))

    def test_restriction_and_objection_block_marketing(self):
        person = self.env["res.partner"].create(
            {"name": "Restricted Person", "email": "restricted@example.com"}
        )
        calls = self.env.ref("crm_module.crm_consent_purpose_commercial_calls")
        self.Consent._crm_record_event(person, self.newsletter, "grant")
        self.assertFalse(person._crm_block_reason(self.newsletter))
        self.assertFalse(person._crm_block_reason(calls))
        self.new_request(person, "restriction").action_process()
        self.assertTrue(person.crm_processing_restricted)
        self.assertIn("restricted", person._crm_block_reason(self.newsletter))
        other = self.env["res.partner"].create(
            {"name": "Objecting Person", "email": "objecting@example.com"}
        )
        self.new_request(other, "objection").action_process()
        self.assertTrue(other.crm_marketing_objection)
        self.assertTrue(other._crm_block_reason(calls))
        self.assertEqual(set(other.crm_consent_ids.mapped("state")), {"withdrawn"})
