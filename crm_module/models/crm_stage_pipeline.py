from odoo import fields, models


class CrmStage(models.Model):
    _inherit = "crm.stage"

    stuck_after_days = fields.Integer(
        string="Stuck After (days)",
        help="An open opportunity that stays longer than this in the stage is "
        "stuck: it is flagged on the pipeline and its salesperson gets an "
        "activity. 0 never flags.",
    )
