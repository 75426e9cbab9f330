from odoo.tools import sql

#: stored identifier columns of res.partner and their SQL types, created before the
#: ORM sees the fields so that it does not compute them for every partner at once
IDENTIFIER_COLUMNS = {
    "vat_key": "varchar",
    "registry_key": "varchar",
    "peppol_key": "varchar",
    "email_key": "varchar",
    "vat_invalid": "bool",
    "registry_invalid": "bool",
    "peppol_invalid": "bool",
    "email_invalid": "bool",
    "identifier_warning": "text",
}


def pre_init_hook(env):
    """Create the identifier key columns of the partners that already exist.

    A stored computed field added to a table with rows is computed by the ORM for
    all of them in one go; with the columns already there, ``post_init_hook``
    fills them chunk by chunk instead.
    """
    for column, column_type in IDENTIFIER_COLUMNS.items():
        if not sql.column_exists(env.cr, "res_partner", column):
            sql.create_column(env.cr, "res_partner", column, column_type)


def post_init_hook(env):
    """Fill the identifier keys and flag possible duplicates among the partners
    that existed before install, then back-fill the stage history."""
    env["res.partner"]._crm_fill_identifier_keys()
    env["res.partner"]._crm_refresh_all_duplicate_flags()
    env["crm.lead.stage.history"]._backfill_from_tracking()
