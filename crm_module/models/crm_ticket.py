from odoo import api, fields, models
from odoo.tools import email_normalize


class CrmTicketStage(models.Model):
    _name = "crm.ticket.stage"
    _description = "Ticket Stage"
    _order = "sequence, id"

    name = fields.Char(required=True, translate=True)
    sequence = fields.Integer(default=10)
    fold = fields.Boolean(string="Folded in Kanban")
    is_closed = fields.Boolean(
        string="Closing Stage", help="Tickets in this stage are solved or cancelled."
    )


class CrmTicket(models.Model):
    _name = "crm.ticket"
    _description = "Customer Service Ticket"
    _inherit = ["mail.thread", "mail.activity.mixin", "crm.response.sla.mixin"]
    _order = "priority desc, create_date desc, id desc"

    name = fields.Char(string="Subject", required=True, tracking=True)
    description = fields.Html()
    active = fields.Boolean(default=True)
    partner_id = fields.Many2one(
        comodel_name="res.partner",
        string="Customer",
        tracking=True,
        index=True,
    )
    commercial_partner_id = fields.Many2one(
        related="partner_id.commercial_partner_id",
        store=True,
        index=True,
    )
    email_from = fields.Char(string="E-mail")
    lead_id = fields.Many2one(
        comodel_name="crm.lead",
        string="Opportunity",
        domain="[('type', '=', 'opportunity')]",
        index="btree_not_null",
    )
    stage_id = fields.Many2one(
        comodel_name="crm.ticket.stage",
        default=lambda self: self._default_stage_id(),
        group_expand="_read_group_stage_ids",
        tracking=True,
        index=True,
    )
    is_closed = fields.Boolean(related="stage_id.is_closed", store=True)
    user_id = fields.Many2one(
        comodel_name="res.users",
        string="Assigned To",
        domain="[('share', '=', False)]",
        tracking=True,
        index=True,
    )
    team_id = fields.Many2one(comodel_name="crm.team", tracking=True, index=True)
    company_id = fields.Many2one(
        comodel_name="res.company",
        required=True,
        default=lambda self: self.env.company,
        index=True,
    )
    channel = fields.Selection(
        selection=[("email", "E-mail"), ("manual", "Manual"), ("web", "Web Form")],
        required=True,
        default="manual",
    )
    priority = fields.Selection(
        selection=[("0", "Low"), ("1", "Normal"), ("2", "High"), ("3", "Urgent")],
        default="1",
    )
    color = fields.Integer()

    def _default_stage_id(self):
        return self.env["crm.ticket.stage"].search([], limit=1)

    @api.model
    def _read_group_stage_ids(self, stages, domain):
        return stages.search([])

    # ------------------------------------------------------------------
    # MAIL
    # ------------------------------------------------------------------

    @api.model
    def message_new(self, msg_dict, custom_values=None):
        """Open a ticket from an incoming e-mail, tied to the known sender."""
        values = dict(custom_values or {})
        email = email_normalize(msg_dict.get("email_from") or "")
        partner = self.env["res.partner"]
        if msg_dict.get("author_id"):
            partner = partner.browse(msg_dict["author_id"])
        elif email:
            partner = partner.search([("email_normalized", "=", email)], limit=1)
        values.setdefault("name", msg_dict.get("subject") or self.env._("No Subject"))
        values.setdefault("email_from", msg_dict.get("email_from"))
        values.setdefault("partner_id", partner.id)
        values.setdefault("channel", "email")
        return super().message_new(msg_dict, custom_values=values)

    def _message_get_suggested_recipients(self):
        recipients = super()._message_get_suggested_recipients()
        if self.partner_id:
            self._message_add_suggested_recipient(
                recipients, partner=self.partner_id, reason=self.env._("Customer")
            )
        elif self.email_from:
            self._message_add_suggested_recipient(
                recipients, email=self.email_from, reason=self.env._("Customer E-mail")
            )
        return recipients

    def message_post(self, **kwargs):
        message = super().message_post(**kwargs)
        self._crm_check_first_response(message)
        return message
