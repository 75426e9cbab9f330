from markupsafe import Markup, escape

from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..tools.daemon import (
    check_daemon_access,
    check_selection,
    daemon_page_limit,
    parse_utc,
    require_keys,
    require_list,
    to_int,
    to_text,
    to_utc_string,
)

LINK_STATES = [("linked", "Linked"), ("unlinked", "Unlinked"), ("error", "Error")]


class CrmSyncLink(models.Model):
    _name = "crm.sync.link"
    _description = "Link between an Odoo Record and an External Record"
    _order = "id"

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
    res_model = fields.Char(string="Odoo Model", required=True, index=True)
    res_id = fields.Many2oneReference(
        string="Odoo Record ID",
        model_field="res_model",
        required=True,
        index=True,
    )
    partner_id = fields.Many2one(
        comodel_name="res.partner",
        compute="_compute_partner_id",
        store=True,
        index=True,
        ondelete="set null",
    )
    record_ref = fields.Reference(
        selection="_selection_record_ref",
        string="Odoo Record",
        compute="_compute_record_ref",
    )
    external_id = fields.Char(
        string="External ID",
        required=True,
        help="Identifier of the record in the external system (never reused).",
    )
    external_code = fields.Char(help="Code users see in the external system.")
    sync_hash = fields.Char(help="Hash of the data last synchronised.")
    synced_at = fields.Datetime(string="Last Synchronised")
    state = fields.Selection(LINK_STATES, required=True, default="linked", index=True)

    _sql_constraints = [
        (
            "backend_model_external_unique",
            "UNIQUE(backend_id, res_model, external_id)",
            "An external record can be linked only once per backend.",
        ),
        (
            "backend_model_record_unique",
            "UNIQUE(backend_id, res_model, res_id)",
            "An Odoo record can be linked to only one external record per backend.",
        ),
    ]

    @api.depends("res_model", "res_id")
    def _compute_partner_id(self):
        for link in self:
            is_partner = link.res_model == "res.partner" and link.res_id
            link.partner_id = link.res_id if is_partner else False

    @api.model
    def _selection_record_ref(self):
        return [
            (model.model, model.name)
            for model in self.env["ir.model"].sudo().search([])
        ]

    @api.depends("res_model", "res_id")
    def _compute_record_ref(self):
        for link in self:
            if link.res_model in self.env and link.res_id:
                link.record_ref = f"{link.res_model},{link.res_id}"
            else:
                link.record_ref = False

    @api.depends("backend_id", "external_id", "external_code")
    def _compute_display_name(self):
        for link in self:
            reference = link.external_code or link.external_id or ""
            link.display_name = f"{link.backend_id.name or ''} / {reference}"

    @api.constrains("res_model")
    def _check_res_model(self):
        for link in self:
            if link.res_model not in self.env:
                raise ValidationError(
                    self.env._(
                        "Link %(link)s: field res_model names an unknown model "
                        "%(model)r.",
                        link=link.display_name,
                        model=link.res_model,
                    )
                )

    # ------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        self._crm_check_unique(
            [(self.browse(), vals) for vals in vals_list if isinstance(vals, dict)]
        )
        return super().create(vals_list)

    def write(self, vals):
        if {"backend_id", "res_model", "res_id", "external_id"}.intersection(vals):
            self._crm_check_unique([(link, vals) for link in self])
        return super().write(vals)

    @api.model
    def _crm_check_unique(self, changes):
        """Refuse a link that would break one of the unique pairs, naming the
        link, the record and the field, before the SQL constraints (which stay
        as the last safeguard) answer with a message that names neither.

        :param changes: ``(link, vals)`` pairs, ``link`` empty for a creation
        """
        wanted = []
        for link, vals in changes:
            values = {
                fname: vals.get(fname, link[fname] if link else False)
                for fname in ("backend_id", "res_model", "res_id", "external_id")
            }
            if isinstance(values["backend_id"], models.BaseModel):
                values["backend_id"] = values["backend_id"].id
            if not all(values.values()):
                continue  # required fields: the ORM reports what is missing
            if link and values == {
                "backend_id": link.backend_id.id,
                "res_model": link.res_model,
                "res_id": link.res_id,
                "external_id": link.external_id,
            }:
                continue  # nothing changes (the daemon rewrites unchanged links)
            wanted.append((link, values))
        if not wanted:
            return
        others = self.sudo().search(
            [
                ("id", "not in", [link.id for link, _values in wanted if link]),
                ("backend_id", "in", [values["backend_id"] for _l, values in wanted]),
                ("res_model", "in", [values["res_model"] for _l, values in wanted]),
                "|",
                ("external_id", "in", [values["external_id"] for _l, values in wanted]),
                ("res_id", "in", [values["res_id"] for _l, values in wanted]),
            ]
        )
        # unique key -> what already holds it: the record of an external id, the
        # external id of a record
        by_external = {
            (other.backend_id.id, other.res_model, other.external_id): (
                other.res_model,
                other.res_id,
            )
            for other in others
        }
        by_record = {
            (other.backend_id.id, other.res_model, other.res_id): other.external_id
            for other in others
        }
        for _link, values in wanted:
            backend = self.env["crm.sync.backend"].sudo().browse(values["backend_id"])
            external_key = (backend.id, values["res_model"], values["external_id"])
            record_key = (backend.id, values["res_model"], values["res_id"])
            if external_key in by_external:
                raise ValidationError(
                    self.env._(
                        "Cannot link %(record)s: external ID %(external)r (field "
                        "External ID) of backend %(backend)s is already linked to "
                        "%(other)s.",
                        record=self._crm_record_label(
                            values["res_model"], values["res_id"]
                        ),
                        external=values["external_id"],
                        backend=backend.display_name,
                        other=self._crm_record_label(*by_external[external_key]),
                    )
                )
            if record_key in by_record:
                raise ValidationError(
                    self.env._(
                        "Cannot link %(record)s (field Odoo Record) to external ID "
                        "%(external)r: it is already linked to external ID "
                        "%(other)r of backend %(backend)s.",
                        record=self._crm_record_label(
                            values["res_model"], values["res_id"]
                        ),
                        external=values["external_id"],
                        other=by_record[record_key],
                        backend=backend.display_name,
                    )
                )
            by_external[external_key] = (values["res_model"], values["res_id"])
            by_record[record_key] = values["external_id"]

    @api.model
    def _crm_record_label(self, res_model, res_id):
        """Return a linked Odoo record as model, id and name."""
        label = f"{res_model} {res_id}"
        if res_model in self.env:
            record = self.env[res_model].sudo().browse(res_id).exists()
            if record:
                label = f"{label} ({record.display_name})"
        return label

    # ------------------------------------------------------------
    # DAEMON API
    # ------------------------------------------------------------

    @api.model
    def _daemon_check_records(self, res_model_ids, what):
        """Raise a ValidationError naming any record id that does not exist."""
        for res_model, res_ids in res_model_ids.items():
            if not isinstance(res_model, str) or res_model not in self.env:
                raise ValidationError(
                    self.env._(
                        "%(what)s: field res_model names an unknown model %(model)r.",
                        what=what,
                        model=res_model,
                    )
                )
            records = (
                self.env[res_model]
                .with_context(active_test=False)
                .search([("id", "in", list(res_ids))])
            )
            missing = set(res_ids) - set(records.ids)
            if missing:
                raise ValidationError(
                    self.env._(
                        "%(what)s: %(model)s %(ids)s (field res_id) does not exist or "
                        "is not visible to you.",
                        what=what,
                        model=res_model,
                        ids=", ".join(str(i) for i in sorted(missing)),
                    )
                )

    @api.model
    def daemon_upsert_links(self, vals_list):
        """Create or update links keyed by (backend_id, res_model, external_id).

        Returns the link ids in the order of ``vals_list``.
        """
        check_daemon_access(self.env)
        what = "daemon_upsert_links"
        require_list(self.env, vals_list, what)
        allowed_states = {state for state, _label in LINK_STATES}
        prepared = []
        for index, vals in enumerate(vals_list):
            item = f"links[{index}]"
            require_keys(
                self.env,
                vals,
                ("backend_id", "res_model", "res_id", "external_id"),
                item,
            )
            state = vals.get("state") or "linked"
            check_selection(self.env, state, allowed_states, "state", item)
            if not isinstance(vals["res_model"], str):
                raise ValidationError(
                    self.env._(
                        "%(what)s: field res_model names an unknown model %(model)r.",
                        what=item,
                        model=vals["res_model"],
                    )
                )
            link_vals = {
                "backend_id": to_int(self.env, vals["backend_id"], "backend_id", item),
                "res_model": vals["res_model"],
                "res_id": to_int(self.env, vals["res_id"], "res_id", item),
                "external_id": to_text(
                    self.env, vals["external_id"], "external_id", item
                ),
                "state": state,
            }
            for key in ("external_code", "sync_hash"):
                if key in vals:
                    link_vals[key] = vals[key] and to_text(
                        self.env, vals[key], key, item
                    )
                    link_vals[key] = link_vals[key] or False
            if "synced_at" in vals:
                link_vals["synced_at"] = parse_utc(
                    self.env, vals["synced_at"], "synced_at", item
                )
            prepared.append(link_vals)
        if not prepared:
            return []

        backends = self.env["crm.sync.backend"]._daemon_get_backends(
            [vals["backend_id"] for vals in prepared], what
        )
        res_model_ids = {}
        for vals in prepared:
            res_model_ids.setdefault(vals["res_model"], set()).add(vals["res_id"])
        self._daemon_check_records(res_model_ids, what)

        existing = self.search(
            [
                ("backend_id", "in", backends.ids),
                ("res_model", "in", list(res_model_ids)),
                "|",
                ("external_id", "in", [vals["external_id"] for vals in prepared]),
                ("res_id", "in", [vals["res_id"] for vals in prepared]),
            ]
        )
        # tokens: an int is the id of an existing link, ("new", n) the n-th creation
        by_external = {
            (link.backend_id.id, link.res_model, link.external_id): link.id
            for link in existing
        }
        by_record = {
            (link.backend_id.id, link.res_model, link.res_id): link.id
            for link in existing
        }
        result = []
        to_create = []
        record_of_external = {}
        for vals in prepared:
            external_key = (vals["backend_id"], vals["res_model"], vals["external_id"])
            record_key = (vals["backend_id"], vals["res_model"], vals["res_id"])
            # one call may not point an external record at two Odoo records: the
            # last one would silently win
            previous = record_of_external.setdefault(external_key, vals["res_id"])
            if previous != vals["res_id"]:
                raise ValidationError(
                    self.env._(
                        "%(what)s: external id %(external)r (field external_id) "
                        "appears twice with different records (%(model)s %(first)s "
                        "and %(second)s) for backend %(backend)s.",
                        what=what,
                        external=vals["external_id"],
                        model=vals["res_model"],
                        first=previous,
                        second=vals["res_id"],
                        backend=vals["backend_id"],
                    )
                )
            token = by_external.get(external_key)
            holder = by_record.get(record_key)
            if holder is not None and holder != token:
                if isinstance(holder, tuple):
                    raise ValidationError(
                        self.env._(
                            "%(what)s: %(model)s %(res_id)s (field res_id) appears "
                            "twice with different external ids for backend "
                            "%(backend)s.",
                            what=what,
                            model=vals["res_model"],
                            res_id=vals["res_id"],
                            backend=vals["backend_id"],
                        )
                    )
                holder_link = existing.browse(holder)
                if holder_link.state == "unlinked" and token is None:
                    # the record was unlinked earlier: the row is reused for the new
                    # external record so the unique (backend, record) pair holds
                    token = holder
                    by_external.pop(
                        (
                            holder_link.backend_id.id,
                            holder_link.res_model,
                            holder_link.external_id,
                        ),
                        None,
                    )
                else:
                    raise ValidationError(
                        self._daemon_conflict_message(vals, holder_link)
                    )
            if token is None:
                token = ("new", len(to_create))
                to_create.append(vals)
            elif isinstance(token, tuple):
                to_create[token[1]].update(vals)
            else:
                link = existing.browse(token)
                by_record.pop((link.backend_id.id, link.res_model, link.res_id), None)
                link.write(vals)
            result.append(token)
            by_external[external_key] = token
            by_record[record_key] = token
        created = self.create(to_create)
        return [
            created[token[1]].id if isinstance(token, tuple) else token
            for token in result
        ]

    def _daemon_conflict_message(self, vals, holder):
        record = self.env[vals["res_model"]].browse(vals["res_id"])
        return self.env._(
            "Cannot link %(model)s %(res_id)s (%(record)s) to external id "
            "%(external)r of backend %(backend)s: it is already linked to external id "
            "%(other)r (field external_id, link %(link)s).",
            model=vals["res_model"],
            res_id=vals["res_id"],
            record=record.sudo().display_name,
            external=vals["external_id"],
            backend=holder.backend_id.name,
            other=holder.external_id,
            link=holder.id,
        )

    @api.model
    def daemon_read_links(self, backend_id, res_model, after_id=0, limit=500):
        """Return one page of links ordered by id, for keyset paging."""
        check_daemon_access(self.env)
        backend = self.env["crm.sync.backend"]._daemon_get_backends(
            [backend_id], "daemon_read_links"
        )
        links = self.search_fetch(
            [
                ("backend_id", "=", backend.id),
                ("res_model", "=", res_model),
                (
                    "id",
                    ">",
                    to_int(self.env, after_id or 0, "after_id", "daemon_read_links"),
                ),
            ],
            [
                "res_id",
                "external_id",
                "external_code",
                "sync_hash",
                "synced_at",
                "state",
            ],
            order="id",
            limit=daemon_page_limit(self.env, limit),
        )
        return [
            {
                "id": link.id,
                "res_id": link.res_id,
                "external_id": link.external_id,
                "external_code": link.external_code or False,
                "sync_hash": link.sync_hash or False,
                "synced_at": to_utc_string(link.synced_at),
                "state": link.state,
            }
            for link in links
        ]

    @api.model
    def daemon_unlink_links(self, vals_list):
        """Mark links as unlinked (rows are kept) and note it on the partners.

        Returns the number of links found and marked.
        """
        check_daemon_access(self.env)
        what = "daemon_unlink_links"
        require_list(self.env, vals_list, what)
        notes = {}
        for index, vals in enumerate(vals_list):
            item = f"links[{index}]"
            require_keys(
                self.env, vals, ("backend_id", "res_model", "external_id"), item
            )
            key = (
                to_int(self.env, vals["backend_id"], "backend_id", item),
                to_text(self.env, vals["res_model"], "res_model", item),
                to_text(self.env, vals["external_id"], "external_id", item),
            )
            notes[key] = vals.get("note") or ""
        if not notes:
            return 0
        backends = self.env["crm.sync.backend"]._daemon_get_backends(
            [key[0] for key in notes], what
        )
        candidates = self.search(
            [
                ("backend_id", "in", backends.ids),
                ("res_model", "in", list({key[1] for key in notes})),
                ("external_id", "in", list({key[2] for key in notes})),
            ]
        )
        links = candidates.filtered(
            lambda link: (link.backend_id.id, link.res_model, link.external_id) in notes
        )
        links.write({"state": "unlinked"})
        for link in links.filtered("partner_id"):
            note = notes[(link.backend_id.id, link.res_model, link.external_id)]
            body = Markup("%s<br/>%s") % (
                self.env._(
                    "Unlinked from %(backend)s record %(external)s.",
                    backend=link.backend_id.name,
                    external=link.external_code or link.external_id,
                ),
                escape(note),
            )
            # a log note: the daemon's technical user needs no e-mail address
            link.partner_id.sudo()._message_log(body=body)
        return len(links)
