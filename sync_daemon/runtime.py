"""The daemon assembled: settings in, Odoo gateway, connectors, engine, scheduler.

:class:`Daemon` is what the CLI commands use. It finds each backend's connector
through the entry-point group ``crm_sync.connectors`` by the backend's ``kind``
(a backend section may name another factory with ``factory = "module:function"``,
which is how tests and local experiments plug the test double in), builds its
:class:`~sync_daemon.kernel.protocol.ConnectorContext` with the backend's section
of the configuration and the shared token store, and runs it.

Each run gets its own Odoo connection, so backends can run in parallel threads
without sharing a company context.

A ``peppol`` backend of a company for which Odoo's own ``account_peppol`` can send
(:func:`odoo_sends_peppol`) gets ``odoo_account_peppol = true`` in its settings; its
connector then refuses to start unless the section says which side sends
(``sending = "odoo"`` or ``"daemon"``), so no invoice leaves twice.
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib.metadata import entry_points
from types import FrameType
from typing import Any

from .config import DaemonSettings
from .engine import BackendConfig, BackendRun, RunResult
from .gateway import OdooGateway
from .kernel.errors import ConfigurationError, SyncError
from .kernel.protocol import Connector, ConnectorContext, ConnectorFactory, HealthReport
from .retry import RetryPolicy
from .scheduler import Scheduler
from .state import InstanceLock, SqliteTokenStore, StateStore

__all__ = [
    "ODOO_PEPPOL_SENDING_STATES",
    "Daemon",
    "load_factory",
    "odoo_sends_peppol",
]

_logger = logging.getLogger(__name__)

#: ``res.company.account_peppol_proxy_state`` values in which Odoo 18 sends
#: invoices over Peppol itself (``account_edi_proxy_client.user``'s
#: ``_get_can_send_domain``).
ODOO_PEPPOL_SENDING_STATES = frozenset({"sender", "smp_registration", "receiver"})
_PEPPOL_STATE = "account_peppol_proxy_state"


def odoo_sends_peppol(gateway: OdooGateway, company_id: int) -> bool:
    """Whether Odoo's ``account_peppol`` is installed and can send for the company."""
    if _PEPPOL_STATE not in gateway.fields("res.company"):
        return False  # account_peppol is not installed
    rows = gateway.read("res.company", [company_id], [_PEPPOL_STATE])
    return bool(rows) and rows[0].get(_PEPPOL_STATE) in ODOO_PEPPOL_SENDING_STATES


def load_factory(kind: str, override: str | None = None) -> ConnectorFactory:
    """The connector factory of a backend kind (or ``module:function``)."""
    if override:
        module, _, name = override.partition(":")
        try:
            return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
        except (ImportError, AttributeError) as err:
            raise ConfigurationError(
                f"connector factory {override} not found: {err}"
            ) from err
    for ep in entry_points(group="crm_sync.connectors"):
        if ep.name == kind:
            try:
                return ep.load()  # type: ignore[no-any-return]
            except (ImportError, AttributeError) as err:
                raise ConfigurationError(
                    f"the {kind} connector is installed but cannot be loaded: {err}"
                ) from err
    raise ConfigurationError(f"no connector installed for backend kind {kind!r}")


class Daemon:
    """One daemon process: settings, state, and the means to run backends.

    :param settings: validated configuration.
    :param clock: the current UTC time (tests pass a fake).
    :param sleep: waits (tests pass a fake).
    """

    def __init__(
        self,
        settings: DaemonSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] | None = None,
        factories: Mapping[str, ConnectorFactory] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.factories = dict(factories or {})
        self.state_dir = settings.state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state = StateStore(self.state_dir)
        self.tokens = SqliteTokenStore(self.state.path)
        self.scheduler: Scheduler | None = None
        self.rpc_calls = 0
        self._stop = threading.Event()

    # -- Odoo -------------------------------------------------------------------------

    def gateway(self) -> OdooGateway:
        odoo = self.settings.odoo
        return OdooGateway(
            odoo.url,
            odoo.database,
            odoo.login,
            odoo.api_key.get_secret_value(),
            transport=odoo.transport,
            timeout=odoo.timeout,
            retry=RetryPolicy(sleep=self.sleep) if self.sleep else RetryPolicy(),
        ).connect()

    def backends(self, gateway: OdooGateway | None = None) -> list[BackendConfig]:
        gateway = gateway or self.gateway()
        rows = gateway.call("crm.sync.backend", "daemon_get_config")
        self.rpc_calls += gateway.calls
        return [BackendConfig.from_odoo(row) for row in rows]

    # -- connectors -------------------------------------------------------------------

    def connector(
        self, backend: BackendConfig, gateway: OdooGateway | None = None
    ) -> Connector:
        """Build the backend's connector; ``gateway`` lets it learn Odoo's side."""
        section = self.settings.backend_settings(backend.id)
        if (
            backend.kind == "peppol"
            and gateway is not None
            and odoo_sends_peppol(gateway, backend.company_id)
        ):
            section["odoo_account_peppol"] = True
        factory = self.factories.get(backend.kind) or load_factory(
            backend.kind, section.get("factory")
        )
        context = ConnectorContext(
            backend_id=backend.id,
            settings=section,
            tokens=self.tokens,
            clock=self.clock,
            sleep=self.sleep or _real_sleep,
        )
        return factory(context)

    # -- running ----------------------------------------------------------------------

    def run_backend(
        self,
        backend: BackendConfig,
        *,
        progress: Callable[[str, int], None] | None = None,
    ) -> RunResult:
        """One run of one backend, with its own Odoo connection."""
        gateway = self.gateway()
        try:
            connector = self.connector(backend, gateway)
        except ConfigurationError as err:
            # the backend cannot start: say why on the backend in Odoo as well
            try:
                self._report_health(
                    gateway, [(backend, HealthReport("invalid", str(err)))]
                )
            except SyncError:
                _logger.warning("backend %s: could not report the refusal", backend.id)
            self.rpc_calls += gateway.calls
            raise
        try:
            run = BackendRun(
                gateway=gateway,
                state=self.state,
                backend=backend,
                connector=connector,
                page_size=self.settings.page_size,
                batch_size=self.settings.batch_size,
                link_on_name_and_postcode=self.settings.link_on_name_and_postcode,
                stop=self._stop.is_set,
                progress=progress,
                clock=self.clock,
            )
            return run.run()
        finally:
            connector.close()
            self.rpc_calls += gateway.calls

    def once(
        self,
        backend_id: int | None = None,
        *,
        progress: Callable[[BackendConfig, str, int], None] | None = None,
    ) -> list[RunResult]:
        """One cycle: every backend (or one) once, in turn."""
        backends = self.backends()
        if backend_id is not None:
            backends = [b for b in backends if b.id == backend_id]
            if not backends:
                raise ConfigurationError(
                    f"crm.sync.backend {backend_id} does not exist, is archived or "
                    "is not visible to the daemon user"
                )
        results = []
        for backend in backends:
            report: Callable[[str, int], None] | None = None
            if progress is not None:
                report = lambda stream, done, b=backend: progress(b, stream, done)  # noqa: E731
            try:
                results.append(self.run_backend(backend, progress=report))
            except SyncError as err:
                _logger.error("backend %s: %s", backend.id, err)
                results.append(
                    RunResult(backend.id, "failed", _empty_counts(), [str(err)])
                )
            if self._stop.is_set():
                break
        return results

    def check(self) -> list[tuple[BackendConfig, HealthReport]]:
        """Reach every backend's remote and report the credentials state to Odoo."""
        gateway = self.gateway()
        found = []
        for backend in self.backends(gateway):
            try:
                connector = self.connector(backend, gateway)
                try:
                    report = connector.check()
                finally:
                    connector.close()
            except ConfigurationError as err:
                report = HealthReport("missing", str(err))
            except SyncError as err:
                state = (
                    "needs_reauth"
                    if "reauth" in type(err).__name__.lower()
                    else "invalid"
                )
                report = HealthReport(state, str(err))
            found.append((backend, report))
        self._report_health(gateway, found)
        return found

    @staticmethod
    def _report_health(
        gateway: OdooGateway, found: list[tuple[BackendConfig, HealthReport]]
    ) -> None:
        if not found:
            return
        gateway.call(
            "crm.sync.backend",
            "daemon_report_health",
            [
                {
                    "backend_id": backend.id,
                    "credentials_state": report.credentials_state,
                    "message": report.message[:250],
                }
                for backend, report in found
            ],
        )

    def stop(self, *_: Any) -> None:
        """Finish the current page of every running job, then exit."""
        _logger.info("stop requested: finishing the current batch")
        self._stop.set()
        if self.scheduler is not None:
            self.scheduler.stop()

    def run_forever(self, *, install_signals: bool = True) -> None:
        """The daemon: one per state directory, until SIGTERM/SIGINT."""
        with InstanceLock(self.state_dir):
            poll_gateway: dict[str, OdooGateway] = {}

            def load() -> list[BackendConfig]:
                if "g" not in poll_gateway:
                    poll_gateway["g"] = self.gateway()
                try:
                    return self.backends(poll_gateway["g"])
                except SyncError:
                    poll_gateway.pop("g", None)
                    raise

            def ack(ids: list[int]) -> None:
                if "g" in poll_gateway:
                    poll_gateway["g"].call(
                        "crm.sync.backend", "daemon_ack_run_requests", ids
                    )

            self.scheduler = Scheduler(
                load_backends=load,
                run_backend=lambda backend: self.run_backend(backend),
                ack_requests=ack,
                last_started=self.state.last_started,
                clock=self.clock,
                sleep=self.sleep,
                poll_seconds=self.settings.poll_seconds,
            )
            if install_signals:
                signal.signal(signal.SIGTERM, self._on_signal)
                signal.signal(signal.SIGINT, self._on_signal)
            self.scheduler.run_forever()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        _logger.info("signal %s received", signum)
        self.stop()


def _real_sleep(seconds: float) -> None:
    threading.Event().wait(seconds)


def _empty_counts() -> Any:
    from .engine import RunCounts

    return RunCounts()
