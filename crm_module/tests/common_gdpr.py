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

    def grant(self, partner, purpose, action_at=None, source="import"):
        return self.Consent._crm_record_event(
            partner, purpose, "grant", action_at=action_at, source=source
        )
