"""The Odoo side of ``crm-sync demo``: a database, a company, customers, invoices.

- :func:`demo_database` gives a fresh database with ``crm_module`` quickly: the
  first run installs the add-on once in a *template* database
  (``crm_sync_demo_tpl_<digest>``, the digest covers the add-on's files and the
  Odoo release, so a changed add-on gets a new template), every run then copies
  it (PostgreSQL ``CREATE DATABASE … TEMPLATE``, plus its filestore) under a new
  name. The template is kept for the next run; the copy is the run's throw-away
  database.
- :func:`seed_odoo` prepares it as an admin would, over RPC: the company (a
  Belgian one, in EUR), the daemon's technical user, the customers, a sales journal
  of its own (``DEMO/…`` numbers, which no seeded ledger uses) with posted
  invoices, and one ``crm.sync.backend`` per kind.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from .odoo_runtime import ADDON_DIR, OdooRuntime, OdooServer, drop_database
from .testing.odoo_setup import make_backend, make_daemon_user

__all__ = ["COMPANY", "DemoOdoo", "demo_database", "seed_odoo"]

#: The demo company: the seller on every invoice the daemon sends.
COMPANY = {
    "name": "Fictief Advies BV",
    "vat": "BE0447123478",
    "street": "Kunstlaan 21",
    "zip": "1000",
    "city": "Brussel",
    "email": "boekhouding@fictief-advies.example",
}
DAEMON_LOGIN = "sync-bot"
_FILESTORE = Path.home() / ".local/share/Odoo/filestore"
_PG = """\
import sys, psycopg2
c = psycopg2.connect(host=sys.argv[1], port=sys.argv[2], user=sys.argv[3],
                     password=sys.argv[4], dbname='postgres')
c.autocommit = True
cur = c.cursor()
cur.execute(sys.argv[5], sys.argv[6:] or None)
if cur.description:
    for row in cur.fetchall():
        print(row[0])
"""


def _sql(rt: OdooRuntime, query: str, *params: str) -> list[str]:
    """Run one statement on the ``postgres`` database with Odoo's Python."""
    done = subprocess.run(
        [str(rt.python), "-c", _PG, rt.db_host, str(rt.db_port), rt.db_user,
         rt.db_password, query, *params],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"PostgreSQL refused {query!r}: {done.stderr.strip()}")
    return done.stdout.split()


def _exists(rt: OdooRuntime, name: str) -> bool:
    return bool(_sql(rt, "SELECT datname FROM pg_database WHERE datname = %s", name))


def template_name(rt: OdooRuntime) -> str:
    """Name of the template for this add-on and this Odoo (a digest of both)."""
    digest = hashlib.sha1(usedforsecurity=False)
    for path in sorted(ADDON_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ADDON_DIR)).encode())
            digest.update(path.read_bytes())
    release = rt.home / "odoo" / "release.py"
    if release.is_file():
        digest.update(release.read_bytes())
    return f"crm_sync_demo_tpl_{digest.hexdigest()[:10]}"


def demo_database(rt: OdooRuntime, name: str, *, log_path: Path) -> bool:
    """Create database ``name`` with crm_module; True when a template was built."""
    template = template_name(rt)
    built = False
    lock = Path(tempfile.gettempdir()) / f"{template}.lock"
    with FileLock(str(lock)):
        if not _exists(rt, template):
            server = OdooServer(rt, db=template, keep=True, log_path=log_path)
            try:
                server.create_database()
            except BaseException:
                drop_database(rt, template)
                raise
            built = True
        _sql(rt, f'CREATE DATABASE "{name}" WITH TEMPLATE "{template}"')
    if (_FILESTORE / template).is_dir():
        shutil.copytree(_FILESTORE / template, _FILESTORE / name, dirs_exist_ok=True)
    return built


# -- seeding ---------------------------------------------------------------------------


@dataclass
class DemoOdoo:
    """What :func:`seed_odoo` created."""

    daemon_login: str
    daemon_password: str
    customers: int
    invoices: list[str]
    backends: dict[str, int] = field(default_factory=dict)
    #: Peppol participant ids of the invoices' buyers.
    buyers: list[str] = field(default_factory=list)


def _company(admin: Any) -> int:
    env = admin.env
    company_id = int(env.user.company_id.id)
    euro = (
        env["res.currency"]
        .with_context(active_test=False)
        .search([("name", "=", "EUR")])
    )
    values: dict[str, Any] = {**COMPANY, "country_id": env.ref("base.be").id}
    if euro:
        env["res.currency"].write(euro, {"active": True})
        values["currency_id"] = euro[0]
    admin.execute_kw("res.company", "write", [[company_id], values])
    return company_id


def _customers(admin: Any, rows: Sequence[dict[str, Any]]) -> list[int]:
    countries = {
        row["code"]: row["id"]
        for row in admin.execute_kw(
            "res.country", "search_read", [[]], {"fields": ["code"]}
        )
    }
    values = [
        {
            "name": row["name"],
            "is_company": True,
            "vat": row.get("vat") or False,
            "company_registry": row.get("company_registry") or False,
            "country_id": countries.get(row.get("country_code") or "", False),
            "street": row.get("street") or False,
            "zip": row.get("zip") or False,
            "city": row.get("city") or False,
            "email": row.get("email") or False,
            "customer_rank": 1,
        }
        for row in rows
    ]
    ids: list[int] = []
    for start in range(0, len(values), 500):
        ids += admin.execute_kw("res.partner", "create", [values[start : start + 500]])
    return ids


def _invoices(
    admin: Any, company_id: int, partner_ids: Sequence[int], count: int
) -> tuple[list[str], list[str]]:
    """Post ``count`` invoices to Belgian customers with a VAT number."""
    env = admin.env
    rows = admin.execute_kw(
        "res.partner",
        "search_read",
        [[("id", "in", list(partner_ids)), ("vat", "=like", "BE%")]],
        {"fields": ["vat"], "limit": count, "order": "id"},
    )
    if not rows or count <= 0:
        return [], []
    [sale] = admin.execute_kw(
        "account.journal",
        "search_read",
        [[("type", "=", "sale"), ("company_id", "=", company_id)]],
        {"fields": ["default_account_id"], "limit": 1},
    ) or [{"default_account_id": False}]
    journal_id = admin.execute_kw(
        "account.journal",
        "create",
        [
            {
                "name": "Demo sales",
                "code": "DEMO",
                "type": "sale",
                "company_id": company_id,
                "default_account_id": (sale["default_account_id"] or [False])[0],
            }
        ],
    )
    tax_id = env["account.tax"].create(
        {
            "name": "BTW 21 % (demo)",
            "amount": 21.0,
            "amount_type": "percent",
            "type_tax_use": "sale",
            "company_id": company_id,
        }
    )
    moves = [
        {
            "move_type": "out_invoice",
            "journal_id": journal_id,
            "partner_id": row["id"],
            # Peppol needs a buyer or order reference (PEPPOL-EN16931-R003)
            "ref": f"PO-{n + 1:04d}",
            "invoice_date": f"2026-{(n % 11) + 1:02d}-15",
            "invoice_line_ids": [
                (
                    0,
                    0,
                    {
                        "name": "Advies en begeleiding",
                        "quantity": 1 + n % 4,
                        "price_unit": 125.0 + 10 * n,
                        "tax_ids": [(6, 0, [tax_id])],
                    },
                )
            ],
        }
        for n, row in enumerate(rows)
    ]
    move_ids = admin.execute_kw("account.move", "create", [moves])
    admin.execute_kw("account.move", "action_post", [move_ids])
    names = [
        row["name"]
        for row in admin.execute_kw(
            "account.move", "read", [move_ids], {"fields": ["name"]}
        )
    ]
    buyers = [f"0208:{row['vat'][2:]}" for row in rows]
    return names, buyers


def seed_odoo(
    admin: Any,
    *,
    customers: Sequence[dict[str, Any]],
    invoices: int,
    backends: Sequence[tuple[str, str]],
) -> DemoOdoo:
    """Company, daemon user, customers, posted invoices and one backend per kind.

    :param admin: an odoorpc client logged in as admin.
    :param customers: ``res.partner`` data (``country_code`` instead of a country).
    :param invoices: posted customer invoices to create.
    :param backends: ``(kind, name)`` of the backends to create.
    """
    env = admin.env
    group = env.ref("crm_module.crm_module_group_sync_admin")
    env["res.users"].write([env.uid], {"groups_id": [(4, group.id)]})
    company_id = _company(admin)
    password = secrets.token_urlsafe(18)
    user_id = make_daemon_user(admin, DAEMON_LOGIN, password)
    env["res.users"].write([user_id], {"password": password})
    partner_ids = _customers(admin, customers)
    names, buyers = _invoices(admin, company_id, partner_ids, invoices)
    ids = {
        kind: make_backend(
            admin, name, kind, interval_minutes=60, company_id=company_id
        )
        for kind, name in backends
    }
    return DemoOdoo(
        daemon_login=DAEMON_LOGIN,
        daemon_password=password,
        customers=len(partner_ids),
        invoices=names,
        backends=ids,
        buyers=buyers,
    )
