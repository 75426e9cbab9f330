import logging
from collections import defaultdict
from datetime import timedelta

from odoo import api, fields, models
from odoo.osv import expression

from odoo.addons.account_edi_ubl_cii.models.account_edi_common import EAS_MAPPING

from ..tools.daemon import check_daemon_access, daemon_page_limit
from ..tools.identifiers import (
    has_vat_checker,
    normalize_email,
    normalize_peppol,
    normalize_registry,
    normalize_vat,
)

_logger = logging.getLogger(__name__)

#: keys that make two commercial partners of the same company possible duplicates
DUPLICATE_KEY_FIELDS = ("vat_key", "registry_key", "peppol_key")
#: user-facing fields whose change can create or remove a duplicate pair
DUPLICATE_TRIGGER_FIELDS = {
    "active",
    "company_id",
    "company_registry",
    "country_id",
    "is_company",
    "parent_id",
    "peppol_eas",
    "peppol_endpoint",
    "vat",
}
#: a partner is a commercial entity when it is a company or has no parent
COMMERCIAL_DOMAIN = ["|", ("is_company", "=", True), ("parent_id", "=", False)]
#: partners handled per chunk when all duplicate flags are refreshed
DUPLICATE_REFRESH_CHUNK = 1000
#: partners whose identifier keys are computed per chunk at install
IDENTIFIER_FILL_CHUNK = 1000
#: stored fields written by ``_compute_identifier_keys``
IDENTIFIER_FIELDS = (
    "vat_key",
    "registry_key",
    "peppol_key",
    "email_key",
    "vat_invalid",
    "registry_invalid",
    "peppol_invalid",
    "email_invalid",
    "identifier_warning",
)
#: Peppol schemes whose identifier is a VAT number, with the country of that VAT
VAT_PEPPOL_SCHEMES = {
    eas: country
    for country, mapping in EAS_MAPPING.items()
    for eas, field in mapping.items()
    if field == "vat"
}
#: invoices considered for the average days to pay
DAYS_TO_PAY_WINDOW = 365
SYNC_READER_GROUPS = (
    "sales_team.group_sale_salesman,"
    "account.group_account_invoice,"
    "crm_module.crm_module_group_sync_admin,"
    "crm_module.crm_module_group_sync_daemon,"
    "crm_module.crm_module_group_privacy_officer"
)


class ResPartner(models.Model):
    _inherit = "res.partner"

    # identifier keys used for matching
    vat_key = fields.Char(
        string="VAT Key",
        compute="_compute_identifier_keys",
        store=True,
        index=True,
        help="VAT number without separators and with its country prefix; empty "
        "when the VAT is missing or invalid.",
    )
    registry_key = fields.Char(
        string="Company Registry Key",
        compute="_compute_identifier_keys",
        store=True,
        index=True,
        help="Country code and company registry number, e.g. NL:04123456.",
    )
    peppol_key = fields.Char(
        compute="_compute_identifier_keys",
        store=True,
        index=True,
        help="Peppol participant identifier as scheme:id, e.g. 0208:0765881217.",
    )
    email_key = fields.Char(
        string="E-mail Key",
        compute="_compute_identifier_keys",
        store=True,
        index=True,
    )
    vat_invalid = fields.Boolean(
        string="Invalid VAT",
        compute="_compute_identifier_keys",
        store=True,
    )
    registry_invalid = fields.Boolean(
        string="Invalid Company Registry",
        compute="_compute_identifier_keys",
        store=True,
    )
    peppol_invalid = fields.Boolean(
        string="Invalid Peppol Identifier",
        compute="_compute_identifier_keys",
        store=True,
    )
    email_invalid = fields.Boolean(
        string="Invalid E-mail",
        compute="_compute_identifier_keys",
        store=True,
    )
    identifier_warning = fields.Text(
        compute="_compute_identifier_keys",
        store=True,
        help="Why an identifier is not used for matching.",
    )

    # duplicates
    possible_duplicate = fields.Boolean(
        readonly=True,
        copy=False,
        index=True,
        help="Another commercial partner of the same company shares the VAT, "
        "company registry or Peppol identifier.",
    )
    duplicate_partner_ids = fields.Many2many(
        comodel_name="res.partner",
        string="Possible Duplicates",
        compute="_compute_duplicate_partner_ids",
    )
    duplicate_count = fields.Integer(compute="_compute_duplicate_partner_ids")

    # finance summary, shown to sales
    summary_currency_id = fields.Many2one(
        comodel_name="res.currency",
        compute="_compute_summary_currency_id",
    )
    finance_receivable = fields.Monetary(
        string="Open Receivable",
        currency_field="summary_currency_id",
        compute="_compute_finance_summary",
    )
    finance_overdue = fields.Monetary(
        string="Overdue Amount",
        currency_field="summary_currency_id",
        compute="_compute_finance_summary",
    )
    finance_last_invoice_date = fields.Date(
        string="Last Invoice Date",
        compute="_compute_finance_summary",
    )
    finance_avg_days_to_pay = fields.Float(
        string="Average Days to Pay",
        digits=(16, 1),
        compute="_compute_finance_summary",
        help="Average number of days between invoice date and payment for the "
        "invoices of the last 12 months that are paid.",
    )

    # sales summary, shown to finance
    sales_open_opportunity_count = fields.Integer(
        string="Open Opportunities",
        compute="_compute_sales_summary",
    )
    sales_expected_revenue = fields.Monetary(
        string="Open Expected Revenue",
        currency_field="summary_currency_id",
        compute="_compute_sales_summary",
    )

    # synchronisation
    sync_link_ids = fields.One2many(
        comodel_name="crm.sync.link",
        inverse_name="partner_id",
        string="Synchronisation Links",
        groups=SYNC_READER_GROUPS,
    )
    sync_link_count = fields.Integer(
        compute="_compute_sync_link_count",
        groups=SYNC_READER_GROUPS,
    )

    @api.depends(
        "vat",
        "country_id.code",
        "company_registry",
        "peppol_eas",
        "peppol_endpoint",
        "email",
    )
    def _compute_identifier_keys(self):
        for partner in self:
            country_code = partner.country_id.code
            vat_key, vat_error = partner._crm_normalize_vat()
            registry_key, registry_error = normalize_registry(
                partner.company_registry, country_code
            )
            peppol_key, peppol_error = partner._crm_normalize_peppol()
            email_key, email_error = normalize_email(partner.email)
            partner.vat_key = vat_key
            partner.registry_key = registry_key
            partner.peppol_key = peppol_key
            partner.email_key = email_key
            partner.vat_invalid = bool(vat_error)
            partner.registry_invalid = bool(registry_error)
            partner.peppol_invalid = bool(peppol_error)
            partner.email_invalid = bool(email_error)
            warnings = [
                self.env._(
                    "%(field)s '%(value)s' of %(partner)s is not used for matching: "
                    "%(reason)s.",
                    field=label,
                    value=value,
                    partner=partner.name or self.env._("this contact"),
                    reason=error,
                )
                for label, value, error in (
                    (self.env._("VAT"), partner.vat, vat_error),
                    (
                        self.env._("Company ID"),
                        partner.company_registry,
                        registry_error,
                    ),
                    (
                        self.env._("Peppol identifier"),
                        f"{partner.peppol_eas}:{partner.peppol_endpoint}",
                        peppol_error,
                    ),
                    (self.env._("E-mail"), partner.email, email_error),
                )
                if error
            ]
            partner.identifier_warning = "\n".join(warnings) or False

    @api.depends(
        *DUPLICATE_KEY_FIELDS, "company_id", "active", "is_company", "parent_id"
    )
    def _compute_duplicate_partner_ids(self):
        duplicates = self._crm_get_duplicate_map()
        for partner in self:
            matches = duplicates.get(partner._origin.id or partner.id, self.browse())
            partner.duplicate_partner_ids = matches
            partner.duplicate_count = len(matches)

    @api.depends_context("company")
    def _compute_summary_currency_id(self):
        self.summary_currency_id = self.env.company.currency_id

    @api.depends_context("company", "allowed_company_ids")
    def _compute_finance_summary(self):
        summary = self._crm_get_finance_summary()
        for partner in self:
            values = summary.get(partner.commercial_partner_id.id, {})
            partner.finance_receivable = values.get("receivable", 0.0)
            partner.finance_overdue = values.get("overdue", 0.0)
            partner.finance_last_invoice_date = values.get("last_invoice_date", False)
            partner.finance_avg_days_to_pay = values.get("avg_days_to_pay", 0.0)

    @api.depends_context("company", "allowed_company_ids")
    def _compute_sales_summary(self):
        summary = self._crm_get_sales_summary()
        for partner in self:
            count, revenue = summary.get(partner.commercial_partner_id.id, (0, 0.0))
            partner.sales_open_opportunity_count = count
            partner.sales_expected_revenue = revenue

    @api.depends("sync_link_ids")
    def _compute_sync_link_count(self):
        counts = dict(
            self.env["crm.sync.link"]._read_group(
                [("partner_id", "in", self._origin.ids)],
                ["partner_id"],
                ["__count"],
            )
        )
        for partner in self:
            partner.sync_link_count = counts.get(partner._origin, 0)

    # ------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        partners = super().create(vals_list)
        if not self.env.context.get("crm_skip_duplicate_refresh"):
            partners._crm_refresh_duplicate_flags()
        return partners

    def write(self, vals):
        refresh = not self.env.context.get(
            "crm_skip_duplicate_refresh"
        ) and DUPLICATE_TRIGGER_FIELDS.intersection(vals)
        if refresh:
            previous = self._crm_get_duplicate_neighbours()
        result = super().write(vals)
        if refresh:
            (self | previous)._crm_refresh_duplicate_flags()
        return result

    def unlink(self):
        neighbours = self._crm_get_duplicate_neighbours() - self
        result = super().unlink()
        neighbours.exists()._crm_refresh_duplicate_flags()
        return result

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_crm_view_duplicates(self):
        """Open the partner and its possible duplicates in a list."""
        self.ensure_one()
        partners = self | self.duplicate_partner_ids
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Possible duplicates of %s", self.display_name),
            "res_model": "res.partner",
            "view_mode": "list,form",
            "domain": [("id", "in", partners.ids)],
            "context": {"create": False},
        }

    def action_crm_merge_duplicates(self):
        """Open Odoo's contact merge wizard on the partner and its duplicates."""
        self.ensure_one()
        partners = self | self.duplicate_partner_ids
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Merge Contacts"),
            "res_model": "base.partner.merge.automatic.wizard",
            "view_mode": "form",
            "target": "new",
            "context": {"active_model": "res.partner", "active_ids": partners.ids},
        }

    def action_crm_view_sync_links(self):
        """Open the links of the partner to external systems."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Synchronisation Links"),
            "res_model": "crm.sync.link",
            "view_mode": "list,form",
            "domain": [("partner_id", "=", self.id)],
            "context": {"create": False},
        }

    # ------------------------------------------------------------
    # BUSINESS
    # ------------------------------------------------------------

    def _crm_normalize_vat(self):
        """Return the VAT key and error; numbers python-stdnum cannot check are
        handed to the checks of base_vat when that add-on is installed."""
        self.ensure_one()
        key, error = normalize_vat(self.vat, self.country_id.code)
        prefix = key[:2] if key else ""
        if (
            key
            and not has_vat_checker(prefix)
            and hasattr(self, "simple_vat_check")
            and not self.simple_vat_check(prefix.lower(), key[2:])
        ):
            return False, self.env._("rejected by the VAT check of Odoo (base_vat)")
        return key, error

    def _crm_normalize_peppol(self):
        """Return the Peppol key and error, reusing the checks of the EDI add-on."""
        self.ensure_one()
        key, error = normalize_peppol(
            self.peppol_eas,
            self.peppol_endpoint,
            vat_country=VAT_PEPPOL_SCHEMES.get(self.peppol_eas),
        )
        if key and hasattr(self, "_build_error_peppol_endpoint"):
            odoo_error = self._build_error_peppol_endpoint(
                self.peppol_eas, self.peppol_endpoint
            )
            if odoo_error:
                return False, str(odoo_error).rstrip(".")
        return key, error

    def _crm_is_commercial_entity(self):
        self.ensure_one()
        return self.is_company or not self.parent_id

    def _crm_get_duplicate_map(self):
        """Map partner ids to the other commercial partners sharing a matching key.

        Only active commercial entities are compared, and two partners owned by
        different companies never match. One search covers the whole recordset.
        """
        commercial = self.filtered(lambda p: p.active and p._crm_is_commercial_entity())
        key_domains = []
        for fname in DUPLICATE_KEY_FIELDS:
            values = {key for key in commercial.mapped(fname) if key}
            if values:
                key_domains.append([(fname, "in", list(values))])
        if not key_domains:
            return {}
        candidates = self.with_context(active_test=True).search_fetch(
            expression.AND([expression.OR(key_domains), COMMERCIAL_DOMAIN]),
            [*DUPLICATE_KEY_FIELDS, "company_id"],
        )
        by_key = defaultdict(set)
        for candidate in candidates:
            for fname in DUPLICATE_KEY_FIELDS:
                if candidate[fname]:
                    by_key[fname, candidate[fname]].add(candidate.id)
        company_of = {candidate.id: candidate.company_id for candidate in candidates}
        result = {}
        for partner in commercial:
            partner_id = partner._origin.id or partner.id
            match_ids = set()
            for fname in DUPLICATE_KEY_FIELDS:
                if partner[fname]:
                    match_ids |= by_key[fname, partner[fname]]
            match_ids.discard(partner_id)
            company = partner.company_id
            match_ids = {
                match_id
                for match_id in match_ids
                if not company
                or not company_of[match_id]
                or company_of[match_id] == company
            }
            if match_ids:
                result[partner_id] = self.browse(sorted(match_ids))
        return result

    def _crm_get_duplicate_neighbours(self):
        """Return the partners currently flagged as duplicates of these ones."""
        partners = self.sudo().filtered("possible_duplicate")
        neighbours = self.sudo().browse()
        for matches in partners._crm_get_duplicate_map().values():
            neighbours |= matches
        return neighbours.with_env(self.env)

    def _crm_refresh_duplicate_flags(self):
        """Recompute ``possible_duplicate`` on these partners and their matches.

        Matching is symmetric, so every match of a partner is itself flagged; the
        partners of ``self`` without match are unflagged.
        """
        partners = self.sudo().with_context(active_test=False).exists()
        if not partners:
            return
        duplicate_map = partners._crm_get_duplicate_map()
        flagged = partners.browse(duplicate_map)
        for matches in duplicate_map.values():
            flagged |= matches
        unflagged = partners - flagged
        to_flag = flagged.filtered(lambda p: not p.possible_duplicate)
        to_unflag = unflagged.filtered("possible_duplicate")
        writer = partners.with_context(
            crm_skip_duplicate_refresh=True, tracking_disable=True
        )
        if to_flag:
            writer.browse(to_flag.ids).write({"possible_duplicate": True})
        if to_unflag:
            writer.browse(to_unflag.ids).write({"possible_duplicate": False})
        # the lists shown by the smart button depend on other partners
        self.env["res.partner"].invalidate_model(
            ["duplicate_partner_ids", "duplicate_count"]
        )

    @api.model
    def _crm_fill_identifier_keys(self):
        """Compute the identifier keys of every partner, one chunk at a time, so
        that installing on a large database keeps a small cache."""
        self.env.flush_all()
        self.env.cr.execute("SELECT id FROM res_partner ORDER BY id")
        ids = [row[0] for row in self.env.cr.fetchall()]
        partners = self.sudo().with_context(active_test=False)
        key_fields = [partners._fields[fname] for fname in IDENTIFIER_FIELDS]
        for start in range(0, len(ids), IDENTIFIER_FILL_CHUNK):
            chunk = partners.browse(ids[start : start + IDENTIFIER_FILL_CHUNK])
            for field in key_fields:
                self.env.add_to_compute(field, chunk)
            self.env.flush_all()
            self.env.invalidate_all()
        _logger.info("identifier keys computed for %d partners", len(ids))

    @api.model
    def _crm_refresh_all_duplicate_flags(self):
        """Refresh the duplicate flag of every partner having a matching key."""
        domain = expression.OR(
            [[(fname, "!=", False)] for fname in DUPLICATE_KEY_FIELDS]
            + [[("possible_duplicate", "=", True)]]
        )
        partners = self.sudo().with_context(active_test=False).search(domain)
        for start in range(0, len(partners), DUPLICATE_REFRESH_CHUNK):
            partners[
                start : start + DUPLICATE_REFRESH_CHUNK
            ]._crm_refresh_duplicate_flags()
        _logger.info("duplicate flags refreshed on %d partners", len(partners))

    def _crm_get_finance_summary(self):
        """Return finance figures per commercial partner id, in a fixed number of
        queries whatever the size of the recordset."""
        commercial_ids = {
            partner.commercial_partner_id.id
            for partner in self
            if isinstance(partner.commercial_partner_id.id, int)
        }
        if not commercial_ids:
            return {}
        company_ids = self.env.companies.ids
        member_to_commercial = self._crm_get_member_map(commercial_ids)
        summary = defaultdict(dict)
        aml = self.env["account.move.line"].sudo()
        open_receivable = [
            ("partner_id", "in", list(member_to_commercial)),
            ("company_id", "in", company_ids),
            ("parent_state", "=", "posted"),
            ("account_type", "=", "asset_receivable"),
            ("reconciled", "=", False),
        ]
        today = fields.Date.context_today(self)
        overdue_domain = expression.AND(
            [
                open_receivable,
                [("date_maturity", "<", today), ("amount_residual", ">", 0)],
            ]
        )
        for key, domain in (
            ("receivable", open_receivable),
            ("overdue", overdue_domain),
        ):
            for member, amount in aml._read_group(
                domain, ["partner_id"], ["amount_residual:sum"]
            ):
                values = summary[member_to_commercial[member.id]]
                values[key] = values.get(key, 0.0) + amount

        moves = self.env["account.move"].sudo()
        invoice_domain = [
            ("commercial_partner_id", "in", list(commercial_ids)),
            ("company_id", "in", company_ids),
            ("move_type", "=", "out_invoice"),
            ("state", "=", "posted"),
        ]
        for partner, last_date in moves._read_group(
            invoice_domain, ["commercial_partner_id"], ["invoice_date:max"]
        ):
            summary[partner.id]["last_invoice_date"] = last_date

        paid_invoices = moves.search_fetch(
            expression.AND(
                [
                    invoice_domain,
                    [
                        ("payment_state", "in", ("paid", "in_payment")),
                        (
                            "invoice_date",
                            ">=",
                            today - timedelta(days=DAYS_TO_PAY_WINDOW),
                        ),
                    ],
                ]
            ),
            ["commercial_partner_id", "invoice_date"],
        )
        if paid_invoices:
            lines = aml.search_fetch(
                [
                    ("move_id", "in", paid_invoices.ids),
                    ("account_type", "=", "asset_receivable"),
                ],
                ["move_id"],
            )
            paid_on = {
                line.id: max_date
                for line, max_date in self.env["account.partial.reconcile"]
                .sudo()
                ._read_group(
                    [("debit_move_id", "in", lines.ids)],
                    ["debit_move_id"],
                    ["max_date:max"],
                )
            }
            invoice_paid_on = {}
            for line in lines:
                if paid_on.get(line.id):
                    previous = invoice_paid_on.get(line.move_id.id)
                    invoice_paid_on[line.move_id.id] = max(
                        filter(None, (previous, paid_on[line.id]))
                    )
            delays = defaultdict(list)
            for invoice in paid_invoices:
                if invoice.id in invoice_paid_on:
                    delay = (invoice_paid_on[invoice.id] - invoice.invoice_date).days
                    delays[invoice.commercial_partner_id.id].append(max(delay, 0))
            for partner_id, values in delays.items():
                summary[partner_id]["avg_days_to_pay"] = sum(values) / len(values)
        return summary

    def _crm_get_sales_summary(self):
        """Return (open opportunity count, expected revenue) per commercial partner
        id, in one grouped query."""
        commercial_ids = {
            partner.commercial_partner_id.id
            for partner in self
            if isinstance(partner.commercial_partner_id.id, int)
        }
        if not commercial_ids:
            return {}
        member_to_commercial = self._crm_get_member_map(commercial_ids)
        groups = (
            self.env["crm.lead"]
            .sudo()
            ._read_group(
                [
                    ("partner_id", "in", list(member_to_commercial)),
                    ("type", "=", "opportunity"),
                    ("active", "=", True),
                    ("stage_id.is_won", "=", False),
                    ("company_id", "in", [*self.env.companies.ids, False]),
                ],
                ["partner_id"],
                ["__count", "expected_revenue:sum"],
            )
        )
        summary = {}
        for member, count, revenue in groups:
            commercial_id = member_to_commercial[member.id]
            previous_count, previous_revenue = summary.get(commercial_id, (0, 0.0))
            summary[commercial_id] = (
                previous_count + count,
                previous_revenue + revenue,
            )
        return summary

    def _crm_get_member_map(self, commercial_ids):
        """Map every partner belonging to the given commercial partners to them."""
        members = (
            self.env["res.partner"]
            .sudo()
            .with_context(active_test=False)
            .search_fetch(
                [("commercial_partner_id", "in", list(commercial_ids))],
                ["commercial_partner_id"],
            )
        )
        return {member.id: member.commercial_partner_id.id for member in members}

    # ------------------------------------------------------------
    # DAEMON API
    # ------------------------------------------------------------

    @api.model
    def daemon_partner_keys(self, after_id=0, limit=500):
        """Return the matching keys of partners with an id above ``after_id``.

        Archived partners are included (``active`` tells them apart) so that the
        daemon never creates a customer that only was archived in Odoo.
        """
        check_daemon_access(self.env)
        limit = daemon_page_limit(self.env, limit)
        partners = self.with_context(active_test=False).search_fetch(
            [("id", ">", int(after_id or 0))],
            [
                "name",
                "is_company",
                "parent_id",
                "commercial_partner_id",
                "company_id",
                "vat_key",
                "registry_key",
                "peppol_key",
                "email_key",
                "zip",
                "country_code",
                "active",
            ],
            order="id",
            limit=limit,
        )
        return [
            {
                "id": partner.id,
                "name": partner.name or "",
                "is_company": partner.is_company,
                "parent_id": partner.parent_id.id or False,
                "commercial_partner_id": partner.commercial_partner_id.id,
                "company_id": partner.company_id.id or False,
                "vat_key": partner.vat_key or False,
                "registry_key": partner.registry_key or False,
                "peppol_key": partner.peppol_key or False,
                "email_key": partner.email_key or False,
                "zip": partner.zip or False,
                "country_code": partner.country_code or False,
                "active": partner.active,
            }
            for partner in partners
        ]
