from odoo import models
from odoo.exceptions import UserError


class BasePartnerMergeAutomaticWizard(models.TransientModel):
    _inherit = "base.partner.merge.automatic.wizard"

    def _merge(self, partner_ids, dst_partner=None, extra_checks=True):
        """Keep the consent ledger sealed and the sync links on a live contact.

        Odoo moves every foreign key of the merged contacts with plain SQL: the
        ledger rows would no longer match their hash, and a link would keep the id
        of the deleted contact in ``res_id``.
        """
        if isinstance(partner_ids, models.BaseModel):
            partner_ids = partner_ids.ids
        partners = self.env["res.partner"].browse(partner_ids).exists()
        if len(partners) >= 2:
            if dst_partner and dst_partner in partners:
                target = dst_partner
            else:
                target = self._get_ordered_partner(partners.ids)[-1]
            sources = partners - target
            self._crm_check_consent_ledger(sources, target)
            self._crm_move_sync_links(sources, target)
        return super()._merge(
            partner_ids, dst_partner=dst_partner, extra_checks=extra_checks
        )

    def _crm_check_consent_ledger(self, sources, target):
        """Refuse to merge away a contact that has consent ledger rows."""
        Event = self.env["crm.consent.event"].sudo()
        for source in sources:
            count = Event.search_count([("partner_id", "=", source.id)])
            if count:
                raise UserError(
                    self.env._(
                        "%(contact)s cannot be merged into %(kept)s: its %(count)s "
                        "consent ledger entries are sealed to this contact. Archive "
                        "the duplicate instead.",
                        contact=source.display_name,
                        kept=target.display_name,
                        count=count,
                    )
                )

    def _crm_move_sync_links(self, sources, target):
        """Point the sync links of the merged contacts at the contact kept, or
        refuse when both are linked to the same backend."""
        Link = self.env["crm.sync.link"].sudo()
        links = Link.search(
            [("res_model", "=", "res.partner"), ("res_id", "in", sources.ids)]
        )
        taken = {
            link.backend_id: link
            for link in Link.search(
                [("res_model", "=", "res.partner"), ("res_id", "=", target.id)]
            )
        }
        for link in links:
            other = taken.get(link.backend_id)
            if other:
                raise UserError(
                    self.env._(
                        "%(contact)s and %(kept)s are both linked to backend "
                        "%(backend)s (external IDs %(external)r and %(other)r): merge "
                        "or unlink them in the external system first.",
                        contact=link.partner_id.display_name,
                        kept=other.partner_id.display_name,
                        backend=link.backend_id.display_name,
                        external=link.external_id,
                        other=other.external_id,
                    )
                )
            taken[link.backend_id] = link
        links.write({"res_id": target.id})
