import logging
import secrets
from datetime import timedelta

from markupsafe import Markup, escape

from odoo import api, fields, models
from odoo.exceptions import UserError

from ..tools.gdpr import SCOPE_CONFIRM, check_signature, sign
from ..tools.identifiers import normalize_email
from .crm_consent_event import CONSENT_STATES, EVENT_SOURCES, PRIVACY_GROUP
from .crm_consent_purpose import LEGAL_BASES

_logger = logging.getLogger(__name__)

#: days a double opt-in request stays open before it expires and is purged
PENDING_DAYS = 30
#: state reached by each kind of event (a sign-up depends on the purpose)
TARGET_STATES = {
    "confirm": "granted",
    "grant": "granted",
    "withdraw": "withdrawn",
    "expire": "expired",
    "erase": "withdrawn",
}


class CrmConsent(models.Model):
    _name = "crm.consent"
    _description = "Consent State of a Partner for a Purpose"
    _order = "partner_id, purpose_id"

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
        index=True,
    )
    company_id = fields.Many2one(
        related="purpose_id.company_id",
        store=True,
        index=True,
    )
    channel = fields.Selection(related="purpose_id.channel")
    legal_basis = fields.Selection(LEGAL_BASES, required=True, readonly=True)
    state = fields.Selection(
        CONSENT_STATES,
        required=True,
        readonly=True,
        default="pending",
        index=True,
    )
    state_since = fields.Datetime(
        string="Since",
        readonly=True,
        help="When the person took the action that led to the current state.",
    )
    source = fields.Selection(EVENT_SOURCES, readonly=True)
    evidence_summary = fields.Text(readonly=True, groups=PRIVACY_GROUP)
    event_ids = fields.One2many(
        comodel_name="crm.consent.event",
        inverse_name="consent_id",
        string="Events",
        readonly=True,
        groups=PRIVACY_GROUP,
    )

    # double opt-in
    confirmation_nonce = fields.Char(readonly=True, groups="base.group_system")
    confirmation_used_nonce = fields.Char(readonly=True, groups="base.group_system")
    confirmation_sent_at = fields.Datetime(readonly=True)
    confirmed_at = fields.Datetime(readonly=True)
    expires_at = fields.Datetime(
        readonly=True,
        help="An unconfirmed sign-up expires and is purged at this date.",
    )

    _sql_constraints = [
        (
            "partner_purpose_unique",
            "UNIQUE(partner_id, purpose_id)",
            "A partner has one consent state per purpose.",
        ),
    ]

    @api.depends("partner_id", "purpose_id", "state")
    def _compute_display_name(self):
        states = dict(self._fields["state"]._description_selection(self.env))
        for consent in self:
            consent.display_name = (
                f"{consent.purpose_id.name} / {consent.partner_id.display_name} "
                f"({states.get(consent.state, '')})"
            )

    # ------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        self._crm_check_ledger()
        return super().create(vals_list)

    def write(self, vals):
        self._crm_check_ledger()
        return super().write(vals)

    @api.ondelete(at_uninstall=False)
    def _unlink_except_ledger(self):
        raise UserError(
            self.env._("Consent states are kept; withdraw the consent instead.")
        )

    @api.model
    def _crm_check_ledger(self):
        if not self.env.context.get("crm_consent_ledger"):
            raise UserError(
                self.env._(
                    "Consent states are derived from the consent ledger and cannot "
                    "be edited by hand."
                )
            )

    # ------------------------------------------------------------
    # LEDGER SERVICE
    # ------------------------------------------------------------

    @api.model
    def _crm_record_event(
        self,
        partner,
        purpose,
        kind,
        *,
        action_at=None,
        source="manual",
        legal_basis=None,
        evidence=None,
    ):
        """Append an event to the ledger and apply it to the consent state.

        An event whose action time is older than the action behind the current
        state is stored as superseded and changes nothing: a stale import cannot
        undo a later withdrawal. Returns the event.
        """
        partner.ensure_one()
        purpose.ensure_one()
        ledger = self.sudo().with_context(crm_consent_ledger=True)
        evidence = dict(evidence or {})
        action_at = fields.Datetime.to_datetime(action_at) or fields.Datetime.now()
        consent = ledger.search(
            [("partner_id", "=", partner.id), ("purpose_id", "=", purpose.id)]
        )
        if kind == "signup":
            new_state = "pending" if purpose.double_opt_in else "granted"
        else:
            new_state = TARGET_STATES[kind]
        legal_basis = legal_basis or (
            consent.legal_basis if consent else purpose.legal_basis
        )
        previous_state = consent.state if consent else False
        superseded = bool(
            consent and consent.state_since and action_at < consent.state_since
        )
        if not consent:
            consent = ledger.create(
                {
                    "partner_id": partner.id,
                    "purpose_id": purpose.id,
                    "legal_basis": legal_basis,
                    "state": new_state,
                    "state_since": action_at,
                    "source": source,
                }
            )
        event = self.env["crm.consent.event"]._crm_append(
            {
                "consent_id": consent.id,
                "partner_id": partner.id,
                "purpose_id": purpose.id,
                "kind": kind,
                "source": source,
                "legal_basis": legal_basis,
                "action_at": action_at,
                "previous_state": previous_state,
                "new_state": new_state,
                "superseded": superseded,
                "text_version": evidence.get("text_version") or False,
                "ip_address": evidence.get("ip_address") or False,
                "user_agent": evidence.get("user_agent") or False,
                "evidence_note": evidence.get("evidence_note") or False,
                "attachment_id": evidence.get("attachment_id") or False,
            }
        )
        if not superseded:
            consent.write(
                {
                    "legal_basis": legal_basis,
                    "state": new_state,
                    "state_since": action_at,
                    "source": source,
                    "evidence_summary": self._crm_evidence_summary(event),
                }
            )
        # the caller must not inherit the ledger's sudo and context
        return event.with_env(self.env)

    @api.model
    def _crm_evidence_summary(self, event):
        event = event.sudo()
        sources = dict(EVENT_SOURCES)
        parts = [
            self.env._(
                "%(origin)s on %(date)s UTC",
                origin=sources.get(event.source, event.source),
                date=fields.Datetime.to_string(event.action_at),
            )
        ]
        if event.text_version:
            parts.append(self.env._("text %s", event.text_version))
        if event.ip_address:
            parts.append(self.env._("IP %s", event.ip_address))
        if event.user_agent:
            parts.append(event.user_agent)
        return ", ".join(parts)

    @api.model
    def _crm_subject_partners(self, partners):
        """Return the partners of the same data subjects (same e-mail key)."""
        partners = partners.sudo().with_context(active_test=False)
        keys = [key for key in partners.mapped("email_key") if key]
        if keys:
            partners |= partners.search([("email_key", "in", keys)])
        return partners.filtered(lambda partner: not partner.crm_erased)

    @api.model
    def _crm_withdraw(self, partners, purposes=None, *, action_at=None, **kwargs):
        """Withdraw consent for every partner of the same data subjects.

        Without purposes every active marketing purpose is withdrawn. Withdrawn
        e-mail purposes also put the address on Odoo's mail blacklist and opt
        it out of mailing lists when mass_mailing is installed.
        """
        subjects = self._crm_subject_partners(partners)
        if purposes is None:
            purposes = self._crm_marketing_purposes()
        events = self.env["crm.consent.event"]
        for partner in subjects:
            for purpose in purposes:
                events |= self._crm_record_event(
                    partner, purpose, "withdraw", action_at=action_at, **kwargs
                )
        if "email" in purposes.mapped("channel"):
            self._crm_sync_email_opt_out(subjects)
        return events

    @api.model
    def _crm_marketing_purposes(self):
        return (
            self.env["crm.consent.purpose"].sudo().search([("is_marketing", "=", True)])
        )

    @api.model
    def _crm_sync_email_opt_out(self, partners):
        """Blacklist the addresses with no e-mail purpose left granted."""
        granted = self.sudo().search(
            [
                ("partner_id", "in", partners.ids),
                ("state", "=", "granted"),
                ("purpose_id.channel", "=", "email"),
            ]
        )
        emails = {
            partner.email_normalized
            for partner in partners - granted.partner_id
            if partner.email_normalized
        }
        # every partner of a subject shares the address: one grant keeps it open
        emails -= set(granted.partner_id.mapped("email_normalized"))
        blacklist = self.env["mail.blacklist"].sudo()
        message = self.env._("Consent withdrawn in the consent ledger.")
        for email in sorted(emails):
            blacklist._add(email, message=message)
        if emails and "mailing.subscription" in self.env:
            # soft bridge: mass_mailing is not a dependency of this add-on
            self.env["mailing.subscription"].sudo().search(
                [("contact_id.email_normalized", "in", sorted(emails))]
            ).write({"opt_out": True})

    @api.model
    def _crm_sync_email_opt_in(self, partner):
        """Lift a blacklist entry after a newer explicit e-mail consent."""
        email = partner.email_normalized
        blacklist = self.env["mail.blacklist"].sudo()
        if email and blacklist.search([("email", "=", email)]):
            blacklist._remove(
                email, message=self.env._("Consent granted in the consent ledger.")
            )

    # ------------------------------------------------------------
    # DOUBLE OPT-IN
    # ------------------------------------------------------------

    @api.model
    def _crm_request_opt_in(
        self, email, purpose, *, name=None, source="web_form", evidence=None
    ):
        """Register a sign-up and mail a confirmation link when the purpose asks
        for double opt-in. A repeated sign-up mails a new link and invalidates
        the previous one. Returns the consent."""
        email_key, error = normalize_email(email)
        if error or not email_key:
            raise UserError(self.env._("%s is not a valid e-mail address.", email))
        Partner = self.env["res.partner"].sudo()
        partner = Partner.search(
            [("email_key", "=", email_key), ("crm_erased", "=", False)],
            order="id",
            limit=1,
        )
        if not partner:
            partner = Partner.create(
                {"name": name or email, "email": email, "crm_signup_only": True}
            )
        consent = self.sudo().search(
            [("partner_id", "=", partner.id), ("purpose_id", "=", purpose.id)]
        )
        if consent.state == "granted":
            return consent.with_env(self.env)
        event = self._crm_record_event(
            partner, purpose, "signup", source=source, evidence=evidence
        )
        consent = event.consent_id.sudo().with_context(crm_consent_ledger=True)
        if consent.state != "pending":
            self._crm_sync_email_opt_in(partner)
            return consent.with_env(self.env)
        nonce = secrets.token_urlsafe(18)
        now = fields.Datetime.now()
        consent.write(
            {
                "confirmation_nonce": nonce,
                "confirmation_sent_at": now,
                "expires_at": now + timedelta(days=PENDING_DAYS),
            }
        )
        consent._crm_send_confirmation(self._crm_confirm_token(consent, nonce))
        return consent.with_env(self.env)

    @api.model
    def _crm_confirm_token(self, consent, nonce):
        message = f"{consent.id}:{nonce}"
        return f"{consent.id}-{sign(self.env, SCOPE_CONFIRM, message)}"

    def _crm_send_confirmation(self, token):
        """Queue the confirmation mail; it is transactional, not marketing."""
        self.ensure_one()
        base_url = self.get_base_url()
        url = f"{base_url}/crm/consent/confirm/{token}"
        body = Markup("<p>%s</p><p><a href='%s'>%s</a></p><p>%s</p>") % (
            self.env._(
                "Please confirm that you want to receive: %s.", self.purpose_id.name
            ),
            url,
            self.env._("Confirm my subscription"),
            self.env._(
                "If you did not ask for this, ignore this mail: nothing will be "
                "sent to you and your address is deleted after %s days.",
                PENDING_DAYS,
            ),
        )
        self.env["mail.mail"].sudo().create(
            {
                "subject": self.env._("Please confirm: %s", self.purpose_id.name),
                "body_html": body,
                "recipient_ids": [(4, self.partner_id.id)],
                "auto_delete": True,
            }
        )

    @api.model
    def _crm_confirm(self, token, *, evidence=None):
        """Confirm a double opt-in from the token of its mail.

        Returns ``(result, consent)`` where result is ``confirmed``,
        ``already_confirmed``, ``expired`` or ``invalid``. A link already used
        changes nothing; an older link of a repeated sign-up is invalid.
        """
        consent_id, _sep, signature = (token or "").partition("-")
        consent = self.sudo().browse(int(consent_id)) if consent_id.isdigit() else None
        if not consent or not consent.exists():
            return "invalid", self.browse()
        public = consent.with_env(self.env)
        consent = consent.with_context(crm_consent_ledger=True)
        result = None
        if consent.confirmation_used_nonce and check_signature(
            self.env,
            SCOPE_CONFIRM,
            f"{consent.id}:{consent.confirmation_used_nonce}",
            signature,
        ):
            result = "already_confirmed"
        elif consent.confirmation_nonce and check_signature(
            self.env,
            SCOPE_CONFIRM,
            f"{consent.id}:{consent.confirmation_nonce}",
            signature,
        ):
            result = "confirmed"
        if not result:
            return "invalid", public
        if result == "already_confirmed":
            return result, public
        if consent.state != "pending":
            return "invalid", public
        now = fields.Datetime.now()
        if consent.expires_at and consent.expires_at <= now:
            return "expired", public
        self._crm_record_event(
            consent.partner_id,
            consent.purpose_id,
            "confirm",
            source="email_link",
            evidence=evidence,
        )
        consent.write(
            {
                "confirmation_used_nonce": consent.confirmation_nonce,
                "confirmation_nonce": False,
                "confirmed_at": now,
                "expires_at": False,
            }
        )
        self._crm_sync_email_opt_in(consent.partner_id)
        return "confirmed", public

    @api.model
    def _cron_expire_pending(self):
        """Expire unconfirmed sign-ups and purge what they stored."""
        now = fields.Datetime.now()
        consents = self.sudo().search(
            [("state", "=", "pending"), ("expires_at", "<=", now)]
        )
        for consent in consents:
            self._crm_record_event(
                consent.partner_id,
                consent.purpose_id,
                "expire",
                source="system",
                action_at=consent.expires_at,
            )
        consents.with_context(crm_consent_ledger=True).write(
            {"confirmation_nonce": False, "evidence_summary": False}
        )
        consents.event_ids._crm_erase_personal_values()
        purge = consents.partner_id.filtered(
            lambda partner: (
                partner.crm_signup_only
                and not partner.crm_consent_ids.filtered(
                    lambda consent: consent.state == "granted"
                )
            )
        )
        # the confirmation mails of a purged sign-up go with it
        self.env["mail.mail"].sudo().search(
            [("recipient_ids", "in", purge.ids), ("state", "=", "outgoing")]
        ).unlink()
        purge._crm_anonymise()
        _logger.info(
            "expired %d unconfirmed sign-ups, purged %d partners",
            len(consents),
            len(purge),
        )
        return consents

    # ------------------------------------------------------------
    # HELPERS
    # ------------------------------------------------------------

    @api.model
    def _crm_unsubscribe_html(self, partner, purpose=None):
        """Return the footer with the withdrawal link of a marketing mail."""
        url = partner._crm_unsubscribe_url(purpose)
        return Markup("<p style='font-size:small'><a href='%s'>%s</a></p>") % (
            url,
            escape(self.env._("Unsubscribe / withdraw my consent")),
        )
