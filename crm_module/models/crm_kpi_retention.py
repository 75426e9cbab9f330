from odoo import fields, models

#: days after the first invoice within which a customer must buy again
RETENTION_DAYS = 90


class CrmKpiRetention(models.Model):
    """Monthly cohorts of new customers and their activity at day 90.

    A new customer is a commercial partner (per company) with a first posted
    customer invoice; its cohort is the month of that invoice's date. The
    customer is *active at day 90* when, dated after the first invoice's day and
    no later than 90 days after it, it has another posted customer invoice or
    an opportunity that was won (closing date). Invoices of the same day as the
    first one do not count. Cohorts younger than 90 days are not mature yet.
    """

    _name = "crm.kpi.retention"
    _inherit = "crm.kpi.mixin"
    _description = "CRM KPI: Customer Retention"
    _auto = False
    _order = "cohort_month desc"

    partner_id = fields.Many2one(
        comodel_name="res.partner", string="Customer", readonly=True
    )
    company_id = fields.Many2one(comodel_name="res.company", readonly=True)
    cohort_month = fields.Date(string="Cohort", readonly=True)
    first_invoice_date = fields.Date(readonly=True)
    is_mature = fields.Boolean(
        string="Day 90 Reached",
        readonly=True,
        help="90 days have passed since the first invoice.",
    )
    customer_count = fields.Integer(string="New Customers", readonly=True)
    retained_count = fields.Integer(string="Active at Day 90", readonly=True)
    retention_rate = fields.Float(
        string="Retention at Day 90 (%)",
        aggregator="avg",
        readonly=True,
        help="Share of the cohort's new customers that, after their first posted "
        "customer invoice and at most 90 days after it, had another posted "
        "customer invoice (a later day) or a won opportunity.",
    )

    def _kpi_query(self):
        return f"""
            WITH invoice AS (
                SELECT move.id, move.company_id,
                       move.commercial_partner_id AS partner_id, move.invoice_date
                  FROM account_move move
                 WHERE move.move_type = 'out_invoice' AND move.state = 'posted'
                   AND move.invoice_date IS NOT NULL
                   AND move.commercial_partner_id IS NOT NULL
            ), first_invoice AS (
                SELECT DISTINCT ON (company_id, partner_id)
                       id, company_id, partner_id, invoice_date
                  FROM invoice
                 ORDER BY company_id, partner_id, invoice_date, id
            ), won AS (
                SELECT contact.commercial_partner_id AS partner_id,
                       lead.date_closed::date AS won_date
                  FROM crm_lead lead
                  JOIN res_partner contact ON contact.id = lead.partner_id
                  JOIN crm_stage stage ON stage.id = lead.stage_id
                 WHERE lead.active AND stage.is_won AND lead.date_closed IS NOT NULL
            ), again AS (
                SELECT first.id
                  FROM first_invoice first
                  JOIN invoice later ON later.partner_id = first.partner_id
                                    AND later.company_id = first.company_id
                                    AND later.invoice_date > first.invoice_date
                                    AND later.invoice_date
                                        <= first.invoice_date + {RETENTION_DAYS}
                UNION
                SELECT first.id
                  FROM first_invoice first
                  JOIN won ON won.partner_id = first.partner_id
                          AND won.won_date > first.invoice_date
                          AND won.won_date <= first.invoice_date + {RETENTION_DAYS}
            )
            SELECT first.id, first.partner_id, first.company_id,
                   date_trunc('month', first.invoice_date)::date AS cohort_month,
                   first.invoice_date AS first_invoice_date,
                   first.invoice_date + {RETENTION_DAYS} <= CURRENT_DATE AS is_mature,
                   1 AS customer_count,
                   (again.id IS NOT NULL)::int AS retained_count,
                   CASE WHEN again.id IS NOT NULL THEN 100.0 ELSE 0.0 END
                       AS retention_rate
              FROM first_invoice first
              LEFT JOIN again ON again.id = first.id
        """
