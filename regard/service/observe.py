"""What the service says about each request: a request id, echoed in the `X-Request-Id` response
header, and one log line per request on the `regard.access` logger. `regard serve --log-format
json` writes those lines (and every other log line) as JSON objects, one per line, for a log
collector; the default is uvicorn's text lines.

A client may send its own `X-Request-Id` (1 to 64 of A-Z a-z 0-9 . _ -); anything else gets a
new random one, so a log line can always be found from a response.

Each request is also counted for the Prometheus metrics (regard/service/metrics.py: by operation,
method and status, and its latency), which `regard serve --metrics-address` serves apart.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from regard.service import metrics
from regard.service.errors import Receive, Scope, Send
from regard.service.state import REKOGNITION_PATH

access = logging.getLogger("regard.access")
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TARGET = "RekognitionService."


class RequestLog:
    """ASGI middleware: the request id, its response header, and the request's log line."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        given = headers.get("x-request-id", "")
        request_id = given if _CLIENT_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            path = scope.get("path", "")
            target = headers.get("x-amz-target", "")
            operation = target[len(_TARGET):] if path == REKOGNITION_PATH and target.startswith(_TARGET) else None
            access.info(
                "%s %s %s %d %.1f ms", request_id, scope.get("method"), path, status, (time.perf_counter() - started) * 1000,
                extra={"request": {"id": request_id, "method": scope.get("method"), "path": path, "operation": operation,
                                   "status": status, "ms": round((time.perf_counter() - started) * 1000, 1)}},
            )  # fmt: skip
            metrics.request_done(scope, operation, status, seconds)


class JsonFormatter(logging.Formatter):
    """A log record as one JSON object: time, level, logger, message, and the request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = getattr(record, "request", None)
        if isinstance(request, dict):
            line.update(request={k: v for k, v in request.items() if v is not None})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def log_config(log_format: str, level: str = "info") -> dict[str, Any] | None:
    """uvicorn's `log_config` for a log format: None for "text" (uvicorn's own), else JSON lines on
    stderr for Regard's and uvicorn's loggers (uvicorn's access lines off: regard.access has them)."""
    if log_format == "text":
        return None
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    loggers = {name: {"handlers": ["json"], "level": level.upper(), "propagate": False}
               for name in ("regard", "uvicorn", "uvicorn.error")}  # fmt: skip
    loggers["uvicorn.access"] = {"handlers": [], "level": "WARNING", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "regard.service.observe.JsonFormatter"}},
        "handlers": {"json": handler},
        "loggers": loggers,
    }
