"""The console's own routes: sign-in, sign-out, the language, and the home page."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from regard.console import session as sessions
from regard.console.common import form, see_other, signed_in, state
from regard.console.i18n import languages
from regard.console.render import LANG_COOKIE, page, words_for
from regard.console.session import Session
from regard.service.keys import AuthError

router = APIRouter(prefix="/console", include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a console page of this server (no open redirect)."""
    if target and target.startswith("/console") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console"


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request, next: str | None = None) -> Response:
    token, new = sessions.sign_in_token(request)
    response = page(request, "sign_in.html", csrf=token, next=_safe_next(next), error=None)
    if new:
        response.set_cookie(
            sessions.SIGN_IN_COOKIE, token, httponly=True, samesite="strict", path="/console",
            secure=request.url.scheme == "https",
        )  # fmt: skip
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    data = await request.form()
    expected = request.cookies.get(sessions.SIGN_IN_COOKIE, "")
    target = _safe_next(str(data.get("next") or ""))
    words = words_for(request)
    if not expected:
        return see_other(f"/console/sign-in?next={target}")
    sessions.check_csrf(expected, data.get("csrf"))
    response = see_other(target)
    try:
        sessions.sign_in(state(request), str(data.get("key") or ""), response, secure=request.url.scheme == "https")
    except AuthError:
        return page(request, "sign_in.html", csrf=expected, next=target, error=words("sign_in.refused"), status=401)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, session: Session = Depends(signed_in)) -> Response:
    await form(request, session)
    response = see_other("/console/sign-in")
    sessions.sign_out(response)
    return response


@router.post("/language")
async def language(request: Request) -> Response:
    data = await request.form()
    wanted = str(data.get("lang") or "")
    response = see_other(_safe_next(str(data.get("next") or "")))
    if wanted in languages():
        response.set_cookie(LANG_COOKIE, wanted, max_age=365 * 86400, samesite="strict", path="/console")
    return response


@router.get("", response_class=HTMLResponse)
def home(request: Request, session: Session = Depends(signed_in)) -> Response:
    return page(request, "home.html", session=session)
