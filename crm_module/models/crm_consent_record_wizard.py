from odoo import api, fields, models

from .crm_consent_purpose import LEGAL_BASES


class CrmConsentRecordWizard(models.TransientModel):
    _name = "crm.consent.record.wizard"
    _description = "Record a Consent Given or Withdrawn Outside Odoo"

    partner_id = fields.Many2one(
        comodel_name="res.partner",
        required=True,
        default=lambda self: (
            self.env.context.get("active_id")
            if self.env.context.get("active_model") == "res.partner"
            else False
        ),
    )
    purpose_id = fields.Many2one(comodel_name="crm.consent.purpose", required=True)
    kind = fields.Selection(
        [("grant", "Given"), ("withdraw", "Withdrawn")],
        string="Consent",
        required=True,
        default="grant",
    )
    legal_basis = fields.Selection(LEGAL_BASES)
    action_at = fields.Datetime(
        string="Person Acted On",
        required=True,
        default=fields.Datetime.now,
    )
    text_version = fields.Char(string="Form Text Version")
    evidence_note = fields.Text(string="Evidence")
    document = fields.Binary(string="Signed Document")
    document_name = fields.Char()

    @api.onchange("purpose_id")
    def _onchange_purpose_id(self):
        self.legal_basis = self.purpose_id.legal_basis

    def action_record(self):
        """Append the event to the ledger (privacy officers only)."""
        self.ensure_one()
        self.partner_id._crm_check_privacy_officer()
        evidence = {
            "text_version": self.text_version,
            "evidence_note": self.evidence_note,
        }
        if self.document:
            evidence["attachment_id"] = (
                self.env["ir.attachment"]
                .sudo()
                .create(
                    {
                        "name": self.document_name or "consent-evidence",
                        "datas": self.document,
                        "res_model": "crm.consent.event",
                    }
                )
                .id
            )
        Consent = self.env["crm.consent"]
        if self.kind == "withdraw":
            Consent._crm_withdraw(
                self.partner_id,
                self.purpose_id,
                action_at=self.action_at,
                source="manual",
                evidence=evidence,
            )
        else:
            Consent._crm_record_event(
                self.partner_id,
                self.purpose_id,
                "grant",
                action_at=self.action_at,
                source="manual",
                legal_basis=self.legal_basis,
                evidence=evidence,
            )
            if self.purpose_id.channel == "email":
                Consent._crm_sync_email_opt_in(self.partner_id.sudo())
        return {"type": "ir.actions.act_window_close"}
