"""Prometheus metrics of `regard serve`, served only with `--metrics-address HOST:PORT`.

They are served on a listener of their own, never on the API's port: the figures name collections
and say how many faces each holds, and a reverse proxy that publishes the API port must not be
able to publish them too. Prometheus scrapes the host's private address (e.g. 127.0.0.1:9464, or
an address on the monitoring network); anything at that address answers with the metrics.

    regard_http_requests_total{operation,method,status}       counter
    regard_http_request_duration_seconds{operation,method}    histogram (1 ms .. 60 s)
    regard_faces_detected_total                               counter: faces found by POST /v1/detect and DetectFaces
    regard_searches_total{collection,purpose_hash}            counter: 1:N searches
    regard_model_load_seconds                                 gauge: how long a worker took to load its models
    regard_store_up, regard_store_collections,                gauges read from the store at each scrape
    regard_store_faces{collection}, regard_store_persons{collection}, regard_audit_log_entries

`operation` is the Rekognition operation (X-Amz-Target, one of the operations Regard provides) or
the route's template for the native API and the console ("/v1/collections/{collection_id}"),
never the raw path, so that the number of series stays bounded; a path no route serves is
"other". `purpose_hash` is the first 12 hex digits of the sha256 of the purpose the search
declared (the one its audit entry records): which purposes a collection was searched for can be
told apart without publishing them.

One worker (`--workers 1`): its process serves the metrics from a thread. Several workers:
prometheus_client's multiprocess mode; `regard serve` (regard/service/server.py) gives the workers
a private folder for their figures and serves their sum.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("regard.service")

disable_created_metrics()  # no *_created series: the same series with one worker as with several
REGISTRY = CollectorRegistry()
"""This process's metrics (not prometheus_client's global registry, nor its process collectors)."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"

REQUESTS = Counter(
    "regard_http_requests", "Requests answered, by operation (Rekognition operation or route template), method and status",
    ["operation", "method", "status"], registry=REGISTRY,
)  # fmt: skip
LATENCY = Histogram(
    "regard_http_request_duration_seconds", "Time to answer a request, by operation and method",
    ["operation", "method"], buckets=LATENCY_BUCKETS, registry=REGISTRY,
)  # fmt: skip
FACES_DETECTED = Counter(
    "regard_faces_detected", "Faces found by the detection operations (POST /v1/detect, DetectFaces)", registry=REGISTRY
)
SEARCHES = Counter(
    "regard_searches", "1:N searches run, by collection and the hash of the purpose the search declared (sha256, 12 hex digits)",
    ["collection", "purpose_hash"], registry=REGISTRY,
)  # fmt: skip
MODEL_LOAD = Gauge(
    "regard_model_load_seconds", "Seconds a worker took to load and verify its models (the slowest live worker)",
    registry=REGISTRY, multiprocess_mode="livemax",
)  # fmt: skip


# ---------------------------------------------------------------- what the service's code calls


def faces_detected(count: int) -> None:
    FACES_DETECTED.inc(count)


def purpose_hash(purpose: str) -> str:
    return hashlib.sha256(purpose.encode("utf-8")).hexdigest()[:12]


def searched(collection_id: str, purpose: str) -> None:
    """A 1:N search of the collection was run (after it succeeded), for `purpose`: the purpose the
    search declared, as its audit entry records it (hashed: the text is never exposed). Reads
    nothing: a search costs the store no extra query for its metric."""
    SEARCHES.labels(collection=collection_id, purpose_hash=purpose_hash(purpose)).inc()


def models_loaded(seconds: float) -> None:
    MODEL_LOAD.set(seconds)


@lru_cache(maxsize=1)
def _operations() -> frozenset[str]:
    from regard.service.rekognition.endpoint import OPERATIONS

    return frozenset(OPERATIONS)


def _routes(routes: Iterable[Any]) -> Iterator[Any]:
    """The app's routes, those of included routers among them (recent FastAPI keeps an included
    router whole, as `original_router`; older versions copy its routes into the app's)."""
    for route in routes:
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        if inner is not None:
            yield from _routes(inner)
        else:
            yield route


def _template(scope: dict[str, Any]) -> str:
    """The template of the route that served (or would serve) the request, else "other"."""
    from starlette.routing import Match, Mount

    route = scope.get("route")  # what FastAPI's routing leaves for its own routes
    if route is None:  # a mount (the console's files), or refused before routing (the limits)
        app = scope.get("app")
        routes = _routes(getattr(getattr(app, "router", None), "routes", None) or [])
        # A mount has moved root_path down to itself; match from the app's own root.
        probe = {**scope, "root_path": scope.get("app_root_path", scope.get("root_path", ""))}
        partial = None
        for candidate in routes:
            match, _ = candidate.matches(probe)
            if match == Match.FULL:
                route = candidate
                break
            if match == Match.PARTIAL and partial is None:
                partial = candidate
        route = route or partial
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return OTHER
    return f"{path}/{{path}}" if isinstance(route, Mount) else path or "/"


def request_done(scope: dict[str, Any], operation: str | None, status: int, seconds: float) -> None:
    """Count one answered request (RequestLog, regard/service/observe.py). `operation`: the
    Rekognition operation its X-Amz-Target names, if any (as the client sent it)."""
    try:
        method = scope.get("method", "")
        method = method if method in _METHODS else OTHER
        if operation is not None or (scope.get("path") == "/" and method == "POST"):
            label = operation if operation in _operations() else OTHER
        else:
            label = _template(scope)
        REQUESTS.labels(operation=label, method=method, status=str(status)).inc()
        LATENCY.labels(operation=label, method=method).observe(seconds)
    except Exception:  # noqa: BLE001 - never fail an answer for its metric
        log.exception("the request metrics failed")


# ---------------------------------------------------------------- read from the store at each scrape


class StoreCollector(Collector):
    """The store's size, read when Prometheus scrapes: collections, faces and persons by
    collection, audit-log entries. Its own connection, opened at the first scrape (never
    creating a store), in whichever process serves the metrics."""

    def __init__(self, store_url: str | None) -> None:
        self.store_url = store_url
        self._store: Any = None
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        return []  # registering it reads nothing from the store

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            try:
                if self._store is None:
                    from regard.store import open_store

                    self._store = open_store(self.store_url, create=False)
                collections = self._store.list_collections()
                # The log is append-only from seq 1 (deletion is refused): the newest seq is its length.
                newest = self._store.backend.audit_entries(newest_first=True, limit=1)
            except Exception as exc:  # noqa: BLE001 - said as regard_store_up 0 and in the log
                log.warning("the store's metrics could not be read: %s", exc)
                self._close()
                yield GaugeMetricFamily("regard_store_up", "Whether the store answered this scrape", value=0)
                return
        yield GaugeMetricFamily("regard_store_up", "Whether the store answered this scrape", value=1)
        yield GaugeMetricFamily("regard_store_collections", "Collections in the store", value=len(collections))
        faces = GaugeMetricFamily("regard_store_faces", "Faces enrolled, by collection", labels=["collection"])
        persons = GaugeMetricFamily("regard_store_persons", "Persons, by collection", labels=["collection"])
        for c in collections:
            faces.add_metric([c.id], c.face_count)
            persons.add_metric([c.id], c.person_count)
        yield faces
        yield persons
        yield GaugeMetricFamily("regard_audit_log_entries", "Entries in the audit log", value=newest[0].seq if newest else 0)

    def _close(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            except Exception:  # noqa: BLE001, S110 - it is being given up anyway
                pass
            self._store = None

    def close(self) -> None:
        with self._lock:
            self._close()


# ---------------------------------------------------------------- the listener


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT ([IPv6]:PORT) as (host, port); ValueError if it is not one."""
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"not HOST:PORT: {text!r} (e.g. 127.0.0.1:9464)")
    return host, int(port)


class MetricsListener:
    """The metrics endpoint on (host, port), in a thread of this process: `registry` (this
    process's own metrics, by default) and the store's figures."""

    def __init__(self, address: tuple[str, int], store_url: str | None, registry: CollectorRegistry | None = None) -> None:
        from regard.errors import InvalidArgumentError

        self.registry = registry or REGISTRY
        self.store = StoreCollector(store_url)
        self.registry.register(self.store)
        host, port = address
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            self.registry.unregister(self.store)
            raise InvalidArgumentError(f"cannot serve the metrics on {host}:{port}: {exc}") from None
        log.info("metrics on http://%s:%d/metrics (keep this address private)", host, self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.registry.unregister(self.store)
        self.store.close()


def multiprocess_registry(folder: str) -> CollectorRegistry:
    """The sum of the workers' figures in `folder` (prometheus_client's multiprocess mode)."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    return registry


def worker_gone(folder: str, pid: int) -> None:
    """A worker ended: its live gauges leave the sum (its counts stay in it)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, folder)
