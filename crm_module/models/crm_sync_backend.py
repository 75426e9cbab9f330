from datetime import datetime, time, timedelta

import pytz

from odoo import api, fields, models
from odoo.exceptions import ValidationError

from odoo.addons.base.models.res_partner import _lang_get, _tz_get

from ..tools.daemon import (
    check_daemon_access,
    check_selection,
    require_keys,
    require_list,
    to_int,
    to_utc_string,
)
from .crm_sync_ownership import DEFAULT_OWNERSHIP, FIELD_GROUPS

BACKEND_KINDS = [
    ("exact", "Exact Online"),
    ("sage_accounting", "Sage Accounting"),
    ("sage_x3", "Sage X3"),
    ("peppol", "Peppol"),
]
CREDENTIALS_STATES = [
    ("unknown", "Unknown"),
    ("missing", "Missing"),
    ("valid", "Valid"),
    ("invalid", "Invalid"),
    ("needs_reauth", "Needs re-authorisation"),
]
RUN_STATES = [
    ("never", "Never run"),
    ("running", "Running"),
    ("success", "Success"),
    ("partial", "Partial"),
    ("failed", "Failed"),
]


class CrmSyncBackend(models.Model):
    _name = "crm.sync.backend"
    _description = "Synchronisation Backend"
    _inherit = ["mail.thread"]
    _order = "company_id, name, id"

    def _default_tz(self, company=None):
        company = company or self.env.company
        return company.partner_id.tz or self.env.user.tz or "UTC"

    def _default_ownership_ids(self):
        return [
            fields.Command.create({"field_group": group, "owner": owner})
            for group, owner in DEFAULT_OWNERSHIP.items()
        ]

    name = fields.Char(required=True, tracking=True)
    kind = fields.Selection(BACKEND_KINDS, required=True, tracking=True)
    company_id = fields.Many2one(
        comodel_name="res.company",
        required=True,
        index=True,
        default=lambda self: self.env.company,
        tracking=True,
    )
    active = fields.Boolean(default=True, tracking=True)
    tz = fields.Selection(
        _tz_get,
        string="Time Zone",
        required=True,
        default=lambda self: self._default_tz(),
        help="Time zone in which the daily run time is read.",
    )
    lang = fields.Selection(
        _lang_get,
        string="Language",
        default=lambda self: self.env.lang or "en_US",
        help="Language the daemon uses for the texts it writes into Odoo.",
    )

    # schedule
    schedule_type = fields.Selection(
        [("interval", "Every N minutes"), ("daily", "Daily at a fixed time")],
        required=True,
        default="interval",
        tracking=True,
    )
    interval_minutes = fields.Integer(default=60, tracking=True)
    daily_time = fields.Float(
        default=2.0,
        tracking=True,
        help="Local time of the daily run, in hours (2.5 is 02:30).",
    )
    next_run = fields.Datetime(
        string="Next Planned Run",
        compute="_compute_next_run",
        store=True,
        help="Stored in UTC; shown in your own time zone.",
    )
    run_requested = fields.Boolean(
        readonly=True,
        copy=False,
        tracking=True,
        help="Set by 'Run now'; cleared by the daemon when it starts the run.",
    )

    # field ownership
    ownership_ids = fields.One2many(
        comodel_name="crm.sync.ownership",
        inverse_name="backend_id",
        string="Field Ownership",
        default=lambda self: self._default_ownership_ids(),
        copy=True,
    )

    # health, reported by the daemon; API secrets are never stored in Odoo
    last_run_state = fields.Selection(
        RUN_STATES, default="never", readonly=True, copy=False
    )
    last_run_at = fields.Datetime(readonly=True, copy=False)
    last_success_at = fields.Datetime(readonly=True, copy=False)
    last_error_at = fields.Datetime(readonly=True, copy=False)
    last_error = fields.Text(readonly=True, copy=False)
    credentials_state = fields.Selection(
        CREDENTIALS_STATES,
        default="unknown",
        readonly=True,
        copy=False,
        tracking=True,
    )
    credentials_checked_at = fields.Datetime(readonly=True, copy=False)
    credentials_message = fields.Char(readonly=True, copy=False)

    # statistics
    run_ids = fields.One2many("crm.sync.run", "backend_id", string="Runs")
    link_count = fields.Integer(compute="_compute_counts")
    open_issue_count = fields.Integer(compute="_compute_counts")
    run_count = fields.Integer(compute="_compute_counts")

    _sql_constraints = [
        (
            "interval_minutes_positive",
            "CHECK(schedule_type != 'interval' OR interval_minutes > 0)",
            "The interval of a backend must be at least one minute.",
        ),
        (
            "daily_time_range",
            "CHECK(daily_time >= 0 AND daily_time < 24)",
            "The daily run time must be between 00:00 and 23:59.",
        ),
    ]

    @api.depends(
        "active",
        "schedule_type",
        "interval_minutes",
        "daily_time",
        "tz",
        "last_run_at",
    )
    def _compute_next_run(self):
        now = fields.Datetime.now()
        for backend in self:
            if not backend.active:
                backend.next_run = False
                continue
            backend.next_run = backend._get_next_run(now)

    def _compute_counts(self):
        counts = {}
        for model, domain, fname in (
            ("crm.sync.link", [("state", "=", "linked")], "link_count"),
            (
                "crm.sync.issue",
                [("state", "in", ("open", "action_pending"))],
                "open_issue_count",
            ),
            ("crm.sync.run", [], "run_count"),
        ):
            groups = self.env[model]._read_group(
                [("backend_id", "in", self.ids), *domain],
                ["backend_id"],
                ["__count"],
            )
            counts[fname] = {backend.id: count for backend, count in groups}
        for backend in self:
            for fname, values in counts.items():
                backend[fname] = values.get(backend.id, 0)

    @api.constrains("ownership_ids")
    def _check_ownership_ids(self):
        for backend in self:
            groups = backend.ownership_ids.mapped("field_group")
            if len(groups) != len(set(groups)):
                raise ValidationError(
                    self.env._(
                        "Backend %(backend)s: each field group may have only one "
                        "owner (field Field Ownership).",
                        backend=backend.display_name,
                    )
                )

    @api.onchange("company_id")
    def _onchange_company_id(self):
        if self.company_id:
            self.tz = self._default_tz(self.company_id)

    # ------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        """Read the schedule in the time zone of the backend's own company when
        none is given, not in the one of the company the user is working in."""
        for vals in vals_list:
            if not vals.get("tz") and vals.get("company_id"):
                company = self.env["res.company"].browse(vals["company_id"])
                vals["tz"] = self._default_tz(company)
        return super().create(vals_list)

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_run_now(self):
        """Ask the daemon to run these backends at its next poll."""
        self.write({"run_requested": True})
        for backend in self:
            backend.message_post(
                body=self.env._("Run requested by %s.", self.env.user.name),
                subtype_xmlid="mail.mt_note",
            )
        return True

    def _action_open(self, model, name, domain):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": name,
            "res_model": model,
            "view_mode": "list,form",
            "domain": [("backend_id", "=", self.id), *domain],
            "context": {"default_backend_id": self.id, "create": False},
        }

    def action_view_links(self):
        return self._action_open("crm.sync.link", self.env._("Links"), [])

    def action_view_issues(self):
        return self._action_open(
            "crm.sync.issue",
            self.env._("Sync Issues"),
            [("state", "in", ("open", "action_pending"))],
        )

    def action_view_runs(self):
        return self._action_open("crm.sync.run", self.env._("Runs"), [])

    # ------------------------------------------------------------
    # BUSINESS
    # ------------------------------------------------------------

    def _get_next_run(self, now):
        """Return the next planned run (naive UTC) after the last run, or ``now``
        when the backend has not run yet."""
        self.ensure_one()
        if self.schedule_type == "interval":
            if not self.last_run_at:
                return now
            return self.last_run_at + timedelta(minutes=self.interval_minutes)
        reference = self.last_run_at or now
        tz = pytz.timezone(self.tz or "UTC")
        local_reference = pytz.utc.localize(reference).astimezone(tz)
        minutes = round(self.daily_time * 60)
        run_time = time(min(minutes // 60, 23), minutes % 60)
        day = local_reference.date()
        candidate = tz.localize(datetime.combine(day, run_time))
        if candidate <= local_reference:
            candidate = tz.localize(datetime.combine(day + timedelta(days=1), run_time))
        return candidate.astimezone(pytz.utc).replace(tzinfo=None)

    def _get_ownership(self):
        """Return the owner ('finance' or 'sales') of every field group."""
        self.ensure_one()
        ownership = dict(DEFAULT_OWNERSHIP)
        ownership.update({line.field_group: line.owner for line in self.ownership_ids})
        return {group: ownership[group] for group, _label in FIELD_GROUPS}

    def _prepare_daemon_config(self):
        self.ensure_one()
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "company_id": self.company_id.id,
            "company_name": self.company_id.name,
            "tz": self.tz or "UTC",
            "lang": self.lang or "en_US",
            "schedule_type": self.schedule_type,
            "interval_minutes": self.interval_minutes,
            "daily_time": self.daily_time,
            "next_run": to_utc_string(self.next_run),
            "run_requested": self.run_requested,
            "ownership": self._get_ownership(),
            "last_success": to_utc_string(self.last_success_at),
        }

    @api.model
    def _daemon_get_backends(self, backend_ids, what):
        """Return the backends of ``backend_ids`` visible to the caller, raising a
        ValidationError naming any id that does not exist or is not visible."""
        ids = {
            to_int(self.env, backend_id, "backend_id", what)
            for backend_id in backend_ids
        }
        backends = self.with_context(active_test=False).search(
            [("id", "in", list(ids))]
        )
        missing = ids - set(backends.ids)
        if missing:
            raise ValidationError(
                self.env._(
                    "%(what)s: crm.sync.backend %(ids)s (field backend_id) does not "
                    "exist or is not visible to you.",
                    what=what,
                    ids=", ".join(str(i) for i in sorted(missing)),
                )
            )
        return backends

    # ------------------------------------------------------------
    # DAEMON API
    # ------------------------------------------------------------

    @api.model
    def daemon_get_config(self):
        """Return the configuration of every active backend visible to the caller."""
        check_daemon_access(self.env)
        return [backend._prepare_daemon_config() for backend in self.search([])]

    @api.model
    def daemon_report_health(self, vals_list):
        """Store the credentials state the daemon observed for each backend."""
        check_daemon_access(self.env)
        require_list(self.env, vals_list, "daemon_report_health")
        allowed = {state for state, _label in CREDENTIALS_STATES}
        for index, vals in enumerate(vals_list):
            what = f"health[{index}]"
            require_keys(self.env, vals, ("backend_id", "credentials_state"), what)
            check_selection(
                self.env, vals["credentials_state"], allowed, "credentials_state", what
            )
        backends = self._daemon_get_backends(
            [vals["backend_id"] for vals in vals_list], "daemon_report_health"
        ).sudo()
        now = fields.Datetime.now()
        for vals in vals_list:
            backends.browse(int(vals["backend_id"])).write(
                {
                    "credentials_state": vals["credentials_state"],
                    "credentials_message": (vals.get("message") or "")[:250] or False,
                    "credentials_checked_at": now,
                }
            )
        return True

    @api.model
    def daemon_ack_run_requests(self, backend_ids):
        """Clear the 'Run now' flag of the given backends."""
        check_daemon_access(self.env)
        backends = self._daemon_get_backends(backend_ids, "daemon_ack_run_requests")
        backends.sudo().filtered("run_requested").write({"run_requested": False})
        return True
