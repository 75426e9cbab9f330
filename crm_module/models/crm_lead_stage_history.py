from odoo import api, fields, models


class CrmLeadStageHistory(models.Model):
    _name = "crm.lead.stage.history"
    _description = "Opportunity Stage Change"
    _order = "date desc, id desc"
    _rec_name = "stage_id"

    lead_id = fields.Many2one(
        comodel_name="crm.lead",
        required=True,
        index=True,
        ondelete="cascade",
    )
    stage_from_id = fields.Many2one(
        comodel_name="crm.stage",
        string="From Stage",
        ondelete="set null",
    )
    stage_id = fields.Many2one(
        comodel_name="crm.stage",
        string="To Stage",
        index=True,
        ondelete="set null",
    )
    date = fields.Datetime(required=True, default=fields.Datetime.now, index=True)
    user_id = fields.Many2one(
        comodel_name="res.users",
        string="Changed By",
        default=lambda self: self.env.user,
    )
    team_id = fields.Many2one(comodel_name="crm.team", index=True)
    company_id = fields.Many2one(comodel_name="res.company", index=True)
    # kept up to date on every change so the KPI views need no window functions
    stage_sequence = fields.Integer(readonly=True)
    date_end = fields.Datetime(
        string="Left On",
        readonly=True,
        help="When the opportunity moved on to its next stage.",
    )
    duration_days = fields.Float(
        string="Days in Stage",
        readonly=True,
        help="Days until the next stage change; empty while in the stage.",
    )
    is_first_entry = fields.Boolean(
        readonly=True,
        help="First time the opportunity entered this stage.",
    )
    reached_later_stage = fields.Boolean(
        readonly=True,
        help="The opportunity later entered a stage with a higher sequence.",
    )

    def init(self):
        self.env.cr.execute(
            "CREATE INDEX IF NOT EXISTS crm_lead_stage_history_lead_date_idx "
            "ON crm_lead_stage_history (lead_id, date, id)"
        )

    @api.model_create_multi
    def create(self, vals_list):
        records = super().create(vals_list)
        self._update_derived_values(records.lead_id.ids)
        return records

    def unlink(self):
        lead_ids = self.lead_id.ids
        result = super().unlink()
        self._update_derived_values(lead_ids)
        return result

    @api.model
    def _update_derived_values(self, lead_ids=None):
        """Recompute end date, first entry and progress of the leads' rows.

        One statement for the given leads (all leads when ``None``); a stage
        change touches the few rows of its lead only.
        """
        if lead_ids is not None and not lead_ids:
            return
        self.env.flush_all()
        self.env.cr.execute(
            """
            UPDATE crm_lead_stage_history h
               SET stage_sequence = x.seq,
                   date_end = x.next_date,
                   duration_days = EXTRACT(EPOCH FROM x.next_date - h.date)::float8
                                   / 86400,
                   is_first_entry = x.nth = 1,
                   reached_later_stage = COALESCE(x.later_seq > x.seq, FALSE)
              FROM (
                    SELECT h.id, s.sequence AS seq,
                           lead(h.date) OVER w AS next_date,
                           row_number() OVER (
                               PARTITION BY h.lead_id, h.stage_id ORDER BY h.date, h.id
                           ) AS nth,
                           max(s.sequence) OVER (
                               w ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING
                           ) AS later_seq
                      FROM crm_lead_stage_history h
                      LEFT JOIN crm_stage s ON s.id = h.stage_id
                     WHERE %(all)s OR h.lead_id = ANY(%(ids)s)
                    WINDOW w AS (PARTITION BY h.lead_id ORDER BY h.date, h.id)
                   ) x
             WHERE x.id = h.id
            """,
            {"all": lead_ids is None, "ids": list(lead_ids or [])},
        )
        self.invalidate_model(
            [
                "stage_sequence",
                "date_end",
                "duration_days",
                "is_first_entry",
                "reached_later_stage",
            ]
        )

    @api.model
    def _backfill_from_tracking(self):
        """Rebuild the history of leads from the stage tracking values of the chatter.

        Only leads without any history row are filled: first a creation row in
        the stage the lead was created in (the old value of its first tracked
        change, else its current stage), then one row per tracked change in
        chronological order. Plain SQL, so a large database takes two statements.
        """
        self.env.flush_all()
        cr = self.env.cr
        params = {
            "uid": self.env.uid,
            "field_id": self.env["ir.model.fields"]._get("crm.lead", "stage_id").id,
        }
        cr.execute(
            """
            INSERT INTO crm_lead_stage_history
                (lead_id, stage_from_id, stage_id, date, user_id, team_id,
                 company_id, create_uid, create_date, write_uid, write_date)
            SELECT lead.id, NULL, COALESCE(first_change.old_stage_id, lead.stage_id),
                   LEAST(lead.create_date, first_change.date), lead.create_uid,
                   lead.team_id, lead.company_id,
                   %(uid)s, now() at time zone 'UTC', %(uid)s, now() at time zone 'UTC'
              FROM crm_lead lead
              LEFT JOIN LATERAL (
                    SELECT tv.old_value_integer AS old_stage_id, msg.date
                      FROM mail_message msg
                      JOIN mail_tracking_value tv ON tv.mail_message_id = msg.id
                     WHERE msg.model = 'crm.lead' AND msg.res_id = lead.id
                       AND tv.field_id = %(field_id)s
                     ORDER BY msg.date, tv.id LIMIT 1
              ) first_change ON TRUE
             WHERE lead.create_date IS NOT NULL
               AND COALESCE(first_change.old_stage_id, lead.stage_id) IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM crm_lead_stage_history h
                                WHERE h.lead_id = lead.id)
             ORDER BY lead.id
            RETURNING lead_id
            """,
            params,
        )
        params["lead_ids"] = [row[0] for row in cr.fetchall()]
        created = len(params["lead_ids"])
        cr.execute(
            """
            INSERT INTO crm_lead_stage_history
                (lead_id, stage_from_id, stage_id, date, user_id, team_id,
                 company_id, create_uid, create_date, write_uid, write_date)
            SELECT msg.res_id, tv.old_value_integer, tv.new_value_integer,
                   msg.date, author.id, lead.team_id, lead.company_id,
                   %(uid)s, now() at time zone 'UTC', %(uid)s, now() at time zone 'UTC'
              FROM mail_message msg
              JOIN mail_tracking_value tv ON tv.mail_message_id = msg.id
              JOIN crm_lead lead ON lead.id = msg.res_id
              LEFT JOIN LATERAL (
                    SELECT u.id FROM res_users u
                     WHERE u.partner_id = msg.author_id ORDER BY u.id LIMIT 1
              ) author ON TRUE
             WHERE msg.model = 'crm.lead' AND msg.res_id = ANY(%(lead_ids)s)
               AND tv.field_id = %(field_id)s
             ORDER BY msg.date, tv.id
            """,
            params,
        )
        changes = cr.rowcount
        self._update_derived_values(params["lead_ids"])
        self.env.invalidate_all()
        return created + changes
