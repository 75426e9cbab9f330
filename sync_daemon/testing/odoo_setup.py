"""Preparing a real Odoo 18 with crm_module for the daemon (tests, benchmarks).

Uses an odoorpc client logged in as admin to create the daemon's technical user
(group "Sync daemon (technical)" plus "Invoicing: Billing", so that it can read
posted invoices and create draft vendor bills) and sync backends.
"""

from __future__ import annotations

from typing import Any

__all__ = ["make_backend", "make_daemon_user"]

DAEMON_GROUPS = (
    "crm_module.crm_module_group_sync_daemon",
    "account.group_account_invoice",
)


def make_daemon_user(
    admin: Any, login: str = "sync-bot", password: str = "sync-bot-pw"
) -> int:
    """Create (or find) the daemon user; returns its id."""
    users = admin.env["res.users"]
    found = users.search([("login", "=", login)])
    if found:
        return int(found[0])
    groups = [admin.env.ref(xmlid).id for xmlid in DAEMON_GROUPS]
    company_ids = admin.env["res.company"].search([])
    return int(
        users.create(
            {
                "name": "Sync daemon",
                "login": login,
                "password": password,
                "groups_id": [(6, 0, groups)],
                "company_ids": [(6, 0, company_ids)],
                "company_id": admin.env.user.company_id.id,
            }
        )
    )


def make_backend(admin: Any, name: str, kind: str = "exact", **values: Any) -> int:
    """Create a sync backend as the admin would in the Odoo screens."""
    vals = {"name": name, "kind": kind, **values}
    vals.setdefault("company_id", admin.env.user.company_id.id)
    return int(admin.env["crm.sync.backend"].create(vals))
