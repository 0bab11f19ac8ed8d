"""The HTTP service: `create_app()` builds the ASGI application that `regard serve` runs.

    /healthz            liveness, anonymous (`?ready=1`: 200 once the models and store are ready, else 503)
    /readyz             readiness with details (any valid key)
    /v1/...             the native JSON API (bearer keys): regard/service/native.py
    POST /              the Rekognition-compatible API (AWS SigV4): regard/service/rekognition.py
    /openapi.json, /docs  the native API's description (no data)

Everything else needs a valid key with the right role and collection scope; every change and search
is audit-logged with the key as actor. Limits (request body, image pixels, per-key rate, request
time) answer with a clear 4xx/5xx error in the caller's dialect (native or AWS JSON).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from regard import config
from regard.config import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_REGION,
    DEFAULT_REQUEST_TIMEOUT,
    SERVICE_MAX_PIXELS,
)
from regard.errors import (
    AlreadyExistsError,
    ConsentError,
    ImageError,
    ImageTooLargeError,
    InvalidArgumentError,
    NoFaceError,
    NotFoundError,
    RegardError,
)
from regard.service import jsonbody
from regard.service.auth import Caller, Forbidden, Unauthorized
from regard.service.keys import AuthError, KeyRing
from regard.service.ratelimit import RateLimiter

log = logging.getLogger("regard.service")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

REKOGNITION_PATH = "/"
AWS_JSON = "application/x-amz-json-1.1"


@dataclass(frozen=True)
class ServiceConfig:
    """What `regard serve` was asked for. Worker processes read it back from the environment."""

    store_url: str | None = None  # None: $REGARD_STORE or the user's default SQLite file
    region: str = DEFAULT_REGION  # the region SigV4 requests must be signed for
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES  # Rekognition's limit for Image.Bytes
    max_pixels: int = SERVICE_MAX_PIXELS
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT  # seconds before a request is answered 503
    master_key_file: Path | None = None  # None: $REGARD_MASTER_KEY_FILE or the default (keys.py)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def max_body_bytes(self) -> int:
        """Two images in base64 (CompareFaces) plus room for the JSON around them."""
        return 2 * (4 * ((self.max_image_bytes + 2) // 3)) + 64 * 1024

    def to_env(self) -> dict[str, str]:
        env = {
            "REGARD_REGION": self.region,
            "REGARD_MAX_IMAGE_BYTES": str(self.max_image_bytes),
            "REGARD_MAX_PIXELS": str(self.max_pixels),
            "REGARD_REQUEST_TIMEOUT": str(self.request_timeout),
        }
        if self.store_url:
            env["REGARD_STORE"] = self.store_url
        if self.master_key_file:
            env["REGARD_MASTER_KEY_FILE"] = str(self.master_key_file)
        return env

    @classmethod
    def from_env(cls) -> ServiceConfig:
        """The service's part of `regard.config.Settings` (worker processes are handed it there)."""
        settings = config.current()
        return cls(
            store_url=settings.store_url,
            region=settings.region,
            max_image_bytes=settings.max_image_bytes,
            max_pixels=settings.max_pixels,
            request_timeout=settings.request_timeout,
            master_key_file=settings.master_key_file,
        )


PIXEL_BUDGET_IMAGES = 2
"""The photos being worked on at once in one service process hold at most this many times the pixel
limit (their declared sizes, read from the headers before decoding); requests beyond it wait."""


class ServiceBusy(RegardError):
    """The process's pixel budget stayed full for longer than a request may wait."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PixelBudget:
    """A weighted semaphore over the pixels of the photos being worked on, so that memory stays
    bounded however many large photos arrive at once (each holds its declared size until its
    request ends)."""

    def __init__(self, capacity: int, wait_seconds: float) -> None:
        self.capacity = max(1, capacity)
        self.wait_seconds = wait_seconds
        self.used = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        held = self.acquire(pixels)
        try:
            yield
        finally:
            self.release(held)

    def acquire(self, pixels: int) -> int:
        """Wait for room for `pixels` (at most `wait_seconds`, then ServiceBusy); what to release."""
        pixels = min(max(0, pixels), self.capacity)
        deadline = time.monotonic() + self.wait_seconds
        with self._cond:
            while self.used + pixels > self.capacity:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServiceBusy(
                        f"the server is working on as many large photos as it holds ({self.capacity:,} pixels); retry shortly"
                    )
                self._cond.wait(timeout=left)
            self.used += pixels
        return pixels

    def release(self, pixels: int) -> None:
        with self._cond:
            self.used -= pixels
            self._cond.notify_all()


def declared_pixels(photos: list[bytes]) -> int:
    """The pixels the photos declare in their headers (0 for what is not an image: decoding it
    later says what is wrong)."""
    from regard.image import image_size

    total = 0
    for data in photos:
        try:
            width, height = image_size(data, max_pixels=1 << 62)
        except Exception:  # an unreadable photo holds nothing; load_image refuses it properly
            continue
        total += width * height
    return total


# ---------------------------------------------------------------- errors in two dialects

# (native type, HTTP status, Rekognition exception) for each error Regard raises on purpose.
_ERRORS: list[tuple[type[Exception], str, int, str]] = [
    (ImageTooLargeError, "image_too_large", 413, "ImageTooLargeException"),
    (ImageError, "invalid_image", 400, "InvalidImageFormatException"),
    (NoFaceError, "no_face", 422, "InvalidParameterException"),
    (NotFoundError, "not_found", 404, "ResourceNotFoundException"),
    (AlreadyExistsError, "already_exists", 409, "ResourceAlreadyExistsException"),
    (ConsentError, "consent_required", 409, "InvalidParameterException"),
    (InvalidArgumentError, "invalid_argument", 400, "InvalidParameterException"),
    (Unauthorized, "unauthorized", 401, "AccessDeniedException"),
    (AuthError, "unauthorized", 401, "AccessDeniedException"),
    (Forbidden, "forbidden", 403, "AccessDeniedException"),
    (RegardError, "invalid_argument", 400, "InvalidParameterException"),
]


def classify(error: Exception) -> tuple[str, int, str]:
    """(native type, status, Rekognition exception name) for an error."""
    for kind, native, status, aws in _ERRORS:
        if isinstance(error, kind):
            return native, status, aws
    return "internal", 500, "InternalServerError"


def native_error(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, **extra}}, status_code=status)


def aws_error(status: int, aws_type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"__type": aws_type, "message": message},
        status_code=status,
        media_type=AWS_JSON,
        headers={"x-amzn-ErrorType": aws_type, **(headers or {})},
    )


async def _send_error(scope: Scope, send: Send, status: int, native: str, aws: str, message: str) -> None:
    """An error answered by a middleware, before the app: in the dialect the path speaks."""
    if scope.get("path") == REKOGNITION_PATH and scope.get("method") == "POST":
        body = json.dumps({"__type": aws, "message": message}).encode()
        content_type = AWS_JSON.encode()
    else:
        body = json.dumps({"error": {"type": native, "message": message}}).encode()
        content_type = b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


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
            await _send_error(scope, send, 413, "image_too_large", "ImageTooLargeException", too_large)
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
                await _send_error(scope, send, 413, "image_too_large", "ImageTooLargeException", too_large)
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
                await _send_error(scope, send, 400, "invalid_argument", "SerializationException", str(exc))
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
                await _send_error(scope, send, 503, "timeout", "InternalServerError", message)


# ---------------------------------------------------------------- state shared by the routes


class ServiceState:
    """What the routes share: the store, the key ring, the rate limiter, and readiness."""

    def __init__(self, config: ServiceConfig) -> None:
        from regard.store import open_store

        self.config = config
        self.store = open_store(config.store_url)
        self.keys = KeyRing(self.store, config.master_key_file)
        self.limiter = RateLimiter()
        self.pixels = PixelBudget(PIXEL_BUDGET_IMAGES * config.max_pixels, wait_seconds=min(30.0, config.request_timeout / 2))
        self.ready = threading.Event()

    def warm_up(self) -> None:
        """Load and verify the models so the first request does not pay for it."""
        from regard import models

        models.get_detector()
        models.get_embedder()
        self.ready.set()

    def admit(self, caller: Caller) -> None:
        """The per-key rate limit; raises Throttled."""
        wait = self.limiter.check(caller.key.key_id, caller.key.rate_per_minute)
        if wait is not None:
            raise Throttled(wait)


class Throttled(RegardError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limit exceeded for this key: retry in {retry_after:.1f} s")
        self.retry_after = retry_after


def state_of(request: Request) -> ServiceState:
    return request.app.state.regard  # type: ignore[no-any-return]


def create_app(config: ServiceConfig | None = None) -> FastAPI:
    """The ASGI application. Without a config it reads the environment (as worker processes do)."""
    config = config or ServiceConfig.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServiceState(config)
        app.state.regard = state
        await asyncio.to_thread(state.warm_up)
        try:
            yield
        finally:
            state.store.close()

    app = FastAPI(
        title="Regard",
        version=__import__("regard").__version__,
        summary="Self-hosted face recognition with consent, purpose, audit trail and calibrated thresholds.",
        description=(
            "Native API under /v1 (bearer keys: `Authorization: Bearer KEY_ID.SECRET`). The Rekognition-compatible "
            "API is `POST /` with `X-Amz-Target: RekognitionService.<Operation>` (AWS SigV4 with a Regard key); "
            "see docs/SERVICE.md. Regard never infers age, gender, emotion or other attributes."
        ),
        lifespan=lifespan,
        docs_url=None,  # FastAPI's docs pages load scripts from a CDN; /docs below works offline
        redoc_url=None,
    )

    @app.exception_handler(Throttled)
    async def _throttled(request: Request, exc: Throttled) -> JSONResponse:
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
        if request.url.path == REKOGNITION_PATH:
            return aws_error(400, "ThrottlingException", str(exc), headers)
        response = native_error(429, "rate_limited", str(exc))
        response.headers.update(headers)
        return response

    @app.exception_handler(ServiceBusy)
    async def _busy(request: Request, exc: ServiceBusy) -> JSONResponse:
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
        if request.url.path == REKOGNITION_PATH:
            return aws_error(400, "ThrottlingException", str(exc), headers)
        response = native_error(503, "busy", str(exc))
        response.headers.update(headers)
        return response

    @app.exception_handler(RegardError)
    async def _regard_error(request: Request, exc: RegardError) -> JSONResponse:
        native, status, aws = classify(exc)
        if request.url.path == REKOGNITION_PATH:
            aws = getattr(exc, "aws_type", aws)
            return aws_error(403 if aws == "AccessDeniedException" else getattr(exc, "status", 400), aws, str(exc))
        response = native_error(status, native, str(exc))
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="regard"'
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")} for e in exc.errors()
        ]
        text = "; ".join(f"{p['where']}: {p['problem']}" for p in problems)
        return native_error(400, "invalid_argument", f"the request is not valid: {text}", problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's own refusals (unknown path, wrong method, unreadable form) in Regard's shape."""
        kinds = {404: "not_found", 405: "method_not_allowed", 413: "image_too_large"}
        message = str(exc.detail) if exc.detail else "the request was refused"
        if request.url.path == REKOGNITION_PATH:
            return aws_error(exc.status_code, "InvalidParameterException", message)
        response = native_error(exc.status_code, kinds.get(exc.status_code, "invalid_argument"), message)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        if request.url.path == REKOGNITION_PATH:
            return aws_error(500, "InternalServerError", "internal error; see the server log")
        return native_error(500, "internal", "internal error; see the server log")

    @app.get("/healthz", include_in_schema=False)
    def healthz(request: Request, ready: bool = False) -> JSONResponse:
        state = getattr(request.app.state, "regard", None)
        is_ready = bool(state and state.ready.is_set())
        if ready and not is_ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ok"})

    from regard.service.native import router as native_router
    from regard.service.rekognition import router as rekognition_router

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        """The native API's reference as one self-contained page (no scripts, readable offline)."""
        from regard.service.docs import render

        return HTMLResponse(render(request.app.openapi()))

    @app.get("/readyz", tags=["service"])
    def readyz(request: Request) -> JSONResponse:
        """Readiness with details (any valid key): models loaded and verified, store reachable."""
        from regard.service.auth import authenticate_bearer

        state = state_of(request)
        authenticate_bearer(state, request)
        checks: dict[str, Any] = {"models": state.ready.is_set()}
        try:
            state.store.list_collections()
            checks["store"] = True
        except Exception as exc:  # a store that cannot answer makes the service not ready
            checks["store"] = False
            checks["store_error"] = str(exc)
        ok = bool(checks["models"] and checks["store"])
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    app.include_router(native_router)
    app.include_router(rekognition_router)
    app.add_middleware(LimitsMiddleware, config=config)
    return app
