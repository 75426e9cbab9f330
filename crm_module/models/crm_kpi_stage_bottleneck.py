from odoo import fields, models


class CrmKpiStageBottleneck(models.Model):
    """Time spent in each stage and the opportunities lost there.

    One row per stage entry of an opportunity. The time runs until the next
    stage change; for the current stage of an open opportunity until now, of
    a lost one until its closing date; the won stage is not timed.
    """

    _name = "crm.kpi.stage.bottleneck"
    _inherit = "crm.kpi.mixin"
    _description = "CRM KPI: Stage Bottlenecks"
    _auto = False
    _order = "date desc"
    _median_fields = ("median_days",)

    lead_id = fields.Many2one(
        comodel_name="crm.lead", string="Opportunity", readonly=True
    )
    stage_id = fields.Many2one(comodel_name="crm.stage", readonly=True)
    team_id = fields.Many2one(comodel_name="crm.team", readonly=True)
    company_id = fields.Many2one(comodel_name="res.company", readonly=True)
    date = fields.Date(string="Entered On", readonly=True)
    entered_count = fields.Integer(string="Entered", readonly=True)
    dropped_count = fields.Integer(string="Lost in Stage", readonly=True)
    days_in_stage = fields.Float(
        string="Average Days in Stage", aggregator="avg", readonly=True
    )
    median_days = fields.Float(
        string="Median Days in Stage", aggregator="avg", readonly=True
    )
    drop_off_rate = fields.Float(
        string="Drop-off Rate (%)",
        aggregator="avg",
        readonly=True,
        help="Share of the opportunities entering the stage that were lost while in "
        "it.",
    )

    def _kpi_query(self):
        return """
            WITH timed AS (
                SELECT h.id, h.lead_id, h.stage_id, h.date, h.duration_days,
                       COALESCE(h.team_id, lead.team_id) AS team_id, lead.company_id,
                       h.date_end IS NULL AND NOT lead.active
                           AND lead.probability = 0 AS dropped,
                       CASE
                           WHEN h.date_end IS NOT NULL
                                OR COALESCE(stage.is_won, FALSE) THEN NULL
                           WHEN lead.active THEN now() AT TIME ZONE 'UTC'
                           ELSE COALESCE(lead.date_closed, lead.write_date)
                       END AS end_date
                  FROM crm_lead_stage_history h
                  JOIN crm_lead lead ON lead.id = h.lead_id
                  LEFT JOIN crm_stage stage ON stage.id = h.stage_id
                 WHERE lead.type = 'opportunity'
            ), spent AS (
                SELECT timed.*,
                       COALESCE(
                           duration_days,
                           EXTRACT(EPOCH FROM end_date - date)::float8 / 86400
                       ) AS days
                  FROM timed
            )
            SELECT id, lead_id, stage_id, team_id, company_id,
                   date::date AS date, 1 AS entered_count,
                   dropped::int AS dropped_count,
                   days AS days_in_stage,
                   days AS median_days,
                   CASE WHEN dropped THEN 100.0 ELSE 0.0 END AS drop_off_rate
              FROM spent
        """
