import logging

from odoo import api, fields, models

_logger = logging.getLogger(__name__)


class CrmResponseSlaMixin(models.AbstractModel):
    """First response time and SLA, counted in the team's business hours.

    Used by opportunities and tickets. The deadline is planned from the creation
    time on the team's working calendar (or the company's), public holidays
    (``resource.calendar.leaves`` without a resource) included.
    """

    _name = "crm.response.sla.mixin"
    _description = "First Response SLA"

    first_response_date = fields.Datetime(
        copy=False,
        readonly=True,
        help="First outgoing message, logged call or activity marked as done by a "
        "user.",
    )
    response_time_hours = fields.Float(
        string="Response Time (business hours)",
        digits=(16, 2),
        copy=False,
        readonly=True,
    )
    response_deadline = fields.Datetime(
        string="First Response Deadline",
        compute="_compute_response_deadline",
        store=True,
        copy=False,
    )
    sla_breached = fields.Boolean(
        string="SLA Breached",
        copy=False,
        readonly=True,
        index=True,
    )

    @api.depends("team_id.first_response_sla_hours", "team_id.resource_calendar_id")
    def _compute_response_deadline(self):
        for record in self:
            team = record.team_id
            calendar = team._crm_get_business_calendar()
            if not team.first_response_sla_hours or not calendar:
                record.response_deadline = False
                continue
            start = record.create_date or fields.Datetime.now()
            deadline = calendar.plan_hours(
                team.first_response_sla_hours, start, compute_leaves=True
            )
            record.response_deadline = deadline and deadline.replace(tzinfo=None)

    def _crm_business_hours_between(self, start, end):
        """Business hours of the record's team calendar between two datetimes."""
        self.ensure_one()
        calendar = self.team_id._crm_get_business_calendar()
        if not calendar or not start or not end or end <= start:
            return 0.0
        return calendar.get_work_hours_count(start, end, compute_leaves=True)

    def _crm_register_first_response(self, when=None):
        """Store the first response once; later responses change nothing."""
        when = when or fields.Datetime.now()
        for record in self.sudo().filtered(lambda rec: not rec.first_response_date):
            start = record.create_date or when
            vals = {
                "first_response_date": when,
                "response_time_hours": record._crm_business_hours_between(start, when),
            }
            if record.response_deadline and when > record.response_deadline:
                vals["sla_breached"] = True
            record.write(vals)

    def _crm_check_first_response(self, message):
        """A message sent to the customer by an internal user is a first response."""
        if (
            message
            and message.message_type in ("comment", "email_outgoing")
            and message.subtype_id
            and not message.subtype_id.internal
            and self._crm_is_user_response(message.author_id)
        ):
            self._crm_register_first_response(message.date)

    def _crm_is_user_response(self, author_partner):
        """Whether a message author counts as an internal user answering."""
        if not author_partner or author_partner == self.env.ref("base.partner_root"):
            return False
        return any(not user.share for user in author_partner.sudo().user_ids)

    @api.model
    def _cron_check_response_sla(self):
        """Flag records without response past their deadline; warn the team leader."""
        now = fields.Datetime.now()
        records = self.search(
            [
                ("first_response_date", "=", False),
                ("sla_breached", "=", False),
                ("response_deadline", "!=", False),
                ("response_deadline", "<", now),
            ]
        )
        activity_type = self.env.ref("mail.mail_activity_data_todo")
        for record in records:
            leader = record.team_id.user_id
            if leader:
                record.activity_schedule(
                    activity_type_id=activity_type.id,
                    user_id=leader.id,
                    date_deadline=fields.Date.context_today(record),
                    summary=self.env._("First response SLA breached"),
                    note=self.env._(
                        "No first response within %(hours)s business hours.",
                        hours=record.team_id.first_response_sla_hours,
                    ),
                )
        records.write({"sla_breached": True})
        if records:
            _logger.info("%s: %d first response SLA breaches", self._name, len(records))
        return records
