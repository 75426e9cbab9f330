def post_init_hook(env):
    """Flag possible duplicates among the partners that existed before install.

    The identifier keys themselves are stored computed fields, so the ORM fills
    them in batch when the columns are created; the duplicate flag depends on other
    records and is refreshed here once, in chunks.
    """
    env["res.partner"]._crm_refresh_all_duplicate_flags()
    env["crm.lead.stage.history"]._backfill_from_tracking()
