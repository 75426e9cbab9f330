from datetime import timedelta

from odoo import fields
from odoo.tests import tagged

from odoo.addons.account.tests.common import AccountTestInvoicingCommon
from odoo.addons.mail.tests.common import mail_new_test_user


@tagged("post_install", "-at_install", "crm_module")
class TestCustomerSummary(AccountTestInvoicingCommon):
    """Finance figures shown to sales and sales figures shown to finance."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        company = cls.env.company
        cls.today = fields.Date.context_today(cls.env["res.partner"])
        cls.customer = cls.env["res.partner"].create(
            {"name": "Summary Customer", "is_company": True}
        )
        cls.contact = cls.env["res.partner"].create(
            {"name": "Summary Contact", "parent_id": cls.customer.id}
        )
        cls.other_customer = cls.env["res.partner"].create(
            {"name": "Other Customer", "is_company": True}
        )

        def invoice(partner, days_ago, amount, paid_days_ago=None):
            invoice_date = cls.today - timedelta(days=days_ago)
            move = cls.init_invoice(
                "out_invoice",
                partner=partner,
                invoice_date=invoice_date,
                amounts=[amount],
                taxes=[],
            )
            # due on the invoice date, whatever the default payment terms
            move.write({"invoice_payment_term_id": False})
            move.write({"invoice_date_due": invoice_date})
            move.action_post()
            if paid_days_ago is not None:
                cls.env["account.payment.register"].with_context(
                    active_model="account.move", active_ids=move.ids
                ).create(
                    {"payment_date": cls.today - timedelta(days=paid_days_ago)}
                )._create_payments()
            return move

        # open: 1000 overdue (due 40 days ago) + 300 due today
        invoice(cls.customer, 40, 1000.0)
        invoice(cls.customer, 0, 300.0)
        # paid in 10 and 30 days (the second one billed to the contact)
        invoice(cls.customer, 30, 500.0, paid_days_ago=20)
        invoice(cls.contact, 60, 200.0, paid_days_ago=30)
        # paid more than 12 months ago: not part of the average
        invoice(cls.customer, 400, 100.0, paid_days_ago=300)
        invoice(cls.other_customer, 10, 999.0)

        won_stage = cls.env["crm.stage"].search([("is_won", "=", True)], limit=1)
        Lead = cls.env["crm.lead"]
        cls.opportunity = Lead.create(
            {
                "name": "Big deal",
                "type": "opportunity",
                "partner_id": cls.customer.id,
                "expected_revenue": 5000.0,
                "company_id": company.id,
            }
        )
        cls.user_salesman = mail_new_test_user(
            cls.env,
            login="crm_summary_salesman",
            groups="sales_team.group_sale_salesman",
            company_id=company.id,
            company_ids=[(6, 0, company.ids)],
        )
        cls.opportunity.user_id = cls.user_salesman
        Lead.create(
            [
                {
                    "name": "Contact deal",
                    "type": "opportunity",
                    "partner_id": cls.contact.id,
                    "expected_revenue": 2500.0,
                    "company_id": company.id,
                },
                {
                    "name": "Won deal",
                    "type": "opportunity",
                    "partner_id": cls.customer.id,
                    "expected_revenue": 10000.0,
                    "stage_id": won_stage.id,
                    "company_id": company.id,
                },
                {
                    "name": "Lost deal",
                    "type": "opportunity",
                    "partner_id": cls.customer.id,
                    "expected_revenue": 700.0,
                    "active": False,
                    "company_id": company.id,
                },
                {
                    "name": "Just a lead",
                    "type": "lead",
                    "partner_id": cls.customer.id,
                    "expected_revenue": 800.0,
                    "company_id": company.id,
                },
            ]
        )
        cls.user_finance = mail_new_test_user(
            cls.env,
            login="crm_summary_finance",
            groups="account.group_account_invoice",
            company_id=company.id,
            company_ids=[(6, 0, company.ids)],
        )

    def test_finance_summary_visible_to_sales(self):
        customer = self.customer.with_user(self.user_salesman)
        self.assertAlmostEqual(customer.finance_receivable, 1300.0)
        self.assertAlmostEqual(customer.finance_overdue, 1000.0)
        self.assertEqual(customer.finance_last_invoice_date, self.today)
        self.assertAlmostEqual(customer.finance_avg_days_to_pay, 20.0)
        self.assertEqual(customer.summary_currency_id, self.env.company.currency_id)
        # a contact shows the figures of its company
        self.assertAlmostEqual(
            self.contact.with_user(self.user_salesman).finance_receivable, 1300.0
        )
        self.assertAlmostEqual(self.other_customer.finance_receivable, 999.0)
        self.assertFalse(self.other_customer.finance_avg_days_to_pay)

    def test_finance_summary_on_opportunity(self):
        opportunity = self.opportunity.with_user(self.user_salesman)
        self.assertAlmostEqual(opportunity.customer_receivable, 1300.0)
        self.assertAlmostEqual(opportunity.customer_overdue, 1000.0)
        self.assertEqual(opportunity.customer_last_invoice_date, self.today)
        self.assertAlmostEqual(opportunity.customer_avg_days_to_pay, 20.0)
        self.assertEqual(opportunity.customer_open_opportunity_count, 2)
        self.assertAlmostEqual(opportunity.customer_expected_revenue, 7500.0)

    def test_sales_summary_visible_to_finance(self):
        customer = self.customer.with_user(self.user_finance)
        self.assertEqual(customer.sales_open_opportunity_count, 2)
        self.assertAlmostEqual(customer.sales_expected_revenue, 7500.0)
        self.assertEqual(self.other_customer.sales_open_opportunity_count, 0)

    def test_summary_queries_do_not_grow_with_batch(self):
        """Figures are read with grouped queries, not one query per partner."""
        many = self.env["res.partner"].create(
            [{"name": f"Batch {index}", "is_company": True} for index in range(6)]
        )

        def count_queries(partners):
            partners = self.env["res.partner"].browse(partners.ids)
            self.env.invalidate_all()
            before = self.env.cr.sql_log_count
            partners.mapped("finance_receivable")
            partners.mapped("sales_open_opportunity_count")
            return self.env.cr.sql_log_count - before

        count_queries(self.customer | self.other_customer)  # warm the caches
        small = count_queries(self.customer | self.other_customer)
        large = count_queries(self.customer | self.other_customer | many)
        self.assertEqual(small, large)
