import logging

from odoo import api, fields, models
from odoo.tools import email_normalize

from ..tools.identifiers import normalize_email

_logger = logging.getLogger(__name__)

#: code of the purpose a mass mailing is checked against
MASS_MAILING_PURPOSE = "newsletter"


class MailTemplate(models.Model):
    _inherit = "mail.template"

    crm_is_marketing = fields.Boolean(
        string="Marketing Template",
        help="Mails from this template are only sent to partners with a valid "
        "legal basis for its purpose, and carry a withdrawal link.",
    )
    crm_consent_purpose_id = fields.Many2one(
        comodel_name="crm.consent.purpose",
        string="Processing Purpose",
    )

    def send_mail_batch(
        self,
        res_ids,
        force_send=False,
        raise_exception=False,
        email_values=None,
        email_layout_xmlid=False,
    ):
        # mark the mails so that the send-time check knows their purpose
        if self.crm_is_marketing:
            purpose = (
                self.crm_consent_purpose_id
                or self.env["mail.mail"]._crm_default_marketing_purpose()
            )
            email_values = dict(email_values or {}, crm_consent_purpose_id=purpose.id)
        return super().send_mail_batch(
            res_ids,
            force_send=force_send,
            raise_exception=raise_exception,
            email_values=email_values,
            email_layout_xmlid=email_layout_xmlid,
        )


class MailMail(models.Model):
    _inherit = "mail.mail"

    crm_consent_purpose_id = fields.Many2one(
        comodel_name="crm.consent.purpose",
        string="Marketing Purpose",
        help="Set on marketing mails: recipients without a valid legal basis for "
        "this purpose are removed before sending.",
    )

    @api.model
    def _crm_default_marketing_purpose(self):
        return (
            self.env["crm.consent.purpose"]
            .sudo()
            .search([("code", "=", MASS_MAILING_PURPOSE)], limit=1)
        )

    def _crm_marketing_purpose(self):
        """Return the purpose a mail is marketing for; empty when transactional."""
        self.ensure_one()
        if self.crm_consent_purpose_id:
            return self.crm_consent_purpose_id
        # soft bridge: mailing_id only exists when mass_mailing is installed
        if "mailing_id" in self._fields and self.mailing_id:
            return self._crm_default_marketing_purpose()
        return self.env["crm.consent.purpose"]

    def _crm_recipient_partners(self):
        """Return the partners a mail goes to, including plain e-mail addresses."""
        self.ensure_one()
        partners = self.recipient_ids
        keys = []
        for address in (self.email_to or "").replace(";", ",").split(","):
            key = normalize_email(address.strip())[0] if address.strip() else False
            if key:
                keys.append(key)
        if keys:
            partners |= (
                self.env["res.partner"]
                .sudo()
                .with_context(active_test=False)
                .search([("email_key", "in", keys)])
            )
        return partners

    def _crm_enforce_consent(self):
        """Drop the recipients of marketing mails who lack a legal basis.

        A mail left without recipient is cancelled; each blocked recipient is
        logged with the reason. Transactional mails are returned untouched.
        """
        allowed = self.browse()
        blocks = []
        for mail in self.sudo():
            purpose = mail._crm_marketing_purpose()
            if not purpose:
                allowed |= mail
                continue
            blocked = mail.env["res.partner"]
            for partner in mail._crm_recipient_partners():
                reason = partner._crm_block_reason(purpose)
                if reason:
                    blocked |= partner
                    blocks.append(
                        {
                            "partner_id": partner.id,
                            "purpose_id": purpose.id,
                            "reason": reason,
                            "mail_message_id": mail.mail_message_id.id,
                        }
                    )
            blocked_emails = {
                email_normalize(email) for email in blocked.mapped("email")
            }
            email_to = [
                address
                for address in (mail.email_to or "").replace(";", ",").split(",")
                if address.strip()
                and email_normalize(address.strip()) not in blocked_emails
            ]
            remaining = mail.recipient_ids - blocked
            if blocked:
                mail.write(
                    {
                        "recipient_ids": [(6, 0, remaining.ids)],
                        "email_to": ",".join(email_to) or False,
                    }
                )
            if not remaining and not email_to:
                mail.write(
                    {
                        "state": "cancel",
                        "failure_reason": self.env._(
                            "Not sent: no recipient has a legal basis for %s.",
                            purpose.name,
                        ),
                    }
                )
                continue
            mail._crm_add_unsubscribe_footer(purpose)
            allowed |= mail
        if blocks:
            self.env["crm.consent.block"].sudo().create(blocks)
            _logger.info("blocked %d marketing recipients without basis", len(blocks))
        return allowed.with_env(self.env)

    def _crm_add_unsubscribe_footer(self, purpose):
        """Add the withdrawal link of a single-recipient marketing mail."""
        partners = self._crm_recipient_partners()
        if len(partners) != 1 or "/crm/consent/unsubscribe/" in (self.body_html or ""):
            return
        footer = self.env["crm.consent"]._crm_unsubscribe_html(partners, purpose)
        self.body_html = (self.body_html or "") + footer

    def _send(self, *args, **kwargs):
        allowed = self._crm_enforce_consent()
        return super(MailMail, allowed)._send(*args, **kwargs)
