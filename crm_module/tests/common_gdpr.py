from datetime import timedelta

from odoo import fields

from .common import CrmModuleCommon


class CrmGdprCommon(CrmModuleCommon):
    """Purposes and a data subject known under two partners."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Consent = cls.env["crm.consent"]
        cls.Event = cls.env["crm.consent.event"]
        cls.newsletter = cls.env.ref("crm_module.crm_consent_purpose_newsletter")
        cls.calls = cls.env.ref("crm_module.crm_consent_purpose_commercial_calls")
        cls.profiling = cls.env.ref("crm_module.crm_consent_purpose_profiling")
        cls.person = cls.env["res.partner"].create(
            {"name": "Jan Proefpersoon", "email": "Jan.Proef@Example.com"}
        )
        # the same person as contact of a customer, typed differently
        cls.person_contact = cls.env["res.partner"].create(
            {
                "name": "J. Proefpersoon",
                "email": "jan.proef@example.com ",
                "parent_id": cls.customer.id,
            }
        )
        cls.stranger = cls.env["res.partner"].create(
            {"name": "Someone Else", "email": "someone.else@example.com"}
        )

    @classmethod
    def make_dormant(cls, partner, lead, days=3 * 365):
        """Backdate ``partner``, ``lead`` and their messages by ``days``, as if
        nobody had touched them since (SQL: the ORM always writes today)."""
        cls.env.flush_all()
        old = fields.Datetime.now() - timedelta(days=days)
        cls.env.cr.execute(
            "UPDATE res_partner SET write_date = %s WHERE id = %s", [old, partner.id]
        )
        cls.env.cr.execute(
            "UPDATE crm_lead SET write_date = %s WHERE id = %s", [old, lead.id]
        )
        cls.env.cr.execute(
            "UPDATE mail_message SET date = %s WHERE (model, res_id) IN %s",
            [old, (("crm.lead", lead.id), ("res.partner", partner.id))],
        )
        cls.env.invalidate_all()

    def grant(self, partner, purpose, action_at=None, source="import"):
        return self.Consent._crm_record_event(
            partner, purpose, "grant", action_at=action_at, source=source
        )
