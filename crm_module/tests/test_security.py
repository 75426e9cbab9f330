from odoo.exceptions import AccessError, ValidationError
from odoo.tests import tagged

from .common import CrmModuleCommon

MODELS = (
    "crm.sync.backend",
    "crm.sync.ownership",
    "crm.sync.link",
    "crm.sync.run",
    "crm.sync.issue",
    "crm.sync.issue.suggestion",
)


@tagged("post_install", "-at_install", "crm_module")
class TestSecurity(CrmModuleCommon):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        Link = cls.env["crm.sync.link"]
        cls.link = Link.create(
            {
                "backend_id": cls.backend.id,
                "res_model": "res.partner",
                "res_id": cls.customer.id,
                "external_id": "guid-1",
            }
        )
        cls.link_2 = Link.create(
            {
                "backend_id": cls.backend_2.id,
                "res_model": "res.partner",
                "res_id": cls.customer.id,
                "external_id": "guid-nl-1",
            }
        )
        cls.issue = cls.env["crm.sync.issue"].create(
            {
                "backend_id": cls.backend.id,
                "kind": "duplicate",
                "message": "Two partners share BE0447123478",
            }
        )
        cls.issue_2 = cls.env["crm.sync.issue"].create(
            {
                "backend_id": cls.backend_2.id,
                "kind": "remote_error",
                "message": "Sage answered 500",
            }
        )

    def _access(self, user, model):
        Model = self.env[model].with_user(user)
        return tuple(
            Model.has_access(operation)
            for operation in ("read", "write", "create", "unlink")
        )

    def test_access_matrix(self):
        full = (True, True, True, True)
        read = (True, False, False, False)
        none = (False, False, False, False)
        expected = {
            self.user_sync_admin: dict.fromkeys(MODELS, full),
            self.user_daemon: {
                "crm.sync.backend": read,
                "crm.sync.ownership": read,
                "crm.sync.link": (True, True, True, False),
                "crm.sync.run": (True, True, True, False),
                "crm.sync.issue": (True, True, True, False),
                "crm.sync.issue.suggestion": full,
            },
            self.user_salesman: dict.fromkeys(MODELS, read),
            self.user_sale_manager: dict(
                dict.fromkeys(MODELS, read),
                **{"crm.sync.issue": (True, True, False, False)},
            ),
            self.user_finance: dict.fromkeys(MODELS, read),
            self.user_privacy: dict.fromkeys(MODELS, read),
            self.user_plain: dict.fromkeys(MODELS, none),
        }
        for user, per_model in expected.items():
            for model, access in per_model.items():
                self.assertEqual(self._access(user, model), access, (user.login, model))

    def test_salesman_reads_but_cannot_change_backend(self):
        backend = self.backend.with_user(self.user_salesman)
        self.assertEqual(backend.name, "Exact Belgium")
        with self.assertRaises(AccessError):
            backend.write({"name": "Hacked"})
        with self.assertRaises(AccessError):
            backend.action_run_now()
        with self.assertRaises(AccessError):
            self.env["crm.sync.backend"].with_user(self.user_salesman).create(
                {"name": "New", "kind": "exact"}
            )
        with self.assertRaises(AccessError):
            self.issue.with_user(self.user_salesman).action_retry()

    def test_multi_company_rules_hide_other_company(self):
        Link = self.env["crm.sync.link"].with_user(self.user_salesman)
        self.assertEqual(Link.search([("res_id", "=", self.customer.id)]), self.link)
        Issue = self.env["crm.sync.issue"].with_user(self.user_salesman)
        self.assertEqual(
            Issue.search([("id", "in", (self.issue | self.issue_2).ids)]), self.issue
        )
        Backend = self.env["crm.sync.backend"].with_user(self.user_salesman)
        self.assertNotIn(self.backend_2, Backend.search([]))
        with self.assertRaises(AccessError):
            self.link_2.with_user(self.user_salesman).external_id  # noqa: B018
        # the daemon only works on links of its companies
        links = (
            self.env["crm.sync.link"]
            .with_user(self.user_daemon)
            .daemon_read_links(self.backend.id, "res.partner")
        )
        self.assertEqual([row["id"] for row in links], self.link.ids)
        with self.assertRaises(ValidationError):
            self.env["crm.sync.link"].with_user(self.user_daemon).daemon_read_links(
                self.backend_2.id, "res.partner"
            )

    def test_partner_tab_shows_only_visible_links(self):
        partner = self.customer.with_user(self.user_salesman)
        self.assertEqual(partner.sync_link_ids, self.link)

    def test_daemon_api_allowed_for_daemon_and_admin_only(self):
        calls = [
            ("crm.sync.backend", "daemon_get_config", ()),
            ("crm.sync.backend", "daemon_report_health", ([],)),
            ("crm.sync.backend", "daemon_ack_run_requests", ([],)),
            ("crm.sync.run", "daemon_start_runs", ([],)),
            ("crm.sync.run", "daemon_finish_runs", ([],)),
            ("crm.sync.link", "daemon_upsert_links", ([],)),
            ("crm.sync.link", "daemon_read_links", (self.backend.id, "res.partner")),
            ("crm.sync.link", "daemon_unlink_links", ([],)),
            ("crm.sync.issue", "daemon_raise_issues", ([],)),
            ("crm.sync.issue", "daemon_fetch_actions", (self.backend.id,)),
            ("crm.sync.issue", "daemon_resolve_issues", ([],)),
            ("res.partner", "daemon_partner_keys", ()),
        ]
        for user in (self.user_daemon, self.user_sync_admin):
            for model, method, args in calls:
                getattr(self.env[model].with_user(user), method)(*args)
        for user in (
            self.user_plain,
            self.user_salesman,
            self.user_finance,
            self.user_privacy,
        ):
            for model, method, args in calls:
                with self.assertRaises(AccessError, msg=f"{user.login} {method}"):
                    getattr(self.env[model].with_user(user), method)(*args)

    def test_sync_admin_manages_backends(self):
        backend = (
            self.env["crm.sync.backend"]
            .with_user(self.user_sync_admin)
            .create({"name": "Peppol access point", "kind": "peppol"})
        )
        self.assertEqual(backend.company_id, self.company)
        backend.write({"schedule_type": "daily", "daily_time": 6.0})
        backend.action_run_now()
        self.assertTrue(backend.run_requested)
        backend.unlink()

    def test_views_load_for_each_role(self):
        """Screens open for every role; fields a role may not read are left out."""
        screens = {
            "res.partner": ("form", "list", "search"),
            "crm.lead": ("form",),
            "crm.sync.backend": ("form", "list", "search"),
            "crm.sync.run": ("form", "list", "search"),
            "crm.sync.link": ("form", "list", "search"),
            "crm.sync.issue": ("form", "list", "kanban", "search"),
        }
        for user in (self.user_salesman, self.user_finance, self.user_sync_admin):
            for model, view_types in screens.items():
                if not self.env[model].with_user(user).has_access("read"):
                    continue  # e.g. invoicing users without CRM access
                views = (
                    self.env[model]
                    .with_user(user)
                    .get_views([(False, view_type) for view_type in view_types])
                )
                self.assertEqual(set(views["views"]), set(view_types))
        arch = (
            self.env["res.partner"]
            .with_user(self.user_plain)
            .get_views([(False, "form")])["views"]["form"]["arch"]
        )
        self.assertNotIn("sync_link_ids", arch)
        self.assertIn("finance_receivable", arch)
        arch = (
            self.env["res.partner"]
            .with_user(self.user_salesman)
            .get_views([(False, "form")])["views"]["form"]["arch"]
        )
        self.assertIn("sync_link_ids", arch)

    def test_groups_and_categories(self):
        privacy = self.env.ref("crm_module.crm_module_group_privacy_officer")
        self.assertTrue(privacy.category_id)
        admin = self.env.ref("crm_module.crm_module_group_sync_admin")
        self.assertIn(self.env.ref("base.user_admin"), admin.users)
        self.assertTrue(
            self.user_sync_admin.has_group("sales_team.group_sale_salesman")
        )
