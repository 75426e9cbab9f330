import logging

from dateutil.relativedelta import relativedelta

from odoo import api, fields, models

_logger = logging.getLogger(__name__)

RETENTION_MODES = [
    ("anonymise", "Anonymise"),
    ("archive", "Archive"),
]
#: system parameters of the retention cron
PARAM_MODE = "crm_module.retention_mode"
PARAM_APPLY = "crm_module.retention_apply"
#: retention in months when no purpose says otherwise
DEFAULT_RETENTION_MONTHS = 24


class CrmRetentionWizard(models.TransientModel):
    _name = "crm.retention.wizard"
    _description = "Retention of Inactive Prospects and Leads"

    mode = fields.Selection(
        RETENTION_MODES,
        required=True,
        default=lambda self: self._crm_default_mode(),
    )
    lead_ids = fields.Many2many(
        comodel_name="crm.lead",
        string="Inactive Leads",
        compute="_compute_candidates",
    )
    partner_ids = fields.Many2many(
        comodel_name="res.partner",
        string="Inactive Prospects",
        compute="_compute_candidates",
    )
    report = fields.Text(compute="_compute_candidates")

    @api.model
    def _crm_default_mode(self):
        mode = self.env["ir.config_parameter"].sudo().get_param(PARAM_MODE)
        return mode if mode in dict(RETENTION_MODES) else "anonymise"

    @api.depends("mode")
    def _compute_candidates(self):
        leads, partners = self._crm_candidates()
        for wizard in self:
            wizard.lead_ids = leads
            wizard.partner_ids = partners
            wizard.report = self.env._(
                "%(leads)s leads and %(partners)s prospects had no activity during "
                "their retention period and would be %(mode)s.",
                leads=len(leads),
                partners=len(partners),
                mode=dict(RETENTION_MODES)[wizard.mode].lower(),
            )

    def action_apply(self):
        """Anonymise or archive the listed leads and prospects."""
        self.ensure_one()
        self._crm_apply(self.mode)
        return {"type": "ir.actions.act_window_close"}

    # ------------------------------------------------------------
    # BUSINESS
    # ------------------------------------------------------------

    @api.model
    def _crm_retention_months(self, purposes):
        months = [months for months in purposes.mapped("retention_months") if months]
        return max(months) if months else DEFAULT_RETENTION_MONTHS

    @api.model
    def _crm_candidates(self):
        """Return (leads, prospects) without activity for their retention period.

        A lead is kept for the longest retention of the marketing purposes; a
        prospect (no invoice, no user, no sync link) for the longest retention of
        the purposes it has consents for, or the same default.
        """
        env = self.env(su=True)
        now = fields.Datetime.now()
        marketing = env["crm.consent"]._crm_marketing_purposes()
        lead_cutoff = now - relativedelta(months=self._crm_retention_months(marketing))
        leads = (
            env["crm.lead"]
            .with_context(active_test=False)
            .search(
                [
                    ("write_date", "<", lead_cutoff),
                    ("activity_ids", "=", False),
                    ("stage_id.is_won", "!=", True),
                ]
            )
        )
        leads = leads.filtered(
            lambda lead: (
                not lead.message_ids
                or max(lead.message_ids.mapped("date")) < lead_cutoff
            )
        )
        partners = (
            env["res.partner"]
            .with_context(active_test=False)
            .search(
                [
                    ("is_company", "=", False),
                    ("crm_erased", "=", False),
                    ("user_ids", "=", False),
                    ("invoice_ids", "=", False),
                    ("sync_link_ids", "=", False),
                    ("write_date", "<", now - relativedelta(months=1)),
                ]
            )
        )
        recent_leads = (
            env["crm.lead"]
            .with_context(active_test=False)
            .search([("partner_id", "in", partners.ids), ("id", "not in", leads.ids)])
        )
        prospects = partners.browse()
        for partner in partners - recent_leads.partner_id:
            months = self._crm_retention_months(partner.crm_consent_ids.purpose_id)
            cutoff = now - relativedelta(months=months)
            last = max(
                [
                    partner.write_date,
                    *partner.crm_consent_ids.mapped("state_since"),
                    *partner.message_ids.mapped("date"),
                ]
            )
            if last < cutoff and not partner.crm_consent_ids.filtered(
                lambda consent: consent.state in ("granted", "pending")
            ):
                prospects |= partner
        return leads.with_env(self.env), prospects.with_env(self.env)

    @api.model
    def _crm_apply(self, mode):
        leads, partners = self._crm_candidates()
        if mode == "archive":
            leads.sudo().with_context(tracking_disable=True).write({"active": False})
            partners.sudo().with_context(tracking_disable=True).write({"active": False})
        else:
            self.env["crm.privacy.request"]._crm_anonymise_leads(leads)
            partners._crm_anonymise()
        _logger.info(
            "retention: %s %d leads and %d prospects", mode, len(leads), len(partners)
        )
        return leads, partners

    @api.model
    def _cron_retention(self):
        """Log the dry-run report; apply it only when the system parameter
        ``crm_module.retention_apply`` is set."""
        params = self.env["ir.config_parameter"].sudo()
        leads, partners = self._crm_candidates()
        _logger.info(
            "retention dry run: %d leads and %d prospects past retention",
            len(leads),
            len(partners),
        )
        if params.get_param(PARAM_APPLY):
            return self._crm_apply(self._crm_default_mode())
        return leads, partners
