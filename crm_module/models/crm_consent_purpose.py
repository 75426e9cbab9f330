from odoo import fields, models

#: GDPR Art. 6(1) a-f
LEGAL_BASES = [
    ("consent", "Consent (Art. 6(1)(a))"),
    ("contract", "Contract (Art. 6(1)(b))"),
    ("legal_obligation", "Legal obligation (Art. 6(1)(c))"),
    ("vital_interests", "Vital interests (Art. 6(1)(d))"),
    ("public_task", "Public task (Art. 6(1)(e))"),
    ("legitimate_interests", "Legitimate interests (Art. 6(1)(f))"),
]
CHANNELS = [
    ("email", "E-mail"),
    ("phone", "Phone"),
    ("sms", "SMS"),
    ("post", "Post"),
    ("none", "No contact (processing only)"),
]


class CrmConsentPurpose(models.Model):
    _name = "crm.consent.purpose"
    _description = "Purpose of Personal Data Processing"
    _order = "sequence, id"

    name = fields.Char(required=True, translate=True)
    code = fields.Char(
        required=True,
        help="Stable technical name, used in links and by the sync daemon.",
    )
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True)
    company_id = fields.Many2one(
        comodel_name="res.company",
        index=True,
        help="Leave empty to use the purpose in every company.",
    )
    description = fields.Text(translate=True)
    legal_basis = fields.Selection(
        LEGAL_BASES,
        string="Default Legal Basis",
        required=True,
        default="consent",
    )
    channel = fields.Selection(CHANNELS, required=True, default="email")
    is_marketing = fields.Boolean(
        string="Marketing or Profiling",
        default=True,
        help="Restriction and objection flags of a partner block this purpose.",
    )
    double_opt_in = fields.Boolean(
        string="Double Opt-in",
        help="A sign-up stays pending until the person confirms it from the mail.",
    )
    retention_months = fields.Integer(
        default=24,
        help="Months without activity after which the retention cron anonymises "
        "or archives prospects and leads processed for this purpose.",
    )

    _sql_constraints = [
        (
            "code_company_unique",
            "UNIQUE(code, company_id)",
            "The code of a purpose must be unique per company.",
        ),
        (
            "retention_positive",
            "CHECK(retention_months > 0)",
            "The retention period must be at least one month.",
        ),
    ]

    def _crm_needs_consent(self):
        """Tell whether processing for this purpose needs a granted consent row."""
        self.ensure_one()
        return self.legal_basis == "consent"
