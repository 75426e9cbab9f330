from odoo.tests import tagged

from .common_gdpr import CrmGdprCommon


@tagged("post_install", "-at_install", "crm_module", "crm_gdpr")
class TestRetention(CrmGdprCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        Partner = cls.env["res.partner"]
        cls.old_prospect = Partner.create(
            {"name": "Old Prospect", "email": "old.prospect@example.com"}
        )
        cls.new_prospect = Partner.create(
            {"name": "New Prospect", "email": "new.prospect@example.com"}
        )
        cls.old_lead = cls.env["crm.lead"].create(
            {"name": "Old lead", "contact_name": "Old Contact", "type": "lead"}
        )
        cls.new_lead = cls.env["crm.lead"].create({"name": "New lead", "type": "lead"})
        cls.make_dormant(cls.old_prospect, cls.old_lead)

    def test_retention_dry_run_then_anonymise(self):
        wizard = (
            self.env["crm.retention.wizard"]
            .with_user(self.user_privacy)
            .create({"mode": "anonymise"})
        )
        self.assertIn(self.old_lead, wizard.lead_ids)
        self.assertNotIn(self.new_lead, wizard.lead_ids)
        self.assertIn(self.old_prospect, wizard.partner_ids)
        self.assertNotIn(self.new_prospect, wizard.partner_ids)
        self.assertNotIn(self.customer, wizard.partner_ids)
        # the dry run changed nothing
        self.assertEqual(self.old_prospect.name, "Old Prospect")
        self.assertEqual(self.old_lead.contact_name, "Old Contact")
        wizard.action_apply()
        self.assertTrue(self.old_prospect.crm_erased)
        self.assertFalse(self.old_prospect.email)
        self.assertFalse(self.old_lead.contact_name)
        self.assertEqual(self.new_prospect.name, "New Prospect")

    def test_retention_archive_mode_and_consent_keeps_prospect(self):
        self.grant(self.old_prospect, self.newsletter)
        self.env.flush_all()
        wizard = self.env["crm.retention.wizard"].create({"mode": "archive"})
        self.assertNotIn(self.old_prospect, wizard.partner_ids)
        wizard.action_apply()
        self.assertFalse(self.old_lead.active)
        self.assertEqual(self.old_lead.contact_name, "Old Contact")
        self.assertTrue(self.old_prospect.active)
