from odoo import fields, models


class CrmKpiResponseTime(models.Model):
    """First response of opportunities and tickets, per day of creation."""

    _name = "crm.kpi.response.time"
    _inherit = "crm.kpi.mixin"
    _description = "CRM KPI: First Response Time"
    _auto = False
    _order = "date desc"
    _median_fields = ("median_response_hours",)

    source = fields.Selection(
        selection=[("lead", "Lead / Opportunity"), ("ticket", "Ticket")],
        readonly=True,
    )
    res_id = fields.Integer(string="Record ID", readonly=True)
    date = fields.Date(string="Created On", readonly=True)
    team_id = fields.Many2one(comodel_name="crm.team", readonly=True)
    user_id = fields.Many2one(comodel_name="res.users", readonly=True)
    company_id = fields.Many2one(comodel_name="res.company", readonly=True)
    record_count = fields.Integer(string="Records", readonly=True)
    responded_count = fields.Integer(string="Responded", readonly=True)
    response_hours = fields.Float(
        string="Average Response (business hours)",
        aggregator="avg",
        readonly=True,
    )
    median_response_hours = fields.Float(
        string="Median Response (business hours)",
        aggregator="avg",
        readonly=True,
        help="Median of the first response times of the grouped records.",
    )
    breach_count = fields.Integer(string="SLA Breaches", readonly=True)

    def _kpi_query(self):
        return """
            SELECT lead.id * 2 AS id, 'lead' AS source, lead.id AS res_id,
                   lead.create_date::date AS date, lead.team_id, lead.user_id,
                   lead.company_id, 1 AS record_count,
                   (lead.first_response_date IS NOT NULL)::int AS responded_count,
                   CASE WHEN lead.first_response_date IS NOT NULL
                        THEN lead.response_time_hours END AS response_hours,
                   CASE WHEN lead.first_response_date IS NOT NULL
                        THEN lead.response_time_hours END AS median_response_hours,
                   COALESCE(lead.sla_breached, FALSE)::int AS breach_count
              FROM crm_lead lead
             WHERE lead.create_date IS NOT NULL
            UNION ALL
            SELECT ticket.id * 2 + 1, 'ticket', ticket.id,
                   ticket.create_date::date, ticket.team_id, ticket.user_id,
                   ticket.company_id, 1,
                   (ticket.first_response_date IS NOT NULL)::int,
                   CASE WHEN ticket.first_response_date IS NOT NULL
                        THEN ticket.response_time_hours END,
                   CASE WHEN ticket.first_response_date IS NOT NULL
                        THEN ticket.response_time_hours END,
                   COALESCE(ticket.sla_breached, FALSE)::int
              FROM crm_ticket ticket
             WHERE ticket.create_date IS NOT NULL
        """
