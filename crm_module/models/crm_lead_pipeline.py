import logging
import math
from datetime import timedelta

from markupsafe import Markup

from odoo import api, fields, models
from odoo.osv import expression

_logger = logging.getLogger(__name__)

#: variables shown on each side of the predictive probability explanation
PLS_EXPLANATION_SIZE = 3


class CrmLead(models.Model):
    _name = "crm.lead"
    _inherit = ["crm.lead", "crm.response.sla.mixin"]

    stage_history_ids = fields.One2many(
        comodel_name="crm.lead.stage.history",
        inverse_name="lead_id",
        string="Stage History",
        readonly=True,
    )
    days_in_stage = fields.Integer(
        compute="_compute_stuck",
        help="Days since the opportunity entered its current stage.",
    )
    is_stuck = fields.Boolean(
        string="Stuck",
        compute="_compute_stuck",
        search="_search_is_stuck",
        help="Open opportunity that stayed longer in its stage than the stage's "
        "threshold.",
    )
    pls_explanation = fields.Html(
        string="Probability Explanation",
        compute="_compute_pls_explanation",
        sanitize=False,
        help="Variables of the predictive lead scoring that raise or lower the "
        "probability of this opportunity the most.",
    )

    @api.depends("stage_id.stuck_after_days", "date_last_stage_update")
    def _compute_stuck(self):
        now = fields.Datetime.now()
        for lead in self:
            since = lead.date_last_stage_update
            lead.days_in_stage = (now - since).days if since else 0
            threshold = lead.stage_id.stuck_after_days
            lead.is_stuck = bool(
                threshold
                and since
                and lead.active
                and lead.type == "opportunity"
                and not lead.stage_id.is_won
                and now - since > timedelta(days=threshold)
            )

    def _search_is_stuck(self, operator, value):
        if operator not in ("=", "!="):
            raise NotImplementedError(self.env._("Unsupported search on 'Stuck'."))
        now = fields.Datetime.now()
        stages = self.env["crm.stage"].search(
            [("stuck_after_days", ">", 0), ("is_won", "=", False)]
        )
        per_stage = [
            [
                ("stage_id", "=", stage.id),
                (
                    "date_last_stage_update",
                    "<",
                    now - timedelta(days=stage.stuck_after_days),
                ),
            ]
            for stage in stages
        ]
        domain = expression.AND(
            [
                [("type", "=", "opportunity"), ("active", "=", True)],
                expression.OR(per_stage) if per_stage else expression.FALSE_DOMAIN,
            ]
        )
        if (operator == "=") != bool(value):
            domain = ["!", *domain]
        return domain

    @api.depends("probability", "stage_id", "team_id", "tag_ids")
    def _compute_pls_explanation(self):
        for lead in self:
            lead.pls_explanation = lead._crm_pls_explanation_html()

    # ------------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        leads = super().create(vals_list)
        leads._crm_log_stage_change({})
        return leads

    def write(self, vals):
        if "stage_id" not in vals:
            return super().write(vals)
        previous = {lead.id: lead.stage_id for lead in self}
        result = super().write(vals)
        self.filtered(
            lambda lead: previous[lead.id] != lead.stage_id
        )._crm_log_stage_change(previous)
        return result

    def message_post(self, **kwargs):
        message = super().message_post(**kwargs)
        self._crm_check_first_response(message)
        return message

    # ------------------------------------------------------------------
    # BUSINESS
    # ------------------------------------------------------------------

    def _crm_log_stage_change(self, previous):
        """Write one history row per lead for its new stage."""
        now = fields.Datetime.now()
        self.env["crm.lead.stage.history"].sudo().create(
            [
                {
                    "lead_id": lead.id,
                    "stage_from_id": previous.get(lead.id, self.env["crm.stage"]).id,
                    "stage_id": lead.stage_id.id,
                    "date": now,
                    "user_id": self.env.uid,
                    "team_id": lead.team_id.id,
                    "company_id": lead.company_id.id,
                }
                for lead in self
                if lead.stage_id
            ]
        )

    def _crm_notify_assignment(self, user):
        """Send the assigned salesperson the usual assignment notification."""
        if not user.partner_id:
            return
        for lead in self:
            lead.message_notify(
                partner_ids=user.partner_id.ids,
                subject=self.env._(
                    "You have been assigned to %(lead)s", lead=lead.display_name
                ),
                body=Markup("<p>%s</p>")
                % self.env._(
                    "The lead assignment gave you %(lead)s.", lead=lead.display_name
                ),
                record_name=lead.display_name,
                email_layout_xmlid="mail.mail_notification_layout",
            )

    @api.model
    def _cron_schedule_stuck_activities(self):
        """Give the salesperson of each stuck opportunity one open activity."""
        activity_type = self.env.ref("crm_module.mail_activity_type_stuck")
        leads = self.search([("is_stuck", "=", True), ("user_id", "!=", False)])
        open_ids = set(
            self.env["mail.activity"]
            .search(
                [
                    ("res_model", "=", "crm.lead"),
                    ("res_id", "in", leads.ids),
                    ("activity_type_id", "=", activity_type.id),
                ]
            )
            .mapped("res_id")
        )
        todo = leads.filtered(lambda lead: lead.id not in open_ids)
        for lead in todo:
            lead.activity_schedule(
                activity_type_id=activity_type.id,
                user_id=lead.user_id.id,
                summary=self.env._(
                    "Stuck for %(days)s days in %(stage)s",
                    days=lead.days_in_stage,
                    stage=lead.stage_id.name,
                ),
            )
        _logger.info("stuck opportunities: %d activities scheduled", len(todo))
        return todo

    # ------------------------------------------------------------------
    # PLS
    # ------------------------------------------------------------------

    def _crm_pls_contributions(self):
        """Log-odds contribution of each variable of Odoo's predictive scoring.

        Follows the naive Bayes of ``_pls_get_naive_bayes_probabilities``: a
        variable value raises the probability when its share among won leads is
        larger than its share among lost leads. Returns
        ``[(field, value, log_ratio)]`` sorted by weight.
        """
        self.ensure_one()
        values = self._pls_get_lead_pls_values().get(self.id, {}).get("values", [])
        if not values:
            return []
        frequencies = self.env["crm.lead.scoring.frequency"].sudo()
        team_domain = [("team_id", "=", self.team_id.id)]
        if not self.team_id or not frequencies.search_count(team_domain, limit=1):
            team_domain = []
        totals = {}
        for row in frequencies._read_group(
            team_domain, ["variable"], ["won_count:sum", "lost_count:sum"]
        ):
            totals[row[0]] = row[1:]
        first_stage = self.env["crm.stage"].search(
            [("team_id", "=", False)], order="sequence, id", limit=1
        )
        stage_totals = frequencies._read_group(
            [
                *team_domain,
                ("variable", "=", "stage_id"),
                ("value", "=", str(first_stage.id)),
            ],
            [],
            ["won_count:sum", "lost_count:sum"],
        )[0]
        result = []
        for field, value in values:
            won_total, lost_total = (
                stage_totals if field == "stage_id" else totals.get(field, (0, 0))
            )
            counts = frequencies._read_group(
                [*team_domain, ("variable", "=", field), ("value", "=", str(value))],
                [],
                ["won_count:sum", "lost_count:sum"],
            )[0]
            if not (won_total and lost_total and counts[0] and counts[1]):
                continue
            # Odoo leaves out tags seen on fewer than 50 closed leads
            if field == "tag_id" and counts[0] + counts[1] < 50:
                continue
            ratio = (counts[0] / won_total) / (counts[1] / lost_total)
            result.append((field, value, math.log(ratio)))
        return sorted(result, key=lambda item: -abs(item[2]))

    def _crm_pls_explanation_html(self):
        contributions = self._crm_pls_contributions() if self.id else []
        if not contributions:
            return Markup("<p>%s</p>") % self.env._(
                "Not enough won and lost opportunities to explain the probability."
            )

        def label(field, value):
            name = field
            if field == "tag_id":
                name, record = self.env._("Tag"), self.env["crm.tag"].browse(value)
            elif field in self._fields:
                name = self._fields[field]._description_string(self.env)
                record = self[field]
            if field == "tag_id" or self._fields[field].type == "many2one":
                return f"{name}: {record.exists().display_name or value}"
            return f"{name}: {value}"

        up = [c for c in contributions if c[2] > 0][:PLS_EXPLANATION_SIZE]
        down = [c for c in contributions if c[2] < 0][:PLS_EXPLANATION_SIZE]
        parts = []
        for title, items in (
            (self.env._("Raises the probability"), up),
            (self.env._("Lowers the probability"), down),
        ):
            if not items:
                continue
            rows = Markup("").join(
                Markup("<li>%s <span class='text-muted'>(x%s)</span></li>")
                % (label(field, value), f"{math.exp(weight):.2f}")
                for field, value, weight in items
            )
            parts.append(
                Markup("<p><strong>%s</strong></p><ul>%s</ul>") % (title, rows)
            )
        return Markup("").join(parts)
