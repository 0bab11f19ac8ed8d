"""What every console page depends on: the signed-in session, the CSRF check of its forms, and the
error page. Pages live in one module per section and only call the library (as the API does)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from regard.console import session as sessions
from regard.console.render import page
from regard.console.session import BadCsrf, Session, SignedOut
from regard.service.errors import classify
from regard.service.state import ServiceState, state_of


def signed_in(request: Request) -> Session:
    """A route dependency: the session, or SignedOut (which sends the browser to sign in)."""
    return sessions.current(state_of(request), request)


async def form(request: Request, session: Session) -> Any:
    """The request's form, after checking its CSRF token against the session's."""
    data = await request.form()
    sessions.check_csrf(session.csrf, data.get("csrf"))
    return data


def state(request: Request) -> ServiceState:
    return state_of(request)


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def signed_out_redirect(request: Request, exc: SignedOut) -> Response:
    target = request.url.path if request.method == "GET" else "/console"
    return see_other(f"/console/sign-in?next={target}")


def error_page(request: Request, exc: Exception, session: Session | None = None) -> HTMLResponse:
    """A console error as a page: the message, in the status the API would give (400, 403, 404, 409...)."""
    if isinstance(exc, BadCsrf):
        status = 403
    else:
        _, status, _ = classify(exc)
    if session is None:
        try:
            session = signed_in(request)
        except Exception:  # noqa: BLE001 - the error page shows without a session
            session = None
    return page(request, "error.html", session=session, status=status, message=str(exc))
