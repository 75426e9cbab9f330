import logging

from odoo import api, fields, models
from odoo.exceptions import UserError

from ..tools.daemon import check_daemon_access, daemon_page_limit, to_utc_string
from ..tools.gdpr import SCOPE_EVIDENCE, SCOPE_LEDGER, canonical_json, sign
from .crm_consent_purpose import LEGAL_BASES

_logger = logging.getLogger(__name__)

CONSENT_STATES = [
    ("pending", "Pending confirmation"),
    ("granted", "Granted"),
    ("withdrawn", "Withdrawn"),
    ("expired", "Expired"),
]
EVENT_KINDS = [
    ("signup", "Sign-up"),
    ("confirm", "Confirmation"),
    ("grant", "Grant"),
    ("withdraw", "Withdrawal"),
    ("expire", "Expiry"),
    ("erase", "Erasure"),
]
EVENT_SOURCES = [
    ("web_form", "Web form"),
    ("email_link", "E-mail link"),
    ("import", "Import"),
    ("manual", "Manual (back office)"),
    ("sync", "Synchronisation"),
    ("system", "System (cron)"),
]
PRIVACY_GROUP = "crm_module.crm_module_group_privacy_officer"
#: evidence values that identify a person; erasure clears them, the hash skips them
PERSONAL_FIELDS = ("ip_address", "user_agent", "evidence_note", "attachment_id")
#: values sealed by the hash chain, in this order
SEALED_FIELDS = (
    "sequence",
    "previous_hash",
    "consent_id",
    "partner_id",
    "purpose_id",
    "kind",
    "source",
    "legal_basis",
    "action_at",
    "recorded_at",
    "previous_state",
    "new_state",
    "superseded",
    "text_version",
    "evidence_digest",
    "recorded_by_id",
)
#: advisory lock taken while a row is appended, so the chain stays linear
LEDGER_LOCK_KEY = 74210331
#: events after which the evidence of earlier events may be erased
ERASURE_MARKER_KINDS = ("erase", "expire")
#: event kinds the daemon must act on (see API.md, "GDPR")
DAEMON_EVENT_KINDS = ("withdraw", "erase", "expire")


class CrmConsentEvent(models.Model):
    _name = "crm.consent.event"
    _description = "Consent Ledger Event"
    _order = "sequence desc"
    _rec_name = "kind"

    sequence = fields.Integer(required=True, readonly=True, index=True)
    consent_id = fields.Many2one(
        comodel_name="crm.consent",
        required=True,
        readonly=True,
        ondelete="restrict",
        index=True,
    )
    partner_id = fields.Many2one(
        comodel_name="res.partner",
        required=True,
        readonly=True,
        ondelete="restrict",
        index=True,
    )
    purpose_id = fields.Many2one(
        comodel_name="crm.consent.purpose",
        required=True,
        readonly=True,
        ondelete="restrict",
    )
    company_id = fields.Many2one(
        related="purpose_id.company_id",
        store=True,
        index=True,
    )
    kind = fields.Selection(EVENT_KINDS, required=True, readonly=True)
    source = fields.Selection(EVENT_SOURCES, required=True, readonly=True)
    legal_basis = fields.Selection(LEGAL_BASES, readonly=True)
    action_at = fields.Datetime(
        string="Acted On",
        required=True,
        readonly=True,
        help="When the person acted (signed up, clicked, withdrew).",
    )
    recorded_at = fields.Datetime(
        string="Recorded On",
        required=True,
        readonly=True,
        help="When Odoo processed the event.",
    )
    recorded_by_id = fields.Many2one(
        comodel_name="res.users",
        string="Recorded By",
        readonly=True,
    )
    previous_state = fields.Selection(CONSENT_STATES, readonly=True)
    new_state = fields.Selection(CONSENT_STATES, readonly=True)
    superseded = fields.Boolean(
        readonly=True,
        help="The person acted before the action that set the current state: the "
        "event is kept for the record but changed nothing.",
    )

    # evidence
    text_version = fields.Char(
        string="Form Text Version",
        readonly=True,
        help="Reference of the wording the person agreed to.",
    )
    ip_address = fields.Char(string="IP Address", readonly=True, groups=PRIVACY_GROUP)
    user_agent = fields.Char(readonly=True, groups=PRIVACY_GROUP)
    evidence_note = fields.Text(readonly=True, groups=PRIVACY_GROUP)
    attachment_id = fields.Many2one(
        comodel_name="ir.attachment",
        string="Evidence Document",
        readonly=True,
        ondelete="set null",
        groups=PRIVACY_GROUP,
    )
    evidence_digest = fields.Char(
        readonly=True,
        help="Keyed digest of the personal evidence; it stays when erasure removes "
        "the evidence itself.",
    )
    erased_at = fields.Datetime(
        readonly=True,
        help="Erasure marker: the personal evidence was removed on this date by an "
        "erasure recorded later in the ledger.",
    )

    # chain
    previous_hash = fields.Char(readonly=True)
    hash = fields.Char(readonly=True, index=True)

    _sql_constraints = [
        ("sequence_unique", "UNIQUE(sequence)", "Ledger positions are unique."),
    ]

    # ------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        if not self.env.context.get("crm_consent_ledger"):
            raise UserError(
                self.env._("Consent events are written by the consent ledger only.")
            )
        return super().create(vals_list)

    def write(self, vals):
        erasure = self.env.context.get("crm_consent_erasure") and set(vals) <= {
            *PERSONAL_FIELDS,
            "erased_at",
        }
        if not erasure:
            raise UserError(
                self.env._(
                    "The consent ledger is append-only: events cannot be changed."
                )
            )
        return super().write(vals)

    @api.ondelete(at_uninstall=False)
    def _unlink_except_ledger(self):
        raise UserError(
            self.env._("The consent ledger is append-only: events cannot be deleted.")
        )

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    @api.model
    def action_verify_ledger(self):
        """Check the whole hash chain and tell the user the result."""
        problems = self._crm_verify_ledger()
        if problems:
            message = self.env._(
                "The consent ledger is NOT intact:\n%s", "\n".join(problems[:20])
            )
            kind = "danger"
        else:
            message = self.env._("The consent ledger is intact.")
            kind = "success"
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"message": message, "type": kind, "sticky": bool(problems)},
        }

    # ------------------------------------------------------------
    # LEDGER
    # ------------------------------------------------------------

    @api.model
    def _crm_evidence_digest(self, evidence):
        """Return the keyed digest of the personal evidence values."""
        attachment = evidence.get("attachment_id")
        if isinstance(attachment, models.BaseModel):
            attachment = attachment.checksum
        elif attachment:
            attachment = self.env["ir.attachment"].sudo().browse(attachment).checksum
        values = [
            evidence.get("ip_address") or "",
            evidence.get("user_agent") or "",
            evidence.get("evidence_note") or "",
            attachment or "",
        ]
        return sign(self.env, SCOPE_EVIDENCE, canonical_json(values))

    @api.model
    def _crm_seal(self, vals):
        """Return the chain hash of the sealed values of one event."""
        values = []
        for fname in SEALED_FIELDS:
            value = vals.get(fname)
            if isinstance(value, models.BaseModel):
                value = value.id
            if self._fields[fname].type == "datetime" and value:
                value = fields.Datetime.to_string(fields.Datetime.to_datetime(value))
            values.append(value or False)
        return sign(self.env, SCOPE_LEDGER, canonical_json(values))

    @api.model
    def _crm_append(self, vals):
        """Append one event at the end of the chain and return it.

        ``vals`` holds the sealed values except the chain position and hashes,
        plus the personal evidence values.
        """
        ledger = self.sudo().with_context(crm_consent_ledger=True)
        self.env.cr.execute("SELECT pg_advisory_xact_lock(%s)", [LEDGER_LOCK_KEY])
        self.env.cr.execute(
            "SELECT sequence, hash FROM crm_consent_event ORDER BY sequence DESC "
            "LIMIT 1"
        )
        last = self.env.cr.fetchone()
        vals = dict(vals)
        vals["sequence"] = (last[0] + 1) if last else 1
        vals["previous_hash"] = last[1] if last else False
        vals["evidence_digest"] = self._crm_evidence_digest(vals)
        vals["recorded_at"] = fields.Datetime.to_string(
            vals.get("recorded_at") or fields.Datetime.now()
        )
        vals["action_at"] = fields.Datetime.to_string(
            fields.Datetime.to_datetime(vals["action_at"])
        )
        vals.setdefault("recorded_by_id", self.env.uid)
        vals["hash"] = self._crm_seal(vals)
        return ledger.create(vals)

    @api.model
    def _crm_verify_ledger(self):
        """Return the list of problems found in the chain; empty when intact.

        Each row must seal its own values and the hash of the row before it, the
        positions must follow each other, and the personal evidence of a row that
        is not marked erased must still match its digest. A row marked erased
        must belong to a partner whose erasure (or the expiry of an unconfirmed
        sign-up, which purges it) is recorded at or after that row.
        """
        self.env.flush_all()
        self.env.cr.execute("SELECT id FROM crm_consent_event ORDER BY sequence")
        ids = [row[0] for row in self.env.cr.fetchall()]
        events = self.sudo().browse(ids)
        events.invalidate_recordset()
        problems = []
        previous = None
        erasures = {}
        for event in events:
            if event.kind in ERASURE_MARKER_KINDS:
                erasures[event.partner_id.id] = event.sequence
        for event in events:
            label = self.env._("event %(seq)s", seq=event.sequence)
            expected_sequence = previous.sequence + 1 if previous else 1
            if event.sequence != expected_sequence:
                problems.append(
                    self.env._("%s: a row before it is missing.", label),
                )
            if event.previous_hash != (previous.hash if previous else False):
                problems.append(
                    self.env._("%s: does not follow the previous row.", label)
                )
            values = {fname: event[fname] for fname in SEALED_FIELDS}
            if self._crm_seal(values) != event.hash:
                problems.append(self.env._("%s: its values were changed.", label))
            if event.erased_at:
                if erasures.get(event.partner_id.id, 0) < event.sequence:
                    problems.append(
                        self.env._("%s: marked erased without a later erasure.", label)
                    )
            elif event.evidence_digest != self._crm_evidence_digest(
                {fname: event[fname] for fname in PERSONAL_FIELDS}
            ):
                problems.append(self.env._("%s: its evidence was changed.", label))
            previous = event
        if problems:
            _logger.warning("consent ledger check found %d problems", len(problems))
        return problems

    def _crm_erase_personal_values(self):
        """Remove the personal evidence of these events, keeping the chain valid."""
        events = self.sudo().with_context(crm_consent_erasure=True)
        attachments = events.attachment_id
        events.write(
            {
                "ip_address": False,
                "user_agent": False,
                "evidence_note": False,
                "attachment_id": False,
                "erased_at": fields.Datetime.now(),
            }
        )
        attachments.unlink()

    # ------------------------------------------------------------
    # DAEMON API
    # ------------------------------------------------------------

    @api.model
    def daemon_consent_changes(self, after_id=0, limit=500):
        """Return withdrawals, expiries and erasures recorded after ``after_id``.

        Keyset paging on the event id; superseded events are left out as they
        changed nothing.
        """
        check_daemon_access(self.env)
        limit = daemon_page_limit(self.env, limit)
        events = self.sudo().search(
            [
                ("id", ">", int(after_id or 0)),
                ("kind", "in", DAEMON_EVENT_KINDS),
                ("superseded", "=", False),
            ],
            order="id",
            limit=limit,
        )
        return [
            {
                "id": event.id,
                "kind": event.kind,
                "partner_id": event.partner_id.id,
                "email_key": event.partner_id.email_key or False,
                "erased": event.partner_id.crm_erased,
                "purpose": event.purpose_id.code,
                "channel": event.purpose_id.channel,
                "new_state": event.new_state,
                "action_at": to_utc_string(event.action_at),
                "recorded_at": to_utc_string(event.recorded_at),
            }
            for event in events
        ]
