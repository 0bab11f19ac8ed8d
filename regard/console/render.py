"""How the console's pages are made: Jinja2 templates (autoescaped), the message catalogue, and the
headers every page carries (a strict Content-Security-Policy: nothing is loaded from anywhere but
Regard itself, no inline script or style)."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from regard.console.i18n import Words, catalogue, choose, languages
from regard.console.session import Session
from regard.store.base import Role

CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
LANG_COOKIE = "regard_lang"

_env = Environment(
    loader=PackageLoader("regard.console", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

NAV: list[tuple[str, str, Role | None]] = [
    ("/console/redact", "nav.redact", Role.DETECT),
    ("/console/collections", "nav.collections", Role.ENROLL),
    ("/console/search", "nav.search", Role.SEARCH),
    ("/console/audit", "nav.audit", Role.ADMIN),
    ("/console/accuracy", "nav.accuracy", None),  # error rates, no faces: any signed-in key
    ("/console/keys", "nav.keys", Role.ADMIN),
]
"""The console's sections and the role that shows each, None for every signed-in key (the server
checks the role again on every request)."""


def words_for(request: Request) -> Words:
    return catalogue(choose(request.headers.get("accept-language"), request.cookies.get(LANG_COOKIE)))


def may(session: Session | None, role: Role | None) -> bool:
    if session is None:
        return False
    roles = session.caller.key.roles
    return role is None or Role.ADMIN in roles or role in roles


def data_uri(png: bytes, kind: str = "image/png") -> str:
    """An image for the page itself (previews are made per request and never stored)."""
    return f"data:{kind};base64,{base64.b64encode(png).decode('ascii')}"


def page(
    request: Request, template: str, *, session: Session | None = None, status: int = 200, **context: Any
) -> HTMLResponse:
    words = words_for(request)
    html = _env.get_template(template).render(
        t=words,
        lang=words.lang,
        languages=languages(),
        session=session,
        csrf=session.csrf if session else context.pop("csrf", ""),
        nav=[(href, words(label), href == request.url.path) for href, label, role in NAV if may(session, role)],
        path=request.url.path,
        may=lambda role: may(session, Role(role)),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)
