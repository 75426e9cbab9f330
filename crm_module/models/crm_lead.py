from odoo import api, fields, models


class CrmLead(models.Model):
    _inherit = "crm.lead"

    customer_currency_id = fields.Many2one(
        comodel_name="res.currency",
        compute="_compute_customer_summary",
    )
    customer_receivable = fields.Monetary(
        currency_field="customer_currency_id",
        compute="_compute_customer_summary",
    )
    customer_overdue = fields.Monetary(
        currency_field="customer_currency_id",
        compute="_compute_customer_summary",
    )
    customer_last_invoice_date = fields.Date(
        string="Last Invoice Date",
        compute="_compute_customer_summary",
    )
    customer_avg_days_to_pay = fields.Float(
        string="Average Days to Pay",
        digits=(16, 1),
        compute="_compute_customer_summary",
    )
    customer_open_opportunity_count = fields.Integer(
        string="Customer Open Opportunities",
        compute="_compute_customer_summary",
    )
    customer_expected_revenue = fields.Monetary(
        string="Customer Open Revenue",
        currency_field="customer_currency_id",
        compute="_compute_customer_summary",
    )

    # Peppol readiness of the customer, so sales know before the deal is won
    customer_peppol_readiness = fields.Selection(
        related="partner_id.commercial_partner_id.crm_peppol_readiness",
        string="Customer Peppol Readiness",
    )
    customer_peppol_checked_at = fields.Datetime(
        related="partner_id.commercial_partner_id.crm_peppol_checked_at",
        string="Customer Peppol Checked On",
    )
    customer_peppol_participant_id = fields.Char(
        related="partner_id.commercial_partner_id.crm_peppol_participant_id",
        string="Customer Peppol Participant",
    )

    @api.depends("partner_id")
    @api.depends_context("company", "allowed_company_ids")
    def _compute_customer_summary(self):
        """Show the customer's finance and sales figures on the opportunity.

        The figures are read from the commercial partners of all leads at once.
        """
        partners = self.partner_id.commercial_partner_id
        finance = partners._crm_get_finance_summary()
        sales = partners._crm_get_sales_summary()
        currency = self.env.company.currency_id
        for lead in self:
            partner_id = lead.partner_id.commercial_partner_id.id
            values = finance.get(partner_id, {})
            count, revenue = sales.get(partner_id, (0, 0.0))
            lead.customer_currency_id = currency
            lead.customer_receivable = values.get("receivable", 0.0)
            lead.customer_overdue = values.get("overdue", 0.0)
            lead.customer_last_invoice_date = values.get("last_invoice_date", False)
            lead.customer_avg_days_to_pay = values.get("avg_days_to_pay", 0.0)
            lead.customer_open_opportunity_count = count
            lead.customer_expected_revenue = revenue
