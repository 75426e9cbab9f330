"""Requirements of the customer record, GDPR and pipeline issues that the
feature test modules did not pin: every EU VAT format, install on existing data,
the access matrix of every model, legal holds per country, Peppol documents in
the access bundle, personal child contacts in an erasure, the 12-month window
of the forecast and the day-90 boundary of the retention cohorts."""

import base64
import io
import json
import zipfile
from datetime import date, datetime, timedelta
from unittest.mock import patch

from freezegun import freeze_time

from odoo import fields
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import tagged

from odoo.addons.account.tests.common import AccountTestInvoicingCommon
from odoo.addons.mail.tests.common import mail_new_test_user

from ..models.crm_legal_retention import DEFAULT_RETENTION_YEARS
from ..tools.identifiers import normalize_email, normalize_vat
from .common import CrmModuleCommon
from .common_gdpr import CrmGdprCommon
from .common_pipeline import PipelineCommon
from .test_gdpr_requests import GdprRequestCommon

#: one valid VAT number per EU member state, typed with the separators people
#: use, and the key expected (python-stdnum checks every one of them)
EU_VAT_NUMBERS = (
    ("AT", "AT U13585627", "ATU13585627"),
    ("BE", "BE 0428.759.497", "BE0428759497"),
    ("BG", "BG 175 074 752", "BG175074752"),
    ("CY", "CY-10259033P", "CY10259033P"),
    ("CZ", "CZ 25123891", "CZ25123891"),
    ("DE", "DE 136.695.976", "DE136695976"),
    ("DK", "DK 13 58 56 28", "DK13585628"),
    ("EE", "EE100594102", "EE100594102"),
    ("ES", "ES B-64717838", "ESB64717838"),
    ("FI", "FI 2077 4740", "FI20774740"),
    ("FR", "FR 23 334175221", "FR23334175221"),
    ("GR", "EL 094259216", "EL094259216"),
    ("HR", "HR 33392005961", "HR33392005961"),
    ("HU", "HU-12892312", "HU12892312"),
    ("IE", "IE 6433435F", "IE6433435F"),
    ("IT", "IT 00743110157", "IT00743110157"),
    ("LT", "LT 119511515", "LT119511515"),
    ("LU", "LU 150 274 42", "LU15027442"),
    ("LV", "LV 4000 3521 600", "LV40003521600"),
    ("MT", "MT 1167-9112", "MT11679112"),
    ("NL", "NL 0044.95.445.B01", "NL004495445B01"),
    ("PL", "PL 856-734-62-15", "PL8567346215"),
    ("PT", "PT 501 964 843", "PT501964843"),
    ("RO", "RO 185 472 90", "RO18547290"),
    ("SE", "SE 1234567897.01", "SE123456789701"),
    ("SI", "SI 5022 3054", "SI50223054"),
    ("SK", "SK 202 274 96 19", "SK2022749619"),
)

FULL = (True, True, True, True)
READ = (True, False, False, False)
NONE = (False, False, False, False)
NO_UNLINK = (True, True, True, False)


@tagged("post_install", "-at_install", "crm_module")
class TestEuVatFormats(CrmModuleCommon):
    """Every EU member state's VAT, with separators, lower case or no prefix."""

    def test_every_eu_vat_format_gives_one_key(self):
        self.assertEqual(len({country for country, _typed, _key in EU_VAT_NUMBERS}), 27)
        for country_code, typed, key in EU_VAT_NUMBERS:
            country = self.env.ref(f"base.{country_code.lower()}")
            bare = key[2:]
            variants = (typed, typed.lower(), bare, f"{key[:2]}/{bare}")
            partners = self.env["res.partner"].create(
                [
                    {
                        "name": f"VAT {country_code} {index}",
                        "is_company": True,
                        "vat": variant,
                        "country_id": country.id,
                    }
                    for index, variant in enumerate(variants)
                ]
            )
            for partner in partners:
                self.assertEqual(partner.vat_key, key, (country_code, partner.vat))
                self.assertFalse(partner.vat_invalid, partner.vat)
            # the same company typed four ways: each one sees the three others
            self.assertEqual(len(partners[0].duplicate_partner_ids), 3, country_code)
        # Greece: ISO code GR, VAT prefix EL, whichever one is typed
        self.assertEqual(normalize_vat("GR 094259216")[0], "EL094259216")
        self.assertEqual(normalize_vat("094259216", "GR")[0], "EL094259216")
        # Northern Ireland traders keep their XI prefix
        self.assertEqual(normalize_vat("XI 980 7806 84")[0], "XI980780684")

    def test_wrong_check_digit_is_flagged_in_every_format(self):
        partner = self.env["res.partner"].create(
            {
                "name": "Typo Italia",
                "is_company": True,
                "vat": "IT 00743110158",
                "country_id": self.env.ref("base.it").id,
            }
        )
        self.assertFalse(partner.vat_key)
        self.assertTrue(partner.vat_invalid)
        self.assertIn("Typo Italia", partner.identifier_warning)


@tagged("post_install", "-at_install", "crm_module")
class TestInstallOnExistingData(CrmModuleCommon):
    """Partners that existed before the module get keys and duplicate flags."""

    def test_partners_older_than_the_module_have_keys(self):
        # created by base, before this module added the key columns, and never
        # written since: its key was filled when the column was created
        admin = self.env.ref("base.partner_admin")
        module = self.env["ir.module.module"].search([("name", "=", "crm_module")])
        self.assertLessEqual(admin.write_date, module.write_date)
        self.assertTrue(admin.email)
        self.assertEqual(admin.email_key, normalize_email(admin.email)[0])

    def test_identifier_keys_filled_chunk_by_chunk(self):
        Partner = self.env["res.partner"]
        partners = Partner.create(
            [
                {
                    "name": f"Before install {index}",
                    "is_company": True,
                    "vat": vat,
                    "email": f"Before.{index}@Example.com",
                    "country_id": self.country_be.id,
                }
                for index, vat in enumerate(("be0765881217", "0447 123 478", "BE1"))
            ]
        )
        self.env.flush_all()
        # the state after pre_init_hook: the columns exist but are empty
        self.env.cr.execute(
            "UPDATE res_partner SET vat_key = NULL, email_key = NULL, "
            "vat_invalid = NULL, identifier_warning = NULL WHERE id IN %s",
            [tuple(partners.ids)],
        )
        self.env.invalidate_all()
        compute = type(Partner)._compute_identifier_keys
        sizes = []

        def spy(records):
            sizes.append(len(records))
            return compute(records)

        with (
            patch("odoo.addons.crm_module.models.res_partner.IDENTIFIER_FILL_CHUNK", 2),
            patch.object(type(Partner), "_compute_identifier_keys", spy),
        ):
            Partner._crm_fill_identifier_keys()
        self.assertGreater(len(sizes), 2)
        self.assertLessEqual(max(sizes), 2)
        self.assertEqual(
            partners.mapped("vat_key"), ["BE0765881217", "BE0447123478", False]
        )
        self.assertEqual(partners[0].email_key, "before.0@example.com")
        self.assertEqual(partners.mapped("vat_invalid"), [False, False, True])
        self.assertIn("Before install 2", partners[2].identifier_warning)

    def test_duplicate_flags_refreshed_chunk_by_chunk(self):
        twins = self.env["res.partner"].create(
            [
                {
                    "name": f"Old twin {index}",
                    "is_company": True,
                    "vat": vat,
                    "country_id": self.country_be.id,
                }
                for index, vat in enumerate(("BE0765881217", "0765 881 217"))
            ]
        )
        stale = self.env["res.partner"].create(
            {"name": "Stale flag", "is_company": True}
        )
        # the state before install: no flag where one is due, one left over
        writer = self.env["res.partner"].with_context(crm_skip_duplicate_refresh=True)
        writer.browse(twins.ids).write({"possible_duplicate": False})
        writer.browse(stale.ids).write({"possible_duplicate": True})
        refresh = type(self.env["res.partner"])._crm_refresh_duplicate_flags
        chunks = []

        def spy(partners):
            chunks.append(len(partners))
            return refresh(partners)

        with (
            patch(
                "odoo.addons.crm_module.models.res_partner.DUPLICATE_REFRESH_CHUNK", 1
            ),
            patch.object(
                type(self.env["res.partner"]),
                "_crm_refresh_duplicate_flags",
                spy,
            ),
        ):
            self.env["res.partner"]._crm_refresh_all_duplicate_flags()
        self.assertGreater(len(chunks), 2)
        self.assertEqual(set(chunks), {1})
        self.assertTrue(all(twins.mapped("possible_duplicate")))
        self.assertFalse(stale.possible_duplicate)


@tagged("post_install", "-at_install", "crm_module")
class TestBackendCompanyTimeZone(CrmModuleCommon):
    """The daily run time is read in the time zone of the backend's company."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.company.partner_id.tz = "Europe/Brussels"
        cls.company_2.partner_id.tz = "Asia/Tokyo"
        cls.user_sync_admin.tz = "America/New_York"
        cls.user_sync_admin.company_ids = cls.company | cls.company_2

    def test_default_time_zone_is_the_backend_company_one(self):
        Backend = (
            self.env["crm.sync.backend"]
            .with_user(self.user_sync_admin)
            .with_context(allowed_company_ids=(self.company | self.company_2).ids)
        )
        with freeze_time("2026-12-03 10:00:00"):
            own = Backend.create(
                {
                    "name": "Own company",
                    "kind": "exact",
                    "schedule_type": "daily",
                    "daily_time": 2.0,
                }
            )
            other = Backend.create(
                {
                    "name": "Other company",
                    "kind": "exact",
                    "company_id": self.company_2.id,
                    "schedule_type": "daily",
                    "daily_time": 2.0,
                }
            )
            self.assertEqual(own.tz, "Europe/Brussels")
            self.assertEqual(other.tz, "Asia/Tokyo")
            # 02:00 in Tokyo (UTC+9) is 17:00 UTC the day before
            self.assertEqual(other.next_run, datetime(2026, 12, 3, 17, 0))
            self.assertEqual(own.next_run, datetime(2026, 12, 4, 1, 0))
        # an explicit time zone is kept
        explicit = Backend.create(
            {
                "name": "Explicit",
                "kind": "peppol",
                "company_id": self.company_2.id,
                "tz": "UTC",
            }
        )
        self.assertEqual(explicit.tz, "UTC")
        # the form follows the company picked
        draft = Backend.new({"name": "Draft", "kind": "exact"})
        draft.company_id = self.company_2
        draft._onchange_company_id()
        self.assertEqual(draft.tz, "Asia/Tokyo")


@tagged("post_install", "-at_install", "crm_module")
class TestSyncLinkUniqueness(CrmModuleCommon):
    """Duplicate links are refused with the record and the field named."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.other = cls.env["res.partner"].create(
            {"name": "Atelier Imaginaire SRL", "is_company": True}
        )
        cls.link = cls.env["crm.sync.link"].create(
            {
                "backend_id": cls.backend.id,
                "res_model": "res.partner",
                "res_id": cls.customer.id,
                "external_id": "guid-1",
            }
        )

    def test_duplicate_link_by_hand_names_record_and_field(self):
        Link = self.env["crm.sync.link"].with_user(self.user_sync_admin)
        with self.assertRaises(ValidationError) as catcher:
            Link.create(
                {
                    "backend_id": self.backend.id,
                    "res_model": "res.partner",
                    "res_id": self.other.id,
                    "external_id": "guid-1",
                }
            )
        message = str(catcher.exception)
        self.assertIn("(field External ID)", message)
        self.assertIn("'guid-1'", message)
        self.assertIn("Atelier Imaginaire SRL", message)
        self.assertIn("Fictief Software", message)
        second = Link.create(
            {
                "backend_id": self.backend.id,
                "res_model": "res.partner",
                "res_id": self.other.id,
                "external_id": "guid-2",
            }
        )
        with self.assertRaises(ValidationError) as catcher:
            second.write({"res_id": self.customer.id})
        self.assertIn("(field Odoo Record)", str(catcher.exception))
        self.assertIn("'guid-1'", str(catcher.exception))
        # the same values within one batch are refused as well
        with self.assertRaisesRegex(ValidationError, "field External ID"):
            self.env["crm.sync.link"].create(
                [
                    {
                        "backend_id": self.backend_2.id,
                        "res_model": "res.partner",
                        "res_id": partner.id,
                        "external_id": "guid-nl",
                    }
                    for partner in (self.customer, self.other)
                ]
            )
        # the same external id on another backend is fine
        self.env["crm.sync.link"].create(
            {
                "backend_id": self.backend_2.id,
                "res_model": "res.partner",
                "res_id": self.customer.id,
                "external_id": "guid-1",
            }
        )

    def test_upsert_refuses_one_external_id_for_two_records(self):
        """The last record would silently win: the whole call is refused."""
        third = self.env["res.partner"].create({"name": "Third", "is_company": True})
        Link = self.env["crm.sync.link"].with_user(self.user_daemon)
        with self.assertRaisesRegex(
            ValidationError, r"'guid-7' \(field external_id\) appears twice"
        ):
            Link.daemon_upsert_links(
                [
                    {
                        "backend_id": self.backend.id,
                        "res_model": "res.partner",
                        "res_id": partner.id,
                        "external_id": "guid-7",
                    }
                    for partner in (self.other, third)
                ]
            )
        self.assertFalse(
            self.env["crm.sync.link"].search([("external_id", "=", "guid-7")])
        )


@tagged("post_install", "-at_install", "crm_module")
class TestAccessMatrixAllModels(CrmModuleCommon):
    """Read/write/create/delete of every model of the module, per group."""

    def _access(self, user, model):
        Model = self.env[model].with_user(user)
        return tuple(
            Model.has_access(operation)
            for operation in ("read", "write", "create", "unlink")
        )

    def test_gdpr_and_pipeline_access_matrix(self):
        kpis = (
            "crm.kpi.stage.conversion",
            "crm.kpi.response.time",
            "crm.kpi.retention",
            "crm.kpi.stage.bottleneck",
            "crm.kpi.forecast",
        )
        users = {
            "admin": self.user_sync_admin,
            "daemon": self.user_daemon,
            "salesman": self.user_salesman,
            "manager": self.user_sale_manager,
            "finance": self.user_finance,
            "privacy": self.user_privacy,
            "plain": self.user_plain,
        }
        # model: (admin, daemon, salesman, manager, finance, privacy, plain)
        matrix = {
            "crm.consent.purpose": (READ, READ, READ, READ, READ, FULL, READ),
            "crm.consent": (READ, READ, READ, READ, NONE, READ, NONE),
            "crm.consent.event": (NONE, READ, NONE, NONE, NONE, READ, NONE),
            "crm.consent.block": (NONE, NONE, NONE, READ, NONE, READ, NONE),
            "crm.legal.retention": (NONE, NONE, NONE, NONE, NONE, FULL, NONE),
            "crm.privacy.request": (NONE, NONE, NONE, NONE, NONE, NO_UNLINK, NONE),
            "crm.retention.wizard": (NONE, NONE, NONE, NONE, NONE, FULL, NONE),
            "crm.consent.record.wizard": (NONE, NONE, NONE, NONE, NONE, FULL, NONE),
            "crm.lead.stage.history": (READ, NONE, READ, FULL, NONE, NONE, NONE),
            "crm.ticket.stage": (READ, NONE, READ, FULL, NONE, NONE, NONE),
            "crm.ticket": (NO_UNLINK, NONE, NO_UNLINK, FULL, NONE, NONE, NONE),
            "crm.followup.rule": (READ, NONE, READ, FULL, NONE, NONE, NONE),
            **{kpi: (READ, NONE, READ, READ, NONE, NONE, NONE) for kpi in kpis},
        }
        for model, expected in matrix.items():
            for (role, user), access in zip(users.items(), expected, strict=True):
                self.assertEqual(self._access(user, model), access, (role, model))

    def test_every_model_has_access_rows_and_company_rules(self):
        """A new model of the module cannot ship without ACLs or, when it belongs
        to a company, without a multi-company rule."""
        own_models = [
            name
            for name, model in self.env.registry.items()
            if model._original_module == "crm_module" and not model._abstract
        ]
        self.assertGreater(len(own_models), 20)
        for name in own_models:
            ir_model = self.env["ir.model"]._get(name)
            self.assertTrue(
                self.env["ir.model.access"].search([("model_id", "=", ir_model.id)]),
                f"{name} has no access row",
            )
            field = self.env[name]._fields.get("company_id")
            if field is None or not field.store:
                continue
            rules = self.env["ir.rule"].search(
                [("model_id", "=", ir_model.id), ("global", "=", True)]
            )
            self.assertTrue(
                any("company_ids" in (rule.domain_force or "") for rule in rules),
                f"{name} belongs to a company but has no multi-company rule",
            )

    def test_tickets_and_history_of_other_company_are_hidden(self):
        team = self.env["crm.team"].create(
            {"name": "NL team", "company_id": self.company_2.id}
        )
        ticket = self.env["crm.ticket"].create(
            {"name": "Other company ticket", "company_id": self.company_2.id}
        )
        lead = self.env["crm.lead"].create(
            {
                "name": "Other company deal",
                "type": "opportunity",
                "company_id": self.company_2.id,
                "team_id": team.id,
            }
        )
        Ticket = self.env["crm.ticket"].with_user(self.user_sale_manager)
        self.assertFalse(Ticket.search([("id", "=", ticket.id)]))
        with self.assertRaises(AccessError):
            ticket.with_user(self.user_sale_manager).name  # noqa: B018
        History = self.env["crm.lead.stage.history"].with_user(self.user_sale_manager)
        self.assertTrue(lead.sudo().stage_history_ids)
        self.assertFalse(History.search([("lead_id", "=", lead.id)]))


@tagged("post_install", "-at_install", "crm_module", "crm_gdpr")
class TestLegalHoldPerCountry(GdprRequestCommon):
    """The retention of invoices follows the country of the issuing company."""

    def _draft(self, invoice_date):
        return self.env["account.move"].new(
            {
                "move_type": "out_invoice",
                "company_id": self.company.id,
                "invoice_date": invoice_date,
            }
        )

    def test_hold_until_and_source_per_country(self):
        Retention = self.env["crm.legal.retention"]
        invoice_date = date(2024, 11, 20)
        for code, years in (("nl", 7), ("fr", 10), ("de", 10), ("dk", 5)):
            country = self.env.ref(f"base.{code}")
            self.company.country_id = country
            move = self._draft(invoice_date)
            until = Retention._crm_hold_until(move)
            self.assertEqual(until, date(2024 + years, 12, 31), code)
            rule = Retention.search([("country_id", "=", country.id)])
            note = Retention._crm_hold_note(move, until)
            self.assertIn(rule.legal_source, note)
            self.assertIn(fields.Date.to_string(until), note)
        # a country without a rule gets the documented default
        self.company.country_id = self.env.ref("base.us")
        move = self._draft(invoice_date)
        until = Retention._crm_hold_until(move)
        self.assertEqual(until, date(2024 + DEFAULT_RETENTION_YEARS, 12, 31))
        self.assertIn(
            f"default of {DEFAULT_RETENTION_YEARS} years",
            Retention._crm_hold_note(move, until),
        )

    def test_shipped_rules_document_their_legal_source(self):
        rules = self.env["crm.legal.retention"].search([])
        self.assertGreaterEqual(len(rules), 4)
        for rule in rules:
            self.assertTrue(rule.legal_source.startswith(f"{rule.country_id.code}: "))
            self.assertIn(f"{rule.years} years", rule.legal_source)
        # the privacy officer adjusts them; a salesperson cannot
        rule = rules[0].with_user(self.officer)
        rule.years += 1
        with self.assertRaises(AccessError):
            rules[0].with_user(self.salesman).years = 3


@tagged("post_install", "-at_install", "crm_module", "crm_gdpr")
class TestPrivacyBundleAndChildren(GdprRequestCommon):
    """Peppol documents in the access bundle; personal child contacts erased."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.person = cls.env["res.partner"].create(
            {
                "name": "Lena Voorbeeld",
                "email": "lena.voorbeeld@example.com",
                "country_id": cls.env.ref("base.be").id,
                "peppol_eas": "0208",
                "peppol_endpoint": "0765881217",
            }
        )
        cls.home = cls.env["res.partner"].create(
            {
                "name": "Lena Voorbeeld-Thuis",
                "parent_id": cls.person.id,
                "type": "other",
                "phone": "+32 470 55 66 77",
                "street": "Kerkstraat 9",
                "email": "lena.thuis@example.com",
            }
        )

    def test_access_bundle_has_the_peppol_documents(self):
        sent = self.make_invoice(self.person, "2025-06-01", amount=120.0)
        plain = self.make_invoice(self.person, "2025-07-01", amount=80.0)
        sent.write(
            {
                "crm_peppol_state": "delivered",
                "crm_peppol_status_at": datetime(2025, 6, 2, 9, 0),
            }
        )
        xml = b"<Invoice><cbc:ID>peppol-doc</cbc:ID></Invoice>"
        self.env["ir.attachment"].create(
            {
                "name": "invoice_ubl_bis3.xml",
                "raw": xml,
                "mimetype": "application/xml",
                "res_model": "account.move",
                "res_id": sent.id,
                "res_field": "ubl_cii_xml_file",
            }
        )
        sent.invalidate_recordset(["ubl_cii_xml_id"])
        self.assertTrue(sent.ubl_cii_xml_id)
        request = self.new_request(self.person, "access")
        request.action_process()
        attachment = self.env["ir.attachment"].search(
            [("res_model", "=", "crm.privacy.request"), ("res_id", "=", request.id)]
        )
        archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(attachment.datas)))
        data = json.loads(archive.read("personal_data.json"))
        (document,) = data["peppol_documents"]
        self.assertEqual(document["name"], sent.name)
        self.assertEqual(document["crm_peppol_state"], "delivered")
        self.assertEqual(document["crm_peppol_status_at"], "2025-06-02 09:00:00")
        self.assertEqual(document["ubl_cii_xml_id"], "invoice_ubl_bis3.xml")
        self.assertNotIn(plain.name, [row["name"] for row in data["peppol_documents"]])
        self.assertIn("peppol_documents.csv", archive.namelist())
        self.assertEqual(
            archive.read(f"peppol/{sent.id}-invoice_ubl_bis3.xml"), xml, "the UBL file"
        )
        person = next(row for row in data["partners"] if row["id"] == self.person.id)
        self.assertEqual(person["peppol_endpoint"], "0765881217")
        home = next(row for row in data["partners"] if row["id"] == self.home.id)
        self.assertEqual(home["phone"], "+32 470 55 66 77")

    def test_erasure_covers_personal_child_contacts(self):
        # a company filed under the person is not one of her personal contacts
        company_contact = self.env["res.partner"].create(
            {
                "name": "Voorbeeld Holding",
                "is_company": True,
                "parent_id": self.person.id,
            }
        )
        lead = self.env["crm.lead"].create(
            {
                "name": "Home renovation",
                "type": "opportunity",
                "partner_id": self.home.id,
            }
        )
        lead.message_post(body="Call Lena Voorbeeld-Thuis on +32 470 55 66 77")
        needles = ["Lena Voorbeeld", "+32 470 55 66 77", "lena.thuis@example.com"]
        self.assertTrue(self._scan(needles))
        self.new_request(self.person, "erasure").action_process()
        self.assertEqual(self._scan(needles), [])
        home = self.home.with_context(active_test=False)
        self.assertTrue(home.crm_erased)
        self.assertFalse(home.street)
        self.assertFalse(company_contact.crm_erased)


@tagged("post_install", "-at_install", "crm_module", "crm_pipeline")
class TestForecastHistoryWindow(PipelineCommon):
    """The historical win rate only uses the stage history of the last 12 months."""

    def test_old_history_does_not_weigh_on_the_forecast(self):
        History = self.env["crm.lead.stage.history"]
        now = fields.Datetime.now()
        old = self.create_opportunity(name="Won long ago", expected_revenue=10)
        History.search([("lead_id", "=", old.id)]).write(
            {"date": now - timedelta(days=400)}
        )
        old.stage_id = self.stage_won
        won = self.create_opportunity(name="Won lately", expected_revenue=10)
        won.stage_id = self.stage_won
        lost = self.create_opportunity(name="Lost lately", expected_revenue=10)
        lost.action_set_lost()
        still_open = self.create_opportunity(
            name="Open", expected_revenue=1000, probability=30
        )
        self.env.flush_all()
        # P1 entered within 12 months: one won, one lost -> 50 %
        row = (
            self.env["crm.kpi.forecast"]
            .with_user(self.manager)
            .search([("lead_id", "=", still_open.id), ("kind", "=", "pipeline")])
        )
        self.assertAlmostEqual(row.stage_win_rate, 50.0)
        self.assertAlmostEqual(row.historical_revenue, 500.0)
        self.assertAlmostEqual(row.prorated_revenue, 300.0)


@tagged("post_install", "-at_install", "crm_module", "crm_pipeline")
class TestRetentionDay90Boundary(AccountTestInvoicingCommon):
    """A customer is still active with a second invoice on day 90, not on day 91."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager = mail_new_test_user(
            cls.env,
            login="retention_boundary_manager",
            groups="sales_team.group_sale_manager",
            company_id=cls.env.company.id,
            company_ids=[(6, 0, cls.env.company.ids)],
        )
        cls.day_90 = cls.env["res.partner"].create({"name": "D90", "is_company": True})
        cls.day_91 = cls.env["res.partner"].create({"name": "D91", "is_company": True})
        first = date(2025, 1, 10)
        for partner, later in ((cls.day_90, 90), (cls.day_91, 91)):
            for day in (first, first + timedelta(days=later)):
                move = cls.init_invoice(
                    "out_invoice",
                    partner=partner,
                    invoice_date=day,
                    amounts=[100.0],
                    taxes=[],
                )
                move.action_post()
        cls.env.flush_all()

    def test_day_90_is_inclusive(self):
        report = self.env["crm.kpi.retention"].with_user(self.manager)
        rows = report.search([("partner_id", "in", (self.day_90 | self.day_91).ids)])
        self.assertEqual(
            {row.partner_id: row.retained_count for row in rows},
            {self.day_90: 1, self.day_91: 0},
        )
        self.assertEqual(set(rows.mapped("cohort_month")), {date(2025, 1, 1)})


@tagged("post_install", "-at_install", "crm_module", "crm_gdpr")
class TestRetentionCron(CrmGdprCommon):
    """The retention cron reports first and changes data only when told to."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.old_prospect = cls.env["res.partner"].create(
            {"name": "Dormant Prospect", "email": "dormant@example.com"}
        )
        cls.old_lead = cls.env["crm.lead"].create(
            {"name": "Dormant lead", "contact_name": "Dormant Contact", "type": "lead"}
        )
        cls.make_dormant(cls.old_prospect, cls.old_lead)

    def test_cron_is_a_dry_run_until_applied(self):
        Wizard = self.env["crm.retention.wizard"]
        leads, partners = Wizard._cron_retention()
        self.assertIn(self.old_lead, leads)
        self.assertIn(self.old_prospect, partners)
        self.assertEqual(self.old_prospect.name, "Dormant Prospect")
        self.assertEqual(self.old_lead.contact_name, "Dormant Contact")
        self.assertEqual(
            self.env.ref("crm_module.crm_retention_cron").code,
            "model._cron_retention()",
        )

        params = self.env["ir.config_parameter"]
        params.set_param("crm_module.retention_mode", "archive")
        params.set_param("crm_module.retention_apply", "1")
        Wizard._cron_retention()
        self.assertFalse(self.old_lead.active)
        self.assertEqual(self.old_lead.contact_name, "Dormant Contact")
        self.assertFalse(self.old_prospect.active)
        self.assertFalse(self.old_prospect.crm_erased)

    def test_cron_anonymises_when_applied(self):
        params = self.env["ir.config_parameter"]
        params.set_param("crm_module.retention_mode", "anonymise")
        params.set_param("crm_module.retention_apply", "1")
        self.env["crm.retention.wizard"]._cron_retention()
        self.assertFalse(self.old_lead.contact_name)
        self.assertTrue(self.old_prospect.crm_erased)
        self.assertFalse(self.old_prospect.email)


@tagged("post_install", "-at_install", "crm_module", "crm_pipeline")
class TestPipelineScreens(PipelineCommon):
    """The Stuck filter and decoration, and graph + pivot for every KPI report."""

    def test_stuck_filter_and_kpi_views_for_salespeople(self):
        Lead = self.env["crm.lead"].with_user(self.salesman)
        views = Lead.get_views([(False, "kanban"), (False, "list"), (False, "search")])
        self.assertIn('name="stuck"', views["views"]["search"]["arch"])
        self.assertIn("is_stuck", views["views"]["kanban"]["arch"])
        self.assertIn("decoration-warning", views["views"]["list"]["arch"])
        menu = self.env.ref("crm_module.crm_kpi_menu")
        self.assertEqual(menu.name, "CRM KPIs")
        for model in (
            "crm.kpi.stage.conversion",
            "crm.kpi.response.time",
            "crm.kpi.retention",
            "crm.kpi.stage.bottleneck",
            "crm.kpi.forecast",
        ):
            views = (
                self.env[model]
                .with_user(self.salesman)
                .get_views([(False, "graph"), (False, "pivot")])
            )
            self.assertEqual(set(views["views"]), {"graph", "pivot"}, model)
            action = self.env["ir.actions.act_window"].search(
                [("res_model", "=", model)]
            )
            self.assertTrue(action, model)
            self.assertIn("graph", action[0].view_mode)


@tagged("post_install", "-at_install", "crm_module", "crm_gdpr")
class TestMergeDuplicates(CrmGdprCommon):
    """Odoo's merge wizard, opened from the duplicates button, keeps sync links
    on a live contact and the consent ledger sealed."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.twin = cls.env["res.partner"].create(
            {
                "name": "Fictief Software BV",
                "is_company": True,
                "vat": "BE0447123478",
                "country_id": cls.country_be.id,
            }
        )

    def _merge(self, partners, target):
        wizard = (
            self.env["base.partner.merge.automatic.wizard"]
            .with_context(active_model="res.partner", active_ids=partners.ids)
            .create({})
        )
        wizard.dst_partner_id = target
        wizard.action_merge()

    def _link(self, partner, external_id):
        return self.env["crm.sync.link"].create(
            {
                "backend_id": self.backend.id,
                "res_model": "res.partner",
                "res_id": partner.id,
                "external_id": external_id,
            }
        )

    def test_merge_moves_sync_links_to_the_contact_kept(self):
        link = self._link(self.twin, "exact-twin")
        self.assertTrue(self.customer.possible_duplicate)
        self._merge(self.customer | self.twin, self.customer)
        self.assertFalse(self.twin.exists())
        self.assertEqual(link.res_id, self.customer.id)
        self.assertEqual(link.partner_id, self.customer)
        self.assertEqual(self.customer.sync_link_ids, link)
        self.assertFalse(self.customer.possible_duplicate)

    def test_merge_refuses_two_links_on_one_backend(self):
        self._link(self.customer, "exact-1")
        self._link(self.twin, "exact-2")
        with self.assertRaises(UserError) as catcher:
            self._merge(self.customer | self.twin, self.customer)
        self.assertIn("'exact-1'", str(catcher.exception))
        self.assertIn("'exact-2'", str(catcher.exception))
        self.assertIn("Exact Belgium", str(catcher.exception))
        self.assertTrue(self.twin.exists())

    def test_merge_keeps_the_consent_ledger_sealed(self):
        self.grant(self.person_contact, self.newsletter)
        with self.assertRaisesRegex(UserError, "consent ledger"):
            self._merge(self.person | self.person_contact, self.person)
        self.assertTrue(self.person_contact.exists())
        self.assertEqual(self.Event._crm_verify_ledger(), [])
        # the contact without ledger rows may be merged into the one with them
        plain = self.env["res.partner"].create(
            {"name": "Jan P.", "email": "jan.proef@example.com"}
        )
        self._merge(self.person_contact | plain, self.person_contact)
        self.assertFalse(plain.exists())
        self.assertEqual(self.Event._crm_verify_ledger(), [])
