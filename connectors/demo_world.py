"""Every sandbox of the project, seeded together for ``crm-sync demo``.

:class:`SandboxWorld` starts the Exact Online, Sage Accounting v3.1, Sage X3 and
Peppol sandboxes in this process, each on a free 127.0.0.1 port, with data that
overlaps the way a real company's does:

- Exact: ``exact_accounts`` accounts and ``exact_invoices`` sales entries with
  receivables; identifiers typed the messy way (``BE 0123.456.789``, ``KvK …``);
- Odoo (:meth:`SandboxWorld.odoo_customers`): ``odoo_customers`` companies that are
  also Exact accounts (VAT written differently or missing, legal form sometimes
  dropped), plus a quarter of the Sage customers;
- Sage Accounting (Belgian business) and Sage X3 hold the same French and Belgian
  customers (``sage_customers`` each), so the second ledger links what the first
  one created;
- Peppol: the inbox holds the official example documents of the shared folder
  (``$CRM_SHARED_DIR/examples/peppol`` or ``shared/`` beside the checkout), some of
  which the validation refuses on purpose (a sales order, a Norwegian profile).

The Peppol sandbox validates with the official artefacts, which are not part of the
repository (``PEPPOL_RULES_DIR``, see :mod:`connectors.peppol.validate`). Without
them the world still runs Exact and Sage: Peppol is left out of :meth:`backends`,
:attr:`SandboxWorld.skipped` gives the reason and :attr:`SandboxWorld.notices` the
explanation to show; missing examples only leave the inbox empty (with a notice).

The daemon finds :func:`build_world` through the entry point group
``crm_sync.demo`` (name ``world``), so it never imports a connector by name.
Nothing here listens on anything but 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync_daemon.kernel.identifiers import vat_key
from sync_daemon.kernel.protocol import TokenStore

from .exact.sandbox import ExactSandbox, odoo_partners
from .peppol.errors import RulesNotFound, RulesUnusable
from .peppol.sandbox import PeppolSandbox, default_examples_dir
from .peppol.validate import RULES_DIR_ENV
from .sage.sandbox_accounting import BE_BUSINESS, SageAccountingSandbox
from .sage.sandbox_x3 import SageX3Sandbox

__all__ = ["SandboxWorld", "WorldBackend", "WorldSizes", "build_world"]

_logger = logging.getLogger(__name__)

#: Backend kinds in the order a first cycle runs them: the big ledger first, so
#: the others push the customers it brought in.
KINDS = ("exact", "sage_accounting", "sage_x3", "peppol")

#: How to provide the Peppol artefacts (printed when they are missing).
PEPPOL_HOWTO = (
    f"To include Peppol, set {RULES_DIR_ENV} to a folder with ubl-2.1/xsd/ and "
    "xslt/ (the OASIS UBL 2.1 schemas and the OpenPeppol BIS Billing 3.0 "
    "validation artefacts CEN-EN16931-UBL.xslt and PEPPOL-EN16931-UBL.xslt), or "
    "CRM_SHARED_DIR to a folder with specs/peppol/ and examples/peppol/ "
    "(README: 'Peppol artefacts')."
)


@dataclass(frozen=True)
class WorldSizes:
    """How much data the sandboxes and the Odoo seed hold."""

    exact_accounts: int = 2000
    exact_invoices: int = 5000
    odoo_customers: int = 500
    sage_customers: int = 40
    seed: int = 7


@dataclass(frozen=True)
class WorldBackend:
    """One backend to configure: its kind, a display name and its settings."""

    kind: str
    name: str
    settings: dict[str, Any] = field(default_factory=dict)


class SandboxWorld:
    """The four sandboxes, seeded from one :class:`WorldSizes`.

    :param sizes: data sizes and the seed.
    :param examples_dir: folder of UBL files for the Peppol inbox (default: the
        official examples when found).
    """

    def __init__(self, sizes: WorldSizes, *, examples_dir: Path | None = None) -> None:
        self.sizes = sizes
        self.examples_dir = examples_dir or default_examples_dir()
        #: kinds left out of this run, with a short reason (for the summary)
        self.skipped: dict[str, str] = {}
        #: what the person running the demo should know (one paragraph each)
        self.notices: list[str] = []
        self.exact = ExactSandbox(
            seed=sizes.seed,
            accounts=sizes.exact_accounts,
            invoices=sizes.exact_invoices,
        )
        # The Belgian business is seeded with seed + 1; X3 gets the same customers.
        self.sage = SageAccountingSandbox(
            customers=sizes.sage_customers, seed=sizes.seed
        )
        self.x3 = SageX3Sandbox(customers=sizes.sage_customers, seed=sizes.seed + 1)
        self.peppol = PeppolSandbox(inbox_dir=self.examples_dir)
        self._started: list[Any] = []

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> SandboxWorld:
        """Start every sandbox (all on 127.0.0.1, free ports).

        Without the Peppol validation artefacts the Peppol sandbox stays down and
        Peppol is skipped (:attr:`skipped`, :attr:`notices`); the others run.
        """
        try:
            for sandbox in (self.exact, self.sage, self.x3):
                sandbox.start()
                self._started.append(sandbox)
            try:
                self.peppol.start()
            except RulesNotFound as err:
                self._skip_peppol(err)
            else:
                self._started.append(self.peppol)
                if self.examples_dir is None:
                    self.notices.append(
                        "Peppol example invoices not found (set CRM_SHARED_DIR to a "
                        "folder with examples/peppol/): the Peppol inbox is seeded "
                        "empty."
                    )
        except BaseException:
            self.stop()
            raise
        return self

    def _skip_peppol(self, err: RulesNotFound) -> None:
        _logger.warning("Peppol skipped in this demo run: %s", err)
        if isinstance(err, RulesUnusable):
            what = f"the Peppol validation artefacts cannot be loaded ({err})"
            self.skipped["peppol"] = "Peppol validation artefacts unusable"
        else:
            rules_env = os.environ.get(RULES_DIR_ENV)
            where = (
                f"{RULES_DIR_ENV}={rules_env} lacks them"
                if rules_env
                else f"no {RULES_DIR_ENV}, no specs/peppol in CRM_SHARED_DIR or in "
                "a shared/ folder beside the checkout"
            )
            what = (
                "the Peppol validation artefacts (UBL 2.1 XSD, CEN and PEPPOL XSLT) "
                f"were not found ({where})"
            )
            self.skipped["peppol"] = "Peppol validation artefacts not found"
        self.notices.append(
            f"Peppol skipped: {what}. Peppol validation and the Peppol backend are "
            "skipped in this demo run; Exact and Sage run as usual.\n  " + PEPPOL_HOWTO
        )

    def stop(self) -> None:
        """Stop what was started, last first."""
        while self._started:
            self._started.pop().stop()

    def __enter__(self) -> SandboxWorld:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def urls(self) -> dict[str, str]:
        """Base URL of each running sandbox, by backend kind."""
        urls = {
            "exact": self.exact.url,
            "sage_accounting": self.sage.url,
            "sage_x3": self.x3.url,
        }
        if "peppol" not in self.skipped:
            urls["peppol"] = self.peppol.base
        return urls

    # -- backends ---------------------------------------------------------------------

    def backends(self) -> list[WorldBackend]:
        """One backend per kind not skipped, with settings pointing at its sandbox."""
        backends = [
            WorldBackend(
                "exact", "Exact Online (sandbox)", self.exact.connector_settings()
            ),
            WorldBackend(
                "sage_accounting",
                "Sage Accounting BE (sandbox)",
                self.sage.settings(BE_BUSINESS),
            ),
            WorldBackend("sage_x3", "Sage X3 (sandbox)", self.x3.settings()),
        ]
        if "peppol" not in self.skipped:
            backends.append(
                WorldBackend(
                    "peppol", "Peppol (sandbox)", self.peppol.connector_settings()
                )
            )
        return backends

    def authorise(
        self, kind: str, *, backend_id: int, connector: Any, tokens: TokenStore
    ) -> None:
        """Give a backend's connector the credentials a person would have granted.

        Exact: a token pair straight into the token store (skips the consent page);
        Sage Accounting: a consent code exchanged by the connector itself. Sage X3
        and Peppol use the user name / API key of their settings.
        """
        if kind == "exact":
            key = getattr(connector, "token_key", f"exact:{backend_id}")
            tokens.save(key, self.exact.token_set())
        elif kind == "sage_accounting":
            connector.exchange_code(code=self.sage.issue_code(BE_BUSINESS))

    def register_participant(self, participant_id: str) -> None:
        """Make a Peppol participant reachable (SML, SMP and access point)."""
        self.peppol.register(participant_id)

    # -- seeds ------------------------------------------------------------------------

    def odoo_customers(self) -> list[dict[str, Any]]:
        """Companies to create in Odoo before the first sync (``res.partner`` data).

        ``odoo_customers`` of them are Exact accounts; a quarter of the Sage
        customers are added with a clean VAT number.
        """
        sizes = self.sizes
        wanted = min(sizes.odoo_customers, sizes.exact_accounts)
        share = min(1.0, 1.2 * wanted / max(1, sizes.exact_accounts))
        rows = odoo_partners(sizes.seed, sizes.exact_accounts, share=share)[:wanted]
        contacts = list(self.sage.businesses[BE_BUSINESS].contacts.values())
        for contact in contacts[: len(contacts) // 4]:
            address = contact["main_address"]
            rows.append(
                {
                    "name": contact["name"],
                    "is_company": True,
                    "vat": vat_key(contact["tax_number"]) or None,
                    "company_registry": None,
                    "country_code": address["country"]["id"],
                    "street": address["address_line_1"],
                    "zip": address["postal_code"],
                    "city": address["city"],
                    "email": contact["email"],
                }
            )
        return rows

    def inbox_size(self) -> int:
        """Documents in the Peppol inbox (read or not); 0 when Peppol is skipped."""
        return 0 if "peppol" in self.skipped else len(self.peppol.inbox)

    def inbox_read(self) -> int:
        """Inbox documents the daemon acknowledged."""
        return sum(1 for item in self.peppol.inbox.values() if item["read"])

    def documents_sent(self) -> int:
        """Documents submitted to the Peppol access point."""
        return len(self.peppol.documents)

    def write_pages(self, folder: Path) -> dict[str, Path]:
        """The ledgers' customers as the JSON pages ``crm-sync reconcile`` reads.

        Exact: OData pages (``{"d": {"results": [...]}}``) of 1,000 accounts;
        Sage: v3.1 pages (``{"$items": [...]}``) of 200 contacts with attributes.
        """
        folder.mkdir(parents=True, exist_ok=True)
        accounts = self.exact.rows("accounts")
        exact_pages = [
            {"d": {"results": accounts[start : start + 1000]}}
            for start in range(0, len(accounts), 1000)
        ]
        contacts = list(self.sage.businesses[BE_BUSINESS].contacts.values())
        sage_pages = [
            {"$items": contacts[start : start + 200]}
            for start in range(0, len(contacts), 200)
        ]
        paths = {
            "exact": folder / "exact-accounts.json",
            "sage": folder / "sage-contacts.json",
        }
        for system, pages in (("exact", exact_pages), ("sage", sage_pages)):
            paths[system].write_text(
                json.dumps(pages, default=str, ensure_ascii=False, indent=1),
                encoding="utf-8",
            )
        return paths


def build_world(**sizes: int) -> SandboxWorld:
    """The ``crm_sync.demo`` entry point: a world of the given :class:`WorldSizes`."""
    return SandboxWorld(WorldSizes(**sizes))
