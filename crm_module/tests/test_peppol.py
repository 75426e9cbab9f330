from datetime import datetime

from odoo.exceptions import AccessError, ValidationError
from odoo.tests import Form, tagged

from odoo.addons.account.tests.common import AccountTestInvoicingCommon
from odoo.addons.mail.tests.common import mail_new_test_user


@tagged("post_install", "-at_install", "crm_module")
class TestPeppolStatus(AccountTestInvoicingCommon):
    """Peppol readiness on partners and opportunities, Peppol state on invoices."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env = cls.env(context=dict(cls.env.context, tracking_disable=True))
        cls.company = cls.env.company
        cls.other_company = cls.setup_other_company(name="Peppol Other Co")["company"]

        def user(login, groups):
            return mail_new_test_user(
                cls.env,
                login=login,
                groups=groups,
                company_id=cls.company.id,
                company_ids=[(6, 0, (cls.company | cls.other_company).ids)],
            )

        cls.user_daemon = user(
            "crm_peppol_daemon", "crm_module.crm_module_group_sync_daemon"
        )
        cls.user_salesman = user(
            "crm_peppol_salesman", "sales_team.group_sale_salesman"
        )
        cls.user_finance = user("crm_peppol_finance", "account.group_account_invoice")
        cls.customer = cls.env["res.partner"].create(
            {
                "name": "Atelier Imaginaire SRL",
                "is_company": True,
                "vat": "BE0765881217",
                "country_id": cls.env.ref("base.be").id,
            }
        )
        cls.contact = cls.env["res.partner"].create(
            {"name": "Claire Exemple", "parent_id": cls.customer.id}
        )
        cls.foreign = cls.env["res.partner"].create(
            {
                "name": "Other Company Customer",
                "is_company": True,
                "company_id": cls.other_company.id,
            }
        )
        cls.invoice = cls.init_invoice(
            "out_invoice", partner=cls.customer, amounts=[100.0], post=True
        )
        cls.bill = cls.init_invoice(
            "in_invoice", partner=cls.customer, amounts=[50.0], post=True
        )
        cls.foreign_invoice = cls.init_invoice(
            "out_invoice",
            partner=cls.foreign,
            amounts=[10.0],
            post=True,
            company=cls.other_company,
        )
        cls.opportunity = cls.env["crm.lead"].create(
            {
                "name": "Peppol deal",
                "type": "opportunity",
                "partner_id": cls.contact.id,
                "user_id": cls.user_salesman.id,
                "company_id": cls.company.id,
            }
        )

    def _daemon(self, model, companies=None):
        companies = companies or self.company
        return (
            self.env[model]
            .with_user(self.user_daemon)
            .with_context(allowed_company_ids=companies.ids)
        )

    # readiness --------------------------------------------------------------

    def test_readiness_defaults_to_unknown(self):
        self.assertEqual(self.customer.crm_peppol_readiness, "unknown")
        self.assertFalse(self.customer.crm_peppol_checked_at)

    def test_daemon_sets_readiness_and_sales_see_it_on_the_opportunity(self):
        Partner = self._daemon("res.partner")
        self.assertTrue(
            Partner.daemon_set_peppol_readiness(
                [
                    {
                        "partner_id": self.customer.id,
                        "readiness": "can_receive",
                        "participant_id": "0208:0765881217",
                        "checked_at": "2026-12-03 01:30:00",
                    }
                ]
            )
        )
        self.assertEqual(self.customer.crm_peppol_readiness, "can_receive")
        self.assertEqual(self.customer.crm_peppol_participant_id, "0208:0765881217")
        self.assertEqual(
            self.customer.crm_peppol_checked_at, datetime(2026, 12, 3, 1, 30)
        )
        lead = self.opportunity.with_user(self.user_salesman)
        self.assertEqual(lead.customer_peppol_readiness, "can_receive")
        self.assertEqual(lead.customer_peppol_participant_id, "0208:0765881217")
        self.assertEqual(lead.customer_peppol_checked_at, datetime(2026, 12, 3, 1, 30))
        # a later check that found nothing clears the participant
        Partner.daemon_set_peppol_readiness(
            [{"partner_id": self.customer.id, "readiness": "cannot"}]
        )
        self.assertEqual(lead.customer_peppol_readiness, "cannot")
        self.assertFalse(lead.customer_peppol_participant_id)
        self.assertTrue(self.customer.crm_peppol_checked_at)

    def test_readiness_bad_rows_are_named(self):
        Partner = self._daemon("res.partner")
        good = {"partner_id": self.customer.id, "readiness": "cannot"}
        cases = [
            (
                {"partner_id": self.customer.id, "readiness": "maybe"},
                r"readiness\[1\]: field readiness must be one of",
            ),
            ({"readiness": "cannot"}, r"readiness\[1\]: missing value for partner_id"),
            (
                {"partner_id": "abc", "readiness": "cannot"},
                r"readiness\[1\]: field partner_id must be an integer",
            ),
            (
                {
                    "partner_id": self.customer.id,
                    "readiness": "cannot",
                    "checked_at": "yesterday",
                },
                r"readiness\[1\]: field checked_at must be a UTC date",
            ),
            (
                {"partner_id": self.contact.id, "readiness": "cannot"},
                r"readiness\[1\]: res.partner \d+ \(field partner_id\) is a contact",
            ),
            (
                {"partner_id": 999999999, "readiness": "cannot"},
                r"readiness\[1\]: res.partner 999999999 .*does not exist",
            ),
            # a partner of another company than the call's
            (
                {"partner_id": self.foreign.id, "readiness": "cannot"},
                rf"readiness\[1\]: res.partner {self.foreign.id} .*not visible",
            ),
        ]
        for bad, message in cases:
            with (
                self.subTest(bad=bad),
                self.assertRaisesRegex(ValidationError, message),
            ):
                Partner.daemon_set_peppol_readiness([good, bad])
        # nothing was written for the good row either
        self.assertEqual(self.customer.crm_peppol_readiness, "unknown")
        # the same row is fine when the call is made for the other company
        self._daemon("res.partner", self.other_company).daemon_set_peppol_readiness(
            [{"partner_id": self.foreign.id, "readiness": "cannot"}]
        )
        self.assertEqual(self.foreign.crm_peppol_readiness, "cannot")

    def test_readiness_api_is_reserved_to_the_daemon(self):
        for user in (self.user_salesman, self.user_finance):
            with self.subTest(user=user.login), self.assertRaises(AccessError):
                self.env["res.partner"].with_user(user).daemon_set_peppol_readiness(
                    [{"partner_id": self.customer.id, "readiness": "can_receive"}]
                )
            with self.subTest(user=user.login), self.assertRaises(AccessError):
                self.env["account.move"].with_user(user).daemon_set_peppol_status(
                    [{"move_id": self.invoice.id, "state": "sent"}]
                )

    # invoice state ----------------------------------------------------------

    def test_daemon_sets_invoice_state_to_fix_with_rules(self):
        Move = self._daemon("account.move")
        Move.daemon_set_peppol_status(
            [
                {
                    "move_id": self.invoice.id,
                    "state": "to_fix",
                    "message": "2 fatal Peppol rule(s) failed: BR-O-11, BR-CO-10",
                    "rules": ["BR-O-11", "BR-CO-10", "BR-O-11"],
                    "at": "2026-12-03 01:31:00",
                }
            ]
        )
        invoice = self.invoice.with_user(self.user_finance)
        self.assertEqual(invoice.crm_peppol_state, "to_fix")
        self.assertEqual(invoice.crm_peppol_rules, "BR-O-11, BR-CO-10")
        self.assertIn("BR-O-11", invoice.crm_peppol_message)
        self.assertEqual(invoice.crm_peppol_status_at, datetime(2026, 12, 3, 1, 31))
        # once the invoice is reset to draft to be corrected, the refusal is gone
        self.invoice.button_draft()
        self.assertFalse(self.invoice.crm_peppol_state)

    def test_daemon_sets_sent_then_delivered(self):
        Move = self._daemon("account.move")
        Move.daemon_set_peppol_status([{"move_id": self.invoice.id, "state": "sent"}])
        self.assertEqual(self.invoice.crm_peppol_state, "sent")
        self.assertFalse(self.invoice.crm_peppol_rules)
        Move.daemon_set_peppol_status(
            [{"move_id": self.invoice.id, "state": "delivered", "message": "AS4 ok"}]
        )
        self.assertEqual(self.invoice.crm_peppol_state, "delivered")
        self.assertEqual(self.invoice.crm_peppol_message, "AS4 ok")
        # sending over Peppol does not touch the accounting
        self.assertEqual(self.invoice.state, "posted")

    def test_invoice_state_bad_rows_are_named(self):
        Move = self._daemon("account.move")
        good = {"move_id": self.invoice.id, "state": "sent"}
        cases = [
            (
                {"move_id": self.invoice.id, "state": "lost"},
                r"moves\[1\]: field state must be one of",
            ),
            ({"state": "sent"}, r"moves\[1\]: missing value for move_id"),
            (
                {"move_id": self.invoice.id, "state": "to_fix", "rules": [1, 2]},
                r"moves\[1\]: field rules must be a list",
            ),
            (
                {"move_id": self.bill.id, "state": "sent"},
                rf"moves\[1\]: account.move {self.bill.id} .*not a customer invoice",
            ),
            (
                {"move_id": self.foreign_invoice.id, "state": "sent"},
                rf"moves\[1\]: account.move {self.foreign_invoice.id} .*not visible",
            ),
        ]
        for bad, message in cases:
            with (
                self.subTest(bad=bad),
                self.assertRaisesRegex(ValidationError, message),
            ):
                Move.daemon_set_peppol_status([good, bad])
        self.assertFalse(self.invoice.crm_peppol_state)

    # views ------------------------------------------------------------------

    def test_views_show_the_peppol_fields(self):
        partner_arch = self.env["res.partner"].get_view(view_type="form")["arch"]
        self.assertIn('name="crm_peppol_readiness"', partner_arch)
        search_arch = self.env["res.partner"].get_view(view_type="search")["arch"]
        self.assertIn('name="crm_peppol_can_receive"', search_arch)
        lead_form = Form(self.opportunity.with_user(self.user_salesman))
        self.assertEqual(lead_form.customer_peppol_readiness, "unknown")
        move_arch = (
            self.env["account.move"]
            .with_user(self.user_finance)
            .get_view(view_type="form")["arch"]
        )
        self.assertIn('name="crm_peppol_state"', move_arch)
        self.assertIn('name="crm_peppol_rules"', move_arch)
