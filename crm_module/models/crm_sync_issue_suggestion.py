from odoo import fields, models


class CrmSyncIssueSuggestion(models.Model):
    _name = "crm.sync.issue.suggestion"
    _description = "Suggested Match for a Synchronisation Issue"
    _order = "issue_id, score desc, id"

    issue_id = fields.Many2one(
        comodel_name="crm.sync.issue",
        required=True,
        ondelete="cascade",
        index=True,
    )
    company_id = fields.Many2one(
        related="issue_id.company_id",
        store=True,
        index=True,
    )
    partner_id = fields.Many2one(
        comodel_name="res.partner",
        required=True,
        ondelete="cascade",
    )
    score = fields.Float(digits=(16, 2), help="Match score given by the daemon.")
    reason = fields.Char(help="Why the daemon suggests this partner.")

    def action_link(self):
        """Choose this partner and ask the daemon to link the external record."""
        self.ensure_one()
        return self.issue_id.action_link_suggestion(partner=self.partner_id)
