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

PEPPOL_READINESS = [
    ("can_receive", "Can receive"),
    ("cannot", "Cannot receive"),
    ("unknown", "Unknown"),
]


class ResPartner(models.Model):
    _inherit = "res.partner"

    # Peppol readiness, as last checked by the sync daemon in the SML/SMP
    crm_peppol_readiness = fields.Selection(
        selection=PEPPOL_READINESS,
        string="Peppol Readiness",
        default="unknown",
        readonly=True,
        copy=False,
        index=True,
        help="Whether this customer can receive Peppol BIS Billing 3 invoices, as "
        "found by the sync daemon in the Peppol directory (SML/SMP).",
    )
    crm_peppol_checked_at = fields.Datetime(
        string="Peppol Checked On",
        readonly=True,
        copy=False,
    )
    crm_peppol_participant_id = fields.Char(
        string="Peppol Participant Found",
        readonly=True,
        copy=False,
        help="Participant identifier (scheme:id) that answered, e.g. "
        "0208:0765881217; for Belgium the enterprise number (0208) is tried "
        "first, then the VAT number (9925).",
    )

    # ------------------------------------------------------------
    # DAEMON API
    # ------------------------------------------------------------

    @api.model
    def daemon_set_peppol_readiness(self, vals_list):
        """Store the Peppol readiness the daemon found for commercial partners.

        One transaction: a bad item refuses the whole call, naming the item.
        """
        check_daemon_access(self.env)
        require_list(self.env, vals_list, "daemon_set_peppol_readiness")
        allowed = {value for value, _label in PEPPOL_READINESS}
        now = fields.Datetime.now()
        prepared = {}
        for index, vals in enumerate(vals_list):
            item = f"readiness[{index}]"
            require_keys(self.env, vals, ("partner_id", "readiness"), item)
            partner_id = to_int(self.env, vals["partner_id"], "partner_id", item)
            check_selection(self.env, vals["readiness"], allowed, "readiness", item)
            participant = vals.get("participant_id") or False
            if participant and not isinstance(participant, str):
                raise ValidationError(
                    self.env._(
                        "%(what)s: field participant_id must be a string "
                        "'scheme:id', got %(value)r.",
                        what=item,
                        value=participant,
                    )
                )
            prepared[partner_id] = (
                item,
                {
                    "crm_peppol_readiness": vals["readiness"],
                    "crm_peppol_participant_id": participant,
                    "crm_peppol_checked_at": parse_utc(
                        self.env, vals.get("checked_at"), "checked_at", item
                    )
                    or now,
                },
            )
        if not prepared:
            return True
        partners = self.with_context(active_test=False).search(
            [
                ("id", "in", list(prepared)),
                ("company_id", "in", [*self.env.companies.ids, False]),
            ]
        )
        for partner_id, (item, _values) in prepared.items():
            partner = partners.filtered(lambda p, pid=partner_id: p.id == pid)
            if not partner:
                raise ValidationError(
                    self.env._(
                        "%(what)s: res.partner %(id)s (field partner_id) does not "
                        "exist or is not visible to you in the companies of the "
                        "call.",
                        what=item,
                        id=partner_id,
                    )
                )
            if partner.commercial_partner_id != partner:
                raise ValidationError(
                    self.env._(
                        "%(what)s: res.partner %(id)s (field partner_id) is a "
                        "contact of %(company)s; readiness belongs to the "
                        "commercial partner %(commercial)s.",
                        what=item,
                        id=partner_id,
                        company=partner.commercial_partner_id.display_name,
                        commercial=partner.commercial_partner_id.id,
                    )
                )
        writer = partners.with_context(
            crm_skip_duplicate_refresh=True, tracking_disable=True
        )
        for partner_id, (_item, values) in prepared.items():
            writer.browse(partner_id).write(values)
        return True
