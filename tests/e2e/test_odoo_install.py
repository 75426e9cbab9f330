"""The add-on installs on a real Odoo 18 and answers over JSON-RPC."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.odoo


def test_crm_module_is_installed_with_its_dependencies(odoo_admin) -> None:
    modules = odoo_admin.env["ir.module.module"].search_read(
        [("name", "in", ["crm_module", "crm", "account", "account_edi_ubl_cii"])],
        ["name", "state"],
    )
    assert {m["name"]: m["state"] for m in modules} == {
        "crm_module": "installed",
        "crm": "installed",
        "account": "installed",
        "account_edi_ubl_cii": "installed",
    }
    assert odoo_admin.version.startswith("18.0")


def test_partner_identifier_keys_are_computed_over_rpc(odoo_admin) -> None:
    partners = odoo_admin.env["res.partner"]
    be = odoo_admin.env.ref("base.be").id
    pid = partners.create(
        {"name": "Fictief Software", "is_company": True, "vat": "BE 0447.123.478",
         "country_id": be}
    )  # fmt: skip
    fields = partners.fields_get()
    key_fields = [name for name in fields if name.endswith("_key")]
    assert key_fields, "crm_module adds normalised identifier keys to res.partner"
    try:
        values = partners.read([pid], key_fields)[0]
        assert "BE0447123478" in values.values()
    finally:
        # the database is shared by the session: leave no partner that other
        # end-to-end tests would meet as a second holder of this VAT number
        partners.unlink([pid])
