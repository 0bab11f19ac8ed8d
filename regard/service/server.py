"""`regard serve`: run the service with uvicorn, one or several worker processes.

Workers are separate processes (each loads the models once and opens the store); they read the
service settings from the environment, which `serve` fills from its options. On SIGTERM/SIGINT
uvicorn stops accepting connections and lets requests in flight finish (up to `graceful_seconds`).
"""

from __future__ import annotations

import os

from regard.service.app import ServiceConfig


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
        server_header=False,
        # The request body limit is enforced by the app (LimitsMiddleware) in the caller's dialect.
        limit_concurrency=None,
    )
