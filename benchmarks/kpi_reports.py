"""Benchmark: the CRM KPI reports' read_group on a large real Odoo 18 database.

Creates a throw-away database with crm_module (``ODOO_HOME`` / ``ODOO_PYTHON``, see
the README), fills it with plain SQL inserts (fine for a benchmark, not for data
anyone keeps), then times each report's ``web_read_group`` exactly as its graph and
pivot views ask for it:

- ``--opportunities`` opportunities (default 100,000) over four teams and 20,000
  customers, a fifth of them lost, with first response data;
- ``--changes`` stage changes (default 500,000) in ``crm.lead.stage.history``;
- ``--invoices`` posted customer invoices (default 50,000; header rows only, cloned
  from one real posted invoice: the reports read nothing of the lines).

Each query runs ``--repeat`` times in one transaction after ``ANALYZE``; the first
(cold) and the median time are printed. Target: under 1 s each. Without Odoo the
script says so and exits 3.

    .venv/bin/python benchmarks/kpi_reports.py
    .venv/bin/python benchmarks/kpi_reports.py --db bench_kpi --keep   # reuse
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (label, model, groupby, measures) per view the dashboard opens by default
QUERIES = [
    (
        "stage conversion graph",
        "crm.kpi.stage.conversion",
        ["stage_id"],
        ["entered_count", "progressed_count", "won_count", "lost_count"],
    ),
    (
        "stage conversion pivot",
        "crm.kpi.stage.conversion",
        ["team_id", "stage_id", "iso_week"],
        [
            "entered_count",
            "progressed_count",
            "won_count",
            "lost_count",
            "conversion_rate",
        ],
    ),
    (
        "response time graph",
        "crm.kpi.response.time",
        ["date:day", "source"],
        ["response_hours", "median_response_hours"],
    ),
    (
        "response time pivot",
        "crm.kpi.response.time",
        ["team_id", "source", "date:month"],
        [
            "record_count",
            "responded_count",
            "response_hours",
            "median_response_hours",
            "breach_count",
        ],
    ),
    (
        "retention graph+pivot",
        "crm.kpi.retention",
        ["cohort_month:month"],
        ["customer_count", "retained_count", "retention_rate"],
    ),
    (
        "bottleneck graph",
        "crm.kpi.stage.bottleneck",
        ["stage_id"],
        ["median_days", "drop_off_rate"],
    ),
    (
        "bottleneck pivot",
        "crm.kpi.stage.bottleneck",
        ["stage_id", "team_id"],
        ["entered_count", "median_days", "days_in_stage", "dropped_count"],
    ),
    (
        "forecast graph",
        "crm.kpi.forecast",
        ["date:month"],
        [
            "expected_revenue",
            "prorated_revenue",
            "historical_revenue",
            "won_revenue",
            "invoiced_amount",
        ],
    ),
    (
        "forecast pivot",
        "crm.kpi.forecast",
        ["date:month", "kind"],
        [
            "expected_revenue",
            "prorated_revenue",
            "historical_revenue",
            "won_revenue",
            "invoiced_amount",
        ],
    ),
]


# ----------------------------------------------------------------- inside Odoo


def _columns(cr, table):
    cr.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = %s AND column_name <> 'id' ORDER BY ordinal_position",
        (table,),
    )
    return [row[0] for row in cr.fetchall()]


def _clone(cr, table, template_id, count, overrides, params=None):
    """Insert ``count`` copies of one row; overrides are SQL expressions of ``n``."""
    columns = _columns(cr, table)
    # a literal % (modulo) must be doubled next to %(name)s parameters
    overrides = {col: re.sub(r"%(?!\()", "%%", expr) for col, expr in overrides.items()}
    select = ", ".join(overrides.get(col, f't."{col}"') for col in columns)
    names = ", ".join(f'"{col}"' for col in columns)
    cr.execute(
        f"INSERT INTO {table} ({names}) SELECT {select} "
        f"FROM generate_series(1, %(count)s) AS g(n), {table} t "
        "WHERE t.id = %(template)s",
        {"count": count, "template": template_id, **(params or {})},
    )


def _generate(env, opportunities, changes, invoices):
    """Fill the database with SQL; returns the row counts."""
    cr = env.cr
    customer = env["res.partner"].create({"name": "Bench Customer", "is_company": True})
    env.flush_all()
    _clone(cr, "res_partner", customer.id, 20000, {"name": "'Bench ' || n"})
    cr.execute(
        "UPDATE res_partner SET commercial_partner_id = id WHERE name LIKE 'Bench %'"
    )
    cr.execute("SELECT array_agg(id) FROM res_partner WHERE name LIKE 'Bench %'")
    partner_ids = cr.fetchone()[0]
    teams = env["crm.team"].create([{"name": f"Bench Team {i}"} for i in range(4)])
    stages = env["crm.stage"].search([], order="sequence, id")
    open_stages = stages.filtered(lambda stage: not stage.is_won)
    won_stage = stages.filtered("is_won")[:1]
    template = env["crm.lead"].create(
        {"name": "Bench template", "type": "opportunity", "partner_id": customer.id}
    )
    env.flush_all()
    created = "now() at time zone 'UTC' - (n % 700) * interval '1 day'"
    _clone(
        cr,
        "crm_lead",
        template.id,
        opportunities,
        {
            "name": "'Bench opportunity ' || n",
            "partner_id": "(%(partners)s::int[])[1 + n % %(np)s]",
            "team_id": "(%(teams)s::int[])[1 + n % 4]",
            "active": "n % 5 <> 0",
            "probability": "CASE WHEN n % 5 = 0 THEN 0 ELSE (n * 7) % 100 END",
            "expected_revenue": "(n % 97) * 100",
            "create_date": created,
            "date_deadline": "current_date + (n % 365) - 60",
            "first_response_date": f"CASE WHEN n % 3 <> 0 THEN {created} "
            "+ (n % 48) * interval '1 hour' END",
            "response_time_hours": "CASE WHEN n % 3 <> 0 THEN n % 30 END",
            "sla_breached": "n % 11 = 0",
        },
        {"partners": partner_ids, "np": len(partner_ids), "teams": teams.ids},
    )
    cr.execute("DELETE FROM crm_lead WHERE id = %s", (template.id,))
    per_lead = max(1, changes // opportunities)
    cr.execute(
        """
        INSERT INTO crm_lead_stage_history
            (lead_id, stage_from_id, stage_id, date, user_id, team_id, company_id,
             create_uid, create_date, write_uid, write_date)
        SELECT lead.id,
               CASE WHEN k > 0
                    THEN (%(open)s::int[])[1 + (k - 1 + lead.id) %% %(no)s] END,
               CASE WHEN k = %(last)s AND lead.id %% 4 = 0 THEN %(won)s
                    ELSE (%(open)s::int[])[1 + (k + lead.id) %% %(no)s] END,
               lead.create_date + k * (1 + lead.id %% 20) * interval '1 day',
               1, lead.team_id, lead.company_id, 1, now(), 1, now()
          FROM crm_lead lead, generate_series(0, %(last)s) AS k
         WHERE lead.name LIKE 'Bench opportunity %%'
        """,
        {
            "open": open_stages.ids,
            "no": len(open_stages),
            "won": won_stage.id,
            "last": per_lead - 1,
        },
    )
    env["crm.lead.stage.history"]._update_derived_values()
    cr.execute(
        """
        UPDATE crm_lead lead
           SET stage_id = last.stage_id, date_last_stage_update = last.date,
               date_closed = CASE WHEN last.stage_id = %(won)s OR NOT lead.active
                                  THEN last.date END
          FROM (SELECT DISTINCT ON (lead_id) lead_id, stage_id, date
                  FROM crm_lead_stage_history ORDER BY lead_id, date DESC, id DESC
               ) last
         WHERE last.lead_id = lead.id AND lead.name LIKE 'Bench opportunity %%'
        """,
        {"won": won_stage.id},
    )
    move = env["account.move"].create(
        {
            "move_type": "out_invoice",
            "partner_id": customer.id,
            "invoice_date": "2025-01-01",
            "invoice_line_ids": [(0, 0, {"name": "Bench", "price_unit": 100.0})],
        }
    )
    move.action_post()
    env.flush_all()
    partner = "(%(partners)s::int[])[1 + (n * 7) % %(np)s]"
    _clone(
        cr,
        "account_move",
        move.id,
        invoices,
        {
            "name": "'BENCH/' || n",
            "partner_id": partner,
            "commercial_partner_id": partner,
            "invoice_date": "current_date - (n % 700)",
            "date": "current_date - (n % 700)",
            "amount_untaxed_signed": "(n % 50) * 100",
            "sequence_number": "1000000 + n",
        },
        {"partners": partner_ids, "np": len(partner_ids)},
    )
    cr.execute("ANALYZE")
    counts = {}
    for table in ("crm_lead", "crm_lead_stage_history", "account_move", "res_partner"):
        cr.execute(f"SELECT count(*) FROM {table}")
        counts[table] = cr.fetchone()[0]
    return counts


def _time_queries(env, repeat):
    results = []
    for label, model, groupby, measures in QUERIES:
        report = env[model]
        fields_spec = [f"{name}:{report._fields[name].aggregator}" for name in measures]
        timings = []
        for _ in range(repeat):
            env.invalidate_all()
            start = time.perf_counter()
            groups = report.web_read_group([], fields_spec, groupby, lazy=False)
            timings.append(time.perf_counter() - start)
        results.append(
            {
                "label": label,
                "model": model,
                "groups": groups["length"],
                "first": timings[0],
                "median": statistics.median(timings),
            }
        )
    return results


def worker(argv):
    """Runs under Odoo's Python: generate (unless told not to) and time."""
    home = argv[argv.index("--odoo-home") + 1]
    sys.path.insert(0, home)
    import odoo
    from odoo.tools import config

    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--odoo-home")
    parser.add_argument("--opportunities", type=int)
    parser.add_argument("--changes", type=int)
    parser.add_argument("--invoices", type=int)
    parser.add_argument("--repeat", type=int)
    parser.add_argument("--no-generate", action="store_true")
    args, odoo_args = parser.parse_known_args(argv)
    config.parse_config(odoo_args)
    registry = odoo.modules.registry.Registry(args.db)
    out = {}
    with registry.cursor() as cr:
        env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})
        if not args.no_generate:
            start = time.perf_counter()
            out["counts"] = _generate(
                env, args.opportunities, args.changes, args.invoices
            )
            out["generate_seconds"] = time.perf_counter() - start
            cr.commit()
        else:
            out["counts"] = {}
        out["queries"] = _time_queries(env, args.repeat)
    print("RESULT " + json.dumps(out))
    return 0


# ----------------------------------------------------------------- outside Odoo


def main(argv=None):
    from sync_daemon.odoo_runtime import (
        OdooNotFound,
        OdooServer,
        drop_database,
        find_odoo,
    )

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--opportunities", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=500_000)
    parser.add_argument("--invoices", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", help="use (or create) this database")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument(
        "--no-create", action="store_true", help="--db already has crm_module"
    )
    parser.add_argument(
        "--no-generate", action="store_true", help="time an already filled --db"
    )
    args = parser.parse_args(argv)
    try:
        runtime = find_odoo()
    except OdooNotFound as err:
        print(f"skipped: no Odoo found: {err}")
        return 3
    server = OdooServer(runtime, db=args.db) if args.db else OdooServer(runtime)
    try:
        if not (args.no_generate or args.no_create):
            print(f"creating {server.db} with crm_module ({runtime.home}) …")
            server.create_database()
        cmd = [
            str(runtime.python),
            str(Path(__file__).resolve()),
            "--worker",
            "--odoo-home",
            str(runtime.home),
            "--db",
            server.db,
            "--opportunities",
            str(args.opportunities),
            "--changes",
            str(args.changes),
            "--invoices",
            str(args.invoices),
            "--repeat",
            str(args.repeat),
            *(["--no-generate"] if args.no_generate else []),
            *runtime.db_args(),
            "--addons-path",
            runtime.addons_path,
            "--log-level",
            "warn",
        ]
        proc = subprocess.run(
            cmd, env=runtime.env(), capture_output=True, text=True, check=False
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
            return 1
        out = json.loads(lines[-1][len("RESULT ") :])
    finally:
        if not args.keep:
            drop_database(runtime, server.db)
    if out["counts"]:
        print(f"generated in {out['generate_seconds']:.1f} s: {out['counts']}")
    print(f"{'report view':28} {'groups':>7} {'first s':>8} {'median s':>9}")
    for row in out["queries"]:
        print(
            f"{row['label']:28} {row['groups']:7d} "
            f"{row['first']:8.3f} {row['median']:9.3f}"
        )
    slow = [row["label"] for row in out["queries"] if row["median"] >= 1.0]
    print("target < 1 s each: " + ("met" if not slow else f"NOT met: {slow}"))
    return 1 if slow else 0


if __name__ == "__main__":
    if "--worker" in sys.argv:
        sys.argv.remove("--worker")
        sys.exit(worker(sys.argv[1:]))
    sys.exit(main())
