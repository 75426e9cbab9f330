import json
from pathlib import Path

from odoo.tests import TransactionCase

from odoo.addons.mail.tests.common import mail_new_test_user

DATA_DIR = Path(__file__).parent / "data"


def load_case(filename):
    """Return the JSON content of a field case shipped with the tests."""
    return json.loads((DATA_DIR / filename).read_text(encoding="utf-8"))


class CrmModuleCommon(TransactionCase):
    """Companies, least-privileged users and backends shared by the tests."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env = cls.env(context=dict(cls.env.context, tracking_disable=True))
        cls.company = cls.env.company
        cls.company_2 = cls.env["res.company"].create({"name": "Fictief Nederland BV"})
        cls.country_be = cls.env.ref("base.be")
        cls.country_nl = cls.env.ref("base.nl")
        cls.country_fr = cls.env.ref("base.fr")
        cls.country_gr = cls.env.ref("base.gr")

        def user(login, groups, companies=None):
            companies = companies or cls.company
            return mail_new_test_user(
                cls.env,
                login=login,
                groups=groups,
                company_id=companies[0].id,
                company_ids=[(6, 0, companies.ids)],
            )

        cls.user_daemon = user(
            "crm_test_daemon", "crm_module.crm_module_group_sync_daemon"
        )
        cls.user_sync_admin = user(
            "crm_test_sync_admin", "crm_module.crm_module_group_sync_admin"
        )
        cls.user_salesman = user("crm_test_salesman", "sales_team.group_sale_salesman")
        cls.user_sale_manager = user(
            "crm_test_sale_manager", "sales_team.group_sale_manager"
        )
        cls.user_finance = user("crm_test_finance", "account.group_account_invoice")
        cls.user_privacy = user(
            "crm_test_privacy", "crm_module.crm_module_group_privacy_officer"
        )
        cls.user_plain = user("crm_test_plain", "base.group_user")

        cls.backend = cls.env["crm.sync.backend"].create(
            {
                "name": "Exact Belgium",
                "kind": "exact",
                "company_id": cls.company.id,
                "tz": "Europe/Brussels",
            }
        )
        cls.backend_2 = cls.env["crm.sync.backend"].create(
            {
                "name": "Sage Nederland",
                "kind": "sage_accounting",
                "company_id": cls.company_2.id,
                "tz": "Europe/Amsterdam",
            }
        )
        cls.customer = cls.env["res.partner"].create(
            {
                "name": "Fictief Software",
                "is_company": True,
                "vat": "BE 0447.123.478",
                "country_id": cls.country_be.id,
                "email": "Info@Fictief-Software.example",
            }
        )
