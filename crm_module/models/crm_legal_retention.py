from datetime import date

from odoo import api, fields, models

#: retention used for a company whose country has no rule
DEFAULT_RETENTION_YEARS = 10


class CrmLegalRetention(models.Model):
    _name = "crm.legal.retention"
    _description = "Legal Retention Period of Invoices per Country"
    _order = "country_id"

    country_id = fields.Many2one(
        comodel_name="res.country",
        required=True,
        ondelete="cascade",
        help="Country of the company that issued or received the invoices.",
    )
    years = fields.Integer(
        required=True,
        help="Invoices are kept until the end of the calendar year of the "
        "invoice date plus this number of years.",
    )
    legal_source = fields.Char(required=True)
    note = fields.Text()

    _sql_constraints = [
        ("country_unique", "UNIQUE(country_id)", "One retention rule per country."),
        ("years_positive", "CHECK(years > 0)", "The retention must be positive."),
    ]

    @api.model
    def _crm_hold_until(self, move):
        """Return the last day an invoice must be kept, from its company country."""
        country = (
            move.company_id.country_id or move.company_id.account_fiscal_country_id
        )
        rule = self.sudo().search([("country_id", "=", country.id)], limit=1)
        years = rule.years if rule else DEFAULT_RETENTION_YEARS
        invoice_date = move.invoice_date or move.date
        return date(invoice_date.year + years, 12, 31)

    @api.model
    def _crm_hold_note(self, move, hold_until):
        country = (
            move.company_id.country_id or move.company_id.account_fiscal_country_id
        )
        rule = self.sudo().search([("country_id", "=", country.id)], limit=1)
        return self.env._(
            "Kept under legal hold until %(date)s after the erasure of the customer's "
            "personal data: %(law)s requires keeping invoices (GDPR Art. 6(1)(c) "
            "and 17(3)(b)). The partner data the invoice needs is kept on the invoice "
            "only.",
            date=fields.Date.to_string(hold_until),
            law=rule.legal_source
            or self.env._("the default of %s years", DEFAULT_RETENTION_YEARS),
        )
