"""Plumbing shared by the two Sage sandboxes: a loopback HTTP server and faults.

:class:`LoopbackServer` runs a :class:`http.server.ThreadingHTTPServer` bound to
127.0.0.1 in a background thread (``start``/``stop``/``url``). :class:`FaultPlan`
decides, deterministically from a seed, which requests fail and how:

- ``5xx``: answered 503 before anything is done;
- ``timeout``: the request is carried out, then the answer is held back longer than
  a client should wait (``delay`` seconds);
- ``reset``: the request is carried out, then the TCP connection is reset without
  an answer.

The last two are the "after commit" faults that make blind retries create
duplicates.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "FaultPlan",
    "LoopbackServer",
    "MovableClock",
    "QuietHandler",
    "install_stop_signals",
    "run_until_signalled",
]

_logger = logging.getLogger(__name__)

#: The only address the sandboxes ever listen on.
LOOPBACK = "127.0.0.1"


class MovableClock:
    """Real UTC time plus an offset that tests can move forward."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._fixed = start
        self._offset = timedelta()

    def __call__(self) -> datetime:
        with self._lock:
            base = self._fixed if self._fixed is not None else datetime.now(UTC)
            return base + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)


@dataclass
class FaultPlan:
    """Which requests fail: ``rate`` in [0, 1], ``kinds`` among 5xx/timeout/reset."""

    rate: float = 0.0
    kinds: tuple[str, ...] = ("5xx", "timeout", "reset")
    #: Kinds the X3 sandbox also knows: ``busy`` (pool busy), ``no_ws`` (HTTP 500).
    delay: float = 0.5
    seed: int = 7
    injected: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must lie in [0, 1], got {self.rate}")
        unknown = set(self.kinds) - {"5xx", "timeout", "reset", "busy", "no_ws"}
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._forced: list[tuple[str, str | None]] = []

    def force(self, kind: str, method: str | None = None) -> None:
        """Make the next request fail with ``kind``.

        ``method`` narrows it to one HTTP method (REST) or SOAP operation (X3).
        """
        if kind not in {"5xx", "timeout", "reset", "busy", "no_ws"}:
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._forced.append((kind, method))

    def draw(self, method: str | None = None) -> str | None:
        """The fault for the next request, or ``None``."""
        with self._lock:
            for index, (kind, wanted) in enumerate(self._forced):
                if wanted is None or wanted == method:
                    del self._forced[index]
                    self.injected[kind] = self.injected.get(kind, 0) + 1
                    return kind
            if self.rate <= 0 or self._rng.random() >= self.rate:
                return None
            kind = self._rng.choice(self.kinds)
            self.injected[kind] = self.injected.get(kind, 0) + 1
            return kind


class QuietHandler(BaseHTTPRequestHandler):
    """Request handler that logs at DEBUG and can reset its connection."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes; without this, Nagle's algorithm and
        # delayed ACKs add ~40 ms to every keep-alive answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        _logger.debug("sandbox %s " + format, self.server.name, *args)

    def reset_connection(self) -> None:
        """Drop the connection with a TCP reset and no answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            # The client gave up (timeout fault); nothing left to tell it.
            self.close_connection = True

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, port: int, handler: type[QuietHandler], name: str, app: Any
    ) -> None:
        super().__init__((LOOPBACK, port), handler)
        self.name = name
        self.app = app

    def handle_error(self, request: Any, client_address: Any) -> None:
        _logger.debug("sandbox %s: connection error", self.name, exc_info=True)


class LoopbackServer:
    """A background HTTP server on 127.0.0.1 serving ``handler`` for ``app``."""

    def __init__(
        self, *, port: int, handler: type[QuietHandler], name: str, app: Any
    ) -> None:
        self._port = port
        self._handler = handler
        self._name = name
        self._app = app
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` once started."""
        if self._server is None:
            raise RuntimeError(f"sandbox {self._name} is not started")
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = _Server(self._port, self._handler, self._name, self._app)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{self._name}",
            daemon=True,
        )
        self._thread.start()
        _logger.info("sandbox %s listening on %s", self._name, self.url)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None


def install_stop_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM; call it first thing in a ``main``.

    Installed before the server starts, so a signal that arrives while the banner
    is printed still stops the sandbox cleanly. Outside the main thread (a
    ``main`` run by a test in a thread) no handler can be installed; the event is
    then only set by whoever holds it.
    """
    done = threading.Event()
    if threading.current_thread() is threading.main_thread():

        def handle(signum: int, frame: object) -> None:
            done.set()

        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGTERM, handle)
    return done


def run_until_signalled(stop: Callable[[], None], done: threading.Event) -> None:
    """Block until ``done`` is set (see :func:`install_stop_signals`), then stop."""
    try:
        while not done.wait(0.2):
            pass
    finally:
        stop()
