from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..tools.daemon import (
    check_daemon_access,
    check_selection,
    parse_utc,
    require_keys,
    require_list,
    to_int,
)

#: counters a run reports, in the order shown to users
COUNT_KEYS = (
    "pulled",
    "created",
    "updated",
    "linked",
    "unchanged",
    "conflicts",
    "errors",
)
FINAL_OUTCOMES = {"success", "partial", "failed"}
#: the log is a short excerpt; the daemon keeps its full logs itself
MAX_LOG_LENGTH = 20000


class CrmSyncRun(models.Model):
    _name = "crm.sync.run"
    _description = "Synchronisation Run"
    _order = "started_at desc, id desc"

    backend_id = fields.Many2one(
        comodel_name="crm.sync.backend",
        required=True,
        ondelete="cascade",
        index=True,
    )
    company_id = fields.Many2one(
        related="backend_id.company_id",
        store=True,
        index=True,
    )
    kind = fields.Selection(related="backend_id.kind")
    started_at = fields.Datetime(required=True, default=fields.Datetime.now)
    ended_at = fields.Datetime()
    duration = fields.Float(
        string="Duration (s)",
        compute="_compute_duration",
        store=True,
    )
    outcome = fields.Selection(
        [
            ("running", "Running"),
            ("success", "Success"),
            ("partial", "Partial"),
            ("failed", "Failed"),
        ],
        required=True,
        default="running",
        index=True,
    )
    count_pulled = fields.Integer(string="Pulled")
    count_created = fields.Integer(string="Created")
    count_updated = fields.Integer(string="Updated")
    count_linked = fields.Integer(string="Linked")
    count_unchanged = fields.Integer(string="Unchanged")
    count_conflicts = fields.Integer(string="Conflicts")
    count_errors = fields.Integer(string="Errors")
    log = fields.Text()

    _sql_constraints = [
        (
            "ended_after_started",
            "CHECK(ended_at IS NULL OR ended_at >= started_at)",
            "A run cannot end before it started.",
        ),
    ]

    @api.depends("started_at", "ended_at")
    def _compute_duration(self):
        for run in self:
            if run.started_at and run.ended_at:
                run.duration = (run.ended_at - run.started_at).total_seconds()
            else:
                run.duration = 0.0

    @api.depends("backend_id", "started_at")
    def _compute_display_name(self):
        for run in self:
            run.display_name = self.env._(
                "%(backend)s run of %(date)s",
                backend=run.backend_id.name or "",
                date=fields.Datetime.to_string(run.started_at) or "",
            )

    # ------------------------------------------------------------
    # DAEMON API
    # ------------------------------------------------------------

    @api.model
    def daemon_start_runs(self, vals_list):
        """Open one run per given backend and return the new run ids in order."""
        check_daemon_access(self.env)
        require_list(self.env, vals_list, "daemon_start_runs")
        create_vals = []
        for index, vals in enumerate(vals_list):
            what = f"runs[{index}]"
            require_keys(self.env, vals, ("backend_id", "started_at"), what)
            create_vals.append(
                {
                    "backend_id": to_int(
                        self.env, vals["backend_id"], "backend_id", what
                    ),
                    "started_at": parse_utc(
                        self.env, vals["started_at"], "started_at", what
                    ),
                    "outcome": "running",
                }
            )
        backends = self.env["crm.sync.backend"]._daemon_get_backends(
            [vals["backend_id"] for vals in create_vals], "daemon_start_runs"
        )
        runs = self.create(create_vals)
        latest = {}
        for vals in create_vals:
            previous = latest.get(vals["backend_id"])
            latest[vals["backend_id"]] = max(
                filter(None, (previous, vals["started_at"]))
            )
        for backend in backends.sudo():
            backend.write(
                {"last_run_state": "running", "last_run_at": latest[backend.id]}
            )
        return runs.ids

    @api.model
    def daemon_finish_runs(self, vals_list):
        """Close runs with their outcome and counters, and update backend health."""
        check_daemon_access(self.env)
        require_list(self.env, vals_list, "daemon_finish_runs")
        prepared = []
        for index, vals in enumerate(vals_list):
            what = f"runs[{index}]"
            require_keys(self.env, vals, ("run_id", "ended_at", "outcome"), what)
            check_selection(self.env, vals["outcome"], FINAL_OUTCOMES, "outcome", what)
            counts = vals.get("counts") or {}
            unknown = set(counts) - set(COUNT_KEYS)
            if unknown:
                raise ValidationError(
                    self.env._(
                        "%(what)s: unknown counter %(keys)s in field counts; "
                        "expected %(expected)s.",
                        what=what,
                        keys=", ".join(sorted(unknown)),
                        expected=", ".join(COUNT_KEYS),
                    )
                )
            run_vals = {
                "ended_at": parse_utc(self.env, vals["ended_at"], "ended_at", what),
                "outcome": vals["outcome"],
                "log": (vals.get("log") or "")[:MAX_LOG_LENGTH] or False,
            }
            for key, value in counts.items():
                run_vals[f"count_{key}"] = to_int(
                    self.env, value, f"counts.{key}", what
                )
            prepared.append(
                (to_int(self.env, vals["run_id"], "run_id", what), run_vals)
            )

        run_ids = {run_id for run_id, _vals in prepared}
        runs = self.search([("id", "in", list(run_ids))])
        missing = run_ids - set(runs.ids)
        if missing:
            raise ValidationError(
                self.env._(
                    "daemon_finish_runs: crm.sync.run %(ids)s (field run_id) does not "
                    "exist or is not visible to you.",
                    ids=", ".join(str(i) for i in sorted(missing)),
                )
            )
        for run_id, run_vals in prepared:
            run = runs.browse(run_id)
            if run_vals["ended_at"] and run_vals["ended_at"] < run.started_at:
                raise ValidationError(
                    self.env._(
                        "daemon_finish_runs: run %(run)s: field ended_at %(end)s is "
                        "before started_at %(start)s.",
                        run=run_id,
                        end=run_vals["ended_at"],
                        start=run.started_at,
                    )
                )
            run.write(run_vals)
        runs._update_backend_health()
        return True

    def _update_backend_health(self):
        """Copy the outcome of the latest finished run to each backend."""
        latest = {}
        for run in self.sorted(lambda r: (r.started_at, r.id)):
            latest[run.backend_id] = run
        for backend, run in latest.items():
            vals = {"last_run_state": run.outcome, "last_run_at": run.started_at}
            if run.outcome in ("success", "partial"):
                vals["last_success_at"] = run.ended_at
            if run.outcome in ("partial", "failed"):
                vals["last_error_at"] = run.ended_at
                vals["last_error"] = (run.log or "").strip().split("\n")[0][
                    :500
                ] or self.env._("Run ended with outcome %s.", run.outcome)
            backend.sudo().write(vals)
