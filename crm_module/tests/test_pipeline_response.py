from datetime import datetime

from freezegun import freeze_time

from odoo.tests import tagged

from .common_pipeline import PipelineCommon

# Friday 2026-01-02 15:00 UTC; Monday 2026-01-05 is a public holiday
FRIDAY_3PM = datetime(2026, 1, 2, 15, 0)
TUESDAY_10AM = datetime(2026, 1, 6, 10, 0)

INCOMING = """Return-Path: <buyer@customer.example>
To: support@example.com
From: Buyer <buyer@customer.example>
Subject: Wrong invoice address
Message-ID: <pipeline-ticket-1@customer.example>
Date: Fri, 02 Jan 2026 15:00:00 +0000
Content-Type: text/plain; charset=utf-8

Our invoice shows last year's address.
"""


@tagged("post_install", "-at_install", "crm_module", "crm_pipeline")
class TestFirstResponseSla(PipelineCommon):
    """First response in business hours across a weekend and a public holiday."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.team.first_response_sla_hours = 3.0
        cls.env["resource.calendar.leaves"].create(
            {
                "name": "Public holiday",
                "calendar_id": cls.calendar.id,
                "date_from": datetime(2026, 1, 5, 0, 0),
                "date_to": datetime(2026, 1, 5, 23, 59, 59),
            }
        )

    def test_deadline_and_response_time_skip_weekend_and_holiday(self):
        lead = self.create_opportunity(create_date=FRIDAY_3PM)
        # Friday 15-17 (2 h), weekend and holiday skipped, Tuesday 8-9 (1 h)
        self.assertEqual(lead.response_deadline, datetime(2026, 1, 6, 9, 0))
        with freeze_time(TUESDAY_10AM):
            lead.with_user(self.salesman).message_post(
                body="Thanks, we are on it",
                message_type="comment",
                subtype_xmlid="mail.mt_comment",
            )
        self.assertEqual(lead.first_response_date, TUESDAY_10AM)
        self.assertAlmostEqual(lead.response_time_hours, 4.0)
        self.assertTrue(lead.sla_breached)

    def test_internal_note_is_not_a_response_but_done_call_is(self):
        lead = self.create_opportunity(create_date=FRIDAY_3PM)
        with freeze_time(datetime(2026, 1, 2, 16, 0)):
            lead.with_user(self.salesman).message_post(
                body="note to self",
                message_type="comment",
                subtype_xmlid="mail.mt_note",
            )
            self.assertFalse(lead.first_response_date)
            activity = lead.activity_schedule(
                "mail.mail_activity_data_call", user_id=self.salesman.id
            )
            activity.with_user(self.salesman).action_feedback(feedback="called")
        self.assertEqual(lead.first_response_date, datetime(2026, 1, 2, 16, 0))
        self.assertAlmostEqual(lead.response_time_hours, 1.0)
        self.assertFalse(lead.sla_breached)

    def test_breach_cron_warns_team_leader_once(self):
        lead = self.create_opportunity(create_date=FRIDAY_3PM)
        answered = self.create_opportunity(create_date=FRIDAY_3PM)
        answered.first_response_date = datetime(2026, 1, 2, 16, 0)
        with freeze_time(datetime(2026, 1, 6, 8, 30)):
            self.assertFalse(self.env["crm.lead"]._cron_check_response_sla() & lead)
        with freeze_time(datetime(2026, 1, 6, 9, 30)):
            breached = self.env["crm.lead"]._cron_check_response_sla()
            self.env["crm.lead"]._cron_check_response_sla()
        self.assertIn(lead, breached)
        self.assertNotIn(answered, breached)
        self.assertTrue(lead.sla_breached)
        self.assertEqual(lead.activity_ids.user_id, self.manager)
        self.assertEqual(len(lead.activity_ids), 1)


@tagged("post_install", "-at_install", "crm_module", "crm_pipeline")
class TestAssignmentNotification(PipelineCommon):
    """Salespeople hear about leads the assignment cron gives them."""

    def test_cron_assignment_notifies_salesperson(self):
        self.env["crm.team.member"].create(
            {
                "crm_team_id": self.team.id,
                "user_id": self.salesman_2.id,
                "assignment_max": 30,
            }
        )
        lead = self.env["crm.lead"].create(
            {
                "name": "Unassigned",
                "type": "lead",
                "team_id": self.team.id,
                "user_id": False,
            }
        )
        self.env["crm.team"].browse(self.team.ids)._assign_and_convert_leads(
            force_quota=True
        )
        self.assertEqual(lead.user_id, self.salesman_2)
        notified = self.env["mail.message"].search(
            [
                ("model", "=", "crm.lead"),
                ("res_id", "=", lead.id),
                ("message_type", "=", "user_notification"),
                ("partner_ids", "in", self.salesman_2.partner_id.ids),
            ]
        )
        self.assertEqual(len(notified), 1)
        self.assertIn("Unassigned", notified.subject)


@tagged("post_install", "-at_install", "crm_module", "crm_pipeline")
class TestTickets(PipelineCommon):
    """Tickets from e-mail, their first response and the partner smart button."""

    def test_ticket_from_incoming_email(self):
        self.team.first_response_sla_hours = 4.0
        with freeze_time(FRIDAY_3PM):
            ticket_id = self.env["mail.thread"].message_process(
                "crm.ticket",
                INCOMING,
                custom_values={"team_id": self.team.id},
            )
        ticket = self.set_create_date(
            self.env["crm.ticket"].browse(ticket_id), FRIDAY_3PM
        )
        self.assertEqual(ticket.name, "Wrong invoice address")
        self.assertEqual(ticket.channel, "email")
        self.assertEqual(ticket.partner_id, self.customer)
        self.assertEqual(
            ticket.stage_id, self.env.ref("crm_module.crm_ticket_stage_new")
        )
        self.assertIn("last year", ticket.message_ids[-1].body)
        # Friday 15-17 and Monday 8-10 (no holiday in this calendar)
        self.assertEqual(ticket.response_deadline, datetime(2026, 1, 5, 10, 0))

        with freeze_time(datetime(2026, 1, 5, 9, 30)):
            ticket.with_user(self.salesman).message_post(
                body="Fixed", message_type="comment", subtype_xmlid="mail.mt_comment"
            )
        self.assertAlmostEqual(ticket.response_time_hours, 3.5)
        self.assertFalse(ticket.sla_breached)
        self.assertEqual(self.customer.with_user(self.salesman).crm_ticket_count, 1)
        action = self.customer.with_user(self.salesman).action_view_crm_tickets()
        self.assertEqual(self.env["crm.ticket"].search(action["domain"]), ticket)

    def test_alias_routes_to_tickets(self):
        alias = self.env.ref("crm_module.crm_ticket_alias")
        self.assertEqual(alias.alias_model_id.model, "crm.ticket")
        if not alias.alias_domain_id:
            alias.alias_domain_id = self.env["mail.alias.domain"].create(
                {"name": "pipeline.example"}
            )
        address = f"{alias.alias_name}@{alias.alias_domain_id.name}"
        raw = INCOMING.replace("support@example.com", address)
        raw = raw.replace("pipeline-ticket-1", "pipeline-ticket-2")
        ticket_id = self.env["mail.thread"].message_process(False, raw)
        self.assertEqual(self.env["crm.ticket"].browse(ticket_id).channel, "email")

    def test_salesman_manual_ticket(self):
        ticket = (
            self.env["crm.ticket"]
            .with_user(self.salesman)
            .create({"name": "Phone call", "partner_id": self.customer.id})
        )
        self.assertEqual(ticket.channel, "manual")
        self.assertFalse(ticket.response_deadline)
        self.assertTrue(ticket.stage_id)

    def test_ticket_breach_warns_team_leader(self):
        self.team.first_response_sla_hours = 1.0
        ticket = self.env["crm.ticket"].create(
            {"name": "Urgent", "partner_id": self.customer.id, "team_id": self.team.id}
        )
        self.set_create_date(ticket, FRIDAY_3PM)
        self.assertEqual(ticket.response_deadline, datetime(2026, 1, 2, 16, 0))
        with freeze_time(datetime(2026, 1, 2, 16, 30)):
            self.env["crm.ticket"]._cron_check_response_sla()
        self.assertTrue(ticket.sla_breached)
        self.assertEqual(ticket.activity_ids.user_id, self.manager)


@tagged("post_install", "-at_install", "crm_module", "crm_pipeline")
class TestPipelineAccess(PipelineCommon):
    """Salespeople read reports and rules; only managers configure them."""

    def test_salesman_rights(self):
        rules = self.env["crm.followup.rule"].with_user(self.salesman)
        self.assertFalse(rules.has_access("create"))
        self.assertTrue(rules.has_access("read"))
        stages = self.env["crm.ticket.stage"].with_user(self.salesman)
        self.assertFalse(stages.has_access("write"))
        history = self.env["crm.lead.stage.history"].with_user(self.salesman)
        self.assertFalse(history.has_access("write"))
        for model in (
            "crm.kpi.stage.conversion",
            "crm.kpi.response.time",
            "crm.kpi.retention",
            "crm.kpi.stage.bottleneck",
            "crm.kpi.forecast",
        ):
            report = self.env[model].with_user(self.salesman)
            self.assertTrue(report.has_access("read"))
            report.search_count([])
        plain = self.env["crm.ticket"].with_user(
            self.env["res.users"].create(
                {"name": "Plain", "login": "pipeline_plain", "groups_id": [(6, 0, [])]}
            )
        )
        self.assertFalse(plain.has_access("read"))
