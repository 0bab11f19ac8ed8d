"""The limits every request meets before the app: the body size, JSON that cannot be parsed safely,
and the request time; refused in the caller's dialect."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from regard.service import jsonbody
from regard.service.errors import Receive, Scope, Send, send_error
from regard.service.state import REKOGNITION_PATH, ServiceConfig

log = logging.getLogger("regard.service")


class LimitsMiddleware:
    """Refuses request bodies over the limit (before the app reads them) and answers 503 to a
    request that runs longer than the timeout. Bodies are read here once and replayed to the app."""

    def __init__(self, app: Callable[..., Awaitable[None]], config: ServiceConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.config.max_body_bytes
        too_large = f"the request body is over the limit of {limit:,} bytes (images up to {self.config.max_image_bytes:,} bytes)"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_error(scope, send, 413, "image_too_large", "ImageTooLargeException", too_large)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await send_error(scope, send, 413, "image_too_large", "ImageTooLargeException", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"").decode("latin-1")
        if body and content_type.startswith("application/json") and scope.get("path") != REKOGNITION_PATH:
            try:  # before FastAPI parses it for a route: no nesting or number can make it fail
                jsonbody.parse(body)
            except jsonbody.BadJson as exc:
                await send_error(scope, send, 400, "invalid_argument", "SerializationException", str(exc))
                return
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, replay, tracking_send), timeout=self.config.request_timeout)
        except asyncio.TimeoutError:
            log.warning("request %s %s timed out after %.0f s", scope.get("method"), scope.get("path"), self.config.request_timeout)
            if not started:
                message = f"the request took longer than {self.config.request_timeout:g} s and was abandoned"
                await send_error(scope, send, 503, "timeout", "InternalServerError", message)
