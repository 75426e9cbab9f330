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

#: what the access point reports, plus the two states decided before sending
PEPPOL_STATES = [
    ("to_send", "To send"),
    ("to_fix", "To fix"),
    ("sent", "Sent"),
    ("delivered", "Delivered"),
    ("failed", "Delivery failed"),
    ("not_applicable", "Not over Peppol"),
]
#: states after which the access point has nothing more to say
PEPPOL_FINAL_STATES = ("delivered", "failed", "not_applicable")
CUSTOMER_MOVE_TYPES = ("out_invoice", "out_refund")


class AccountMove(models.Model):
    _inherit = "account.move"

    crm_peppol_state = fields.Selection(
        selection=PEPPOL_STATES,
        string="Peppol Status",
        readonly=True,
        copy=False,
        index=True,
        tracking=True,
        help="Where the invoice is on Peppol, as reported by the sync daemon: "
        "to fix when validation refused it (nothing was sent), sent once the "
        "access point took it, delivered once the buyer's access point "
        "received it.",
    )
    crm_peppol_message = fields.Text(
        string="Peppol Message",
        readonly=True,
        copy=False,
    )
    crm_peppol_rules = fields.Char(
        string="Failed Peppol Rules",
        readonly=True,
        copy=False,
        help="Identifiers of the fatal validation rules (BR-…, PEPPOL-EN16931-…) "
        "that kept the invoice from being sent.",
    )
    crm_peppol_status_at = fields.Datetime(
        string="Peppol Status On",
        readonly=True,
        copy=False,
    )

    # ------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------

    def button_draft(self):
        """An invoice reset to draft is being fixed: its refusal no longer holds."""
        result = super().button_draft()
        to_fix = self.filtered(lambda move: move.crm_peppol_state == "to_fix")
        if to_fix:
            to_fix.sudo().write({"crm_peppol_state": False})
        return result

    # ------------------------------------------------------------
    # DAEMON API
    # ------------------------------------------------------------

    @api.model
    def daemon_set_peppol_status(self, vals_list):
        """Store the Peppol state of customer invoices reported by the daemon.

        One transaction: a bad item refuses the whole call, naming the item.
        """
        check_daemon_access(self.env)
        require_list(self.env, vals_list, "daemon_set_peppol_status")
        allowed = {value for value, _label in PEPPOL_STATES}
        now = fields.Datetime.now()
        prepared = {}
        for index, vals in enumerate(vals_list):
            item = f"moves[{index}]"
            require_keys(self.env, vals, ("move_id", "state"), item)
            move_id = to_int(self.env, vals["move_id"], "move_id", item)
            check_selection(self.env, vals["state"], allowed, "state", item)
            rules = vals.get("rules") or []
            if isinstance(rules, str):
                rules = [rules]
            if not isinstance(rules, list | tuple) or not all(
                isinstance(rule, str) for rule in rules
            ):
                raise ValidationError(
                    self.env._(
                        "%(what)s: field rules must be a list of rule ids, "
                        "got %(value)r.",
                        what=item,
                        value=rules,
                    )
                )
            prepared[move_id] = (
                item,
                {
                    "crm_peppol_state": vals["state"],
                    "crm_peppol_message": (vals.get("message") or "")[:2000] or False,
                    "crm_peppol_rules": ", ".join(dict.fromkeys(rules)) or False,
                    "crm_peppol_status_at": parse_utc(
                        self.env, vals.get("at"), "at", item
                    )
                    or now,
                },
            )
        if not prepared:
            return True
        # the daemon needs no accounting rights: visibility is the company check
        moves = self.sudo().search(
            [
                ("id", "in", list(prepared)),
                ("company_id", "in", self.env.companies.ids),
            ]
        )
        for move_id, (item, _values) in prepared.items():
            move = moves.filtered(lambda m, mid=move_id: m.id == mid)
            if not move:
                raise ValidationError(
                    self.env._(
                        "%(what)s: account.move %(id)s (field move_id) does not "
                        "exist or is not visible to you in the companies of the "
                        "call.",
                        what=item,
                        id=move_id,
                    )
                )
            if move.move_type not in CUSTOMER_MOVE_TYPES:
                raise ValidationError(
                    self.env._(
                        "%(what)s: account.move %(id)s (field move_id) is not a "
                        "customer invoice or credit note.",
                        what=item,
                        id=move_id,
                    )
                )
        for move_id, (_item, values) in prepared.items():
            moves.browse(move_id).write(values)
        return True
