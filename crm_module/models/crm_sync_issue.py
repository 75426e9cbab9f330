import json

from markupsafe import Markup, escape

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError

from ..tools.daemon import (
    check_daemon_access,
    check_selection,
    require_keys,
    require_list,
    to_int,
    to_text,
)

ISSUE_KINDS = [
    ("conflict", "Conflict"),
    ("duplicate", "Duplicate"),
    ("invalid_data", "Invalid data"),
    ("remote_error", "Remote error"),
    ("needs_reauth", "Needs re-authorisation"),
]
ISSUE_STATES = [
    ("open", "Open"),
    ("action_pending", "Action pending"),
    ("done", "Done"),
    ("ignored", "Ignored"),
]
ISSUE_ACTIONS = [
    ("retry", "Retry"),
    ("link", "Link to partner"),
    ("create", "Create new"),
    ("ignore", "Ignore"),
]
#: states in which a new report of the same problem updates the issue
LIVE_STATES = ("open", "action_pending", "ignored")
#: the payload is an excerpt for humans, not a copy of the remote record
MAX_PAYLOAD_LENGTH = 10000


class CrmSyncIssue(models.Model):
    _name = "crm.sync.issue"
    _description = "Synchronisation Issue"
    _inherit = ["mail.thread"]
    _order = "id desc"

    backend_id = fields.Many2one(
        comodel_name="crm.sync.backend",
        required=True,
        ondelete="cascade",
        index=True,
        tracking=True,
    )
    company_id = fields.Many2one(
        related="backend_id.company_id",
        store=True,
        index=True,
    )
    kind = fields.Selection(ISSUE_KINDS, required=True, index=True, tracking=True)
    state = fields.Selection(
        ISSUE_STATES,
        required=True,
        default="open",
        index=True,
        tracking=True,
    )
    res_model = fields.Char(string="Odoo Model", index=True)
    res_id = fields.Many2oneReference(string="Odoo Record ID", model_field="res_model")
    partner_id = fields.Many2one(
        comodel_name="res.partner",
        compute="_compute_partner_id",
        store=True,
        readonly=False,
        index=True,
        ondelete="set null",
    )
    record_ref = fields.Reference(
        selection="_selection_record_ref",
        string="Odoo Record",
        compute="_compute_record_ref",
    )
    external_id = fields.Char(string="External ID", index=True)
    field_name = fields.Char(string="Field")
    message = fields.Text(required=True)
    payload = fields.Text(help="Excerpt of the external data, as text or JSON.")
    suggestion_ids = fields.One2many(
        comodel_name="crm.sync.issue.suggestion",
        inverse_name="issue_id",
        string="Suggested Matches",
    )
    occurrence_count = fields.Integer(
        string="Occurrences",
        default=1,
        readonly=True,
        help="How many times the daemon reported this problem.",
    )
    last_seen_at = fields.Datetime(default=fields.Datetime.now, readonly=True)

    # decision taken by a user, executed by the daemon
    requested_action = fields.Selection(ISSUE_ACTIONS, readonly=True, tracking=True)
    chosen_partner_id = fields.Many2one(
        comodel_name="res.partner",
        tracking=True,
    )
    action_requested_by_id = fields.Many2one(
        comodel_name="res.users",
        string="Requested By",
        readonly=True,
    )
    action_requested_at = fields.Datetime(string="Requested On", readonly=True)
    resolved_at = fields.Datetime(readonly=True)

    @api.depends("res_model", "res_id")
    def _compute_partner_id(self):
        for issue in self:
            if issue.res_model == "res.partner" and issue.res_id:
                issue.partner_id = issue.res_id
            elif not issue.partner_id:
                issue.partner_id = False

    @api.model
    def _selection_record_ref(self):
        return [
            (model.model, model.name)
            for model in self.env["ir.model"].sudo().search([])
        ]

    @api.depends("res_model", "res_id")
    def _compute_record_ref(self):
        for issue in self:
            if issue.res_model in self.env and issue.res_id:
                issue.record_ref = f"{issue.res_model},{issue.res_id}"
            else:
                issue.record_ref = False

    @api.depends("kind", "external_id", "field_name", "partner_id")
    def _compute_display_name(self):
        kinds = dict(self._fields["kind"]._description_selection(self.env))
        for issue in self:
            subject = issue.partner_id.display_name or issue.external_id or ""
            parts = [kinds.get(issue.kind, ""), subject, issue.field_name or ""]
            issue.display_name = " / ".join(part for part in parts if part)

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_retry(self):
        """Ask the daemon to process the external record again."""
        return self._request_action("retry")

    def action_link_suggestion(self, partner=None):
        """Ask the daemon to link the external record to the chosen partner.

        Without a chosen partner the best-scored suggestion is used.
        """
        for issue in self:
            target = partner or issue.chosen_partner_id
            if not target and issue.suggestion_ids:
                target = issue.suggestion_ids.sorted("score", reverse=True)[
                    0
                ].partner_id
            if not target:
                raise UserError(
                    self.env._(
                        "Issue %(issue)s: choose a partner (field Chosen Partner) or "
                        "a suggestion before linking.",
                        issue=issue.display_name,
                    )
                )
            issue.chosen_partner_id = target
        return self._request_action("link")

    def action_create_new(self):
        """Ask the daemon to create a new record instead of matching one."""
        return self._request_action("create")

    def action_ignore(self):
        """Close the issue; the daemon keeps it closed when it meets it again."""
        return self._request_action("ignore")

    def action_reopen(self):
        """Put an ignored issue back on the workbench."""
        self.write({"state": "open", "requested_action": False})
        return True

    def _request_action(self, action):
        """Record who asked for what, so the daemon executes it on its next run."""
        done = self.filtered(lambda issue: issue.state == "done")
        if done:
            raise UserError(
                self.env._(
                    "Issue %(issue)s is already done; it cannot take a new action.",
                    issue=done[0].display_name,
                )
            )
        labels = dict(ISSUE_ACTIONS)
        now = fields.Datetime.now()
        for issue in self:
            issue.write(
                {
                    "requested_action": action,
                    "state": "ignored" if action == "ignore" else "action_pending",
                    "action_requested_by_id": self.env.user.id,
                    "action_requested_at": now,
                }
            )
            body = self.env._(
                "%(user)s requested: %(action)s.",
                user=self.env.user.name,
                action=labels[action],
            )
            if action == "link":
                body = self.env._(
                    "%(user)s requested: link to %(partner)s.",
                    user=self.env.user.name,
                    partner=issue.chosen_partner_id.display_name,
                )
            issue.message_post(body=body, subtype_xmlid="mail.mt_note")
        return True

    # ------------------------------------------------------------
    # DAEMON API
    # ------------------------------------------------------------

    @api.model
    def _daemon_prepare_issue_vals(self, vals, what):
        allowed_kinds = {kind for kind, _label in ISSUE_KINDS}
        require_keys(self.env, vals, ("backend_id", "kind", "message"), what)
        check_selection(self.env, vals["kind"], allowed_kinds, "kind", what)
        res_model = vals.get("res_model") or False
        if res_model and (not isinstance(res_model, str) or res_model not in self.env):
            raise ValidationError(
                self.env._(
                    "%(what)s: field res_model names an unknown model %(model)r.",
                    what=what,
                    model=res_model,
                )
            )
        payload = vals.get("payload")
        if payload is not None and not isinstance(payload, str):
            payload = json.dumps(payload, indent=2, ensure_ascii=False, default=str)
        if payload:
            # free text from the remote system: a NUL would lose the whole batch
            payload = payload.replace("\x00", "\ufffd")
        suggestions = []
        for position, suggestion in enumerate(vals.get("suggestions") or []):
            item = f"{what}.suggestions[{position}]"
            require_keys(self.env, suggestion, ("partner_id",), item)
            try:
                score = float(suggestion.get("score") or 0.0)
            except (TypeError, ValueError) as error:
                raise ValidationError(
                    self.env._("%(what)s: field score must be a number.", what=item)
                ) from error
            suggestions.append(
                {
                    "partner_id": to_int(
                        self.env, suggestion["partner_id"], "partner_id", item
                    ),
                    "score": score,
                    "reason": suggestion.get("reason") or False,
                }
            )
        res_id = vals.get("res_id")
        return {
            "backend_id": to_int(self.env, vals["backend_id"], "backend_id", what),
            "kind": vals["kind"],
            "res_model": res_model,
            "res_id": to_int(self.env, res_id, "res_id", what) if res_id else False,
            "external_id": to_text(self.env, vals["external_id"], "external_id", what)
            if vals.get("external_id")
            else False,
            "field_name": to_text(self.env, vals["field"], "field", what)
            if vals.get("field")
            else False,
            "message": str(vals["message"]).replace("\x00", "\ufffd"),
            "payload": payload[:MAX_PAYLOAD_LENGTH] if payload else False,
            "suggestions": suggestions,
        }

    @api.model
    def daemon_raise_issues(self, vals_list):
        """Create issues, or update the live issue with the same
        (backend_id, kind, external_id, field); returns ids in order."""
        check_daemon_access(self.env)
        require_list(self.env, vals_list, "daemon_raise_issues")
        what = "daemon_raise_issues"
        prepared = [
            self._daemon_prepare_issue_vals(vals, f"issues[{index}]")
            for index, vals in enumerate(vals_list)
        ]
        if not prepared:
            return []
        self.env["crm.sync.backend"]._daemon_get_backends(
            [vals["backend_id"] for vals in prepared], what
        )
        partner_ids = {
            suggestion["partner_id"]
            for vals in prepared
            for suggestion in vals["suggestions"]
        }
        record_ids = {}
        for vals in prepared:
            if vals["res_model"] and vals["res_id"]:
                record_ids.setdefault(vals["res_model"], set()).add(vals["res_id"])
        if partner_ids:
            record_ids.setdefault("res.partner", set()).update(partner_ids)
        self.env["crm.sync.link"]._daemon_check_records(record_ids, what)

        live = self.search(
            [
                ("backend_id", "in", list({vals["backend_id"] for vals in prepared})),
                ("kind", "in", list({vals["kind"] for vals in prepared})),
                ("state", "in", LIVE_STATES),
            ]
        )
        by_key = {issue._daemon_key(): issue for issue in live}
        now = fields.Datetime.now()
        result = []
        to_create = []
        for vals in prepared:
            key = (
                vals["backend_id"],
                vals["kind"],
                vals["external_id"] or False,
                vals["field_name"] or False,
            )
            suggestions = [
                fields.Command.create(suggestion)
                for suggestion in vals.pop("suggestions")
            ]
            issue = by_key.get(key)
            if isinstance(issue, dict):
                to_create[issue["pending"]].update(vals, suggestion_ids=suggestions)
            elif issue is not None:
                update = {
                    fname: value
                    for fname, value in vals.items()
                    if fname not in ("backend_id", "kind", "external_id", "field_name")
                }
                update.update(
                    occurrence_count=issue.occurrence_count + 1,
                    last_seen_at=now,
                    suggestion_ids=[fields.Command.clear(), *suggestions],
                )
                issue.write(update)
            else:
                issue = {"pending": len(to_create)}
                to_create.append(
                    dict(vals, suggestion_ids=suggestions, last_seen_at=now)
                )
                by_key[key] = issue
            result.append(issue)
        created = self.create(to_create)
        return [
            created[item["pending"]].id if isinstance(item, dict) else item.id
            for item in result
        ]

    def _daemon_key(self):
        self.ensure_one()
        return (
            self.backend_id.id,
            self.kind,
            self.external_id or False,
            self.field_name or False,
        )

    @api.model
    def daemon_fetch_actions(self, backend_id):
        """Return the actions users requested on issues of a backend."""
        check_daemon_access(self.env)
        backend = self.env["crm.sync.backend"]._daemon_get_backends(
            [backend_id], "daemon_fetch_actions"
        )
        issues = self.search(
            [("backend_id", "=", backend.id), ("state", "=", "action_pending")],
            order="id",
        )
        return [
            {
                "issue_id": issue.id,
                "action": issue.requested_action,
                "external_id": issue.external_id or False,
                "res_model": issue.res_model or False,
                "res_id": issue.res_id or False,
                "partner_id": (issue.chosen_partner_id or issue.partner_id).id or False,
                "payload": issue.payload or False,
            }
            for issue in issues
        ]

    @api.model
    def daemon_resolve_issues(self, vals_list):
        """Close issues the daemon handled (``done``) or hand them back (``open``)."""
        check_daemon_access(self.env)
        require_list(self.env, vals_list, "daemon_resolve_issues")
        prepared = {}
        for index, vals in enumerate(vals_list):
            what = f"issues[{index}]"
            require_keys(self.env, vals, ("issue_id", "state"), what)
            check_selection(self.env, vals["state"], {"done", "open"}, "state", what)
            prepared[to_int(self.env, vals["issue_id"], "issue_id", what)] = vals
        issues = self.search([("id", "in", list(prepared))])
        missing = set(prepared) - set(issues.ids)
        if missing:
            raise ValidationError(
                self.env._(
                    "daemon_resolve_issues: crm.sync.issue %(ids)s (field issue_id) "
                    "does not exist or is not visible to you.",
                    ids=", ".join(str(i) for i in sorted(missing)),
                )
            )
        now = fields.Datetime.now()
        for issue in issues:
            vals = prepared[issue.id]
            if vals["state"] == "done":
                issue.write({"state": "done", "resolved_at": now})
            else:
                issue.write({"state": "open", "requested_action": False})
            if vals.get("note"):
                # a log note: the daemon's technical user needs no e-mail address
                issue._message_log(body=Markup("%s") % escape(vals["note"]))
        return True
