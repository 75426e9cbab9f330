{
    "name": "CRM Customer Sync",
    "summary": "One customer record for sales and finance, matched against Exact, "
    "Sage and Peppol by a sync daemon",
    "version": "18.0.1.0.0",
    "category": "Sales/CRM",
    "license": "LGPL-3",
    "author": "CRM module contributors",
    "depends": [
        "base",
        "mail",
        "contacts",
        "crm",
        "account",
        "account_edi_ubl_cii",
    ],
    "external_dependencies": {"python": ["python-stdnum"]},
    "data": [
        "security/crm_module_groups.xml",
        "security/ir.model.access.csv",
        "security/crm_module_rules.xml",
        "views/crm_sync_backend_views.xml",
        "views/crm_sync_run_views.xml",
        "views/crm_sync_link_views.xml",
        "views/crm_sync_issue_views.xml",
        "views/res_partner_views.xml",
        "views/crm_lead_views.xml",
        "views/crm_module_menus.xml",
    ],
    "demo": [
        "data/crm_sync_backend_demo.xml",
    ],
    "post_init_hook": "post_init_hook",
}
