from odoo import fields, models


class ResPartner(models.Model):
    _inherit = "res.partner"

    crm_ticket_ids = fields.One2many(
        comodel_name="crm.ticket",
        inverse_name="commercial_partner_id",
        string="Tickets",
    )
    crm_ticket_count = fields.Integer(
        string="Ticket Count",
        compute="_compute_crm_ticket_count",
    )

    def _compute_crm_ticket_count(self):
        """Tickets of the partner's company, for the smart button."""
        commercial = self.commercial_partner_id
        counts = dict(
            self.env["crm.ticket"]._read_group(
                [("commercial_partner_id", "in", commercial.ids)],
                ["commercial_partner_id"],
                ["__count"],
            )
        )
        for partner in self:
            partner.crm_ticket_count = counts.get(partner.commercial_partner_id, 0)

    def action_view_crm_tickets(self):
        """Open the tickets of the partner's company."""
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "crm_module.crm_ticket_action"
        )
        action["domain"] = [
            ("commercial_partner_id", "=", self.commercial_partner_id.id)
        ]
        action["context"] = {"default_partner_id": self.id}
        return action
