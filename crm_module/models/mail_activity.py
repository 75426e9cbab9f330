from odoo import fields, models


class MailActivity(models.Model):
    _inherit = "mail.activity"

    def _action_done(self, feedback=False, attachment_ids=None):
        """An activity marked done by a user is a first response (calls included)."""
        done_by_user = not self.env.user.share and not self.env.su
        targets = {}
        if done_by_user:
            for activity in self:
                model = activity.res_model
                if (
                    model
                    and model in self.env
                    and hasattr(self.env[model], "_crm_register_first_response")
                ):
                    targets.setdefault(model, set()).add(activity.res_id)
        result = super()._action_done(feedback=feedback, attachment_ids=attachment_ids)
        now = fields.Datetime.now()
        for model, ids in targets.items():
            self.env[model].browse(ids).exists()._crm_register_first_response(now)
        return result
