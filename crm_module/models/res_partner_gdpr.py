from odoo import api, fields, models
from odoo.exceptions import AccessError

from ..tools.gdpr import SCOPE_UNSUBSCRIBE, check_signature, sign
from .crm_consent_event import PRIVACY_GROUP

CONSENT_READER_GROUPS = (
    "sales_team.group_sale_salesman,"
    "crm_module.crm_module_group_privacy_officer,"
    "crm_module.crm_module_group_sync_daemon"
)
#: partner fields cleared by anonymisation (the name is replaced)
ANONYMISED_FIELDS = (
    "email",
    "phone",
    "mobile",
    "website",
    "comment",
    "function",
    "street",
    "street2",
    "zip",
    "city",
    "state_id",
    "vat",
    "company_registry",
    "ref",
    "title",
    "image_1920",
    "peppol_eas",
    "peppol_endpoint",
)


class ResPartner(models.Model):
    _inherit = "res.partner"

    crm_erased = fields.Boolean(
        string="Erased (GDPR)",
        readonly=True,
        copy=False,
        index=True,
        help="The personal data of this partner was erased on request. The sync "
        "daemon never updates, pushes or re-creates an erased partner.",
    )
    crm_erased_at = fields.Datetime(string="Erased On", readonly=True, copy=False)
    crm_legal_hold_until = fields.Date(
        string="Legal Hold Until",
        readonly=True,
        copy=False,
        help="Invoices of this erased partner are kept until this date because the "
        "law requires it (GDPR Art. 17(3)(b)).",
    )
    crm_signup_only = fields.Boolean(
        string="Created by a Sign-up",
        readonly=True,
        copy=False,
        help="Created from a web sign-up: purged when the sign-up is never confirmed.",
    )
    crm_processing_restricted = fields.Boolean(
        string="Processing Restricted",
        readonly=True,
        copy=False,
        tracking=True,
        help="GDPR Art. 18: no marketing or profiling while the restriction lasts.",
    )
    crm_marketing_objection = fields.Boolean(
        string="Objected to Marketing",
        readonly=True,
        copy=False,
        tracking=True,
        help="GDPR Art. 21: the person objected to marketing and profiling.",
    )
    crm_consent_ids = fields.One2many(
        comodel_name="crm.consent",
        inverse_name="partner_id",
        string="Consents",
        readonly=True,
        groups=CONSENT_READER_GROUPS,
    )
    crm_consent_count = fields.Integer(
        compute="_compute_crm_consent_count",
        groups=CONSENT_READER_GROUPS,
    )

    @api.depends("crm_consent_ids")
    def _compute_crm_consent_count(self):
        for partner in self:
            partner.crm_consent_count = len(partner.crm_consent_ids)

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_crm_view_consents(self):
        """Open the consent states of the partner."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Consents"),
            "res_model": "crm.consent",
            "view_mode": "list,form",
            "domain": [("partner_id", "=", self.id)],
            "context": {"create": False},
        }

    def action_crm_withdraw_marketing(self):
        """Withdraw every marketing consent of the data subject (back office)."""
        self._crm_check_privacy_officer()
        self.env["crm.consent"]._crm_withdraw(self, source="manual")
        return True

    def action_crm_lift_restriction(self):
        """End a restriction of processing (GDPR Art. 18(3)): the person was told."""
        self._crm_check_privacy_officer()
        for partner in self.sudo():
            partner.write({"crm_processing_restricted": False})
            partner.message_post(
                body=self.env._(
                    "Restriction of processing lifted by %s.", self.env.user.name
                )
            )
        return True

    # ------------------------------------------------------------
    # BUSINESS
    # ------------------------------------------------------------

    def _crm_check_privacy_officer(self):
        if not self.env.su and not self.env.user.has_group(PRIVACY_GROUP):
            raise AccessError(
                self.env._("Only privacy officers may change consents by hand.")
            )

    def _crm_block_reason(self, purpose):
        """Return why this partner may not be processed for ``purpose``, or False.

        A purpose based on consent needs a granted consent; another basis
        (legitimate interests, contract...) holds until the person withdraws or
        objects. Erasure, restriction and objection block marketing purposes.
        """
        self.ensure_one()
        partner = self.sudo()
        if partner.crm_erased:
            return self.env._("the personal data of the partner was erased")
        if purpose.is_marketing and partner.crm_processing_restricted:
            return self.env._("processing is restricted (GDPR Art. 18)")
        if purpose.is_marketing and partner.crm_marketing_objection:
            return self.env._("the person objected (GDPR Art. 21)")
        consent = (
            self.env["crm.consent"]
            .sudo()
            .search([("partner_id", "=", partner.id), ("purpose_id", "=", purpose.id)])
        )
        if consent.state == "granted":
            return False
        reasons = {
            "pending": self.env._("the sign-up is not confirmed yet"),
            "withdrawn": self.env._("consent withdrawn"),
            "expired": self.env._("the sign-up expired"),
        }
        if consent.state in reasons:
            return reasons[consent.state]
        if purpose.legal_basis != "consent":
            return False
        return self.env._("no consent recorded for %s", purpose.name)

    def _crm_unsubscribe_token(self, purpose=None):
        self.ensure_one()
        return sign(self.env, SCOPE_UNSUBSCRIBE, f"{self.id}:{purpose.id or 0}")

    def _crm_check_unsubscribe_token(self, purpose, token):
        self.ensure_one()
        message = f"{self.id}:{purpose.id or 0}"
        return check_signature(self.env, SCOPE_UNSUBSCRIBE, message, token)

    def _crm_unsubscribe_url(self, purpose=None):
        """Return the public withdrawal link of the partner for one purpose (or
        for every marketing purpose when ``purpose`` is empty)."""
        self.ensure_one()
        purpose = purpose or self.env["crm.consent.purpose"]
        token = self._crm_unsubscribe_token(purpose)
        return (
            f"{self.get_base_url()}/crm/consent/unsubscribe/"
            f"{self.id}/{purpose.id or 0}/{token}"
        )

    def _crm_anonymise(self):
        """Replace the personal data of these partners and mark them erased.

        The daemon reads ``crm_erased`` and never pushes or re-creates them.
        """
        now = fields.Datetime.now()
        writer = self.sudo().with_context(
            active_test=False, tracking_disable=True, mail_notrack=True
        )
        for partner in writer:
            vals = dict.fromkeys(ANONYMISED_FIELDS, False)
            vals.update(
                {
                    "name": self.env._("Erased person #%s", partner.id),
                    "category_id": [(5, 0, 0)],
                    "active": False,
                    "crm_erased": True,
                    "crm_erased_at": now,
                }
            )
            partner.write(
                {
                    fname: value
                    for fname, value in vals.items()
                    if fname in writer._fields
                }
            )
        banks = writer.bank_ids
        used = (
            self.env["account.move"]
            .sudo()
            .search([("partner_bank_id", "in", banks.ids)])
        )
        (banks - used.partner_bank_id).unlink()
