import logging
from datetime import timedelta

from odoo import api, fields, models

_logger = logging.getLogger(__name__)


class CrmFollowupRule(models.Model):
    """Follow-up of opportunities that nobody touched for a while."""

    _name = "crm.followup.rule"
    _description = "Opportunity Follow-up Rule"
    _order = "sequence, id"

    name = fields.Char(required=True, translate=True)
    active = fields.Boolean(default=True)
    sequence = fields.Integer(default=10)
    stage_id = fields.Many2one(
        comodel_name="crm.stage",
        help="Only opportunities in this stage; any open stage when empty.",
    )
    team_id = fields.Many2one(
        comodel_name="crm.team",
        help="Only opportunities of this team; all teams when empty.",
    )
    inactivity_days = fields.Integer(
        string="Inactive For (days)",
        required=True,
        default=14,
        help="Days without a message, a stage change or an open activity.",
    )
    action = fields.Selection(
        selection=[("activity", "Schedule an activity"), ("mail", "Send an e-mail")],
        required=True,
        default="activity",
    )
    activity_type_id = fields.Many2one(comodel_name="mail.activity.type")
    activity_summary = fields.Char(translate=True)
    mail_template_id = fields.Many2one(
        comodel_name="mail.template",
        domain="[('model', '=', 'crm.lead')]",
    )
    consent_purpose_id = fields.Many2one(
        comodel_name="crm.consent.purpose",
        string="Consent Purpose",
        default=lambda self: self.env.ref(
            "crm_module.crm_consent_purpose_sales_follow_up", raise_if_not_found=False
        ),
        help="Checked in the consent ledger before each e-mail: a partner who "
        "withdrew, objected, asked for restriction or was erased is not mailed, "
        "and the opportunity says why.",
    )
    company_id = fields.Many2one(comodel_name="res.company")

    _sql_constraints = [
        (
            "inactivity_days_positive",
            "CHECK (inactivity_days > 0)",
            "The inactivity period must be at least one day.",
        ),
    ]

    def _get_inactive_leads(self):
        """Open opportunities of this rule without activity for the period."""
        self.ensure_one()
        limit = fields.Datetime.now() - timedelta(days=self.inactivity_days)
        domain = [
            ("type", "=", "opportunity"),
            ("active", "=", True),
            ("stage_id.is_won", "=", False),
            ("activity_ids", "=", False),
            ("date_last_stage_update", "<", limit),
            ("create_date", "<", limit),
            ("user_id", "!=", False),
        ]
        if self.stage_id:
            domain.append(("stage_id", "=", self.stage_id.id))
        if self.team_id:
            domain.append(("team_id", "=", self.team_id.id))
        if self.company_id:
            domain.append(("company_id", "in", (False, self.company_id.id)))
        leads = self.env["crm.lead"].search(domain)
        if not leads:
            return leads
        # a recent message or done activity on the lead also counts as activity
        recent = self.env["mail.message"]._read_group(
            [
                ("model", "=", "crm.lead"),
                ("res_id", "in", leads.ids),
                ("message_type", "in", ("comment", "email", "email_outgoing")),
                ("date", ">=", limit),
            ],
            ["res_id"],
        )
        recent_ids = {res_id for (res_id,) in recent}
        done = self.env["mail.message"]._read_group(
            [
                ("model", "=", "crm.lead"),
                ("res_id", "in", leads.ids),
                ("mail_activity_type_id", "!=", False),
                ("date", ">=", limit),
            ],
            ["res_id"],
        )
        recent_ids |= {res_id for (res_id,) in done}
        return leads.filtered(lambda lead: lead.id not in recent_ids)

    def _crm_may_send(self, lead):
        """Whether the consent ledger lets this rule mail the lead's partner.

        A refusal is noted on the opportunity with the ledger's reason.
        """
        partner = lead.partner_id
        if not partner:
            return False
        purpose = self.consent_purpose_id
        reason = purpose and partner._crm_block_reason(purpose)
        if reason:
            lead.message_post(
                body=self.env._(
                    "Follow-up e-mail of rule %(rule)s not sent: %(reason)s.",
                    rule=self.name,
                    reason=reason,
                ),
                message_type="notification",
                subtype_xmlid="mail.mt_note",
            )
            return False
        return True

    def _apply(self, leads):
        """Schedule the activity or send the template for the given leads."""
        self.ensure_one()
        if self.action == "activity":
            activity_type = self.activity_type_id or self.env.ref(
                "mail.mail_activity_data_todo"
            )
            for lead in leads:
                lead.activity_schedule(
                    activity_type_id=activity_type.id,
                    user_id=lead.user_id.id,
                    summary=self.activity_summary or self.name,
                )
            return leads
        sent = self.env["crm.lead"]
        for lead in leads:
            if self.mail_template_id and self._crm_may_send(lead):
                lead.message_post_with_source(
                    self.mail_template_id,
                    message_type="comment",
                    subtype_xmlid="mail.mt_comment",
                )
                sent |= lead
        return sent

    @api.model
    def _cron_apply_rules(self):
        """Run every active rule once; returns the leads acted upon per rule."""
        result = {}
        for rule in self.search([]):
            result[rule] = rule._apply(rule._get_inactive_leads())
            _logger.info(
                "follow-up rule %s: %d opportunities", rule.id, len(result[rule])
            )
        return result
