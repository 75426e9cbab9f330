from odoo import fields, models


class CrmConsentBlock(models.Model):
    _name = "crm.consent.block"
    _description = "Marketing Mail Blocked for Lack of Legal Basis"
    _order = "id desc"

    partner_id = fields.Many2one(
        comodel_name="res.partner",
        index=True,
        ondelete="cascade",
        readonly=True,
    )
    purpose_id = fields.Many2one(
        comodel_name="crm.consent.purpose",
        required=True,
        ondelete="cascade",
        readonly=True,
    )
    company_id = fields.Many2one(related="purpose_id.company_id", store=True)
    reason = fields.Char(required=True, readonly=True)
    mail_message_id = fields.Many2one(
        comodel_name="mail.message",
        string="Message",
        ondelete="set null",
        readonly=True,
    )
    blocked_at = fields.Datetime(
        default=fields.Datetime.now,
        required=True,
        readonly=True,
    )
