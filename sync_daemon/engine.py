"""The sync engine: one run of one backend.

A run, in order (each step is safe to repeat after a crash at any point):

1. **start**: fields are learnt again (``fields_get`` once per model), every call
   gets the backend's company first in ``allowed_company_ids`` plus its lang/tz;
   the run is announced to Odoo (``crm.sync.run``); links are loaded.
2. **admin actions** taken in the workbench on ``crm.sync.issue`` (link to a
   chosen partner, create, retry, ignore) are carried out and the issues resolved.
   A conflict issue keeps the remote record and its field group in its payload:
   *Retry* takes the remote's value for that group into Odoo; *Ignore* keeps
   Odoo's: after the pull, Odoo's record is sent to the remote (step 5) and the
   issue is closed.
3. **deletions** in the remote clear the link (with a note on the partner); a
   partner is never deleted or archived for it.
4. **pull customers** since the cursor, page by page: match (links first, then
   identifiers, then proposals), then apply under the field-ownership policy:
   finance-owned groups flow from the ledger, sales-owned ones from Odoo, and a
   group changed on *both* sides since the last sync becomes a ``conflict`` issue
   instead of an overwrite. Review and proposal decisions become ``duplicate``
   issues with suggestions; nothing is created for them. A record that fails goes
   to the dead letters (local store + ``invalid_data`` issue) and the run goes on.
   Links are committed in Odoo, *then* the page's snapshots and cursor are
   stored locally, in one SQLite transaction.
5. **push** Odoo-side changes: new customers and sales-owned changes, then posted
   invoices and credit notes. Every outbound create has an idempotency key in the
   local outbox and is preceded by a remote lookup; after a lost answer the lookup
   runs again before any re-send (field case C032).
   With a connector that looks participants up (Peppol) and an add-on that has
   the Peppol fields (``fields_get``), the run first refreshes the cached
   readiness of the commercial customers and opportunity prospects that have
   identifiers and were never checked, are unknown or were checked too long ago
   (bounded per run, one batched write), and polls the delivery status of
   invoices sent earlier; then only invoices of buyers that can receive are
   sent, to the participant id that answered. Each invoice gets its Peppol state
   in Odoo: ``sent``, ``to_fix`` with the failed rule ids (nothing left; the
   ``invalid_data`` issue lists them too), ``to_send`` while the buyer's
   readiness is unknown, ``not_applicable`` when the buyer cannot receive, later
   ``delivered`` or ``failed``.
   With a connector that keeps a mailing opt-out (``MarketingSink``: Exact's
   ``IsMailing``), consent withdrawals and expiries of marketing purposes read
   from the add-on's consent ledger exclude the linked remote records from
   mailings (cursor: the last consent event id).
6. **payments** and incoming **e-invoices** (draft vendor bills), when the
   connector offers them; a document the connector refused (unsafe, not UBL,
   failing the Peppol rules) becomes an ``invalid_data`` issue and leaves the
   inbox, a bill whose supplier is unclear stays in it until someone decides.
7. **finish**: counts and a short log go to ``crm.sync.run``.

Partners created in Odoo are journalled in the outbox first, so a run that died
between Odoo's create and the link finds its own partner again (by name, creator
and creation time) instead of creating a second one; that look-up comes before
matching, which would take such a partner for a stranger of the same name. A
partner the add-on marked erased (``res.partner.crm_erased``, used when
``fields_get`` shows it) is never updated, pushed or re-created: its external ids
get a local tombstone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from . import invoices as odoo_invoices
from .gateway import OdooGateway
from .kernel.errors import (
    AuthError,
    DataError,
    NeedsReauthorisation,
    PermanentError,
    RetryableError,
    SyncError,
)
from .kernel.models import Customer, Invoice, RemoteRef
from .kernel.protocol import (
    Connector,
    CustomerSink,
    CustomerSource,
    DeletionSource,
    DeliveryTracker,
    EInvoiceSource,
    InvoiceSink,
    MarketingSink,
    ParticipantLookup,
    PaymentSource,
)
from .matching import MatchIndex, customer_keys, partner_keys
from .partners import (
    ERASURE_FIELD,
    FIELD_GROUPS,
    PARTNER_READ_FIELDS,
    OdooLookups,
    customer_from_partner,
    customer_groups,
    group_hash,
    group_values,
    partner_groups,
)
from .retry import RetryPolicy
from .state import StateStore

__all__ = ["BackendConfig", "BackendRun", "RunCounts", "RunResult", "RunStopped"]

_logger = logging.getLogger(__name__)

PARTNER = "res.partner"
MOVE = "account.move"
#: the add-on's consent ledger (crm_module/API.md, "GDPR")
CONSENT_EVENT = "crm.consent.event"
#: purpose channels a remote's mailing opt-out stands for
MAILING_CHANNELS = ("email", "post")
#: Peppol fields of the add-on (crm_module/API.md); used when fields_get shows them
READINESS_FIELD = "crm_peppol_readiness"
CHECKED_AT_FIELD = "crm_peppol_checked_at"
PARTICIPANT_FIELD = "crm_peppol_participant_id"
PEPPOL_STATE_FIELD = "crm_peppol_state"
READINESS_STATES = ("can_receive", "cannot", "unknown")
#: access-point statuses of a submission -> Peppol state of the invoice in Odoo
DELIVERY_STATES = {
    "accepted": "sent",
    "sent": "delivered",
    "delivered": "delivered",
    "failed": "failed",
}
#: invoice Peppol states the access point may still change
OPEN_PEPPOL_STATES = [False, "to_send", "sent"]


def odoo_datetime(moment: datetime) -> str:
    """UTC ``YYYY-MM-DD HH:MM:SS``, the add-on's API format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class BackendConfig:
    """One ``crm.sync.backend`` as ``daemon_get_config`` returns it."""

    id: int
    name: str
    kind: str
    company_id: int
    company_name: str = ""
    tz: str = "UTC"
    lang: str = "en_US"
    schedule_type: str = "interval"
    interval_minutes: int = 60
    daily_time: float = 2.0
    next_run: str | None = None
    run_requested: bool = False
    ownership: Mapping[str, str] = field(default_factory=dict)
    last_success: str | None = None

    @classmethod
    def from_odoo(cls, row: Mapping[str, Any]) -> BackendConfig:
        try:
            company = row["company_id"]
            return cls(
                id=int(row["id"]),
                name=str(row.get("name") or f"backend {row['id']}"),
                kind=str(row["kind"]),
                company_id=int(company[0] if isinstance(company, list) else company),
                company_name=str(row.get("company_name") or ""),
                tz=str(row.get("tz") or "UTC"),
                lang=str(row.get("lang") or "en_US"),
                schedule_type=str(row.get("schedule_type") or "interval"),
                interval_minutes=int(row.get("interval_minutes") or 60),
                daily_time=float(row.get("daily_time") or 0.0),
                next_run=row.get("next_run") or None,
                run_requested=bool(row.get("run_requested")),
                ownership=dict(row.get("ownership") or {}),
                last_success=row.get("last_success") or None,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(
                f"backend configuration from Odoo is incomplete: {err}",
                record=f"crm.sync.backend {row.get('id')}",
            ) from err

    def owner(self, group: str) -> str:
        return self.ownership.get(group, "finance")


@dataclass
class RunCounts:
    pulled: int = 0
    created: int = 0
    updated: int = 0
    linked: int = 0
    unchanged: int = 0
    conflicts: int = 0
    errors: int = 0


@dataclass
class RunResult:
    backend_id: int
    outcome: str
    counts: RunCounts
    log: list[str]
    run_id: int | None = None


class RunStopped(Exception):
    """The daemon was asked to stop; the current page was finished first."""


@dataclass
class _Link:
    id: int
    res_id: int
    external_id: str
    sync_hash: str | None
    state: str


@dataclass
class _Page:
    """What one page of customers turns into before it is committed."""

    links: list[dict[str, Any]] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)
    snapshots: dict[str, tuple[int | None, dict[str, Any]]] = field(
        default_factory=dict
    )
    intents: list[str] = field(default_factory=list)


class BackendRun:
    """One run of one backend (see the module docstring for the steps).

    :param gateway: a connected Odoo gateway.
    :param state: the local state store.
    :param backend: the backend's configuration read from Odoo.
    :param connector: the backend's connector (capabilities detected at run time).
    :param page_size: rows per Odoo read (at most 500).
    :param batch_size: remote records gathered before Odoo is written (one create
        and one link upsert per batch); the cursor moves once per batch.
    :param stop: returns True when the daemon must stop after the current batch.
    :param progress: called with (stream, records done so far) after each page.
    :param clock: the current UTC time (tests pass a fake).
    :param readiness_max_age_days: Peppol readiness older than this is checked again.
    :param readiness_batch: partners whose readiness is checked per run, at most.
    :param delivery_batch: sent invoices whose delivery is polled per run, at most.
    """

    def __init__(
        self,
        *,
        gateway: OdooGateway,
        state: StateStore,
        backend: BackendConfig,
        connector: Connector,
        page_size: int = 500,
        batch_size: int = 1000,
        link_on_name_and_postcode: bool = True,
        retry: RetryPolicy | None = None,
        stop: Callable[[], bool] = lambda: False,
        progress: Callable[[str, int], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        readiness_max_age_days: int = 30,
        readiness_batch: int = 200,
        delivery_batch: int = 200,
    ) -> None:
        self.gateway = gateway
        self.state = state
        self.backend = backend
        self.connector = connector
        self.page_size = page_size
        self.batch_size = max(1, batch_size)
        self.link_on_name_and_postcode = link_on_name_and_postcode
        self.retry = retry or RetryPolicy()
        self.stop = stop
        self.progress = progress or (lambda stream, done: None)
        self.clock = clock
        self.counts = RunCounts()
        self.log: list[str] = []
        self.lookups = OdooLookups(gateway)
        self.links: dict[str, _Link] = {}
        self.partner_links: dict[int, str] = {}
        self.move_links: dict[int, str] = {}
        self.erased: set[int] = set()
        self.erased_field: str | None = None
        self._index: MatchIndex | None = None
        self._touched: set[int] = set()
        #: partner rows read for the matching index, by id
        self._rows: dict[int, dict[str, Any]] = {}
        self._new_strong: dict[tuple[str, str], str] = {}
        #: external id -> field groups an admin resolved in favour of the remote
        self._take_remote: dict[str, set[str]] = {}
        self.readiness_max_age_days = readiness_max_age_days
        self.readiness_batch = max(1, readiness_batch)
        self.delivery_batch = max(1, delivery_batch)
        #: invoices are sent only to buyers that can receive, with their state
        #: written back (Peppol connector and an add-on with the Peppol fields)
        self._peppol_gate = False

    # -- helpers -----------------------------------------------------------------------

    @property
    def bid(self) -> int:
        return self.backend.id

    def _note(self, message: str, *args: Any) -> None:
        text = message % args if args else message
        self.log.append(text)
        _logger.info("backend %s: %s", self.bid, text)

    def _issue(
        self,
        kind: str,
        message: str,
        *,
        external_id: str | None = None,
        res_model: str | None = None,
        res_id: int | None = None,
        field_name: str | None = None,
        payload: Any = None,
        suggestions: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        return {
            "backend_id": self.bid,
            "kind": kind,
            "res_model": res_model or False,
            "res_id": res_id or False,
            "external_id": external_id or False,
            "field": field_name or False,
            "message": message,
            "payload": payload
            if isinstance(payload, str) or payload is None
            else json.dumps(payload, default=str),
            "suggestions": list(suggestions),
        }

    def _dead_letter(
        self,
        stream: str,
        external_id: str,
        err: Exception,
        *,
        payload: str | None = None,
        res_model: str | None = None,
        res_id: int | None = None,
    ) -> dict[str, Any]:
        """File a failed record locally and return its ``invalid_data`` issue."""
        self.counts.errors += 1
        record = getattr(err, "record", None) or f"{stream} {external_id}"
        field_name = getattr(err, "field", None)
        message = getattr(err, "message", None) or str(err)
        self.state.add_dead_letter(
            self.bid,
            stream,
            external_id,
            message,
            record=record,
            field=field_name,
            payload=payload,
            retryable=isinstance(err, RetryableError),
        )
        _logger.warning(
            "backend %s: %s failed (%s%s): %s",
            self.bid,
            record,
            type(err).__name__,
            f", field {field_name}" if field_name else "",
            message,
        )
        kind = "remote_error" if isinstance(err, RetryableError) else "invalid_data"
        return self._issue(
            kind,
            f"{record}{' / ' + field_name if field_name else ''}: {message}",
            external_id=external_id,
            res_model=res_model,
            res_id=res_id,
            field_name=field_name,
            payload=payload,
        )

    def _raise_issues(self, issues: list[dict[str, Any]]) -> None:
        if issues:
            self.gateway.call("crm.sync.issue", "daemon_raise_issues", issues)

    def _upsert_links(self, links: list[dict[str, Any]]) -> None:
        if not links:
            return
        try:
            ids = self.gateway.call("crm.sync.link", "daemon_upsert_links", links)
        except DataError as err:
            if len(links) == 1:
                vals = links[0]
                self._raise_issues(
                    [
                        self._dead_letter(
                            "links",
                            str(vals["external_id"]),
                            err,
                            res_model=vals["res_model"],
                            res_id=int(vals["res_id"]),
                        )
                    ]
                )
                return
            # the add-on refuses a whole batch for one bad item: find it
            middle = len(links) // 2
            self._upsert_links(links[:middle])
            self._upsert_links(links[middle:])
            return
        for vals, link_id in zip(links, ids, strict=False):
            if vals["res_model"] == PARTNER:
                self.links[vals["external_id"]] = _Link(
                    int(link_id),
                    int(vals["res_id"]),
                    vals["external_id"],
                    vals.get("sync_hash"),
                    vals.get("state", "linked"),
                )
                self.partner_links[int(vals["res_id"])] = vals["external_id"]
            elif vals["res_model"] == MOVE:
                self.move_links[int(vals["res_id"])] = vals["external_id"]

    def _link_vals(
        self,
        res_model: str,
        res_id: int,
        ref: RemoteRef | str,
        sync_hash: str | None = None,
    ) -> dict[str, Any]:
        external_id = ref if isinstance(ref, str) else ref.external_id
        code = None if isinstance(ref, str) else ref.external_code
        return {
            "backend_id": self.bid,
            "res_model": res_model,
            "res_id": res_id,
            "external_id": external_id,
            "external_code": code or False,
            "sync_hash": sync_hash or False,
            "synced_at": odoo_datetime(self.clock()),
            "state": "linked",
        }

    # -- the run -----------------------------------------------------------------------

    def run(self) -> RunResult:
        """Do the whole run; never raises for a record, only reports."""
        started = self.clock()
        self.gateway.new_run()
        self.gateway.use_company(
            self.backend.company_id, lang=self.backend.lang, tz=self.backend.tz
        )
        self.state.run_started(self.bid, started)
        outcome = "success"
        run_id: int | None = None
        try:
            [run_id] = self.gateway.call(
                "crm.sync.run",
                "daemon_start_runs",
                [{"backend_id": self.bid, "started_at": odoo_datetime(started)}],
            )
            self._load_links()
            self._detect_erasure()
            self._admin_actions()
            if isinstance(self.connector, DeletionSource):
                self._pull_deletions()
            if isinstance(self.connector, CustomerSource):
                self._pull_customers()
            if isinstance(self.connector, CustomerSink):
                self._keep_odoo_values()
                self._push_customers()
            if isinstance(self.connector, MarketingSink) and self._has_model(
                CONSENT_EVENT
            ):
                self._push_consent_withdrawals()
            accounting = self._has_model(MOVE)
            if self._has_readiness():
                self._refresh_readiness()
                self._peppol_gate = accounting and self._has_peppol_state()
            if isinstance(self.connector, InvoiceSink) and accounting:
                if isinstance(self.connector, DeliveryTracker) and (
                    self._has_peppol_state()
                ):
                    self._poll_deliveries()
                self._push_invoices()
            if isinstance(self.connector, PaymentSource) and accounting:
                self._pull_payments()
            if isinstance(self.connector, EInvoiceSource) and accounting:
                self._pull_einvoices()
            if self.counts.errors:
                outcome = "partial"
        except RunStopped:
            outcome = "partial"
            self._note("stopped on request after finishing the current page")
        except (NeedsReauthorisation, AuthError) as err:
            outcome = "failed"
            self._note("credentials refused: %s", err)
            self._report_auth(err)
        except SyncError as err:
            outcome = "failed"
            self._note("run failed: %s", err)
            _logger.error("backend %s: run failed", self.bid, exc_info=True)
        except Exception as err:
            # not one of ours (a bug, an unwrapped library error): report the run
            # as failed, then let the scheduler log it with its traceback
            outcome = "failed"
            self._note("run failed unexpectedly: %s: %s", type(err).__name__, err)
            raise
        finally:
            ended = self.clock()
            self.state.run_finished(self.bid, ended, outcome)
            if run_id is not None:
                try:
                    self.gateway.call(
                        "crm.sync.run",
                        "daemon_finish_runs",
                        [
                            {
                                "run_id": run_id,
                                "ended_at": odoo_datetime(ended),
                                "outcome": outcome,
                                "counts": asdict(self.counts),
                                "log": "\n".join(self.log)[-20000:],
                            }
                        ],
                    )
                except SyncError:
                    _logger.warning("backend %s: could not report the run", self.bid)
        self._note(
            "run %s in %.1f s: %s",
            outcome,
            (self.clock() - started).total_seconds(),
            ", ".join(f"{k} {v}" for k, v in asdict(self.counts).items()),
        )
        return RunResult(self.bid, outcome, self.counts, self.log, run_id)

    def _has_model(self, model: str) -> bool:
        """Whether the server has ``model`` (the Invoicing app may be absent)."""
        try:
            self.gateway.fields(model)
        except PermanentError:
            self._note("%s is not installed: its streams are skipped", model)
            return False
        return True

    def _report_auth(self, err: SyncError) -> None:
        state = "needs_reauth" if isinstance(err, NeedsReauthorisation) else "invalid"
        try:
            self.gateway.call(
                "crm.sync.backend",
                "daemon_report_health",
                [
                    {
                        "backend_id": self.bid,
                        "credentials_state": state,
                        "message": str(err)[:250],
                    }
                ],
            )
            if state == "needs_reauth":
                self._raise_issues(
                    [
                        self._issue(
                            "needs_reauth",
                            f"{self.backend.name}: a person must authorise the "
                            f"connection again (crm-sync auth {self.bid})",
                        )
                    ]
                )
        except SyncError:
            _logger.warning(
                "backend %s: could not report the credentials state", self.bid
            )

    # -- step 1: links and erasure -----------------------------------------------------

    def _read_links(self, res_model: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        after = 0
        while True:
            page = self.gateway.call(
                "crm.sync.link",
                "daemon_read_links",
                self.bid,
                res_model,
                after_id=after,
                limit=self.page_size,
            )
            rows.extend(page)
            if len(page) < self.page_size:
                return rows
            after = page[-1]["id"]

    def _load_links(self) -> None:
        for row in self._read_links(PARTNER):
            if row.get("state") == "unlinked":
                continue
            link = _Link(
                int(row["id"]),
                int(row["res_id"]),
                str(row["external_id"]),
                row.get("sync_hash") or None,
                row.get("state") or "linked",
            )
            self.links[link.external_id] = link
            self.partner_links[link.res_id] = link.external_id
        if isinstance(self.connector, InvoiceSink) and self._has_model(MOVE):
            for row in self._read_links(MOVE):
                if row.get("state") != "unlinked":
                    self.move_links[int(row["res_id"])] = str(row["external_id"])

    def _detect_erasure(self) -> None:
        """Learn which partners were erased (GDPR), when the server has the flag.

        Erased partners are archived and anonymised by the add-on, so they must be
        searched with ``active_test`` off; their links are kept and get a local
        tombstone, so that even a link cleared later never leads to a re-create.
        """
        if ERASURE_FIELD not in self.gateway.fields(PARTNER):
            self.erased_field = None
            return
        self.erased_field = ERASURE_FIELD
        self.erased.update(
            self.gateway.call(
                PARTNER,
                "search",
                [(ERASURE_FIELD, "=", True)],
                context={"active_test": False},
            )
        )
        for external_id, link in self.links.items():
            if link.res_id in self.erased:
                self.state.add_tombstone(
                    self.bid, external_id, "partner erased in Odoo"
                )

    # -- step 2: admin actions ---------------------------------------------------------

    def _admin_actions(self) -> None:
        actions = self.gateway.call("crm.sync.issue", "daemon_fetch_actions", self.bid)
        if not actions:
            return
        resolved: list[dict[str, Any]] = []
        forced: dict[str, tuple[str, int | None]] = {}
        records: list[Customer] = []
        issue_of: dict[str, int] = {}
        for action in actions:
            issue_id = int(action["issue_id"])
            external_id = action.get("external_id") or ""
            kind = action.get("action")
            if kind == "ignore":
                if external_id:
                    self.state.add_tombstone(
                        self.bid, external_id, "ignored by an admin"
                    )
                    self.state.resolve_dead_letter(self.bid, external_id)
                resolved.append(
                    {"issue_id": issue_id, "state": "done", "note": "ignored"}
                )
                continue
            customer = self._payload_customer(action.get("payload"))
            group = self._payload_conflict_group(action.get("payload"))
            if customer is not None and group and kind != "retry":
                # a conflict is settled by Retry (take the remote's value) or
                # Ignore (keep Odoo's); linking or creating does not apply
                resolved.append(
                    {
                        "issue_id": issue_id,
                        "state": "open",
                        "note": f"a conflict on {group} is settled with Retry (take "
                        f"the {self.backend.name} value) or Ignore (keep Odoo's "
                        "value)",
                    }
                )
                continue
            if customer is not None and group:
                self._take_remote.setdefault(customer.external_id, set()).add(group)
            if customer is None:
                resolved.append(
                    {
                        "issue_id": issue_id,
                        "state": "open",
                        "note": "no record data on the issue: the action waits for "
                        "the record's next change in the remote",
                    }
                )
                continue
            if kind == "link" and action.get("partner_id"):
                forced[customer.external_id] = ("link", int(action["partner_id"]))
            elif kind == "create":
                forced[customer.external_id] = ("create", None)
            else:
                forced[customer.external_id] = ("retry", None)
            records.append(customer)
            issue_of[customer.external_id] = issue_id
        if records:
            page = self._process_customers(records, [], forced=forced)
            self.state.commit_page(self.bid, "customers", None, page.snapshots)
            failed = {i["external_id"] for i in page.issues}
            for external_id, issue_id in issue_of.items():
                if external_id in failed:
                    resolved.append(
                        {
                            "issue_id": issue_id,
                            "state": "open",
                            "note": "the action failed again",
                        }
                    )
                else:
                    self.state.resolve_dead_letter(self.bid, external_id)
                    resolved.append(
                        {"issue_id": issue_id, "state": "done", "note": "done"}
                    )
        self.gateway.call("crm.sync.issue", "daemon_resolve_issues", resolved)
        self._note("%d admin action(s) carried out", len(actions))

    @staticmethod
    def _payload_customer(payload: Any) -> Customer | None:
        """The remote record kept on an issue (conflicts keep it under ``record``)."""
        if not payload:
            return None
        try:
            data = json.loads(payload)
        except (TypeError, ValueError):
            return None
        if isinstance(data, dict) and isinstance(data.get("record"), dict):
            data = data["record"]
        try:
            return Customer.model_validate(data)
        except ValidationError:
            return None

    @staticmethod
    def _payload_conflict_group(payload: Any) -> str | None:
        """The field group of a conflict issue's payload, else None."""
        try:
            data = json.loads(payload) if payload else None
        except (TypeError, ValueError):
            return None
        if isinstance(data, dict) and data.get("group") in FIELD_GROUPS:
            return str(data["group"])
        return None

    # -- step 3: deletions -------------------------------------------------------------

    def _pull_deletions(self) -> None:
        assert isinstance(self.connector, DeletionSource)
        cursor = self.state.get_cursor(self.bid, "deletions")
        today = self.clock().date().isoformat()
        for page in self.connector.pull_deletions(cursor):
            unlink = []
            for deletion in page.records:
                if deletion.external_id in self.links:
                    when = (
                        deletion.deleted_at.date().isoformat()
                        if deletion.deleted_at
                        else today
                    )
                    unlink.append(
                        {
                            "backend_id": self.bid,
                            "res_model": PARTNER,
                            "external_id": deletion.external_id,
                            "note": f"deleted in {self.backend.name} on {when}",
                        }
                    )
            if unlink:
                self.gateway.call("crm.sync.link", "daemon_unlink_links", unlink)
                for vals in unlink:
                    link = self.links.pop(vals["external_id"])
                    self.partner_links.pop(link.res_id, None)
                self._note(
                    "%d link(s) cleared after deletions in the remote", len(unlink)
                )
            self.state.commit_page(self.bid, "deletions", page.cursor)
            if self.stop():
                raise RunStopped

    # -- step 4: pull customers --------------------------------------------------------

    def _pull_customers(self) -> None:
        assert isinstance(self.connector, CustomerSource)
        cursor = self.state.get_cursor(self.bid, "customers")
        done = 0
        records: list[Customer] = []
        rejected: list[tuple[str, Exception]] = []
        last_cursor: str | None = None

        def flush() -> None:
            nonlocal records, rejected, done, last_cursor
            result = self._process_customers(records, rejected)
            self.state.commit_page(self.bid, "customers", last_cursor, result.snapshots)
            done += len(records) + len(rejected)
            records, rejected, last_cursor = [], [], None
            self.progress("customers", done)

        # connector pages are gathered into batches of ``batch_size`` records so
        # that Odoo sees one create and one link upsert per batch
        for page in self.connector.pull_customers(cursor):
            records.extend(page.records)
            rejected.extend(page.rejected)
            last_cursor = page.cursor
            if len(records) + len(rejected) >= self.batch_size or self.stop():
                flush()
                if self.stop():
                    raise RunStopped
        if records or rejected or last_cursor:
            flush()

    def _match_index(self) -> MatchIndex:
        if self._index is None:
            # the full partner fields: rows of partners matched in this run are
            # then taken from here instead of being read again
            fields = [*PARTNER_READ_FIELDS, "peppol_eas", "peppol_endpoint"]
            if self.erased_field:
                fields.append(self.erased_field)
            index = MatchIndex(link_on_name_and_postcode=self.link_on_name_and_postcode)
            for page in self.gateway.search_read_pages(
                PARTNER,
                [],
                fields,
                page_size=self.page_size,
                context={"active_test": False},
            ):
                for row in page:
                    self._rows[row["id"]] = row
                    erased = self.erased_field and row.get(self.erased_field)
                    if erased or row["id"] in self.erased:
                        row = dict(row, erased=True)
                    cc = self.lookups.country_code(_m2o(row.get("country_id")))
                    index.add(partner_keys(row, cc))
            self._index = index
        return self._index

    def _read_partners(
        self, ids: Iterable[int]
    ) -> tuple[dict[int, dict[str, Any]], dict[int, list[dict[str, Any]]]]:
        ids = sorted(set(ids))
        if not ids:
            return {}, {}
        fields = list(PARTNER_READ_FIELDS)
        if self.erased_field:
            fields.append(self.erased_field)
        rows = {
            i: self._rows[i] for i in ids if i in self._rows and i not in self._touched
        }
        missing = [i for i in ids if i not in rows]
        if missing:
            rows.update(
                {row["id"]: row for row in self.gateway.read(PARTNER, missing, fields)}
            )
        children: dict[int, list[dict[str, Any]]] = {}
        if self.backend.owner("contacts") == "finance":
            for page in self.gateway.search_read_pages(
                PARTNER,
                [("parent_id", "in", ids), ("type", "=", "contact")],
                ["parent_id", "name", "email", "phone"],
                page_size=self.page_size,
            ):
                for child in page:
                    children.setdefault(int(_m2o(child["parent_id"]) or 0), []).append(
                        child
                    )
        return rows, children

    def _process_customers(
        self,
        records: Sequence[Customer],
        rejected: Sequence[tuple[str, Exception]],
        *,
        forced: Mapping[str, tuple[str, int | None]] | None = None,
    ) -> _Page:
        forced = forced or {}
        page = _Page()
        self.counts.pulled += len(records) + len(rejected)
        for external_id, err in rejected:
            page.issues.append(self._dead_letter("customers", external_id, err))
        records = self._known_countries(records, page)
        tombstones = self.state.tombstones(self.bid)
        recovered = self._recoverable_creates(records, tombstones)
        updates: list[tuple[Customer, int, bool]] = []
        creates: list[Customer] = []
        for customer in records:
            external_id = customer.external_id
            link = self.links.get(external_id)
            if external_id in tombstones or (link and link.res_id in self.erased):
                self.counts.unchanged += 1
                continue
            action, chosen = forced.get(external_id, ("", None))
            if link is not None:
                updates.append((customer, link.res_id, False))
                continue
            if external_id in recovered:
                # our own create reached Odoo before a crash: matching would take
                # that partner for a stranger of the same name; it is linked as
                # created (see _create_partners)
                creates.append(customer)
                continue
            if action == "link" and chosen:
                updates.append((customer, chosen, True))
                continue
            if action == "create":
                creates.append(customer)
                continue
            keys = customer_keys(customer)
            decision = self._match_index().match(keys)
            if decision.outcome == "new":
                twin = next(
                    (
                        (kind, self._new_strong[(kind, value)])
                        for kind, value in keys.strong().items()
                        if (kind, value) in self._new_strong
                    ),
                    None,
                )
                if twin is not None:
                    page.issues.append(
                        self._issue(
                            "duplicate",
                            f"{self.backend.name} record {external_id} has the same "
                            f"{twin[0]} as record {twin[1]}, created in Odoo in this "
                            "run: the remote holds a duplicate",
                            external_id=external_id,
                            payload=customer.model_dump_json(),
                        )
                    )
                    continue
                creates.append(customer)
                for kind, value in keys.strong().items():
                    self._new_strong.setdefault((kind, value), external_id)
            elif decision.outcome in ("link", "same") and decision.partner_id:
                updates.append((customer, decision.partner_id, True))
            else:
                page.issues.append(
                    self._issue(
                        "duplicate",
                        f"{self.backend.name} record {customer.name!s} "
                        f"({external_id}): "
                        f"{decision.explanation}",
                        external_id=external_id,
                        payload=customer.model_dump_json(),
                        suggestions=[
                            {
                                "partner_id": s.partner_id,
                                "score": s.score,
                                "reason": s.reason,
                            }
                            for s in decision.suggestions
                        ],
                    )
                )
        if updates:
            self._apply_updates(updates, page)
        if creates:
            self._create_partners(creates, page)
        self._upsert_links(page.links)
        self.state.intents_done(
            self.bid,
            [(e, self.links[e].res_id) for e in page.intents if e in self.links],
        )
        self._raise_issues(page.issues)
        return page

    def _apply_updates(
        self, updates: list[tuple[Customer, int, bool]], page: _Page
    ) -> None:
        claimed: dict[int, str] = {}
        kept = []
        for customer, partner_id, first in updates:
            # a partner is linked to one external record per backend: a second
            # remote record for it is a duplicate in the remote, not a new link
            owner = self.partner_links.get(partner_id) or claimed.get(partner_id)
            if first and owner and owner != customer.external_id:
                page.issues.append(
                    self._issue(
                        "duplicate",
                        f"{self.backend.name} record {customer.external_id} matches "
                        f"Odoo customer {partner_id}, already linked to record "
                        f"{owner}: the remote holds a duplicate",
                        external_id=customer.external_id,
                        payload=customer.model_dump_json(),
                        suggestions=[
                            {"partner_id": partner_id, "score": 1.0, "reason": "linked"}
                        ],
                    )
                )
                continue
            claimed.setdefault(partner_id, customer.external_id)
            kept.append((customer, partner_id, first))
        updates = kept
        rows, children = self._read_partners(pid for _, pid, _ in updates)
        decided: list[tuple[Customer, int, bool, dict[str, Any], dict[str, Any]]] = []
        for customer, partner_id, first in updates:
            external_id = customer.external_id
            row = rows.get(partner_id)
            if row is None:
                page.issues.append(
                    self._dead_letter(
                        "customers",
                        external_id,
                        DataError(
                            f"linked Odoo partner {partner_id} no longer exists",
                            record=f"res.partner {partner_id}",
                        ),
                        payload=customer.model_dump_json(),
                    )
                )
                continue
            if self.erased_field and row.get(self.erased_field):
                self.state.add_tombstone(
                    self.bid, external_id, "partner erased in Odoo"
                )
                self.counts.unchanged += 1
                continue
            remote = customer_groups(customer)
            odoo = partner_groups(row, self.lookups, children.get(partner_id, []))
            snapshot = self.state.snapshot(self.bid, external_id)
            write, agreed, conflicts = self._decide(
                remote, odoo, snapshot, self._take_remote.get(external_id, ())
            )
            for group, theirs, ours in conflicts:
                self.counts.conflicts += 1
                page.issues.append(
                    self._issue(
                        "conflict",
                        f"{group} changed in both Odoo and {self.backend.name} "
                        "since the "
                        f"last sync; Odoo kept its value until someone decides",
                        external_id=external_id,
                        res_model=PARTNER,
                        res_id=partner_id,
                        field_name=group,
                        payload={
                            "group": group,
                            "odoo": ours,
                            "remote": theirs,
                            "record": json.loads(customer.model_dump_json()),
                        },
                    )
                )
            values = (
                group_values(
                    customer,
                    write,
                    self.lookups,
                    existing_contacts=children.get(partner_id, []),
                )
                if write
                else {}
            )
            decided.append((customer, partner_id, first, values, agreed))
        # one batched write for the page (see OdooGateway.write_many)
        failures = self.gateway.write_many(
            PARTNER, {pid: values for _, pid, _, values, _ in decided if values}
        )
        for customer, partner_id, first, values, agreed in decided:
            external_id = customer.external_id
            if partner_id in failures:
                page.issues.append(
                    self._dead_letter(
                        "customers",
                        external_id,
                        failures[partner_id],
                        payload=customer.model_dump_json(),
                        res_model=PARTNER,
                        res_id=partner_id,
                    )
                )
                continue
            if values:
                self.counts.updated += 1
            elif not first:
                self.counts.unchanged += 1
            if first:
                self.counts.linked += 1
            self._touched.add(partner_id)
            page.snapshots[external_id] = (partner_id, agreed)
            link = self.links.get(external_id)
            new_hash = group_hash(agreed)
            if first or link is None or link.sync_hash != new_hash:
                page.links.append(
                    self._link_vals(
                        PARTNER,
                        partner_id,
                        RemoteRef(
                            external_id=external_id,
                            external_code=customer.external_code,
                        ),
                        new_hash,
                    )
                )

    def _decide(
        self,
        remote: Mapping[str, Any],
        odoo: Mapping[str, Any],
        snapshot: Mapping[str, Any] | None,
        take_remote: Iterable[str] = (),
    ) -> tuple[list[str], dict[str, Any], list[tuple[str, Any, Any]]]:
        """Which groups to write into Odoo, the new agreed values, the conflicts.

        ``take_remote`` names groups where an admin chose the remote's value on the
        workbench (*Retry* of a conflict): written into Odoo whoever owns them.
        """
        write: list[str] = []
        agreed: dict[str, Any] = {}
        conflicts: list[tuple[str, Any, Any]] = []
        chosen = set(take_remote)
        for group in FIELD_GROUPS:
            theirs, ours = remote[group], odoo[group]
            finance = self.backend.owner(group) == "finance"
            if group in chosen and group != "contacts":
                if theirs != ours:
                    write.append(group)
                agreed[group] = theirs
                continue
            if group == "payment_terms" and theirs is None:
                agreed[group] = ours
                continue
            if group == "contacts":
                # contacts are only ever added, never removed
                missing = [c for c in theirs if c not in ours]
                if finance and missing:
                    write.append(group)
                agreed[group] = (
                    ours
                    if not missing
                    else sorted({*map(tuple, ours), *map(tuple, theirs)})
                )
                agreed[group] = [list(c) for c in agreed[group]]
                continue
            if theirs == ours:
                agreed[group] = theirs
                continue
            if snapshot is None or group not in snapshot:
                if finance:
                    write.append(group)
                    agreed[group] = theirs
                else:
                    agreed[group] = ours
                continue
            base = snapshot[group]
            remote_changed, odoo_changed = theirs != base, ours != base
            if remote_changed and odoo_changed:
                conflicts.append((group, theirs, ours))
                agreed[group] = base
            elif remote_changed and finance:
                write.append(group)
                agreed[group] = theirs
            else:
                agreed[group] = base
        return write, agreed, conflicts

    def _keep_odoo_values(self) -> None:
        """Conflicts an admin settled with *Ignore* (keep Odoo's value) reach the
        remote: the linked record gets Odoo's data and the issue is closed.

        Runs after the pull, so that the remote's newer finance-owned changes are
        in Odoo before Odoo's record is sent back.
        """
        assert isinstance(self.connector, CustomerSink)
        try:
            rows = self.gateway.call(
                "crm.sync.issue",
                "search_read",
                [
                    ("backend_id", "=", self.bid),
                    ("kind", "=", "conflict"),
                    ("state", "=", "ignored"),
                    ("requested_action", "=", "ignore"),
                    ("res_model", "=", PARTNER),
                ],
                fields=["res_id", "external_id", "field_name"],
                order="id",
            )
        except PermanentError as err:
            # an add-on whose issues cannot be read like this (older, or a test
            # server with the daemon API only): the decisions stay in Odoo
            self._note("conflicts settled in Odoo's favour not read: %s", err)
            return
        if not rows:
            return
        fields = list(PARTNER_READ_FIELDS)
        if self.erased_field:
            fields.append(self.erased_field)
        partners = {
            row["id"]: row
            for row in self.gateway.read(
                PARTNER, sorted({int(r["res_id"]) for r in rows if r["res_id"]}), fields
            )
        }
        resolved: list[dict[str, Any]] = []
        issues: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        snapshots: dict[str, tuple[int | None, dict[str, Any]]] = {}
        for issue in rows:
            partner_id = int(issue["res_id"] or 0)
            external_id = str(issue["external_id"] or "")
            row = partners.get(partner_id)
            link = self.links.get(external_id)
            if (
                row is None
                or link is None
                or link.res_id != partner_id
                or partner_id in self.erased
                or (self.erased_field and row.get(self.erased_field))
            ):
                resolved.append(
                    {
                        "issue_id": issue["id"],
                        "state": "done",
                        "note": "Odoo's value kept; the record is no longer linked "
                        f"to {self.backend.name}: nothing sent",
                    }
                )
                continue
            try:
                self.connector.push_customer(
                    customer_from_partner(row, self.lookups, external_id=external_id),
                    external_id=external_id,
                    idempotency_key=f"keep-odoo-{issue['id']}",
                )
            except PermanentError as err:
                issues.append(
                    self._dead_letter(
                        "odoo_customers",
                        external_id,
                        err,
                        res_model=PARTNER,
                        res_id=partner_id,
                    )
                )
                continue
            groups = partner_groups(row, self.lookups)
            snapshot = dict(
                snapshots.get(external_id, (None, None))[1]
                or self.state.snapshot(self.bid, external_id)
                or {}
            )
            group = str(issue["field_name"] or "")
            if group in groups:
                snapshot[group] = groups[group]
            snapshots[external_id] = (partner_id, snapshot)
            links.append(
                self._link_vals(PARTNER, partner_id, external_id, group_hash(snapshot))
            )
            self._touched.add(partner_id)
            self.counts.updated += 1
            resolved.append(
                {
                    "issue_id": issue["id"],
                    "state": "done",
                    "note": f"Odoo's value kept and sent to {self.backend.name}",
                }
            )
        # the remote holds Odoo's values: links and snapshots, then the issues
        self._upsert_links(links)
        self.state.commit_page(self.bid, "customers", None, snapshots)
        self._raise_issues(issues)
        self.gateway.call("crm.sync.issue", "daemon_resolve_issues", resolved)
        self._note("%d conflict(s) settled in favour of Odoo", len(resolved))

    def _pending_creates(self) -> set[str]:
        """External ids whose partner create was journalled and never linked."""
        return {
            entry.local_ref
            for entry in self.state.outbox_entries(self.bid, "odoo_partner", "pending")
        }

    def _known_countries(
        self, records: Sequence[Customer], page: _Page
    ) -> list[Customer]:
        """The records whose country Odoo knows; the others become dead letters.

        Written as it is, an unknown code (``XX``) would become an empty country
        on create and erase the partner's country on update, silently.
        """
        known = self.lookups.countries()
        kept: list[Customer] = []
        for customer in records:
            code = customer.country_code
            if code and code not in known:
                err = DataError(
                    f"country code {code!r} is not a country known to Odoo",
                    record=f"customer {customer.external_id}",
                    field="country_code",
                )
                page.issues.append(
                    self._dead_letter(
                        "customers",
                        customer.external_id,
                        err,
                        payload=customer.model_dump_json(),
                    )
                )
            else:
                kept.append(customer)
        return kept

    def _create_values(self, customer: Customer) -> dict[str, Any]:
        values = group_values(customer, FIELD_GROUPS, self.lookups)
        values.update(
            is_company=customer.is_company,
            company_id=self.backend.company_id,
            customer_rank=1 if customer.is_customer else 0,
            supplier_rank=1 if customer.is_supplier else 0,
            email=customer.email or False,
            website=customer.website or False,
        )
        return values

    def _recoverable_creates(
        self, records: Sequence[Customer], tombstones: Iterable[str]
    ) -> set[str]:
        """Unlinked records whose journalled create is found in Odoo (a crash
        between Odoo's create and the link)."""
        pending = self._pending_creates()
        if not pending:
            return set()
        skip = set(tombstones)
        candidates = [
            c
            for c in records
            if c.external_id in pending
            and c.external_id not in self.links
            and c.external_id not in skip
        ]
        found = self._find_created([self._create_values(c) for c in candidates])
        return {
            c.external_id
            for c, partner_id in zip(candidates, found, strict=True)
            if partner_id
        }

    def _create_partners(self, customers: list[Customer], page: _Page) -> None:
        """Create partners in one call, journalled so a crash cannot duplicate them."""
        pending = self._pending_creates()
        values_list = [self._create_values(customer) for customer in customers]
        # a partner whose create may have reached Odoo before a crash is found again
        recovered = (
            self._find_created(
                [
                    v
                    for c, v in zip(customers, values_list, strict=True)
                    if c.external_id in pending
                ]
            )
            if pending
            else []
        )
        recovered_iter = iter(recovered)
        ids: list[int | None] = []
        todo: list[int] = []
        for index, customer in enumerate(customers):
            found = next(recovered_iter) if customer.external_id in pending else None
            ids.append(found)
            if found is None:
                todo.append(index)
        self.state.intents_pending(self.bid, [customers[i].external_id for i in todo])
        created = self._create_batch(
            [customers[i] for i in todo], [values_list[i] for i in todo], page
        )
        for index, new_id in zip(todo, created, strict=True):
            ids[index] = new_id
        for customer, new_id in zip(customers, ids, strict=True):
            if not new_id:
                continue
            self.counts.created += 1
            agreed = customer_groups(customer)
            page.snapshots[customer.external_id] = (new_id, agreed)
            page.links.append(
                self._link_vals(
                    PARTNER,
                    new_id,
                    RemoteRef(
                        external_id=customer.external_id,
                        external_code=customer.external_code,
                    ),
                    group_hash(agreed),
                )
            )
            page.intents.append(customer.external_id)
            self._touched.add(new_id)
            if self._index is not None:
                keys = customer_keys(customer)
                self._index.add(replace(keys, id=new_id, commercial_id=new_id))

    def _create_batch(
        self, customers: list[Customer], values_list: list[dict[str, Any]], page: _Page
    ) -> list[int | None]:
        if not customers:
            return []
        try:
            return list(
                self.gateway.create(
                    PARTNER, values_list, find_existing=self._find_created
                )
            )
        except PermanentError as err:
            if len(customers) == 1:
                page.issues.append(
                    self._dead_letter(
                        "customers",
                        customers[0].external_id,
                        err,
                        payload=customers[0].model_dump_json(),
                    )
                )
                return [None]
        # isolate the bad record(s): halves until single records
        middle = len(customers) // 2
        return self._create_batch(
            customers[:middle], values_list[:middle], page
        ) + self._create_batch(customers[middle:], values_list[middle:], page)

    def _find_created(self, values_list: list[dict[str, Any]]) -> list[int | None]:
        """Partners this daemon user created with these values and not yet linked."""
        if not values_list:
            return []
        names = sorted({v["name"] for v in values_list})
        rows = self.gateway.search_read_all(
            PARTNER,
            [("create_uid", "=", self.gateway.uid), ("name", "in", names)],
            ["name", "vat", "zip"],
            context={"active_test": False},
        )
        taken = set(self.partner_links)
        found: list[int | None] = []
        for values in values_list:
            match = next(
                (
                    row["id"]
                    for row in rows
                    if row["id"] not in taken
                    and row["name"] == values["name"]
                    and (row.get("vat") or False) == (values.get("vat") or False)
                    and (row.get("zip") or False) == (values.get("zip") or False)
                ),
                None,
            )
            if match is not None:
                taken.add(match)
            found.append(match)
        return found

    # -- step 5: push ------------------------------------------------------------------

    def _outbound(
        self,
        kind: str,
        local_ref: str,
        find: Callable[[], RemoteRef | None],
        push: Callable[[str], RemoteRef],
    ) -> RemoteRef:
        """Create remotely at most once: look up first, key every send, look up again
        after a lost answer before any re-send."""
        entry = self.state.outbox_begin(self.bid, kind, local_ref)
        if entry.state == "done" and entry.external_id:
            return RemoteRef(
                external_id=entry.external_id, external_code=entry.external_code
            )
        ref = self.retry.call(find)
        if ref is None:
            self.state.outbox_mark_sending(entry.key)
            try:
                ref = push(entry.key)
            except RetryableError as err:
                _logger.warning(
                    "backend %s: %s %s: answer lost (%s); looking it up before "
                    "any re-send",
                    self.bid,
                    kind,
                    local_ref,
                    type(err).__name__,
                )
                ref = self.retry.call(find)
                if ref is None:
                    ref = push(entry.key)
        self.state.outbox_done(entry.key, ref.external_id, ref.external_code)
        return ref

    def _partner_domain(self) -> list[Any]:
        domain: list[Any] = [
            ("parent_id", "=", False),
            "|",
            ("company_id", "=", False),
            ("company_id", "=", self.backend.company_id),
        ]
        if self.gateway.has_field(PARTNER, "customer_rank"):
            domain.append(("customer_rank", ">", 0))
        return domain

    def _push_customers(self) -> None:
        assert isinstance(self.connector, CustomerSink)
        since = self.state.get_cursor(self.bid, "odoo_customers")
        mark = odoo_datetime(self.clock() - timedelta(seconds=5))
        domain = self._partner_domain()
        if since:
            domain.append(("write_date", ">=", since))
        if self._touched:
            # partners written by this run's pull are in sync already
            domain.append(("id", "not in", sorted(self._touched)))
        fields = list(PARTNER_READ_FIELDS)
        if self.erased_field:
            fields.append(self.erased_field)
        pushed = 0
        links: list[dict[str, Any]] = []
        issues: list[dict[str, Any]] = []
        snapshots: dict[str, tuple[int | None, dict[str, Any]]] = {}

        def flush() -> None:
            # links first in Odoo, then the agreed values locally
            nonlocal links, issues, snapshots
            self._upsert_links(links)
            self._raise_issues(issues)
            self.state.commit_page(self.bid, "odoo_customers_page", None, snapshots)
            links, issues, snapshots = [], [], {}
            self.progress("odoo customers", pushed)

        for rows in self.gateway.search_read_pages(
            PARTNER, domain, fields, page_size=self.page_size
        ):
            for row in rows:
                partner_id = row["id"]
                if partner_id in self._touched or partner_id in self.erased:
                    continue
                if self.erased_field and row.get(self.erased_field):
                    continue
                external_id = self.partner_links.get(partner_id)
                customer = customer_from_partner(
                    row, self.lookups, external_id=external_id or f"odoo:{partner_id}"
                )
                try:
                    if external_id:
                        groups = partner_groups(row, self.lookups)
                        snapshot = self.state.snapshot(self.bid, external_id) or {}
                        changed = [
                            g
                            for g in FIELD_GROUPS
                            if g != "contacts"
                            and self.backend.owner(g) == "sales"
                            and g in snapshot
                            and groups[g] != snapshot[g]
                        ]
                        if not changed:
                            continue
                        self.connector.push_customer(
                            customer,
                            external_id=external_id,
                            idempotency_key=f"update-{partner_id}-{group_hash(groups)}",
                        )
                        agreed = {**snapshot, **{g: groups[g] for g in changed}}
                        snapshots[external_id] = (partner_id, agreed)
                        links.append(
                            self._link_vals(
                                PARTNER, partner_id, external_id, group_hash(agreed)
                            )
                        )
                        self.counts.updated += 1
                    else:
                        ref = self._outbound(
                            "customer",
                            str(partner_id),
                            lambda c=customer: self.connector.find_customer(c),  # type: ignore[union-attr]
                            lambda key, c=customer: self.connector.push_customer(  # type: ignore[union-attr]
                                c, external_id=None, idempotency_key=key
                            ),
                        )
                        groups = partner_groups(row, self.lookups)
                        snapshots[ref.external_id] = (partner_id, groups)
                        links.append(
                            self._link_vals(
                                PARTNER, partner_id, ref, group_hash(groups)
                            )
                        )
                        self.counts.created += 1 if ref.created else 0
                        self.counts.linked += 0 if ref.created else 1
                    pushed += 1
                except PermanentError as err:
                    issues.append(
                        self._dead_letter(
                            "odoo_customers",
                            f"odoo:{partner_id}",
                            err,
                            res_model=PARTNER,
                            res_id=partner_id,
                        )
                    )
            # one link upsert per batch, not per page read
            if len(links) + len(issues) >= self.batch_size or self.stop():
                flush()
                if self.stop():
                    raise RunStopped
        flush()
        self.state.set_cursor(self.bid, "odoo_customers", mark)

    def _push_consent_withdrawals(self) -> None:
        """Consent withdrawals and expiries in Odoo reach the remote's opt-out.

        Reads the add-on's ``daemon_consent_changes`` after the stored event id;
        for a withdrawn or expired marketing purpose sent by e-mail or post, the
        remote record linked to that partner is excluded from mailings. Erased
        partners are left to the person handling their erasure issue. The cursor
        moves after each page; repeating an exclusion is harmless. A withdrawal
        of a partner that has no remote record yet is kept in the state store
        (``consent_pending``) and applied once a link exists, unless the person
        was erased in the meantime.
        """
        assert isinstance(self.connector, MarketingSink)
        after = int(self.state.get_cursor(self.bid, "consent_events") or 0)
        pending: set[tuple[int, str]] = {
            (int(partner_id), str(purpose))
            for partner_id, purpose in json.loads(
                self.state.get_cursor(self.bid, "consent_pending") or "[]"
            )
        }
        marketing: dict[str, bool] = {}
        excluded = 0
        issues: list[dict[str, Any]] = []
        done: set[tuple[str, str]] = set()

        def exclude(partner_id: int, external_id: str, purpose: str) -> None:
            nonlocal excluded
            if (external_id, purpose) in done:
                return
            try:
                self.connector.exclude_from_marketing(external_id, purpose=purpose)
            except PermanentError as err:
                issues.append(
                    self._dead_letter(
                        "consent",
                        external_id,
                        err,
                        res_model=PARTNER,
                        res_id=partner_id,
                    )
                )
                return
            done.add((external_id, purpose))
            excluded += 1

        def save_pending() -> None:
            self.state.set_cursor(
                self.bid, "consent_pending", json.dumps(sorted(pending))
            )

        for partner_id, purpose in sorted(pending):
            external_id = self.partner_links.get(partner_id)
            if partner_id in self.erased:
                pending.discard((partner_id, purpose))
            elif external_id:
                exclude(partner_id, external_id, purpose)
                pending.discard((partner_id, purpose))
        self._raise_issues(issues)
        issues = []
        save_pending()
        while True:
            events = self.gateway.call(
                CONSENT_EVENT, "daemon_consent_changes", after, self.page_size
            )
            if not events:
                break
            codes = sorted({str(e["purpose"]) for e in events} - set(marketing))
            if codes:
                for row in self.gateway.call(
                    "crm.consent.purpose",
                    "search_read",
                    [("code", "in", codes)],
                    fields=["code", "is_marketing"],
                    context={"active_test": False},
                ):
                    marketing[str(row["code"])] = bool(row["is_marketing"])
            for event in events:
                partner_id = int(event.get("partner_id") or 0)
                external_id = self.partner_links.get(partner_id)
                purpose = str(event["purpose"])
                if event.get("kind") not in ("withdraw", "expire"):
                    # an erasure: its sync issue takes over from a waiting withdrawal
                    pending.discard((partner_id, purpose))
                    continue
                if (
                    event.get("erased")
                    or partner_id in self.erased
                    or not marketing.get(purpose, True)
                    or event.get("channel") not in MAILING_CHANNELS
                ):
                    continue
                if not external_id:
                    if partner_id:
                        pending.add((partner_id, purpose))
                    continue
                exclude(partner_id, external_id, purpose)
            self._raise_issues(issues)
            issues = []
            after = int(events[-1]["id"])
            save_pending()
            self.state.set_cursor(self.bid, "consent_events", str(after))
            if len(events) < self.page_size:
                break
        if excluded:
            self._note("%d record(s) excluded from mailings (consent)", excluded)

    def _ensure_buyer(self, partner_id: int) -> str | None:
        external_id = self.partner_links.get(partner_id)
        if external_id or not isinstance(self.connector, CustomerSink):
            return external_id
        fields = list(PARTNER_READ_FIELDS)
        [row] = self.gateway.read(PARTNER, [partner_id], fields)
        customer = customer_from_partner(row, self.lookups)
        connector = self.connector
        ref = self._outbound(
            "customer",
            str(partner_id),
            lambda: connector.find_customer(customer),
            lambda key: connector.push_customer(
                customer, external_id=None, idempotency_key=key
            ),
        )
        self._upsert_links(
            [
                self._link_vals(
                    PARTNER,
                    partner_id,
                    ref,
                    group_hash(partner_groups(row, self.lookups)),
                )
            ]
        )
        return ref.external_id

    def _push_invoices(self) -> None:
        assert isinstance(self.connector, InvoiceSink)
        connector = self.connector
        since = self.state.get_cursor(self.bid, "odoo_invoices")
        mark = odoo_datetime(self.clock() - timedelta(seconds=5))
        reader = odoo_invoices.InvoiceReader(
            self.gateway, self.lookups, page_size=self.page_size
        )
        sent = 0
        gate = self._peppol_gate
        for batch in reader.posted_customer_invoices(
            self.backend.company_id,
            since=since,
            skip=set(self.move_links),
            where=[(PEPPOL_STATE_FIELD, "in", [False, "to_send"])] if gate else (),
            pending=(PEPPOL_STATE_FIELD, "=", "to_send") if gate else None,
        ):
            links, issues = [], []
            statuses: list[dict[str, Any]] = []
            readiness = self._buyer_readiness({b for _, b, _ in batch}) if gate else {}
            for move_id, buyer_id, invoice in batch:
                if isinstance(invoice, Exception):
                    issues.append(
                        self._dead_letter(
                            "odoo_invoices",
                            f"account.move:{move_id}",
                            invoice,
                            res_model=MOVE,
                            res_id=move_id,
                        )
                    )
                    if gate:
                        statuses.append(self._to_fix(move_id, invoice))
                    continue
                ready, participant = readiness.get(buyer_id, ("unknown", None))
                if gate and ready != "can_receive":
                    # wait for the readiness, or leave the invoice to e-mail/paper
                    statuses.append(
                        self._peppol_status(
                            move_id,
                            "not_applicable" if ready == "cannot" else "to_send",
                            f"buyer's Peppol readiness: {ready}",
                        )
                    )
                    continue
                try:
                    if buyer_id in self.erased:
                        raise DataError(
                            f"invoice {invoice.number}: the buyer's personal data "
                            "was erased; "
                            "handle it in the ledger by hand",
                            record=f"account.move {move_id}",
                            field="partner_id",
                        )
                    buyer_external = self._ensure_buyer(buyer_id)
                    invoice = invoice.model_copy(
                        update={"buyer_external_id": buyer_external}
                    )
                    if gate and participant:
                        invoice = _to_participant(invoice, participant)
                    ref = self._outbound(
                        "invoice",
                        str(move_id),
                        lambda inv=invoice: connector.find_invoice(inv),
                        lambda key, inv=invoice: connector.push_invoice(
                            inv, idempotency_key=key
                        ),
                    )
                    links.append(self._link_vals(MOVE, move_id, ref))
                    self.counts.created += 1
                    sent += 1
                    if gate:
                        state = DELIVERY_STATES.get(ref.external_code or "", "sent")
                        statuses.append(self._peppol_status(move_id, state))
                except PermanentError as err:
                    issues.append(
                        self._dead_letter(
                            "odoo_invoices",
                            f"account.move:{move_id}",
                            err,
                            res_model=MOVE,
                            res_id=move_id,
                        )
                    )
                    if gate and (isinstance(err, DataError) or _rules(err)):
                        # refused (by us or the access point) for the document's
                        # content: a fatal result never leaves the building
                        statuses.append(self._to_fix(move_id, err))
            self._upsert_links(links)
            self._raise_issues(issues)
            self._set_peppol_status(statuses)
            self.progress("invoices", sent)
            if self.stop():
                raise RunStopped
        self.state.set_cursor(self.bid, "odoo_invoices", mark)

    # -- step 5b: Peppol readiness and delivery ---------------------------------------

    def _has_readiness(self) -> bool:
        """A connector that looks participants up and an add-on that caches it."""
        return isinstance(self.connector, ParticipantLookup) and self.gateway.has_field(
            PARTNER, READINESS_FIELD
        )

    def _has_peppol_state(self) -> bool:
        return self.gateway.has_field(MOVE, PEPPOL_STATE_FIELD)

    def _refresh_readiness(self) -> None:
        """Ask the directory about customers never checked, unknown or checked too
        long ago (oldest first, at most ``readiness_batch``); one write."""
        assert isinstance(self.connector, ParticipantLookup)
        connector = self.connector
        has_id = [
            (name, "!=", False)
            for name in self.gateway.known_fields(
                PARTNER, ("peppol_endpoint", "vat", "company_registry")
            )
        ]
        if not has_id:
            return
        stale = odoo_datetime(
            self.clock() - timedelta(days=self.readiness_max_age_days)
        )
        # customers, and prospects of opportunities (sales want to know before
        # the deal is won), themselves or through one of their contacts
        who: list[Any] = []
        if self.gateway.has_field(PARTNER, "customer_rank"):
            who.append(("customer_rank", ">", 0))
        if self.gateway.has_field(PARTNER, "opportunity_ids"):
            who.append(("opportunity_ids", "!=", False))
            who.append(("child_ids.opportunity_ids", "!=", False))
        domain = [
            ("parent_id", "=", False),
            "|",
            ("company_id", "=", False),
            ("company_id", "=", self.backend.company_id),
            *["|"] * (len(who) - 1),
            *who,
            *["|"] * (len(has_id) - 1),
            *has_id,
            "|",
            "|",
            (READINESS_FIELD, "in", [False, "unknown"]),
            (CHECKED_AT_FIELD, "=", False),
            (CHECKED_AT_FIELD, "<", stale),
        ]
        fields = self.gateway.known_fields(
            PARTNER,
            ("vat", "company_registry", "peppol_eas", "peppol_endpoint", "country_id"),
        )
        rows = self.gateway.call(
            PARTNER,
            "search_read",
            domain,
            fields=fields,
            limit=self.readiness_batch,
            order=f"{CHECKED_AT_FIELD} asc nulls first, id asc",
        )
        values: list[dict[str, Any]] = []
        for row in rows:
            if row["id"] in self.erased:
                continue
            eas, endpoint = row.get("peppol_eas"), row.get("peppol_endpoint")
            try:
                answer = connector.participant_status(
                    f"{eas}:{endpoint}" if eas and endpoint else None,
                    vat=row.get("vat") or None,
                    company_registry=row.get("company_registry") or None,
                    country=self.lookups.country_code(_m2o(row.get("country_id"))),
                )
                state = answer.state if answer.state in READINESS_STATES else "unknown"
                participant, checked = answer.participant_id, answer.checked_at
            except SyncError as err:
                _logger.info(
                    "backend %s: readiness of partner %s unknown: %s",
                    self.bid,
                    row["id"],
                    err,
                )
                state, participant, checked = "unknown", None, self.clock()
            if checked.tzinfo is None:
                checked = checked.replace(tzinfo=UTC)
            values.append(
                {
                    "partner_id": row["id"],
                    "readiness": state,
                    "participant_id": participant or False,
                    "checked_at": odoo_datetime(checked),
                }
            )
        if values:
            self.gateway.call(PARTNER, "daemon_set_peppol_readiness", values)
            ready = sum(1 for v in values if v["readiness"] == "can_receive")
            self._note(
                "Peppol readiness checked for %d partners (%d can receive)",
                len(values),
                ready,
            )

    def _buyer_readiness(
        self, partner_ids: Iterable[int]
    ) -> dict[int, tuple[str, str | None]]:
        """(readiness, participant id found) of the buyers."""
        ids = sorted(i for i in partner_ids if i)
        if not ids:
            return {}
        return {
            int(row["id"]): (
                str(row.get(READINESS_FIELD) or "unknown"),
                row.get(PARTICIPANT_FIELD) or None,
            )
            for row in self.gateway.read(
                PARTNER, ids, [READINESS_FIELD, PARTICIPANT_FIELD]
            )
        }

    def _peppol_status(
        self,
        move_id: int,
        state: str,
        message: str = "",
        rules: Sequence[str] = (),
    ) -> dict[str, Any]:
        return {
            "move_id": move_id,
            "state": state,
            "message": message[:2000],
            "rules": list(rules),
            "at": odoo_datetime(self.clock()),
        }

    def _to_fix(self, move_id: int, err: Exception) -> dict[str, Any]:
        message = getattr(err, "message", None) or str(err)
        return self._peppol_status(move_id, "to_fix", message, _rules(err))

    def _set_peppol_status(self, statuses: list[dict[str, Any]]) -> None:
        if not statuses:
            return
        try:
            self.gateway.call(MOVE, "daemon_set_peppol_status", statuses)
        except DataError as err:
            if len(statuses) == 1:
                self._note(
                    "Peppol state of account.move %s not stored: %s",
                    statuses[0]["move_id"],
                    err,
                )
                return
            # one bad item refuses the batch: store the others
            middle = len(statuses) // 2
            self._set_peppol_status(statuses[:middle])
            self._set_peppol_status(statuses[middle:])

    def _poll_deliveries(self) -> None:
        """Ask the access point where invoices sent earlier are; write changes."""
        assert isinstance(self.connector, DeliveryTracker)
        connector = self.connector
        if not self.move_links:
            return
        rows = self.gateway.call(
            MOVE,
            "search_read",
            [
                ("id", "in", sorted(self.move_links)),
                (PEPPOL_STATE_FIELD, "in", OPEN_PEPPOL_STATES),
            ],
            fields=[PEPPOL_STATE_FIELD, "name"],
            limit=self.delivery_batch,
            order="id asc",
        )
        statuses: list[dict[str, Any]] = []
        issues: list[dict[str, Any]] = []
        for row in rows:
            move_id = int(row["id"])
            external_id = self.move_links[move_id]
            try:
                answer = connector.delivery_status(external_id)
            except SyncError as err:
                _logger.info(
                    "backend %s: delivery of %s not known: %s",
                    self.bid,
                    external_id,
                    err,
                )
                continue
            state = DELIVERY_STATES.get(answer.status)
            if state is None or state == row.get(PEPPOL_STATE_FIELD):
                continue
            statuses.append(self._peppol_status(move_id, state, answer.message or ""))
            self.counts.updated += 1
            if state == "failed":
                issues.append(
                    self._issue(
                        "remote_error",
                        f"invoice {row.get('name') or move_id} was not delivered "
                        f"over Peppol: {answer.message or 'no reason given'}",
                        external_id=external_id,
                        res_model=MOVE,
                        res_id=move_id,
                        field_name="delivery",
                    )
                )
        self._set_peppol_status(statuses)
        self._raise_issues(issues)
        if statuses:
            self._note("Peppol delivery status changed for %d invoices", len(statuses))

    # -- step 6: payments and e-invoices -----------------------------------------------

    def _pull_payments(self) -> None:
        assert isinstance(self.connector, PaymentSource)
        cursor = self.state.get_cursor(self.bid, "payments")
        for page in self.connector.pull_payments(cursor):
            applied, problems = odoo_invoices.apply_payments(
                self.gateway, page.records, self.backend.company_id, self.clock()
            )
            self.counts.pulled += len(page.records)
            self.counts.updated += applied
            issues = [
                self._dead_letter("payments", number, err, res_model=MOVE)
                for number, err in problems
            ]
            self._raise_issues(issues)
            self.state.commit_page(self.bid, "payments", page.cursor)
            if self.stop():
                raise RunStopped

    def _pull_einvoices(self) -> None:
        assert isinstance(self.connector, EInvoiceSource)
        cursor = self.state.get_cursor(self.bid, "einvoices")
        for page in self.connector.pull_einvoices(cursor):
            created, problems = odoo_invoices.create_vendor_bills(
                self.gateway,
                self.lookups,
                page.records,
                self.backend.company_id,
                self._match_index,
            )
            self.counts.pulled += len(page.records) + len(page.rejected)
            self.counts.created += created
            issues = [
                self._dead_letter("einvoices", external_id, err, res_model=MOVE)
                for external_id, err in problems
            ]
            # documents the connector refused (unsafe XML, not UBL, failed
            # validation): an invalid_data issue each, then taken off the inbox
            # (the dead letter keeps them locally; the access point keeps the file)
            issues.extend(
                self._dead_letter("einvoices", external_id, err)
                for external_id, err in page.rejected
            )
            self._raise_issues(issues)
            failed = {external_id for external_id, _ in problems}
            done = [
                i.external_id
                for i in page.records
                if i.external_id and i.external_id not in failed
            ]
            done.extend(external_id for external_id, _ in page.rejected)
            self.state.commit_page(self.bid, "einvoices", page.cursor)
            if done:
                self.connector.acknowledge(done)
            if self.stop():
                raise RunStopped


def _m2o(value: Any) -> int | None:
    if isinstance(value, list | tuple):
        return int(value[0]) if value else None
    return int(value) if value else None


def _rules(err: Exception) -> list[str]:
    """Rule ids a refusal carries (``rules`` or ``details["rules"]``), if any."""
    rules = getattr(err, "rules", None) or (getattr(err, "details", None) or {}).get(
        "rules"
    )
    return [str(rule) for rule in rules or ()]


def _to_participant(invoice: Invoice, participant: str) -> Invoice:
    """Address the invoice to the participant id the directory answered for.

    The buyer's own endpoint may be another scheme (Odoo proposes 9925 for a
    Belgian VAT) under which the buyer is not registered.
    """
    scheme, _, ident = participant.partition(":")
    if not (scheme and ident):
        return invoice
    buyer = invoice.buyer.model_copy(
        update={"endpoint_scheme": scheme, "endpoint_id": ident}
    )
    return invoice.model_copy(update={"buyer": buyer})
