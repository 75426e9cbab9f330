import csv
import io
import json
import logging
import zipfile
from datetime import timedelta

from dateutil.relativedelta import relativedelta

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL

from ..tools.gdpr import canonical_json, subject_hash
from .crm_consent_event import PRIVACY_GROUP

_logger = logging.getLogger(__name__)

REQUEST_TYPES = [
    ("access", "Access (Art. 15)"),
    ("rectification", "Rectification (Art. 16)"),
    ("erasure", "Erasure (Art. 17)"),
    ("restriction", "Restriction (Art. 18)"),
    ("portability", "Portability (Art. 20)"),
    ("objection", "Objection (Art. 21)"),
]
REQUEST_STATES = [
    ("new", "Received"),
    ("verified", "Identity verified"),
    ("done", "Done"),
    ("rejected", "Rejected"),
]
#: days before the due date the privacy officer gets a reminder activity
REMINDER_DAYS = 7
#: replacement of erased text in messages, tracking values and leads
ERASED = "[erased]"
#: shortest identifier searched in free text (shorter ones match too much)
MIN_IDENTIFIER_LENGTH = 4
INVOICE_TYPES = ("out_invoice", "out_refund", "in_invoice", "in_refund")
LEAD_ERASED_FIELDS = (
    "contact_name",
    "partner_name",
    "email_from",
    "email_cc",
    "phone",
    "mobile",
    "website",
    "description",
    "street",
    "street2",
    "zip",
    "city",
    "function",
)


class CrmPrivacyRequest(models.Model):
    _name = "crm.privacy.request"
    _description = "Data Subject Request"
    _inherit = ["mail.thread", "mail.activity.mixin"]
    _order = "due_date, id"

    name = fields.Char(
        string="Reference",
        required=True,
        readonly=True,
        copy=False,
        default=lambda self: self.env._("New"),
    )
    request_type = fields.Selection(REQUEST_TYPES, required=True, tracking=True)
    state = fields.Selection(
        REQUEST_STATES,
        required=True,
        default="new",
        tracking=True,
        index=True,
    )
    company_id = fields.Many2one(
        comodel_name="res.company",
        required=True,
        default=lambda self: self.env.company,
        index=True,
    )
    partner_id = fields.Many2one(
        comodel_name="res.partner",
        string="Data Subject",
        tracking=True,
        index=True,
        ondelete="restrict",
        context={"active_test": False},
    )
    requester_name = fields.Char()
    requester_email = fields.Char()
    identity_verified = fields.Boolean(readonly=True, tracking=True)
    identity_note = fields.Text(
        string="Identity Check",
        help="How the identity of the requester was verified.",
    )
    received_date = fields.Date(
        required=True,
        default=fields.Date.context_today,
        tracking=True,
    )
    extension_months = fields.Integer(
        tracking=True,
        help="GDPR Art. 12(3): the deadline can be extended by up to two months "
        "for complex or numerous requests; the person must be told why.",
    )
    extension_reason = fields.Text()
    due_date = fields.Date(
        compute="_compute_due_date",
        store=True,
        tracking=True,
        index=True,
    )
    user_id = fields.Many2one(
        comodel_name="res.users",
        string="Privacy Officer",
        tracking=True,
        domain=lambda self: [
            ("groups_id", "in", self.env.ref(PRIVACY_GROUP).ids),
        ],
    )
    reminder_sent = fields.Boolean(readonly=True, copy=False)
    resolution_note = fields.Text()

    # proof of erasure, without personal data in clear
    subject_hash = fields.Char(
        readonly=True,
        copy=False,
        help="Keyed digest of the data subject's normalised e-mail.",
    )
    erased_at = fields.Datetime(readonly=True, copy=False)
    erasure_scope = fields.Text(readonly=True, copy=False)

    _sql_constraints = [
        (
            "extension_range",
            "CHECK(extension_months BETWEEN 0 AND 2)",
            "The deadline can be extended by two months at most.",
        ),
    ]

    @api.depends("received_date", "extension_months")
    def _compute_due_date(self):
        for request in self:
            if request.received_date:
                request.due_date = request.received_date + relativedelta(
                    months=1 + (request.extension_months or 0)
                )
            else:
                request.due_date = False

    @api.constrains("extension_months", "extension_reason")
    def _check_extension_reason(self):
        for request in self:
            if (
                request.extension_months
                and not (request.extension_reason or "").strip()
            ):
                raise ValidationError(
                    self.env._("Give the reason why the deadline is extended.")
                )

    # ------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if vals.get("name", self.env._("New")) == self.env._("New"):
                vals["name"] = self.env["ir.sequence"].next_by_code(
                    "crm.privacy.request"
                ) or self.env._("New")
        return super().create(vals_list)

    @api.ondelete(at_uninstall=False)
    def _unlink_except_proof(self):
        raise UserError(
            self.env._("Data subject requests are kept as proof; reject them instead.")
        )

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_verify_identity(self):
        """Record that the requester proved to be the data subject."""
        for request in self:
            if not request.partner_id:
                raise UserError(
                    self.env._("Choose the data subject before verifying identity.")
                )
            request.write({"identity_verified": True, "state": "verified"})
            request.message_post(
                body=self.env._("Identity verified by %s.", self.env.user.name)
            )
        return True

    def action_reject(self):
        """Close the request without acting on it."""
        for request in self:
            request.state = "rejected"
            request.message_post(
                body=self.env._(
                    "Request rejected by %(user)s: %(reason)s",
                    user=self.env.user.name,
                    reason=request.resolution_note or "-",
                )
            )
        return True

    def action_process(self):
        """Carry out the request according to its type."""
        self.ensure_one()
        if self.state != "verified":
            raise UserError(self.env._("Verify the identity of the requester first."))
        handler = {
            "access": self._crm_process_access,
            "portability": self._crm_process_access,
            "erasure": self._crm_process_erasure,
            "restriction": self._crm_process_restriction,
            "objection": self._crm_process_objection,
            "rectification": self._crm_process_rectification,
        }[self.request_type]
        handler()
        self.state = "done"
        return True

    # ------------------------------------------------------------
    # PROCESSING
    # ------------------------------------------------------------

    def _crm_subjects(self):
        """Return the partners of the data subject: same e-mail key, and the
        personal child contacts."""
        self.ensure_one()
        Consent = self.env["crm.consent"]
        partners = Consent._crm_subject_partners(self.partner_id)
        children = (
            self.env["res.partner"]
            .sudo()
            .with_context(active_test=False)
            .search([("parent_id", "in", partners.ids), ("is_company", "=", False)])
        )
        return (partners | children).filtered(lambda partner: not partner.crm_erased)

    def _crm_process_rectification(self):
        self.message_post(
            body=self.env._("Rectification done: %s", self.resolution_note or "-")
        )

    def _crm_process_restriction(self):
        self._crm_subjects().write({"crm_processing_restricted": True})
        self.message_post(body=self.env._("Processing restricted for marketing."))

    def _crm_process_objection(self):
        subjects = self._crm_subjects()
        subjects.write({"crm_marketing_objection": True})
        self.env["crm.consent"]._crm_withdraw(subjects, source="manual")
        self.message_post(
            body=self.env._("Objection recorded; marketing consents withdrawn.")
        )

    def _crm_process_access(self):
        data = self._crm_export_bundle()
        attachment = (
            self.env["ir.attachment"]
            .sudo()
            .create(
                {
                    "name": f"{self.name.replace('/', '-')}-personal-data.zip",
                    "raw": data,
                    "mimetype": "application/zip",
                    "res_model": self._name,
                    "res_id": self.id,
                }
            )
        )
        self.message_post(
            body=self.env._("Personal data export generated."),
            attachment_ids=attachment.ids,
        )
        return attachment

    # ------------------------------------------------------------
    # ACCESS / PORTABILITY
    # ------------------------------------------------------------

    def _crm_collect_personal_data(self):
        """Return the personal data of the subject as lists of plain dicts."""
        self.ensure_one()
        subjects = self._crm_subjects()
        env = self.env(su=True)
        leads = (
            env["crm.lead"]
            .with_context(active_test=False)
            .search([("partner_id", "in", subjects.ids)])
        )
        messages = self._crm_subject_messages(subjects, leads)
        activities = env["mail.activity"].search(
            [
                "|",
                "&",
                ("res_model", "=", "res.partner"),
                ("res_id", "in", subjects.ids),
                "&",
                ("res_model", "=", "crm.lead"),
                ("res_id", "in", leads.ids),
            ]
        )
        consents = env["crm.consent"].search([("partner_id", "in", subjects.ids)])
        events = env["crm.consent.event"].search(
            [("partner_id", "in", subjects.ids)], order="sequence"
        )
        invoices = env["account.move"].search(
            [
                ("commercial_partner_id", "in", subjects.commercial_partner_id.ids),
                ("move_type", "in", INVOICE_TYPES),
            ]
        )
        links = env["crm.sync.link"].search([("partner_id", "in", subjects.ids)])
        peppol_documents = invoices.filtered(
            lambda move: move.crm_peppol_state or move.ubl_cii_xml_id
        )

        def value(record, fname):
            field = record._fields[fname]
            raw = record[fname]
            if field.type == "many2one":
                return raw.display_name or False
            if field.type in ("many2many", "one2many"):
                return raw.mapped("display_name")
            if field.type in ("date", "datetime"):
                return field.to_string(raw) if raw else False
            return raw

        def rows(recordset, fnames):
            return [
                {"id": record.id, **{fname: value(record, fname) for fname in fnames}}
                for record in recordset
            ]

        return {
            "partners": rows(
                subjects,
                [
                    "name",
                    "parent_id",
                    "type",
                    "email",
                    "phone",
                    "mobile",
                    "website",
                    "function",
                    "street",
                    "street2",
                    "zip",
                    "city",
                    "country_id",
                    "vat",
                    "peppol_eas",
                    "peppol_endpoint",
                    "lang",
                    "comment",
                    "create_date",
                ],
            ),
            "opportunities": rows(
                leads,
                [
                    "name",
                    "type",
                    "stage_id",
                    "user_id",
                    "contact_name",
                    "email_from",
                    "phone",
                    "expected_revenue",
                    "description",
                    "create_date",
                ],
            ),
            "messages": rows(
                messages,
                ["date", "model", "res_id", "message_type", "subject", "body"],
            ),
            "activities": rows(
                activities,
                ["res_model", "res_id", "activity_type_id", "summary", "date_deadline"],
            ),
            "consents": rows(
                consents,
                ["purpose_id", "legal_basis", "state", "state_since", "source"],
            ),
            "consent_events": rows(
                events,
                [
                    "purpose_id",
                    "kind",
                    "source",
                    "action_at",
                    "recorded_at",
                    "previous_state",
                    "new_state",
                    "superseded",
                    "text_version",
                    "ip_address",
                    "user_agent",
                ],
            ),
            "invoices": rows(
                invoices,
                [
                    "name",
                    "move_type",
                    "invoice_date",
                    "state",
                    "payment_state",
                    "currency_id",
                    "amount_total",
                    "amount_residual",
                ],
            ),
            "sync_links": rows(
                links,
                ["backend_id", "res_model", "external_id", "state", "synced_at"],
            ),
            "peppol_documents": rows(
                peppol_documents,
                [
                    "name",
                    "crm_peppol_state",
                    "crm_peppol_status_at",
                    "crm_peppol_message",
                    "crm_peppol_rules",
                    "ubl_cii_xml_id",
                ],
            ),
        }

    def _crm_export_bundle(self):
        """Return a zip with one JSON file of everything and one CSV per table."""
        data = self._crm_collect_personal_data()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(
                "personal_data.json",
                json.dumps(data, indent=2, default=str, ensure_ascii=False),
            )
            for table, rows in data.items():
                text = io.StringIO()
                columns = list(rows[0]) if rows else ["id"]
                writer = csv.DictWriter(text, fieldnames=columns)
                writer.writeheader()
                for row in rows:
                    writer.writerow(
                        {
                            key: json.dumps(val, default=str)
                            if isinstance(val, list | dict)
                            else val
                            for key, val in row.items()
                        }
                    )
                archive.writestr(f"{table}.csv", text.getvalue())
            # the Peppol documents themselves, as exchanged with the buyer
            documents = (
                self.env["account.move"]
                .sudo()
                .browse([row["id"] for row in data["peppol_documents"]])
            )
            for move in documents.filtered("ubl_cii_xml_id"):
                xml = move.ubl_cii_xml_id
                archive.writestr(f"peppol/{move.id}-{xml.name}", xml.raw or b"")
        return buffer.getvalue()

    @api.model
    def _crm_subject_messages(self, subjects, leads):
        return (
            self.env["mail.message"]
            .sudo()
            .search(
                [
                    "|",
                    "|",
                    ("author_id", "in", subjects.ids),
                    "&",
                    ("model", "=", "res.partner"),
                    ("res_id", "in", subjects.ids),
                    "&",
                    ("model", "=", "crm.lead"),
                    ("res_id", "in", leads.ids),
                ]
            )
        )

    # ------------------------------------------------------------
    # ERASURE
    # ------------------------------------------------------------

    def _crm_process_erasure(self):
        """Erase the personal data of the subject, keep what the law requires.

        Posted invoices inside their retention period are kept unchanged under
        a legal hold and carry the partner data they need; everything else is
        anonymised or deleted. The proof kept on the request has no personal
        data in clear.
        """
        self.ensure_one()
        subjects = self._crm_subjects()
        if not subjects:
            raise UserError(self.env._("The data subject is already erased."))
        env = self.env(su=True)
        email_key = self.partner_id.email_key or subjects[:1].email_key
        identifiers = self._crm_identifiers(subjects)
        today = fields.Date.context_today(self)

        held, released = self._crm_hold_invoices(subjects, today)
        leads = (
            env["crm.lead"]
            .with_context(active_test=False)
            .search(
                [
                    "|",
                    ("partner_id", "in", subjects.ids),
                    ("email_normalized", "in", subjects.mapped("email_normalized")),
                ]
            )
        )
        counts = {"partners": len(subjects), "leads": len(leads)}
        counts["consent_events"] = self._crm_erase_ledger(subjects)

        # the retained invoices keep their stored partner display name
        name_field = env["account.move"]._fields["invoice_partner_display_name"]
        with env.protecting([name_field], held):
            subjects._crm_anonymise()
        counts["sync_issues"] = self._crm_open_ledger_issues(subjects)
        self._crm_anonymise_leads(leads)
        counts.update(self._crm_scrub_mail(subjects, leads, identifiers, held))
        if held:
            subjects.write(
                {"crm_legal_hold_until": max(held.mapped("crm_legal_hold_until"))}
            )

        scope = {
            "scope": sorted(counts),
            "counts": counts,
            "legal_hold": [
                {
                    "invoice": move.name,
                    "until": fields.Date.to_string(move.crm_legal_hold_until),
                }
                for move in held
            ],
            "past_retention": released.mapped("name"),
            "backends": sorted(
                env["crm.sync.link"]
                .search([("partner_id", "in", subjects.ids)])
                .backend_id.mapped("name")
            ),
        }
        self.sudo().write(
            {
                "subject_hash": subject_hash(self.env, email_key),
                "erased_at": fields.Datetime.now(),
                "erasure_scope": canonical_json(scope),
                "requester_name": False,
                "requester_email": False,
                "identity_note": False,
            }
        )
        self.message_post(
            body=self.env._(
                "Personal data erased: %(counts)s; invoices kept under legal hold: "
                "%(held)s.",
                counts=", ".join(f"{key} {value}" for key, value in counts.items()),
                held=", ".join(held.mapped("name")) or "-",
            )
        )
        _logger.info(
            "erasure request %s done: %s, %d invoices on legal hold",
            self.id,
            counts,
            len(held),
        )
        return scope

    @api.model
    def _crm_identifiers(self, subjects):
        """Return the personal strings to hunt for in free text."""
        values = set()
        for partner in subjects.sudo():
            for fname in ("name", "email", "email_normalized", "phone", "mobile"):
                if fname in partner._fields and partner[fname]:
                    values.add(partner[fname].strip())
            for fname in ("phone_sanitized", "mobile_sanitized"):
                if fname in partner._fields and partner[fname]:
                    values.add(partner[fname])
        return sorted(value for value in values if len(value) >= MIN_IDENTIFIER_LENGTH)

    def _crm_hold_invoices(self, subjects, today):
        """Put invoices inside their retention period under legal hold.

        Returns (held moves, moves past retention). A held move keeps a snapshot
        of the partner data it needs, as the partner itself is anonymised.
        """
        Retention = self.env["crm.legal.retention"]
        moves = (
            self.env["account.move"]
            .sudo()
            .search(
                [
                    "|",
                    ("partner_id", "in", subjects.ids),
                    ("commercial_partner_id", "in", subjects.ids),
                    ("move_type", "in", INVOICE_TYPES),
                    ("state", "=", "posted"),
                ]
            )
        )
        held = moves.browse()
        for move in moves:
            hold_until = Retention._crm_hold_until(move)
            if hold_until < today:
                continue
            partner = move.partner_id
            snapshot = {
                "name": partner.name,
                "street": partner.street or "",
                "street2": partner.street2 or "",
                "zip": partner.zip or "",
                "city": partner.city or "",
                "country": partner.country_id.code or "",
                "vat": partner.vat or "",
                "company_registry": partner.company_registry or "",
            }
            move.write(
                {
                    "crm_legal_hold_until": hold_until,
                    "crm_legal_hold_note": Retention._crm_hold_note(move, hold_until),
                    "crm_partner_snapshot": json.dumps(snapshot, ensure_ascii=False),
                }
            )
            held |= move
        return held, moves - held

    def _crm_erase_ledger(self, subjects):
        """Record the erasure in the consent ledger and clear the evidence."""
        Consent = self.env["crm.consent"]
        consents = Consent.sudo().search([("partner_id", "in", subjects.ids)])
        for consent in consents:
            Consent._crm_record_event(
                consent.partner_id, consent.purpose_id, "erase", source="manual"
            )
        consents.with_context(crm_consent_ledger=True).write(
            {
                "evidence_summary": False,
                "confirmation_nonce": False,
                "confirmation_used_nonce": False,
            }
        )
        events = consents.event_ids
        events._crm_erase_personal_values()
        return len(events)

    def _crm_open_ledger_issues(self, subjects):
        """Open one 'handle erasure in the ledger' issue per linked backend."""
        links = (
            self.env["crm.sync.link"]
            .sudo()
            .search([("partner_id", "in", subjects.ids)])
        )
        issues = (
            self.env["crm.sync.issue"]
            .sudo()
            .search([("partner_id", "in", subjects.ids)])
        )
        issues.write({"payload": False})
        vals_list = []
        for link in links:
            vals_list.append(
                {
                    "backend_id": link.backend_id.id,
                    "kind": "erasure",
                    "res_model": "res.partner",
                    "res_id": link.partner_id.id,
                    "external_id": link.external_id,
                    "message": self.env._(
                        "Erasure request %(request)s: the customer's personal data "
                        "was erased in Odoo. Handle it in %(backend)s according to "
                        "the legal retention of accounting records; the daemon will "
                        "not push the anonymised values nor re-create the customer.",
                        request=self.name,
                        backend=link.backend_id.name,
                    ),
                }
            )
        self.env["crm.sync.issue"].sudo().create(vals_list)
        return len(vals_list)

    def _crm_anonymise_leads(self, leads):
        writer = leads.sudo().with_context(tracking_disable=True, mail_notrack=True)
        for lead in writer:
            vals = dict.fromkeys(
                [fname for fname in LEAD_ERASED_FIELDS if fname in lead._fields], False
            )
            vals["name"] = self.env._("Anonymised opportunity #%s", lead.id)
            lead.write(vals)

    def _crm_scrub_mail(self, subjects, leads, identifiers, held):
        """Remove the person from messages, tracking values, mails, attachments,
        followers and blacklists."""
        env = self.env(su=True)
        cr = self.env.cr
        self.env.flush_all()
        patterns = [f"%{value}%" for value in identifiers]

        def matching(table, columns):
            if not patterns:
                return []
            conditions = SQL(" OR ").join(
                SQL("%s::text ILIKE ANY(%s)", SQL.identifier(column), patterns)
                for column in columns
            )
            cr.execute(
                SQL("SELECT id FROM %s WHERE %s", SQL.identifier(table), conditions)
            )
            return [row[0] for row in cr.fetchall()]

        # messages on the person's records, by the person, or naming the person
        messages = self._crm_subject_messages(subjects, leads) | env[
            "mail.message"
        ].browse(
            matching(
                "mail_message",
                ["body", "subject", "email_from", "record_name", "reply_to"],
            )
        )
        messages.write(
            {
                "body": ERASED,
                "subject": False,
                "email_from": False,
                "record_name": False,
                "reply_to": False,
            }
        )
        trackings = messages.tracking_value_ids | env["mail.tracking.value"].browse(
            matching(
                "mail_tracking_value",
                [
                    "old_value_char",
                    "new_value_char",
                    "old_value_text",
                    "new_value_text",
                ],
            )
        )
        for tracking in trackings:
            tracking.write(
                {
                    fname: ERASED
                    for fname in (
                        "old_value_char",
                        "new_value_char",
                        "old_value_text",
                        "new_value_text",
                    )
                    if tracking[fname]
                }
            )

        # mails in the queue or kept after sending
        mails = env["mail.mail"].search([("recipient_ids", "in", subjects.ids)]) | env[
            "mail.mail"
        ].browse(matching("mail_mail", ["email_to", "email_cc", "body_html"]))
        mails.unlink()

        # attachments, except the documents of invoices under legal hold
        attachments = env["ir.attachment"].search(
            [
                "|",
                "|",
                "&",
                ("res_model", "=", "res.partner"),
                ("res_id", "in", subjects.ids),
                "&",
                ("res_model", "=", "crm.lead"),
                ("res_id", "in", leads.ids),
                "&",
                ("res_model", "=", self._name),
                ("res_id", "=", self.id),
            ]
        ) | env["ir.attachment"].browse(
            matching("ir_attachment", ["name", "index_content", "description"])
        )
        attachments = attachments.filtered(
            lambda att: not (att.res_model == "account.move" and att.res_id in held.ids)
        )
        attachments.unlink()

        env["mail.followers"].search([("partner_id", "in", subjects.ids)]).unlink()
        env["mail.activity"].search(
            [
                "|",
                "&",
                ("res_model", "=", "res.partner"),
                ("res_id", "in", subjects.ids),
                "&",
                ("res_model", "=", "crm.lead"),
                ("res_id", "in", leads.ids),
            ]
        ).unlink()
        env["mail.blacklist"].with_context(active_test=False).search(
            [("email", "in", [value.lower() for value in identifiers])]
        ).unlink()
        if "phone.blacklist" in env:
            env["phone.blacklist"].with_context(active_test=False).search(
                [("number", "in", identifiers)]
            ).unlink()
        return {
            "messages": len(messages),
            "tracking_values": len(trackings),
            "mails": len(mails),
            "attachments": len(attachments),
        }

    # ------------------------------------------------------------
    # CRON
    # ------------------------------------------------------------

    @api.model
    def _cron_deadline_reminders(self):
        """Schedule a to-do for the privacy officer a week before each deadline."""
        limit = fields.Date.context_today(self) + timedelta(days=REMINDER_DAYS)
        requests = self.search(
            [
                ("state", "in", ("new", "verified")),
                ("due_date", "<=", limit),
                ("reminder_sent", "=", False),
            ]
        )
        for request in requests:
            request.activity_schedule(
                "mail.mail_activity_data_todo",
                date_deadline=request.due_date,
                summary=self.env._("Privacy request due on %s", request.due_date),
                user_id=request.user_id.id or self.env.uid,
            )
        requests.write({"reminder_sent": True})
        return requests
