"""The web console: Regard for the people who do not use a terminal, at /console of `regard serve`.

Server-rendered pages (Jinja2 templates in templates/, words in messages/<lang>.json, one
stylesheet and one small script in static/), on the same port and keys as the API: a key's roles
and collection scope decide what is shown and, on the server, what is allowed. Every action goes
through the library and is audited as through the API, with the key as the actor.

    install(app)     # regard/service/app.py: the routes, the static files, the redirect from /
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from regard.console.common import error_page, signed_out_redirect
from regard.console.render import HEADERS
from regard.console.routes import router
from regard.console.session import BadCsrf, SignedOut

SECTIONS: list[str] = ["redact", "collections", "enroll", "search", "audit", "accuracy", "keys"]
"""The modules of the console's sections (regard.console.<name>), each with its own `router`."""


class _Static(StaticFiles):
    async def get_response(self, path: str, scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        response.headers.update({k: v for k, v in HEADERS.items() if k != "Cache-Control"})
        return response


def install(app: FastAPI) -> None:
    """Serve the console from `app`: /console and its sections, /console/static, / redirecting there."""
    import importlib

    app.include_router(router)
    for name in SECTIONS:
        app.include_router(importlib.import_module(f"regard.console.{name}").router)
    app.mount("/console/static", _Static(directory=str(resources.files("regard.console") / "static")), name="console-static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console", status_code=307)

    async def _signed_out(request: Request, exc: Exception) -> Response:
        return signed_out_redirect(request, exc)  # type: ignore[arg-type]

    async def _bad_csrf(request: Request, exc: Exception) -> Response:
        return error_page(request, exc)

    app.add_exception_handler(SignedOut, _signed_out)
    app.add_exception_handler(BadCsrf, _bad_csrf)


def is_console(request: Request) -> bool:
    return request.url.path.startswith("/console")
