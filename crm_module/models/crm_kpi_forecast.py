from odoo import fields, models

#: months of stage history behind the historical win rate of each stage
HISTORY_MONTHS = 12


class CrmKpiForecast(models.Model):
    """Open pipeline weighted two ways, next to won and invoiced amounts.

    *Historical weighted* multiplies the expected revenue of an open
    opportunity by its stage's win rate: among the opportunities that first
    entered the stage in the last 12 months and are closed since, the share
    that was won. *Odoo weighted* uses the opportunity's own probability. Won rows are
    won opportunities by closing date; invoiced rows are posted customer
    invoices and credit notes (untaxed, company currency) of customers with a
    won opportunity, by invoice date.
    """

    _name = "crm.kpi.forecast"
    _inherit = "crm.kpi.mixin"
    _description = "CRM KPI: Forecast"
    _auto = False
    _order = "date"

    kind = fields.Selection(
        selection=[
            ("pipeline", "Open Pipeline"),
            ("won", "Won"),
            ("invoiced", "Invoiced"),
        ],
        readonly=True,
    )
    date = fields.Date(
        readonly=True,
        help="Expected closing date for the open pipeline, closing date for won "
        "opportunities, invoice date for invoices.",
    )
    lead_id = fields.Many2one(
        comodel_name="crm.lead", string="Opportunity", readonly=True
    )
    move_id = fields.Many2one(
        comodel_name="account.move", string="Invoice", readonly=True
    )
    partner_id = fields.Many2one(
        comodel_name="res.partner", string="Customer", readonly=True
    )
    stage_id = fields.Many2one(comodel_name="crm.stage", readonly=True)
    team_id = fields.Many2one(comodel_name="crm.team", readonly=True)
    user_id = fields.Many2one(comodel_name="res.users", readonly=True)
    company_id = fields.Many2one(comodel_name="res.company", readonly=True)
    stage_win_rate = fields.Float(
        string="Stage Win Rate (%)", aggregator="avg", readonly=True
    )
    expected_revenue = fields.Float(string="Open Pipeline", readonly=True)
    prorated_revenue = fields.Float(string="Odoo Weighted", readonly=True)
    historical_revenue = fields.Float(string="Historical Weighted", readonly=True)
    won_revenue = fields.Float(string="Won", readonly=True)
    invoiced_amount = fields.Float(string="Invoiced", readonly=True)

    def _kpi_query(self):
        return f"""
            WITH rates AS (
                SELECT h.stage_id,
                       count(*) FILTER (WHERE lead.active AND won.is_won)::float
                       / NULLIF(count(*) FILTER (
                           WHERE (lead.active AND won.is_won)
                              OR (NOT lead.active AND lead.probability = 0)
                       ), 0) AS win_rate
                  FROM crm_lead_stage_history h
                  JOIN crm_lead lead ON lead.id = h.lead_id
                  LEFT JOIN crm_stage won ON won.id = lead.stage_id
                 WHERE h.is_first_entry
                   AND h.date >= (now() AT TIME ZONE 'UTC')
                                 - interval '{HISTORY_MONTHS} months'
                   AND lead.type = 'opportunity'
                 GROUP BY h.stage_id
            ), won_customers AS (
                SELECT DISTINCT contact.commercial_partner_id AS partner_id
                  FROM crm_lead lead
                  JOIN crm_stage stage ON stage.id = lead.stage_id
                  JOIN res_partner contact ON contact.id = lead.partner_id
                 WHERE lead.active AND stage.is_won AND lead.type = 'opportunity'
            )
            SELECT lead.id * 3 AS id, 'pipeline' AS kind,
                   lead.date_deadline AS date, lead.id AS lead_id,
                   NULL::int AS move_id, lead.partner_id, lead.stage_id,
                   lead.team_id, lead.user_id, lead.company_id,
                   COALESCE(rates.win_rate, 0) * 100 AS stage_win_rate,
                   lead.expected_revenue,
                   lead.expected_revenue * lead.probability / 100 AS prorated_revenue,
                   lead.expected_revenue * COALESCE(rates.win_rate, 0)
                       AS historical_revenue,
                   0.0 AS won_revenue, 0.0 AS invoiced_amount
              FROM crm_lead lead
              JOIN crm_stage stage ON stage.id = lead.stage_id
              LEFT JOIN rates ON rates.stage_id = lead.stage_id
             WHERE lead.active AND lead.type = 'opportunity'
               AND NOT COALESCE(stage.is_won, FALSE)
            UNION ALL
            SELECT lead.id * 3 + 1, 'won', lead.date_closed::date, lead.id,
                   NULL, lead.partner_id, lead.stage_id, lead.team_id,
                   lead.user_id, lead.company_id, 100.0, 0.0, 0.0, 0.0,
                   lead.expected_revenue, 0.0
              FROM crm_lead lead
              JOIN crm_stage stage ON stage.id = lead.stage_id
             WHERE lead.active AND lead.type = 'opportunity' AND stage.is_won
            UNION ALL
            SELECT move.id * 3 + 2, 'invoiced', move.invoice_date, NULL,
                   move.id, move.commercial_partner_id, NULL, NULL,
                   move.invoice_user_id, move.company_id, NULL, 0.0, 0.0, 0.0, 0.0,
                   move.amount_untaxed_signed
              FROM account_move move
              JOIN won_customers ON won_customers.partner_id
                                    = move.commercial_partner_id
             WHERE move.state = 'posted'
               AND move.move_type IN ('out_invoice', 'out_refund')
        """
