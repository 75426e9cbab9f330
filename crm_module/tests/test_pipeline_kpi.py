from datetime import date, datetime, time, timedelta

from odoo import fields
from odoo.tests import tagged

from odoo.addons.account.tests.common import AccountTestInvoicingCommon
from odoo.addons.mail.tests.common import mail_new_test_user

from .common_pipeline import PipelineCommon


def at(day, hour=10):
    return datetime.combine(day, time(hour))


@tagged("post_install", "-at_install", "crm_module", "crm_pipeline")
class TestPipelineKpis(PipelineCommon):
    """Stage conversion, bottlenecks and forecast on a hand-computed fixture.

    Day 0 is a Monday about ten weeks ago (the forecast looks at 12 months).
    A: P1 d0, P2 d2, Won d14 (1000).  B: P1 d1, P2 d9, lost d19.
    C: P1 d8, open (500, 20 %).       D: P1 d1, P2 d3, open (2000, 50 %).
    E: P1 d2, lost d5.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        today = fields.Date.today()
        cls.day0 = today - timedelta(days=70 + today.weekday())
        d = cls.day0

        def opportunity(name, revenue, probability, path, deadline=None):
            lead = cls.create_opportunity(
                cls,
                name=name,
                expected_revenue=revenue,
                probability=probability,
                date_deadline=deadline,
            )
            cls.env["crm.lead.stage.history"].search(
                [("lead_id", "=", lead.id)]
            ).unlink()
            previous = cls.env["crm.stage"]
            for stage, day in path:
                cls.env["crm.lead.stage.history"].create(
                    {
                        "lead_id": lead.id,
                        "stage_from_id": previous.id,
                        "stage_id": stage.id,
                        "date": at(d + timedelta(days=day)),
                        "team_id": cls.team.id,
                        "company_id": lead.company_id.id,
                    }
                )
                previous = stage
            lead.with_context(tracking_disable=True).write(
                {"stage_id": previous.id, "probability": probability}
            )
            cls.env["crm.lead.stage.history"].search(
                [("lead_id", "=", lead.id), ("date", ">", at(today, 0))]
            ).unlink()
            return lead

        s1, s2, won = cls.stage_1, cls.stage_2, cls.stage_won
        cls.lead_a = opportunity("A", 1000, 10, [(s1, 0), (s2, 2), (won, 14)])
        cls.lead_a.date_closed = at(d + timedelta(days=14))
        cls.lead_b = opportunity("B", 300, 10, [(s1, 1), (s2, 9)])
        cls.lead_b.action_set_lost()
        cls.lead_b.date_closed = at(d + timedelta(days=19))
        cls.deadline = today + timedelta(days=40)
        cls.lead_c = opportunity("C", 500, 20, [(s1, 8)], deadline=cls.deadline)
        cls.lead_d = opportunity(
            "D", 2000, 50, [(s1, 1), (s2, 3)], deadline=cls.deadline
        )
        cls.lead_e = opportunity("E", 100, 10, [(s1, 2)])
        cls.lead_e.action_set_lost()
        cls.lead_e.date_closed = at(d + timedelta(days=5))
        cls.env.flush_all()

    def group(self, model, groupby, aggregates, domain=()):
        report = self.env[model].with_user(self.manager)
        domain = [("team_id", "=", self.team.id), *domain]
        return {
            row[0]: row[1:] for row in report._read_group(domain, groupby, aggregates)
        }

    def test_stage_conversion(self):
        rows = self.group(
            "crm.kpi.stage.conversion",
            ["stage_id"],
            [
                "entered_count:sum",
                "progressed_count:sum",
                "won_count:sum",
                "lost_count:sum",
                "conversion_rate:avg",
            ],
        )
        self.assertEqual(rows[self.stage_1], (5, 3, 1, 2, 20.0))
        self.assertEqual(rows[self.stage_2][:4], (3, 1, 1, 1))
        self.assertAlmostEqual(rows[self.stage_2][4], 100 / 3)
        self.assertEqual(rows[self.stage_won], (1, 0, 1, 0, 100.0))
        year, week = self.day0.isocalendar()[:2]
        week0 = f"{year}-W{week:02d}"
        by_week = self.group(
            "crm.kpi.stage.conversion",
            ["iso_week"],
            ["entered_count:sum", "won_count:sum"],
            [("stage_id", "=", self.stage_1.id)],
        )
        self.assertEqual(by_week[week0], (4, 1))
        self.assertEqual(sum(count for count, _won in by_week.values()), 5)

    def test_bottlenecks(self):
        rows = self.group(
            "crm.kpi.stage.bottleneck",
            ["stage_id"],
            ["entered_count:sum", "median_days:avg", "drop_off_rate:avg"],
        )
        # P1: A 2, D 2, E 3 (lost), B 8, C still open (> 60 days): median 3
        self.assertEqual(rows[self.stage_1][0], 5)
        self.assertAlmostEqual(rows[self.stage_1][1], 3.0)
        self.assertAlmostEqual(rows[self.stage_1][2], 20.0)
        # P2: B 10 (lost), A 12, D open: median 12; B dropped
        self.assertAlmostEqual(rows[self.stage_2][1], 12.0)
        self.assertAlmostEqual(rows[self.stage_2][2], 100 / 3)
        # the won stage is not timed
        self.assertFalse(rows[self.stage_won][1])

    def test_forecast(self):
        rows = self.group(
            "crm.kpi.forecast",
            ["kind"],
            [
                "expected_revenue:sum",
                "prorated_revenue:sum",
                "historical_revenue:sum",
                "won_revenue:sum",
            ],
        )
        # win rate P1: A won, B and E lost -> 1/3; P2: A won, B lost -> 1/2
        self.assertEqual(set(rows), {"pipeline", "won"}, rows)
        expected, prorated, historical, _won = rows["pipeline"]
        self.assertAlmostEqual(expected, 2500.0)
        self.assertAlmostEqual(prorated, 500 * 0.2 + 2000 * 0.5)
        self.assertAlmostEqual(historical, 500 / 3 + 2000 / 2)
        self.assertAlmostEqual(rows["won"][3], 1000.0)
        by_month = self.group(
            "crm.kpi.forecast",
            ["date:month"],
            ["historical_revenue:sum"],
            [("kind", "=", "pipeline")],
        )
        self.assertEqual(list(by_month), [self.deadline.replace(day=1)])

    def test_pls_explanation(self):
        lead = self.lead_c.with_user(self.salesman)
        frequency = self.env["crm.lead.scoring.frequency"]
        frequency.search([]).unlink()
        first_stage = self.env["crm.stage"].search(
            [("team_id", "=", False)], order="sequence, id", limit=1
        )
        tag = self.env["crm.tag"].create({"name": "Big"})
        small = self.env["crm.tag"].create({"name": "Small"})
        lead.sudo().tag_ids = tag
        for variable, value, won, lost in (
            ("stage_id", first_stage.id, 50, 50),
            ("stage_id", self.stage_1.id, 40, 10),
            ("tag_id", tag.id, 10, 90),
            ("tag_id", small.id, 40, 10),
        ):
            frequency.create(
                {
                    "variable": variable,
                    "value": str(value),
                    "won_count": won,
                    "lost_count": lost,
                    "team_id": self.team.id,
                }
            )
        self.env["ir.config_parameter"].set_param(
            "crm.pls_fields", "phone_state,email_state,tag_ids"
        )
        contributions = lead._crm_pls_contributions()
        self.assertEqual(
            [(field, weight > 0) for field, _value, weight in contributions],
            [("tag_id", False), ("stage_id", True)],
        )
        html = str(lead.pls_explanation)
        self.assertIn("Raises the probability", html)
        self.assertIn("Big", html)
        self.assertIn("P1", html)


@tagged("post_install", "-at_install", "crm_module", "crm_pipeline")
class TestResponseTimeKpi(PipelineCommon):
    """Average, median and breaches of first responses per team and source."""

    def test_response_time(self):
        day = datetime(2026, 2, 3, 9, 0)
        for hours, breached in ((3.0, False), (5.0, False), (10.0, True)):
            lead = self.create_opportunity(create_date=day)
            lead.write(
                {
                    "first_response_date": day + timedelta(days=1),
                    "response_time_hours": hours,
                    "sla_breached": breached,
                }
            )
        self.create_opportunity(create_date=day)  # no response yet
        ticket = self.env["crm.ticket"].create({"name": "T", "team_id": self.team.id})
        self.set_create_date(ticket, day)
        ticket.write({"first_response_date": day, "response_time_hours": 2.0})
        self.env.flush_all()
        report = self.env["crm.kpi.response.time"].with_user(self.manager)
        domain = [("team_id", "=", self.team.id)]
        aggregates = [
            "record_count:sum",
            "responded_count:sum",
            "response_hours:avg",
            "median_response_hours:avg",
            "breach_count:sum",
        ]
        rows = dict(
            (source, rest)
            for source, *rest in report._read_group(domain, ["source"], aggregates)
        )
        self.assertEqual(rows["lead"][:2], [4, 3])
        self.assertAlmostEqual(rows["lead"][2], 6.0)
        self.assertAlmostEqual(rows["lead"][3], 5.0)
        self.assertEqual(rows["lead"][4], 1)
        self.assertAlmostEqual(rows["ticket"][2], 2.0)
        # one day, both sources: median of 2, 3, 5, 10
        ((day_value, median),) = report._read_group(
            domain, ["date:day"], ["median_response_hours:avg"]
        )
        self.assertEqual(day_value, date(2026, 2, 3))
        self.assertAlmostEqual(median, 4.0)
        # the web client's read_group asks for the field's own aggregator
        (row,) = report.read_group(domain, ["median_response_hours"], [])
        self.assertAlmostEqual(row["median_response_hours"], 4.0)


@tagged("post_install", "-at_install", "crm_module", "crm_pipeline")
class TestRetentionKpi(AccountTestInvoicingCommon):
    """Monthly cohorts of new customers and their activity at day 90."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager = mail_new_test_user(
            cls.env,
            login="retention_manager",
            groups="sales_team.group_sale_manager",
            company_id=cls.env.company.id,
            company_ids=[(6, 0, cls.env.company.ids)],
        )
        partner = cls.env["res.partner"]
        cls.kept_by_invoice = partner.create({"name": "R1", "is_company": True})
        cls.gone = partner.create({"name": "R2", "is_company": True})
        cls.kept_by_deal = partner.create({"name": "R3", "is_company": True})
        cls.same_day = partner.create({"name": "R4", "is_company": True})
        cls.contact = partner.create(
            {"name": "R3 buyer", "parent_id": cls.kept_by_deal.id}
        )
        cls.other_month = partner.create({"name": "R5", "is_company": True})

        def invoice(customer, day, move_type="out_invoice"):
            move = cls.init_invoice(
                move_type, partner=customer, invoice_date=day, amounts=[100.0], taxes=[]
            )
            move.action_post()
            return move

        invoice(cls.kept_by_invoice, date(2025, 3, 3))
        invoice(cls.kept_by_invoice, date(2025, 4, 2))  # day 30
        invoice(cls.gone, date(2025, 3, 8))
        invoice(cls.gone, date(2025, 7, 6))  # day 120
        draft = cls.init_invoice(
            "out_invoice",
            partner=cls.gone,
            invoice_date=date(2025, 3, 20),
            amounts=[5.0],
        )
        assert draft.state == "draft"
        invoice(cls.kept_by_deal, date(2025, 3, 4))
        invoice(cls.same_day, date(2025, 3, 10))
        invoice(cls.same_day, date(2025, 3, 10))
        invoice(cls.same_day, date(2025, 3, 10), move_type="out_refund")
        invoice(cls.other_month, date(2025, 4, 15))
        won = cls.env["crm.stage"].search([("is_won", "=", True)], limit=1)
        deal = cls.env["crm.lead"].create(
            {
                "name": "Renewal",
                "type": "opportunity",
                "partner_id": cls.contact.id,
                "stage_id": won.id,
            }
        )
        deal.date_closed = datetime(2025, 3, 14, 12, 0)  # day 10
        cls.env.flush_all()

    def test_retention_cohorts(self):
        customers = (
            self.kept_by_invoice
            | self.gone
            | self.kept_by_deal
            | self.same_day
            | self.other_month
        )
        report = self.env["crm.kpi.retention"].with_user(self.manager)
        rows = report._read_group(
            [("partner_id", "in", customers.ids)],
            ["cohort_month:month"],
            ["customer_count:sum", "retained_count:sum", "retention_rate:avg"],
        )
        self.assertEqual(
            [(month, count, kept) for month, count, kept, _rate in rows],
            [(date(2025, 3, 1), 4, 2), (date(2025, 4, 1), 1, 0)],
        )
        self.assertAlmostEqual(rows[0][3], 50.0)
        kept = report.search(
            [("partner_id", "in", customers.ids), ("retained_count", "=", 1)]
        )
        self.assertEqual(kept.partner_id, self.kept_by_invoice | self.kept_by_deal)
        self.assertTrue(
            all(
                report.search([("partner_id", "in", customers.ids)]).mapped("is_mature")
            )
        )

    def test_forecast_invoiced_amounts(self):
        """Only customers with a won opportunity count in the invoiced figure."""
        customers = (
            self.kept_by_invoice
            | self.gone
            | self.kept_by_deal
            | self.same_day
            | self.other_month
        )
        forecast = self.env["crm.kpi.forecast"].with_user(self.manager)
        rows = forecast._read_group(
            [("kind", "=", "invoiced"), ("partner_id", "in", customers.ids)],
            ["partner_id"],
            ["invoiced_amount:sum"],
        )
        self.assertEqual(rows, [(self.kept_by_deal, 100.0)])
