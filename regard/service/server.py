"""`regard serve`: run the service with uvicorn, one or several worker processes.

Workers are separate processes (each loads the models once and opens the store); they read the
service settings from the environment, which `serve` fills from its options. On SIGTERM/SIGINT
uvicorn stops accepting connections and lets requests in flight finish (up to `graceful_seconds`).
"""

from __future__ import annotations

import asyncio
import os
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol

from regard.service.app import ServiceConfig


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with Nagle's algorithm off on every connection.

    asyncio turns TCP_NODELAY on only for sockets it recognises as TCP; the listening socket that
    uvicorn hands to worker processes (--workers > 1) comes back without its protocol number, so
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


def serve(
    config: ServiceConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    graceful_seconds: int = 30,
    log_level: str = "info",
) -> None:
    import uvicorn

    os.environ.update(config.to_env())
    uvicorn.run(
        "regard.service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_graceful_shutdown=graceful_seconds,
        log_level=log_level,
        proxy_headers=False,
        http="regard.service.server:NoDelayH11Protocol",
        server_header=False,
        # The request body limit is enforced by the app (LimitsMiddleware) in the caller's dialect.
        limit_concurrency=None,
    )
