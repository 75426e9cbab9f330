from unittest.mock import patch

from odoo.tests import tagged

from ..tools.identifiers import (
    normalize_email,
    normalize_peppol,
    normalize_registry,
    normalize_vat,
    vat_prefix_for_country,
)
from .common import CrmModuleCommon, load_case

COUNTRY_BY_PREFIX = {"BE": "BE", "NL": "NL", "FR": "FR", "EL": "GR"}


@tagged("post_install", "-at_install", "crm_module")
class TestIdentifierFunctions(CrmModuleCommon):
    """The pure normalisation helpers, used by the partner computes."""

    def test_normalize_vat_separators_and_case(self):
        for typed in (
            "BE 0447.123.478",
            "be0447123478",
            "BE-0447-123-478",
            "BE/0447 123 478",
        ):
            self.assertEqual(normalize_vat(typed), ("BE0447123478", None), typed)

    def test_normalize_vat_prefix_from_country(self):
        self.assertEqual(normalize_vat("0447123478", "BE"), ("BE0447123478", None))
        self.assertEqual(normalize_vat("801234560", "GR"), ("EL801234560", None))
        self.assertEqual(normalize_vat("GR801234560"), ("EL801234560", None))
        self.assertEqual(vat_prefix_for_country("gr"), "EL")
        self.assertEqual(vat_prefix_for_country("BE"), "BE")

    def test_normalize_vat_invalid(self):
        key, error = normalize_vat("BE0447123487")
        self.assertFalse(key)
        self.assertIn("checksum", error)
        key, error = normalize_vat("0447123478")
        self.assertFalse(key, "a bare number without country cannot be matched")
        self.assertIn("country", error)
        self.assertEqual(normalize_vat(""), (False, None))
        self.assertEqual(normalize_vat(False), (False, None))

    def test_normalize_vat_outside_eu(self):
        self.assertEqual(normalize_vat("GB 980780684"), ("GB980780684", None))
        # no checker for this country: kept unverified but normalised
        self.assertEqual(normalize_vat("12-345", "US"), ("US12345", None))

    def test_normalize_registry(self):
        self.assertEqual(
            normalize_registry("0765.881.217", "BE"), ("BE:0765881217", None)
        )
        self.assertEqual(normalize_registry("765881217", "BE"), ("BE:0765881217", None))
        self.assertFalse(normalize_registry("0765881218", "BE")[0])
        self.assertEqual(
            normalize_registry("503 219 875", "FR"), ("FR:503219875", None)
        )
        self.assertFalse(normalize_registry("503219876", "FR")[0])
        self.assertFalse(normalize_registry("1234", "FR")[0])
        self.assertEqual(normalize_registry("HRB 1234", "DE"), ("DE:HRB1234", None))
        key, error = normalize_registry("04123456", False)
        self.assertFalse(key)
        self.assertIn("country", error)

    def test_normalize_peppol_and_email(self):
        self.assertEqual(normalize_peppol("0106", "4123456"), ("0106:04123456", None))
        self.assertEqual(
            normalize_peppol("0208", "0765.881.217"), ("0208:0765881217", None)
        )
        self.assertFalse(normalize_peppol("0208", "BE0765881217")[0])
        self.assertEqual(
            normalize_peppol("9925", "BE 0447.123.478", vat_country="BE"),
            ("9925:be0447123478", None),
        )
        self.assertFalse(normalize_peppol("9925", "BE0447123487", vat_country="BE")[0])
        self.assertEqual(
            normalize_email(" Info@Example.COM "), ("info@example.com", None)
        )
        self.assertFalse(normalize_email("not an address")[0])


@tagged("post_install", "-at_install", "crm_module")
class TestPartnerIdentifierKeys(CrmModuleCommon):
    """Stored keys on res.partner and the field cases C007, C008, C009."""

    @classmethod
    def _partner(cls, name, **values):
        return cls.env["res.partner"].create(
            dict({"name": name, "is_company": True}, **values)
        )

    def _country(self, vat):
        prefix = vat.replace(" ", "")[:2].upper()
        return self.env.ref(f"base.{COUNTRY_BY_PREFIX[prefix].lower()}")

    def test_partner_keys_computed(self):
        self.assertEqual(self.customer.vat_key, "BE0447123478")
        self.assertEqual(self.customer.vat, "BE 0447.123.478", "typed value is kept")
        self.assertEqual(self.customer.email_key, "info@fictief-software.example")
        self.assertEqual(self.customer.peppol_key, "9925:be0447123478")
        self.assertFalse(self.customer.vat_invalid)
        self.assertFalse(self.customer.identifier_warning)

    def test_c007_vat_punctuation(self):
        case = load_case("C007_vat_punctuation_pairs.json")
        for odoo_vat, other_vat in case["same"]:
            prefixed = odoo_vat if odoo_vat[:2].isalpha() else other_vat
            country = self._country(prefixed)
            first = self._partner("C007 Odoo", vat=odoo_vat, country_id=country.id)
            second = self._partner("C007 Exact", vat=other_vat, country_id=country.id)
            self.assertTrue(first.vat_key, odoo_vat)
            self.assertEqual(first.vat_key, second.vat_key, (odoo_vat, other_vat))
            self.assertEqual(first.vat, odoo_vat, "the typed VAT is not rewritten")
            self.assertIn(second, first.duplicate_partner_ids)
        self.assertEqual(normalize_vat("NL 8076.54.322.B01")[0], "NL807654322B01")
        self.assertEqual(normalize_vat("FR 40 503219875")[0], "FR40503219875")
        for odoo_vat, other_vat in case["different"]:
            first = self._partner(
                "C007 A", vat=odoo_vat, country_id=self._country(odoo_vat).id
            )
            second = self._partner(
                "C007 B", vat=other_vat, country_id=self._country(other_vat).id
            )
            self.assertTrue(
                not second.vat_key or first.vat_key != second.vat_key,
                (odoo_vat, other_vat),
            )
            self.assertNotIn(second, first.duplicate_partner_ids)

    def test_c007_scenario_daemon_sees_matching_key(self):
        """The Exact account 'Fictief Software BV' matches the existing partner."""
        exact_key = normalize_vat("BE0447123478")[0]
        keys = self.env["res.partner"].daemon_partner_keys(
            after_id=self.customer.id - 1, limit=1
        )
        self.assertEqual(keys[0]["id"], self.customer.id)
        self.assertEqual(keys[0]["vat_key"], exact_key)

    def test_c008_missing_country_prefix(self):
        case = load_case("C008_vat_missing_country_prefix.json")
        for entry in case["cases"]:
            odoo, exact = entry["odoo"], entry["exact"]
            country = self.env.ref(f"base.{odoo['country'].lower()}")
            partner = self._partner(
                odoo["name"], vat=odoo["vat"], country_id=country.id
            )
            exact_key = normalize_vat(exact["VATNumber"], exact["Country"])[0]
            self.assertTrue(exact_key)
            if entry["expected"] == "same":
                self.assertEqual(partner.vat_key, exact_key, odoo)
                self.assertFalse(partner.vat_invalid)
            else:
                # bare number on a partner whose country contradicts: no key at
                # all, so it is neither linked nor matched; it is flagged instead
                self.assertFalse(partner.vat_key)
                self.assertTrue(partner.vat_invalid)
                self.assertFalse(partner.possible_duplicate)
                self.assertIn(odoo["name"], partner.identifier_warning)
                self.assertIn("VAT", partner.identifier_warning)
        greek = self.env["res.partner"].search([("name", "=", "Greek Example AE")])
        self.assertEqual(greek.vat_key, "EL801234560")

    def test_c009_kvk_leading_zero(self):
        case = load_case("C009_kvk_leading_zero.json")
        for entry in case["cases"]:
            partner = self._partner(
                "C009 Voorbeeld",
                company_registry=entry["odoo_company_registry"],
                country_id=self.country_nl.id,
            )
            self.assertEqual(partner.registry_key, "NL:04123456")
            self.assertIsInstance(partner.registry_key, str)
            exact_key = normalize_registry(entry["exact_ChamberOfCommerce"], "NL")[0]
            if entry["expected"] == "same":
                self.assertEqual(exact_key, partner.registry_key, entry)
            else:
                self.assertNotEqual(exact_key, partner.registry_key, entry)
        branch_key, error = normalize_registry("000012345678", "NL")
        self.assertFalse(branch_key)
        self.assertIn("branch", error)
        peppol = self._partner(
            "C009 Peppol",
            country_id=self.country_nl.id,
            peppol_eas="0106",
            peppol_endpoint="04123456",
        )
        self.assertEqual(peppol.peppol_key, "0106:04123456")
        self.assertEqual(peppol.peppol_endpoint, "04123456")

    def test_invalid_vat_kept_flagged_not_matched(self):
        first = self._partner(
            "Typo Company", vat="BE0447123487", country_id=self.country_be.id
        )
        second = self._partner(
            "Typo Company bis", vat="BE 0447.123.487", country_id=self.country_be.id
        )
        for partner in first | second:
            self.assertEqual(
                partner.vat.replace(" ", "").replace(".", ""), "BE0447123487"
            )
            self.assertFalse(partner.vat_key)
            self.assertTrue(partner.vat_invalid)
            self.assertFalse(partner.peppol_key)
            self.assertFalse(partner.possible_duplicate)
        self.assertIn("Typo Company", first.identifier_warning)
        self.assertIn("VAT 'BE0447123487'", first.identifier_warning)
        filtered = self.env["res.partner"].search(
            [("vat_invalid", "=", True), ("id", "in", (first | second).ids)]
        )
        self.assertEqual(filtered, first | second)

    def test_absurdly_long_identifiers_are_flagged_not_crashing(self):
        # python-stdnum converts digit strings to integers, which Python refuses
        # past 4,300 digits: such input must be an invalid identifier, not an error
        partner = self._partner(
            "Pasted Twice",
            vat="NL" + "9" * 4400,
            company_registry="1" * 5000,
            country_id=self.country_be.id,
        )
        self.assertFalse(partner.vat_key)
        self.assertTrue(partner.vat_invalid)
        self.assertFalse(partner.registry_key)
        self.assertIn("longer than 64 characters", partner.identifier_warning)
        self.assertEqual(
            normalize_vat("BE" + "4" * 70), (False, "longer than 64 characters")
        )

    def test_unknown_country_is_flagged(self):
        partner = self._partner("Nowhere Ltd", vat="0447123478", company_registry="123")
        self.assertFalse(partner.vat_key)
        self.assertTrue(partner.vat_invalid)
        self.assertTrue(partner.registry_invalid)
        self.assertIn("country", partner.identifier_warning)
        partner.country_id = self.country_be
        self.assertEqual(partner.vat_key, "BE0447123478")
        self.assertFalse(partner.vat_invalid)

    def test_base_vat_checks_numbers_stdnum_cannot(self):
        """When base_vat is installed its check decides for unknown countries."""
        partner = self._partner(
            "Example Inc", vat="12-345", country_id=self.env.ref("base.us").id
        )
        self.assertEqual(partner.vat_key, "US12345")
        partner_class = type(self.env["res.partner"])
        with patch.object(
            partner_class,
            "simple_vat_check",
            create=True,
            new=lambda self, country_code, number: False,
        ):
            partner._compute_identifier_keys()
            self.assertFalse(partner.vat_key)
            self.assertTrue(partner.vat_invalid)
            self.assertIn("base_vat", partner.identifier_warning)

    def test_invalid_email_flagged(self):
        partner = self._partner("Mail Typo", email="info(at)example")
        self.assertFalse(partner.email_key)
        self.assertTrue(partner.email_invalid)

    def test_recompute_keys_of_existing_partners(self):
        """Partners that existed before install get their keys in one batch."""
        partners = self._partner(
            "Existing A", vat="be0765881217", country_id=self.country_be.id
        ) | self._partner(
            "Existing B", company_registry="4123456", country_id=self.country_nl.id
        )
        self.env.flush_all()
        # simulate the state before install: columns present but empty
        self.env.cr.execute(
            "UPDATE res_partner SET vat_key = NULL, registry_key = NULL, "
            "peppol_key = NULL, email_key = NULL WHERE id IN %s",
            (tuple(partners.ids),),
        )
        partners.invalidate_recordset()
        self.assertFalse(partners[0].vat_key)
        partners._compute_identifier_keys()
        self.env.flush_all()
        partners.invalidate_recordset()
        self.assertEqual(partners[0].vat_key, "BE0765881217")
        self.assertEqual(partners[1].registry_key, "NL:04123456")
        # the field machinery used at install recomputes stored fields the same way
        self.env.cr.execute(
            "UPDATE res_partner SET vat_key = NULL WHERE id IN %s",
            (tuple(partners.ids),),
        )
        partners.invalidate_recordset()
        self.env.add_to_compute(partners._fields["vat_key"], partners)
        self.env.flush_all()
        partners.invalidate_recordset()
        self.assertEqual(partners[0].vat_key, "BE0765881217")

    def test_daemon_partner_keys_paging(self):
        partners = self.env["res.partner"].create(
            [
                {"name": f"Paged {index}", "is_company": True, "active": index != 2}
                for index in range(5)
            ]
        )
        contact = self.env["res.partner"].create(
            {"name": "Paged contact", "parent_id": partners[0].id}
        )
        Partner = self.env["res.partner"].with_user(self.user_daemon)
        first = Partner.daemon_partner_keys(after_id=partners[0].id - 1, limit=3)
        self.assertEqual([row["id"] for row in first], partners[:3].ids)
        self.assertFalse(first[2]["active"], "archived partners are listed too")
        second = Partner.daemon_partner_keys(after_id=first[-1]["id"], limit=3)
        self.assertEqual([row["id"] for row in second], partners[3:].ids + contact.ids)
        self.assertEqual(second[-1]["parent_id"], partners[0].id)
        self.assertEqual(second[-1]["commercial_partner_id"], partners[0].id)
        self.assertEqual(
            set(second[0]),
            {
                "id",
                "name",
                "is_company",
                "parent_id",
                "commercial_partner_id",
                "company_id",
                "vat_key",
                "registry_key",
                "peppol_key",
                "email_key",
                "zip",
                "country_code",
                "active",
            },
        )
        capped = Partner.daemon_partner_keys(after_id=0, limit=10000)
        self.assertLessEqual(len(capped), 500)
