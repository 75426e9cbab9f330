from odoo import fields, models


class CrmKpiStageConversion(models.Model):
    """Opportunities entering a stage, and what became of them.

    One row per opportunity and stage, dated by the first time the opportunity
    entered the stage. *Progressed* means it later reached a stage with a
    higher sequence; *won* and *lost* are its current outcome.
    """

    _name = "crm.kpi.stage.conversion"
    _inherit = "crm.kpi.mixin"
    _description = "CRM KPI: Stage Conversion"
    _auto = False
    _order = "date desc"

    lead_id = fields.Many2one(
        comodel_name="crm.lead", string="Opportunity", readonly=True
    )
    stage_id = fields.Many2one(comodel_name="crm.stage", readonly=True)
    team_id = fields.Many2one(comodel_name="crm.team", readonly=True)
    company_id = fields.Many2one(comodel_name="res.company", readonly=True)
    date = fields.Date(string="Entered On", readonly=True)
    iso_week = fields.Char(string="ISO Week", readonly=True)
    entered_count = fields.Integer(string="Entered", readonly=True)
    progressed_count = fields.Integer(string="Reached a Later Stage", readonly=True)
    won_count = fields.Integer(string="Won", readonly=True)
    lost_count = fields.Integer(string="Lost", readonly=True)
    conversion_rate = fields.Float(
        string="Conversion Rate (%)",
        aggregator="avg",
        readonly=True,
        help="Share of the opportunities that entered the stage and were won.",
    )
    progress_rate = fields.Float(
        string="Progress Rate (%)",
        aggregator="avg",
        readonly=True,
        help="Share of the opportunities that entered the stage and later reached "
        "a later stage.",
    )

    def _kpi_query(self):
        return """
            SELECT h.id,
                   h.lead_id,
                   h.stage_id,
                   COALESCE(h.team_id, lead.team_id) AS team_id,
                   lead.company_id,
                   h.date::date AS date,
                   to_char(h.date, 'IYYY-"W"IW') AS iso_week,
                   1 AS entered_count,
                   COALESCE(h.reached_later_stage, FALSE)::int AS progressed_count,
                   (lead.active AND COALESCE(cur.is_won, FALSE))::int AS won_count,
                   (NOT lead.active AND lead.probability = 0)::int AS lost_count,
                   CASE WHEN lead.active AND cur.is_won THEN 100.0 ELSE 0.0 END
                       AS conversion_rate,
                   CASE WHEN h.reached_later_stage THEN 100.0 ELSE 0.0 END
                       AS progress_rate
              FROM crm_lead_stage_history h
              JOIN crm_lead lead ON lead.id = h.lead_id
              LEFT JOIN crm_stage cur ON cur.id = lead.stage_id
             WHERE h.is_first_entry AND lead.type = 'opportunity'
        """
