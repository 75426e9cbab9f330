from odoo import fields, models


class CrmTeam(models.Model):
    _inherit = "crm.team"

    resource_calendar_id = fields.Many2one(
        comodel_name="resource.calendar",
        string="Working Hours",
        help="Business hours used for first response SLAs; the company's working "
        "hours when empty. Public holidays are the calendar's global time off.",
    )
    first_response_sla_hours = fields.Float(
        string="First Response SLA (business hours)",
        help="Business hours within which a new opportunity or ticket of this team "
        "must get a first response; 0 disables the SLA.",
    )

    def _crm_get_business_calendar(self):
        """The calendar that counts this team's business hours."""
        company = self[:1].company_id or self.env.company
        return self[:1].resource_calendar_id or company.resource_calendar_id

    def _assign_and_convert_leads(self, force_quota=False):
        """Tell each salesperson which leads the assignment gave them.

        Odoo assigns with notifications switched off, so cron-assigned
        salespeople would not hear about their new leads.
        """
        result = super()._assign_and_convert_leads(force_quota=force_quota)
        for member, data in result.items():
            leads = data.get("assigned")
            if leads:
                leads.exists()._crm_notify_assignment(member.user_id)
        return result
