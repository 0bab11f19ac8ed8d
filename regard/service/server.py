"""`regard serve`: run the service with uvicorn, in this process or in several worker processes.

One worker serves in this process. Several are processes that this one starts (multiprocessing,
spawn), each handed the ServiceConfig and the listening socket as arguments: each builds the app
from that configuration, loads the models once and opens the store. Nothing of Regard's goes
through the environment (the one exception is prometheus_client's own PROMETHEUS_MULTIPROC_DIR,
below). This process watches them: a worker that dies is logged and replaced; one that could
not start (a store it cannot open, models that do not load) stops the service, since its
replacement would fail the same way. SIGHUP replaces the workers one at a time.

On SIGTERM/SIGINT uvicorn stops accepting connections and lets requests in flight finish (up to
`graceful_seconds`); then `serve` returns (exit status 0), after a last audit checkpoint.

With `metrics_at` (`--metrics-address HOST:PORT`) the Prometheus metrics (regard/service/metrics.py)
are served on that address, a listener of their own and never the API's port: they name
collections and their sizes, and a reverse proxy publishing the API must not publish them. One
worker serves them from a thread. With several, this process makes a private folder, hands it to
the workers as PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode: each worker writes
its figures there), serves their sum with the store's figures, and removes the folder at the end.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from regard.errors import RegardError
from regard.service.state import ServiceConfig

log = logging.getLogger("regard.service")
supervisor_log = logging.getLogger("uvicorn.error")  # beside uvicorn's own lines, in its format

STARTUP_FAILURE = 3
"""The exit status of a server that could not start (uvicorn's)."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REPLACEMENT_SECONDS = 300.0
"""On SIGHUP, how long a new worker may take to start (load the models) before the restart is given up."""


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with Nagle's algorithm off on every connection.

    asyncio turns TCP_NODELAY on only for sockets it recognises as TCP; the listening socket handed
    to worker processes (--workers > 1) may come back without its protocol number, so
    without this each response waited ~40 ms for the client's delayed ACK (measured: 44 ms per GET
    with 2 workers against 1.4 ms with 1)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        super().connection_made(transport)  # type: ignore[arg-type]


class Checkpointing:
    """Signs the audit log's head every `seconds` and appends it to a file, in a thread of the
    serving process (the one that starts the workers), and once more at shutdown."""

    def __init__(self, key: Path, file: Path, seconds: float) -> None:
        from regard.auditlog import checkpoint

        checkpoint.load_key(key)  # a missing or wrong key stops `serve` before it starts
        self.key, self.file, self.seconds = key, file, max(1.0, seconds)
        self._stop = threading.Event()

    def once(self, store_url: str | None) -> None:
        from regard.auditlog import checkpoint
        from regard.store import open_store

        store = open_store(store_url)
        try:
            signed = checkpoint.sign_head(store, self.key)
        except RegardError as exc:  # an empty or broken log: said in the log, tried again later
            log.warning("no audit checkpoint written: %s", exc)
            return
        finally:
            store.close()
        checkpoint.append(self.file, signed)
        log.info("audit checkpoint: entry #%d %s -> %s", signed.seq, signed.hash, self.file)

    def start(self, store_url: str | None) -> None:
        def run() -> None:
            while not self._stop.wait(self.seconds):
                try:
                    self.once(store_url)
                except Exception:  # never take the service down; say why in its log
                    log.exception("audit checkpoint failed")

        threading.Thread(target=run, name="regard-audit-checkpoints", daemon=True).start()

    def stop(self, store_url: str | None) -> None:
        self._stop.set()
        try:
            self.once(store_url)
        except Exception:
            log.exception("audit checkpoint at shutdown failed")


@dataclass(frozen=True)
class Uvicorn:
    """How each server runs, in whichever process (picklable: a worker process is handed it)."""

    graceful_seconds: int = 30
    log_level: str = "info"
    log_format: str = "text"  # or "json": one JSON object per line (regard/service/observe.py)
    trusted_proxies: str | None = None
    """Addresses (comma-separated, CIDR allowed) whose X-Forwarded-For and X-Forwarded-Proto are
    believed (`--trusted-proxy`): then logs show the client's address and the console sees HTTPS
    (its session cookie is marked Secure). None: no proxy header is believed, from anyone."""

    def config(self, app: Any, **where: Any) -> uvicorn.Config:
        from regard.service.observe import log_config

        logging_config = log_config(self.log_format, self.log_level)
        extra: dict[str, Any] = {} if logging_config is None else {"log_config": logging_config, "access_log": False}
        return uvicorn.Config(
            app,
            **extra,
            workers=1,  # each server is one process; `serve` starts the others itself
            timeout_graceful_shutdown=self.graceful_seconds,
            log_level=self.log_level,
            proxy_headers=self.trusted_proxies is not None,
            forwarded_allow_ips=self.trusted_proxies or "",
            http=NoDelayH11Protocol,
            server_header=False,
            # The request body limit is enforced by the app (LimitsMiddleware) in the caller's dialect.
            limit_concurrency=None,
            **where,
        )


class _Server(uvicorn.Server):
    """uvicorn's server, saying when it has started (models loaded, listening)."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None) -> None:
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.on_started is not None:
            self.on_started()


def serve_app(
    config: ServiceConfig,
    how: Uvicorn,
    sockets: list[socket.socket] | None = None,
    *,
    on_started: Callable[[], None] | None = None,
    **where: Any,
) -> bool:
    """Build the app from `config` and serve it (on `sockets`, else at `where`: host and port)
    until SIGTERM/SIGINT. Whether the server started; one whose startup failed raises SystemExit.

    uvicorn handles the signal while it serves (the graceful shutdown) and raises it again once
    done; the handler set here takes that second one, so the process goes on to its end (exit
    status 0, the last audit checkpoint) instead of dying of it. A signal that comes before
    uvicorn takes over stops the server before it serves."""
    from regard.service.app import create_app

    server: _Server | None = None
    early = threading.Event()

    def on_signal(sig: int, frame: FrameType | None) -> None:
        early.set()
        if server is not None:
            server.should_exit = True

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        server = _Server(how.config(create_app(config), **where), on_started)
        if early.is_set():  # stopped before it served: nothing to shut down
            return True
        server.run(sockets=sockets)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return server.started


def _worker(config: ServiceConfig, how: Uvicorn, sock: socket.socket, started: Event) -> None:
    """A worker process: the service on the listening socket it was handed."""
    if not serve_app(config, how, [sock], on_started=started.set):
        raise SystemExit(STARTUP_FAILURE)


@dataclass
class _Child:
    process: BaseProcess
    started: Event  # set by the worker once it serves


class Workers:
    """`count` worker processes serving one listening socket, each handed the configuration, kept
    at `count` until SIGTERM/SIGINT."""

    def __init__(
        self, config: ServiceConfig, how: Uvicorn, sock: socket.socket, count: int, gone: Callable[[int], None] | None = None
    ) -> None:
        self.config, self.how, self.sock, self.count = config, how, sock, max(1, count)
        self.gone = gone  # told the pid of each worker that ended (the metrics' live gauges)
        self._context = multiprocessing.get_context("spawn")  # nothing of this process is shared
        self._signals: list[int] = []
        self.children: list[_Child] = []

    def start_one(self) -> _Child:
        started = self._context.Event()
        process = self._context.Process(
            target=_worker, args=(self.config, self.how, self.sock, started), name="regard-worker"
        )  # fmt: skip
        process.start()
        supervisor_log.info("Started worker process [%d]", process.pid)
        return _Child(process, started)

    def run(self) -> bool:
        """Serve until SIGTERM/SIGINT, then stop the workers gracefully. False when a worker could
        not start (the others are stopped then too)."""

        def on_signal(sig: int, frame: FrameType | None) -> None:
            self._signals.append(sig)

        handled = (*STOP_SIGNALS, signal.SIGHUP)
        previous = {sig: signal.signal(sig, on_signal) for sig in handled}
        try:
            self.children = [self.start_one() for _ in range(self.count)]
            while not self._stopping():
                wait([c.process.sentinel for c in self.children], timeout=0.5)
                if signal.SIGHUP in self._signals:
                    self._signals = [s for s in self._signals if s != signal.SIGHUP]
                    self._replace_all()
                if not self._replace_dead():
                    return False
            return True
        finally:
            self._stop(self.children)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stopping(self) -> bool:
        return any(sig in STOP_SIGNALS for sig in self._signals)

    def _replace_dead(self) -> bool:
        """Replace the workers that died; False when one of them could not start."""
        for i, child in enumerate(self.children):
            process = child.process
            if process.is_alive() or self._stopping():
                continue
            process.join()
            self._ended(process)
            if process.exitcode == STARTUP_FAILURE:
                supervisor_log.error("Worker process [%d] could not start; stopping the service", process.pid)
                return False
            supervisor_log.error("Worker process [%d] died (exit status %s); starting another", process.pid, process.exitcode)
            self.children[i] = self.start_one()
        return True

    def _replace_all(self) -> None:
        """SIGHUP: each worker in turn gives way to a new one once that one serves (the old one
        finishes its requests in flight). A new one that does not start keeps the old ones."""
        supervisor_log.info("Received SIGHUP, replacing the worker processes")
        for i, old in enumerate(self.children):
            new = self.start_one()
            deadline = time.monotonic() + REPLACEMENT_SECONDS
            while not new.started.wait(0.5):
                if self._stopping() or not new.process.is_alive() or time.monotonic() > deadline:
                    if not self._stopping():
                        supervisor_log.error(
                            "Worker process [%d] did not start; keeping the others", new.process.pid
                        )  # fmt: skip
                    self._stop([new])
                    return
            self.children[i] = new
            self._stop([old])

    def _stop(self, children: list[_Child]) -> None:
        """SIGTERM, then up to the graceful time (and a little more to close the store) before SIGKILL."""
        for child in children:
            if child.process.is_alive():
                child.process.terminate()
        deadline = time.monotonic() + self.how.graceful_seconds + 10
        for child in children:
            process = child.process
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                supervisor_log.error("Worker process [%d] did not stop in time; killed", process.pid)
                process.kill()
                process.join()
            self._ended(process)

    def _ended(self, process: BaseProcess) -> None:
        if self.gone is not None and process.pid is not None:
            self.gone(process.pid)


MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def _worker_metrics(metrics_at: tuple[str, int] | None, store_url: str | None) -> Iterator[Callable[[int], None] | None]:
    """With several workers and a metrics address: the workers' folder for their figures, set for
    them to inherit, and the listener serving their sum (see the module's docstring). What to call
    when a worker ends."""
    if metrics_at is None:
        yield None
        return
    # Imported before the variable is set: prometheus_client chooses where values live when it is
    # first imported, and this process keeps its own in memory (it records nothing itself).
    from regard.service import metrics

    folder = tempfile.mkdtemp(prefix="regard-metrics-")  # mode 700: this user's only
    previous = os.environ.get(MULTIPROC_DIR)
    # prometheus_client's own variable, read by prometheus_client as each worker imports it:
    # spawned workers inherit this process's environment as it is when they start, before they
    # import anything. Regard's own settings are still read only by regard/config.py.
    os.environ[MULTIPROC_DIR] = folder
    listener = None
    try:
        listener = metrics.MetricsListener(metrics_at, store_url, metrics.multiprocess_registry(folder))
        yield lambda pid: metrics.worker_gone(folder, pid)
    finally:
        if listener is not None:
            listener.close()
        if previous is None:
            os.environ.pop(MULTIPROC_DIR, None)
        else:
            os.environ[MULTIPROC_DIR] = previous
        shutil.rmtree(folder, ignore_errors=True)


def serve(
    config: ServiceConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    graceful_seconds: int = 30,
    log_level: str = "info",
    log_format: str = "text",
    checkpoints: Checkpointing | None = None,
    metrics_at: tuple[str, int] | None = None,
    trusted_proxies: str | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (see the module's docstring); SystemExit(STARTUP_FAILURE) when
    the service could not start. `metrics_at`: (host, port) of the metrics listener, else none."""
    how = Uvicorn(graceful_seconds=graceful_seconds, log_level=log_level, log_format=log_format, trusted_proxies=trusted_proxies)
    if checkpoints is not None:
        checkpoints.once(config.store_url)  # fail early on a bad key, and anchor the start
        checkpoints.start(config.store_url)
    try:
        if workers <= 1:
            listener = None
            if metrics_at is not None:
                from regard.service.metrics import MetricsListener

                listener = MetricsListener(metrics_at, config.store_url)  # this process's own figures
            try:
                started = serve_app(config, how, host=host, port=port)
            finally:
                if listener is not None:
                    listener.close()
        else:
            # Bound here, once, and handed to every worker (and to the replacement of one that dies).
            sock = how.config(None, host=host, port=port).bind_socket()  # no app is loaded here
            try:
                with _worker_metrics(metrics_at, config.store_url) as gone:
                    started = Workers(config, how, sock, workers, gone).run()
            finally:
                sock.close()
    finally:
        if checkpoints is not None:
            checkpoints.stop(config.store_url)
    if not started:
        raise SystemExit(STARTUP_FAILURE)
