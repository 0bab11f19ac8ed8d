"""The HTTP service: `create_app()` builds the ASGI application that `regard serve` runs.

    /healthz            liveness, anonymous (`?ready=1`: 200 once the models and store are ready, else 503)
    /readyz             readiness with details (any valid key)
    /v1/...             the native JSON API (bearer keys): regard/service/native.py
    POST /              the Rekognition-compatible API (AWS SigV4): regard/service/rekognition/
    /console            the web console (signed-in sessions of the same keys): regard/console/; GET / goes there
    /openapi.json, /docs  the native API's description (no data)

Everything else needs a valid key with the right role and collection scope; every change and search
is audit-logged with the key as actor. Limits (request body, image pixels, per-key rate, request
time) answer with a clear 4xx/5xx error in the caller's dialect (native or AWS JSON).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from regard.console import install as install_console
from regard.console import is_console
from regard.console.common import error_page
from regard.errors import InvalidArgumentError, RegardError
from regard.service.errors import aws_error, classify, native_error
from regard.service.limits import LimitsMiddleware
from regard.service.observe import RequestLog
from regard.service.state import (
    REKOGNITION_PATH,
    ServiceBusy,
    ServiceConfig,
    ServiceState,
    Throttled,
    state_of,
)

log = logging.getLogger("regard.service")

__all__ = ["ServiceConfig", "create_app"]


def create_app(config: ServiceConfig) -> FastAPI:
    """The ASGI application for this configuration (each worker process builds its own from the
    configuration `regard serve` hands it)."""

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

    async def _retry_later(request: Request, exc: Throttled | ServiceBusy) -> JSONResponse:
        """A key over its rate (429) or a process with no room for more photos (503): Retry-After."""
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
        if request.url.path == REKOGNITION_PATH:
            return aws_error(400, "ThrottlingException", str(exc), headers)
        status, kind = (429, "rate_limited") if isinstance(exc, Throttled) else (503, "busy")
        response = native_error(status, kind, str(exc))
        response.headers.update(headers)
        return response

    app.add_exception_handler(Throttled, _retry_later)  # type: ignore[arg-type]
    app.add_exception_handler(ServiceBusy, _retry_later)  # type: ignore[arg-type]

    @app.exception_handler(RegardError)
    async def _regard_error(request: Request, exc: RegardError) -> Response:
        if is_console(request):
            return error_page(request, exc)
        native, status, aws = classify(exc)
        if request.url.path == REKOGNITION_PATH:
            aws = getattr(exc, "aws_type", aws)
            return aws_error(403 if aws == "AccessDeniedException" else getattr(exc, "status", 400), aws, str(exc))
        response = native_error(status, native, str(exc))
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="regard"'
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if is_console(request):
            return error_page(request, InvalidArgumentError("the form is not complete: " + "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())))
        problems = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")} for e in exc.errors()
        ]
        text = "; ".join(f"{p['where']}: {p['problem']}" for p in problems)
        return native_error(400, "invalid_argument", f"the request is not valid: {text}", problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        """Starlette's own refusals (unknown path, wrong method, unreadable form) in Regard's shape."""
        kinds = {404: "not_found", 405: "method_not_allowed", 413: "image_too_large"}
        message = str(exc.detail) if exc.detail else "the request was refused"
        if is_console(request):
            response = error_page(request, RegardError(message))
            response.status_code = exc.status_code
            return response
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
    from regard.service.rekognition.endpoint import router as rekognition_router

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
        except Exception as exc:  # noqa: BLE001 - a store that cannot answer makes the service not ready
            checks["store"] = False
            checks["store_error"] = str(exc)
        ok = bool(checks["models"] and checks["store"])
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    app.include_router(native_router)
    app.include_router(rekognition_router)
    install_console(app)
    app.add_middleware(LimitsMiddleware, config=config)
    app.add_middleware(RequestLog)  # outermost: every answer, refusals by the limits included, has its id
    return app
