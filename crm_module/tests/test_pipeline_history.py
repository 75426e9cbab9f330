from datetime import datetime, timedelta

from freezegun import freeze_time

from odoo.tests import tagged

from odoo.addons.crm_module.hooks import post_init_hook

from .common_pipeline import PipelineCommon


@tagged("post_install", "-at_install", "crm_module", "crm_pipeline")
class TestStageHistory(PipelineCommon):
    """One history row per stage change, and the back-fill from the chatter."""

    def test_history_on_create_and_stage_change(self):
        lead = self.create_opportunity()
        self.assertEqual(len(lead.stage_history_ids), 1)
        self.assertFalse(lead.stage_history_ids.stage_from_id)
        self.assertEqual(lead.stage_history_ids.stage_id, self.stage_1)

        lead.with_user(self.salesman).write({"stage_id": self.stage_2.id})
        lead.with_user(self.salesman).write({"description": "no stage change"})
        lead.with_user(self.salesman).write({"stage_id": self.stage_2.id})
        history = lead.stage_history_ids.sorted("id")
        self.assertEqual(len(history), 2)
        self.assertEqual(history[1].stage_from_id, self.stage_1)
        self.assertEqual(history[1].stage_id, self.stage_2)
        self.assertEqual(history[1].user_id, self.salesman)
        self.assertEqual(history[1].team_id, self.team)

    def test_backfill_from_tracking_values(self):
        """Leads tracked before install get their history from mail tracking."""
        lead = self.create_opportunity(name="Tracked")
        self.flush_tracking()
        lead.write({"stage_id": self.stage_2.id})
        self.flush_tracking()
        lead.write({"stage_id": self.stage_3.id})
        self.flush_tracking()
        tracked = self.env["mail.tracking.value"].search(
            [
                ("mail_message_id.res_id", "=", lead.id),
                ("mail_message_id.model", "=", "crm.lead"),
                ("field_id.name", "=", "stage_id"),
            ]
        )
        self.assertEqual(len(tracked), 2, "the fixture needs stage tracking values")
        untracked = self.create_opportunity(name="Never moved")
        # the database before install: no history at all
        self.env.cr.execute("DELETE FROM crm_lead_stage_history")
        self.env.invalidate_all()

        post_init_hook(self.env)

        history = lead.stage_history_ids.sorted(lambda row: (row.date, row.id))
        self.assertEqual(
            [(row.stage_from_id, row.stage_id) for row in history],
            [
                (self.env["crm.stage"], self.stage_1),
                (self.stage_1, self.stage_2),
                (self.stage_2, self.stage_3),
            ],
        )
        self.assertEqual(history[1].date, tracked[0].mail_message_id.date)
        self.assertEqual(untracked.stage_history_ids.stage_id, self.stage_1)
        # running it again adds nothing
        count = self.env["crm.lead.stage.history"].search_count([])
        post_init_hook(self.env)
        self.assertEqual(self.env["crm.lead.stage.history"].search_count([]), count)


@tagged("post_install", "-at_install", "crm_module", "crm_pipeline")
class TestStuckOpportunities(PipelineCommon):
    """Days in stage, the Stuck flag and filter, and the daily cron."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stage_1.stuck_after_days = 5
        cls.activity_type = cls.env.ref("crm_module.mail_activity_type_stuck")

    def test_stuck_flag_search_and_cron_idempotent(self):
        now = datetime(2026, 3, 10, 9, 0)
        stuck = self.create_opportunity(name="Stuck")
        fresh = self.create_opportunity(name="Fresh")
        other_stage = self.create_opportunity(name="Other", stage_id=self.stage_2.id)
        lost = self.create_opportunity(name="Lost")
        stuck.date_last_stage_update = now - timedelta(days=6)
        fresh.date_last_stage_update = now - timedelta(days=4)
        other_stage.date_last_stage_update = now - timedelta(days=60)
        lost.date_last_stage_update = now - timedelta(days=60)
        lost.action_set_lost()
        with freeze_time(now):
            leads = (stuck | fresh | other_stage).with_user(self.salesman)
            leads.invalidate_recordset()
            self.assertEqual(leads.filtered("is_stuck"), stuck)
            self.assertEqual(stuck.with_user(self.salesman).days_in_stage, 6)
            found = (
                self.env["crm.lead"]
                .with_user(self.salesman)
                .search([("is_stuck", "=", True), ("team_id", "=", self.team.id)])
            )
            self.assertEqual(found, stuck)
            not_stuck = self.env["crm.lead"].search(
                [("is_stuck", "=", False), ("team_id", "=", self.team.id)]
            )
            self.assertEqual(not_stuck, fresh | other_stage)

            self.env["crm.lead"]._cron_schedule_stuck_activities()
            self.env["crm.lead"]._cron_schedule_stuck_activities()
        activities = self.env["mail.activity"].search(
            [
                ("activity_type_id", "=", self.activity_type.id),
                ("res_model", "=", "crm.lead"),
            ]
        )
        self.assertEqual(activities.mapped("res_id"), stuck.ids)
        self.assertEqual(activities.user_id, self.salesman)

        # once the first one is done, the next run may plan a new one
        activities.with_user(self.salesman).action_feedback(feedback="called")
        with freeze_time(now + timedelta(days=1)):
            self.env["crm.lead"]._cron_schedule_stuck_activities()
        self.assertEqual(
            self.env["mail.activity"].search_count(
                [
                    ("activity_type_id", "=", self.activity_type.id),
                    ("res_id", "=", stuck.id),
                ]
            ),
            1,
        )


@tagged("post_install", "-at_install", "crm_module", "crm_pipeline")
class TestFollowupRules(PipelineCommon):
    """Inactive opportunities get the rule's activity or e-mail, once."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.now = datetime(2026, 3, 10, 9, 0)
        cls.quiet = cls.create_opportunity(cls, name="Quiet")
        cls.busy = cls.create_opportunity(cls, name="Busy")
        cls.other = cls.create_opportunity(
            cls, name="Elsewhere", stage_id=cls.stage_2.id
        )
        old = cls.now - timedelta(days=20)
        cls.env.cr.execute(
            "UPDATE crm_lead SET create_date = %s, date_last_stage_update = %s "
            "WHERE id IN %s",
            (old, old, tuple((cls.quiet | cls.busy | cls.other).ids)),
        )
        cls.env.invalidate_all()

    def test_shipped_rules_are_inactive(self):
        rules = (
            self.env["crm.followup.rule"]
            .with_context(active_test=False)
            .search(
                [
                    (
                        "id",
                        "in",
                        [
                            self.env.ref("crm_module.crm_followup_rule_any_stage").id,
                            self.env.ref("crm_module.crm_followup_rule_proposition").id,
                        ],
                    )
                ]
            )
        )
        self.assertEqual(len(rules), 2)
        self.assertFalse(any(rules.mapped("active")))

    def test_activity_rule(self):
        rule = self.env["crm.followup.rule"].create(
            {
                "name": "Call after 14 days in P1",
                "stage_id": self.stage_1.id,
                "team_id": self.team.id,
                "inactivity_days": 14,
                "action": "activity",
            }
        )
        with freeze_time(self.now - timedelta(days=2)):
            self.busy.message_post(body="Spoke to the buyer", message_type="comment")
        with freeze_time(self.now):
            acted = rule._apply(rule._get_inactive_leads())
            self.assertEqual(acted, self.quiet)
            self.assertEqual(self.quiet.activity_ids.user_id, self.salesman)
            # the open activity keeps the next run from planning another one
            self.assertFalse(rule._get_inactive_leads())

    def test_mail_rule_sends_template_once(self):
        template = self.env.ref("crm_module.mail_template_followup")
        rule = self.env["crm.followup.rule"].create(
            {
                "name": "Mail",
                "stage_id": self.stage_1.id,
                "team_id": self.team.id,
                "inactivity_days": 14,
                "action": "mail",
                "mail_template_id": template.id,
            }
        )
        with freeze_time(self.now):
            sent = rule._apply(rule._get_inactive_leads())
            self.assertEqual(sent, self.quiet | self.busy)
            self.assertIn(self.customer, self.quiet.message_ids[0].partner_ids)
            # the e-mail is activity: nothing to send the next day
            self.assertFalse(rule._get_inactive_leads())

    def test_mail_rule_skips_partners_the_ledger_blocks(self):
        rule = self.env["crm.followup.rule"].create(
            {
                "name": "Mail",
                "stage_id": self.stage_1.id,
                "team_id": self.team.id,
                "inactivity_days": 14,
                "action": "mail",
                "mail_template_id": self.env.ref(
                    "crm_module.mail_template_followup"
                ).id,
            }
        )
        self.assertEqual(
            rule.consent_purpose_id,
            self.env.ref("crm_module.crm_consent_purpose_sales_follow_up"),
        )
        # the customer objected to marketing (GDPR Art. 21)
        self.customer.sudo().crm_marketing_objection = True
        with freeze_time(self.now):
            sent = rule._apply(self.quiet | self.busy)
        self.assertFalse(sent)
        self.assertFalse(
            self.quiet.message_ids.filtered(lambda m: m.message_type == "comment")
        )
        self.assertIn("not sent: the person objected", self.quiet.message_ids[0].body)
