import base64
from datetime import datetime, timedelta

from freezegun import freeze_time

from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged

from .common import load_case
from .common_gdpr import CrmGdprCommon


@tagged("post_install", "-at_install", "crm_module", "crm_gdpr")
class TestConsentLedger(CrmGdprCommon):
    def test_consent_stale_import_is_superseded(self):
        """A stale "subscribed" import cannot undo a later withdrawal."""
        self.grant(self.person, self.newsletter, datetime(2025, 1, 10))
        self.Consent._crm_withdraw(
            self.person, self.newsletter, action_at=datetime(2025, 3, 1)
        )
        stale = self.grant(self.person, self.newsletter, datetime(2025, 2, 1))
        consent = stale.consent_id
        self.assertTrue(stale.superseded)
        self.assertEqual(consent.state, "withdrawn")
        self.assertEqual(consent.state_since, datetime(2025, 3, 1))
        # a newer grant does apply
        newer = self.grant(self.person, self.newsletter, datetime(2025, 4, 1))
        self.assertFalse(newer.superseded)
        self.assertEqual(consent.state, "granted")

    def test_consent_withdrawal_propagates_to_same_subject(self):
        self.grant(self.person, self.newsletter)
        self.grant(self.person_contact, self.newsletter)
        self.grant(self.stranger, self.newsletter)
        self.Consent._crm_withdraw(self.person, self.newsletter, source="manual")
        states = {
            partner: self.Consent.search(
                [
                    ("partner_id", "=", partner.id),
                    ("purpose_id", "=", self.newsletter.id),
                ]
            ).state
            for partner in (self.person, self.person_contact, self.stranger)
        }
        self.assertEqual(states[self.person], "withdrawn")
        self.assertEqual(states[self.person_contact], "withdrawn")
        self.assertEqual(states[self.stranger], "granted")
        blacklist = self.env["mail.blacklist"].search([])
        self.assertIn("jan.proef@example.com", blacklist.mapped("email"))
        self.assertNotIn("someone.else@example.com", blacklist.mapped("email"))

    def test_consent_rows_cannot_be_edited_by_hand(self):
        event = self.grant(self.person, self.newsletter)
        with self.assertRaises(UserError):
            event.consent_id.write({"state": "withdrawn"})
        with self.assertRaises(UserError):
            self.Consent.create(
                {
                    "partner_id": self.stranger.id,
                    "purpose_id": self.newsletter.id,
                    "legal_basis": "consent",
                    "state": "granted",
                }
            )
        with self.assertRaises(UserError):
            event.write({"new_state": "withdrawn"})
        with self.assertRaises(UserError):
            event.unlink()

    def test_consent_salesman_sees_state_not_evidence(self):
        self.Consent._crm_record_event(
            self.person,
            self.newsletter,
            "grant",
            source="web_form",
            evidence={"ip_address": "198.51.100.7", "user_agent": "Firefox"},
        )
        consent = self.Consent.with_user(self.user_salesman).search(
            [("partner_id", "=", self.person.id)]
        )
        self.assertEqual(consent.state, "granted")
        self.assertEqual(consent.legal_basis, "consent")
        with self.assertRaises(AccessError):
            consent.evidence_summary  # noqa: B018
        with self.assertRaises(AccessError):
            self.Event.with_user(self.user_salesman).search([]).read(["kind"])
        officer_event = self.Event.with_user(self.user_privacy).search(
            [("partner_id", "=", self.person.id)]
        )
        self.assertEqual(officer_event.ip_address, "198.51.100.7")
        self.assertIn(
            "198.51.100.7", consent.with_user(self.user_privacy).evidence_summary
        )
        # a daemon reads the ledger but not the evidence
        daemon_event = self.Event.with_user(self.user_daemon).browse(officer_event.id)
        self.assertEqual(daemon_event.kind, "grant")
        with self.assertRaises(AccessError):
            daemon_event.ip_address  # noqa: B018

    def test_consent_back_office_withdrawal_needs_privacy_officer(self):
        self.grant(self.person, self.newsletter)
        with self.assertRaises(AccessError):
            self.person.with_user(self.user_salesman).action_crm_withdraw_marketing()
        self.person.with_user(self.user_privacy).action_crm_withdraw_marketing()
        marketing = self.env["crm.consent"]._crm_marketing_purposes()
        self.assertEqual(self.person.crm_consent_ids.purpose_id, marketing)
        self.assertEqual(
            set(self.person.crm_consent_ids.mapped("state")), {"withdrawn"}
        )

    def test_consent_views_load_per_role(self):
        for user in (self.user_salesman, self.user_privacy, self.user_plain):
            views = self.env["res.partner"].with_user(user).get_views([(False, "form")])
            arch = views["views"]["form"]["arch"]
            self.assertEqual(
                "crm_consent_ids" in arch, user != self.user_plain, user.login
            )
            self.assertEqual(
                "action_crm_withdraw_marketing" in arch,
                user == self.user_privacy,
                user.login,
            )
        for model in ("crm.consent", "crm.consent.event", "crm.privacy.request"):
            self.env[model].with_user(self.user_privacy).get_views(
                [(False, "list"), (False, "form"), (False, "search")]
            )

    def test_consent_recorded_from_back_office_with_document(self):
        Wizard = self.env["crm.consent.record.wizard"]
        vals = {
            "partner_id": self.person.id,
            "purpose_id": self.calls.id,
            "kind": "grant",
            "legal_basis": "consent",
            "action_at": "2025-03-01 10:00:00",
            "text_version": "paper-form-v2",
            "evidence_note": "Signed at the fair",
            "document": base64.b64encode(b"signed form"),
            "document_name": "form.pdf",
        }
        with self.assertRaises(AccessError):
            Wizard.with_user(self.user_salesman).create(vals).action_record()
        Wizard.with_user(self.user_privacy).create(vals).action_record()
        event = self.Event.search([("partner_id", "=", self.person.id)])
        self.assertEqual(event.source, "manual")
        self.assertEqual(event.recorded_by_id, self.user_privacy)
        self.assertEqual(event.attachment_id.raw, b"signed form")
        self.assertEqual(event.consent_id.state, "granted")
        self.assertEqual(self.Event._crm_verify_ledger(), [])

    def test_consent_lift_restriction(self):
        self.person.sudo().crm_processing_restricted = True
        with self.assertRaises(AccessError):
            self.person.with_user(self.user_salesman).action_crm_lift_restriction()
        self.person.with_user(self.user_privacy).action_crm_lift_restriction()
        self.assertFalse(self.person.crm_processing_restricted)

    def test_consent_rules_hide_other_companies(self):
        purpose = self.env["crm.consent.purpose"].create(
            {"name": "NL events", "code": "nl_events", "company_id": self.company_2.id}
        )
        self.grant(self.person, purpose)
        self.grant(self.person, self.newsletter)
        consents = self.Consent.with_user(self.user_privacy).search(
            [("partner_id", "=", self.person.id)]
        )
        self.assertEqual(consents.purpose_id, self.newsletter)
        events = self.Event.with_user(self.user_privacy).search(
            [("partner_id", "=", self.person.id)]
        )
        self.assertEqual(events.purpose_id, self.newsletter)


@tagged("post_install", "-at_install", "crm_module", "crm_gdpr")
class TestConsentHashChain(CrmGdprCommon):
    def test_ledger_chain_verifies_and_detects_tampering(self):
        self.grant(self.person, self.newsletter)
        event = self.Consent._crm_withdraw(self.person, self.newsletter)[0]
        self.grant(self.stranger, self.calls)
        self.assertEqual(self.Event._crm_verify_ledger(), [])
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE crm_consent_event SET new_state = 'granted' WHERE id = %s",
            [event.id],
        )
        self.env.invalidate_all()
        problems = self.Event._crm_verify_ledger()
        self.assertEqual(len(problems), 1)
        self.assertIn(f"event {event.sequence}", problems[0])
        self.assertIn("changed", problems[0])
        action = self.Event.with_user(self.user_privacy).action_verify_ledger()
        self.assertEqual(action["params"]["type"], "danger")

    def test_ledger_chain_detects_deleted_row_and_changed_evidence(self):
        first = self.grant(self.person, self.newsletter)
        second = self.Consent._crm_record_event(
            self.person,
            self.calls,
            "grant",
            evidence={"ip_address": "203.0.113.5"},
        )
        third = self.grant(self.stranger, self.calls)
        self.env.flush_all()
        self.env.cr.execute(
            "UPDATE crm_consent_event SET ip_address = '203.0.113.99' WHERE id = %s",
            [second.id],
        )
        self.env.cr.execute("DELETE FROM crm_consent_event WHERE id = %s", [first.id])
        self.env.invalidate_all()
        problems = "\n".join(self.Event._crm_verify_ledger())
        self.assertIn(f"event {second.sequence}: its evidence was changed", problems)
        self.assertIn(f"event {second.sequence}: a row before it is missing", problems)
        self.assertNotIn(f"event {third.sequence}", problems)

    def test_ledger_chain_still_verifies_after_evidence_erasure(self):
        event = self.Consent._crm_record_event(
            self.person,
            self.newsletter,
            "grant",
            evidence={"ip_address": "203.0.113.5", "user_agent": "Safari"},
        )
        erase = self.Consent._crm_record_event(self.person, self.newsletter, "erase")
        (event | erase)._crm_erase_personal_values()
        self.assertFalse(event.ip_address)
        self.assertTrue(event.erased_at)
        self.assertEqual(self.Event._crm_verify_ledger(), [])
        # an erasure marker without a recorded erasure is reported
        lone = self.grant(self.stranger, self.newsletter)
        lone._crm_erase_personal_values()
        problems = self.Event._crm_verify_ledger()
        self.assertEqual(len(problems), 1)
        self.assertIn("without a later erasure", problems[0])


@tagged("post_install", "-at_install", "crm_module", "crm_gdpr")
class TestDoubleOptIn(CrmGdprCommon):
    def _mails_with(self, token):
        return self.env["mail.mail"].search([("body_html", "ilike", token)])

    def _token_of(self, consent):
        consent = consent.sudo()
        return self.Consent._crm_confirm_token(consent, consent.confirmation_nonce)

    def test_c035_double_opt_in_timeline(self):
        case = load_case("C035_double_opt_in_timeline.json")
        steps = case["steps"]

        def at(index):
            return datetime.fromisoformat(steps[index]["t"].replace("Z", ""))

        email = steps[0]["email"]
        evidence = {"ip_address": "192.0.2.10", "user_agent": "Mozilla/5.0 test"}
        with freeze_time(at(0)):
            consent = self.Consent._crm_request_opt_in(email, self.newsletter)
            token_1 = self._token_of(consent)
        partner = consent.partner_id
        self.assertEqual(consent.state, "pending")
        self.assertEqual(len(self._mails_with(token_1)), 1)
        self.assertTrue(partner._crm_block_reason(self.newsletter))

        with freeze_time(at(2)):
            again = self.Consent._crm_request_opt_in(email, self.newsletter)
            token_2 = self._token_of(again)
        self.assertEqual(again, consent)
        self.assertEqual(consent.state, "pending")
        self.assertNotEqual(token_1, token_2)
        self.assertEqual(len(self._mails_with(token_2)), 1)

        with freeze_time(at(4)):
            result, _consent = self.Consent._crm_confirm(token_1, evidence=evidence)
        self.assertEqual(result, "invalid")
        self.assertEqual(consent.state, "pending")

        with freeze_time(at(5)):
            result, _consent = self.Consent._crm_confirm(token_2, evidence=evidence)
        self.assertEqual(result, "confirmed")
        self.assertEqual(consent.state, "granted")
        self.assertEqual(consent.confirmed_at, at(5))
        confirm = consent.event_ids.filtered(lambda event: event.kind == "confirm")
        self.assertEqual(confirm.ip_address, "192.0.2.10")
        self.assertEqual(confirm.user_agent, "Mozilla/5.0 test")
        self.assertFalse(partner._crm_block_reason(self.newsletter))

        events_before = len(consent.event_ids)
        with freeze_time(at(6)):
            result, _consent = self.Consent._crm_confirm(token_2, evidence=evidence)
        self.assertEqual(result, "already_confirmed")
        self.assertEqual(consent.confirmed_at, at(5))
        self.assertEqual(len(consent.event_ids), events_before)
        self.assertEqual(
            self.Consent.search_count([("partner_id", "=", partner.id)]), 1
        )

        # a new address never confirmed: expires after 30 days and is purged
        lost = "never.confirmed@example.com"
        with freeze_time(at(7)):
            pending = self.Consent._crm_request_opt_in(lost, self.newsletter)
        lost_partner = pending.partner_id
        with freeze_time(at(7) + timedelta(days=29)):
            self.Consent._cron_expire_pending()
        self.assertEqual(pending.state, "pending")
        with freeze_time(at(7) + timedelta(days=30, minutes=1)):
            self.Consent._cron_expire_pending()
        self.assertEqual(pending.state, "expired")
        self.assertTrue(lost_partner.crm_erased)
        self.env.flush_all()
        self.env.cr.execute(
            "SELECT count(*) FROM res_partner WHERE email ILIKE %s OR name ILIKE %s",
            [lost, lost],
        )
        self.assertEqual(self.env.cr.fetchone()[0], 0)
        # never mailed: its unsent confirmation went with the rest of its data
        self.assertFalse(
            self.env["mail.mail"].search([("recipient_ids", "in", lost_partner.ids)])
        )
        self.assertEqual(self.Event._crm_verify_ledger(), [])

    def test_double_opt_in_link_expires(self):
        with freeze_time("2025-01-01 10:00:00"):
            consent = self.Consent._crm_request_opt_in(
                "late.clicker@example.com", self.newsletter
            )
            token = self._token_of(consent)
        with freeze_time("2025-02-05 10:00:00"):
            result, _consent = self.Consent._crm_confirm(token)
        self.assertEqual(result, "expired")
        self.assertEqual(consent.state, "pending")
