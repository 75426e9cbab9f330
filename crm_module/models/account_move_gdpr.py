from odoo import fields, models


class AccountMove(models.Model):
    _inherit = "account.move"

    crm_legal_hold_until = fields.Date(
        string="Legal Hold Until",
        readonly=True,
        copy=False,
        help="The customer's personal data was erased; this invoice is kept until "
        "this date as the law requires.",
    )
    crm_legal_hold_note = fields.Text(string="Legal Hold", readonly=True, copy=False)
    crm_partner_snapshot = fields.Text(
        string="Customer Data Kept",
        readonly=True,
        copy=False,
        help="Name, address and tax numbers of the customer at erasure time, kept "
        "for this invoice only.",
    )
