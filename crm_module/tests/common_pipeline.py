from odoo.tests import TransactionCase

from odoo.addons.mail.tests.common import mail_new_test_user


class PipelineCommon(TransactionCase):
    """Sales users, a team with its own UTC working calendar and four stages."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.salesman = mail_new_test_user(
            cls.env,
            login="pipeline_salesman",
            groups="sales_team.group_sale_salesman",
            email="salesman@example.com",
        )
        cls.salesman_2 = mail_new_test_user(
            cls.env,
            login="pipeline_salesman_2",
            groups="sales_team.group_sale_salesman",
            email="salesman2@example.com",
        )
        cls.manager = mail_new_test_user(
            cls.env,
            login="pipeline_manager",
            groups="sales_team.group_sale_manager",
            email="manager@example.com",
        )
        # Monday to Friday, 8-12 and 13-17 UTC (the default attendances)
        cls.calendar = cls.env["resource.calendar"].create(
            {"name": "Pipeline Hours", "tz": "UTC"}
        )
        cls.team = cls.env["crm.team"].create(
            {
                "name": "Pipeline Team",
                "user_id": cls.manager.id,
                "resource_calendar_id": cls.calendar.id,
                "use_leads": True,
                "use_opportunities": True,
            }
        )
        stage = cls.env["crm.stage"]
        cls.stage_1 = stage.create(
            {"name": "P1", "sequence": 101, "team_id": cls.team.id}
        )
        cls.stage_2 = stage.create(
            {"name": "P2", "sequence": 102, "team_id": cls.team.id}
        )
        cls.stage_3 = stage.create(
            {"name": "P3", "sequence": 103, "team_id": cls.team.id}
        )
        cls.stage_won = stage.create(
            {"name": "P Won", "sequence": 104, "team_id": cls.team.id, "is_won": True}
        )
        cls.customer = cls.env["res.partner"].create(
            {
                "name": "Pipeline Customer",
                "is_company": True,
                "email": "buyer@customer.example",
            }
        )

    def set_create_date(self, records, moment):
        """Backdate records (the ORM always stamps the transaction time)."""
        self.env.flush_all()
        self.env.cr.execute(
            f"UPDATE {records._table} SET create_date = %s WHERE id IN %s",
            (moment, tuple(records.ids)),
        )
        records.invalidate_recordset(["create_date"])
        if "response_deadline" in records._fields:
            self.env.add_to_compute(records._fields["response_deadline"], records)
            records.flush_recordset()
        return records

    def flush_tracking(self):
        """Write the pending tracking values, as a commit would."""
        self.env.flush_all()
        self.env.cr.precommit.run()

    def create_opportunity(self, **values):
        vals = {
            "name": "Opportunity",
            "type": "opportunity",
            "team_id": self.team.id,
            "stage_id": self.stage_1.id,
            "user_id": self.salesman.id,
            "partner_id": self.customer.id,
        }
        vals.update(values)
        create_date = vals.pop("create_date", None)
        lead = self.env["crm.lead"].create(vals)
        if create_date:
            self.set_create_date(lead, create_date)
        return lead
