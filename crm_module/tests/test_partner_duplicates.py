from odoo.tests import Form, tagged

from .common import CrmModuleCommon


@tagged("post_install", "-at_install", "crm_module")
class TestPartnerDuplicates(CrmModuleCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Partner = cls.env["res.partner"]
        cls.twin = cls.Partner.create(
            {
                "name": "Fictief Software BV",
                "is_company": True,
                "vat": "BE0447123478",
                "country_id": cls.country_be.id,
            }
        )

    def test_same_vat_flags_both(self):
        self.assertTrue(self.customer.possible_duplicate)
        self.assertTrue(self.twin.possible_duplicate)
        self.assertEqual(self.customer.duplicate_partner_ids, self.twin)
        self.assertEqual(self.customer.duplicate_count, 1)
        self.assertEqual(self.twin.duplicate_partner_ids, self.customer)

    def test_child_contacts_are_not_duplicates(self):
        contact = self.Partner.create(
            {"name": "Anna Example", "parent_id": self.customer.id, "type": "contact"}
        )
        self.assertEqual(contact.vat, self.customer.vat, "VAT inherited from company")
        self.assertEqual(contact.vat_key, "BE0447123478")
        self.assertFalse(contact.possible_duplicate)
        self.assertNotIn(contact, self.customer.duplicate_partner_ids)
        self.assertEqual(self.customer.duplicate_partner_ids, self.twin)

    def test_other_company_is_not_a_duplicate(self):
        self.twin.company_id = self.company
        other = self.Partner.create(
            {
                "name": "Fictief Software NL",
                "is_company": True,
                "vat": "BE0447123478",
                "country_id": self.country_be.id,
                "company_id": self.company_2.id,
            }
        )
        self.assertNotIn(other, self.twin.duplicate_partner_ids)
        # a partner shared by all companies may duplicate any company's partner
        self.assertIn(other, self.customer.duplicate_partner_ids)
        self.assertTrue(other.possible_duplicate)

    def test_registry_and_peppol_keys_flag_duplicates(self):
        by_registry = self.Partner.create(
            [
                {
                    "name": name,
                    "is_company": True,
                    "company_registry": registry,
                    "country_id": self.country_nl.id,
                }
                for name, registry in (
                    ("Voorbeeld A", "04123456"),
                    ("Voorbeeld B", "4123456"),
                )
            ]
        )
        self.assertTrue(all(by_registry.mapped("possible_duplicate")))
        by_peppol = self.Partner.create(
            [
                {
                    "name": name,
                    "is_company": True,
                    "peppol_eas": "0106",
                    "peppol_endpoint": endpoint,
                    "country_id": self.country_nl.id,
                }
                for name, endpoint in (
                    ("Peppol A", "87654321"),
                    ("Peppol B", "8765 4321"),
                )
            ]
        )
        self.assertEqual(by_peppol[0].duplicate_partner_ids, by_peppol[1])

    def test_fixing_the_vat_clears_the_flag(self):
        self.twin.vat = "BE0765881217"
        self.assertFalse(self.twin.possible_duplicate)
        self.assertFalse(self.customer.possible_duplicate)
        self.twin.vat = "BE 0447 123 478"
        self.assertTrue(self.customer.possible_duplicate)
        self.twin.action_archive()
        self.assertFalse(self.customer.possible_duplicate)

    def test_unlink_clears_the_flag(self):
        self.twin.unlink()
        self.assertFalse(self.customer.possible_duplicate)

    def test_duplicate_actions_open_list_and_merge_wizard(self):
        action = self.customer.action_crm_view_duplicates()
        self.assertEqual(action["res_model"], "res.partner")
        self.assertEqual(set(action["domain"][0][2]), {self.customer.id, self.twin.id})
        action = self.customer.action_crm_merge_duplicates()
        self.assertEqual(action["res_model"], "base.partner.merge.automatic.wizard")
        wizard = (
            self.env[action["res_model"]].with_context(**action["context"]).create({})
        )
        self.assertEqual(wizard.partner_ids, self.customer | self.twin)
        wizard.dst_partner_id = self.customer
        # Odoo only merges contacts sharing one e-mail unless run by an admin
        self.twin.email = self.customer.email
        wizard.action_merge()
        self.assertFalse(self.twin.exists())
        self.assertFalse(self.customer.possible_duplicate)

    def test_onchange_form_shows_duplicates(self):
        with Form(self.Partner) as form:
            form.company_type = "company"
            form.name = "New Fictief"
            form.country_id = self.country_be
            form.vat = "0447123478"
            self.assertEqual(form.duplicate_count, 2)

    def test_refresh_all_flags(self):
        """The install hook flags duplicates that existed before the module."""
        (self.customer | self.twin).with_context(crm_skip_duplicate_refresh=True).write(
            {"possible_duplicate": False}
        )
        self.Partner._crm_refresh_all_duplicate_flags()
        self.assertTrue(self.customer.possible_duplicate)
        self.assertTrue(self.twin.possible_duplicate)
