from odoo import fields, models

FIELD_GROUPS = [
    ("legal_name", "Legal name"),
    ("vat", "VAT number"),
    ("registry", "Company registry"),
    ("billing_address", "Billing address"),
    ("payment_terms", "Payment terms"),
    ("contacts", "Contacts"),
    ("phones", "Phones"),
    ("emails", "E-mails"),
    ("tags", "Tags"),
]
#: finance owns what the ledger is legally responsible for, sales the rest
DEFAULT_OWNERSHIP = {
    "legal_name": "finance",
    "vat": "finance",
    "registry": "finance",
    "billing_address": "finance",
    "payment_terms": "finance",
    "contacts": "sales",
    "phones": "sales",
    "emails": "sales",
    "tags": "sales",
}
OWNERS = [
    ("finance", "Finance (accounting system wins)"),
    ("sales", "Sales (Odoo wins)"),
]


class CrmSyncOwnership(models.Model):
    _name = "crm.sync.ownership"
    _description = "Synchronisation Field Ownership"
    _order = "backend_id, id"

    backend_id = fields.Many2one(
        comodel_name="crm.sync.backend",
        required=True,
        ondelete="cascade",
        index=True,
    )
    company_id = fields.Many2one(
        related="backend_id.company_id",
        store=True,
        index=True,
    )
    field_group = fields.Selection(FIELD_GROUPS, required=True)
    owner = fields.Selection(OWNERS, required=True, default="finance")

    _sql_constraints = [
        (
            "backend_field_group_unique",
            "UNIQUE(backend_id, field_group)",
            "Each field group has a single owner per backend.",
        ),
    ]
