from odoo import fields, models


class CrmSyncIssue(models.Model):
    _inherit = "crm.sync.issue"

    kind = fields.Selection(
        selection_add=[("erasure", "Erasure to handle in the ledger")],
        ondelete={"erasure": "cascade"},
    )
