from odoo.tests import tagged

from odoo.addons.mail.tests.common import MockEmail

from .common_gdpr import CrmGdprCommon


@tagged("post_install", "-at_install", "crm_module", "crm_gdpr")
class TestMarketingSendBlocking(CrmGdprCommon, MockEmail):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.grant(cls, cls.person, cls.newsletter)
        cls.template = cls.env["mail.template"].create(
            {
                "name": "Spring offers",
                "model_id": cls.env.ref("base.model_res_partner").id,
                "subject": "Our spring offers",
                "body_html": "<p>Offers for you</p>",
                "partner_to": "{{ object.id }}",
                "crm_is_marketing": True,
                "crm_consent_purpose_id": cls.newsletter.id,
            }
        )
        cls.transactional = cls.template.copy(
            {"name": "Invoice reminder", "crm_is_marketing": False}
        )

    def _sent_to(self):
        return sorted(email for mail in self._mails for email in mail["email_to"])

    def _mail(self, partners, purpose):
        return self.env["mail.mail"].create(
            {
                "subject": "News",
                "body_html": "<p>News</p>",
                "recipient_ids": [(6, 0, partners.ids)],
                "crm_consent_purpose_id": purpose.id if purpose else False,
            }
        )

    def test_marketing_mail_skips_recipients_without_basis(self):
        mail = self._mail(self.person | self.stranger, self.newsletter)
        with self.mock_mail_gateway():
            mail.send()
        sent = self._sent_to()
        self.assertEqual(len(sent), 1)
        self.assertIn("jan.proef@example.com", sent[0].lower())
        block = self.env["crm.consent.block"].search(
            [("partner_id", "=", self.stranger.id)]
        )
        self.assertEqual(block.purpose_id, self.newsletter)
        self.assertIn("no consent", block.reason)
        # a single-recipient marketing mail carries the withdrawal link
        self.assertIn("/crm/consent/unsubscribe/", self._mails[0]["body"])

    def test_marketing_mail_without_any_basis_is_cancelled(self):
        self.Consent._crm_withdraw(self.person, self.newsletter)
        mail = self._mail(self.person, self.newsletter)
        with self.mock_mail_gateway():
            mail.send()
        self.assertEqual(self._mails, [])
        self.assertEqual(mail.state, "cancel")
        self.assertIn("legal basis", mail.failure_reason)
        block = self.env["crm.consent.block"].search(
            [("partner_id", "=", self.person.id)]
        )
        self.assertEqual(block.reason, "consent withdrawn")

    def test_transactional_mail_is_not_affected(self):
        mail = self._mail(self.stranger, None)
        with self.mock_mail_gateway():
            mail.send()
        self.assertEqual(len(self._mails), 1)
        self.assertFalse(self.env["crm.consent.block"].search([]))

    def test_marketing_template_is_checked_at_send_time(self):
        with self.mock_mail_gateway():
            self.template.send_mail(self.stranger.id, force_send=True)
            self.template.send_mail(self.person.id, force_send=True)
            self.transactional.send_mail(self.stranger.id, force_send=True)
        sent = self._sent_to()
        self.assertEqual(len(sent), 2)
        self.assertEqual(
            self.env["crm.consent.block"].search([]).partner_id, self.stranger
        )

    def test_restricted_partner_gets_no_marketing(self):
        self.person.sudo().crm_processing_restricted = True
        mail = self._mail(self.person, self.newsletter)
        with self.mock_mail_gateway():
            mail.send()
        self.assertEqual(self._mails, [])
        self.assertEqual(mail.state, "cancel")
