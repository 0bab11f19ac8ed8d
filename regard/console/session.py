"""Who is signed in to the console: a session cookie that names an API key, and CSRF tokens.

Signing in takes a key's bearer secret (`KEY_ID.SECRET`) once, checks it as the native API does,
and sets a cookie holding the key id, a random session nonce and the time, signed with a secret
derived from the master key (`KeyRing.session_secret`, so every worker and replica accepts it). The
secret itself is never stored. The cookie is HttpOnly, SameSite=Strict, Secure when the request
came over HTTPS, and lasts `SESSION_HOURS`. Every request re-reads the key: a revoked key's
sessions stop at once. Every form carries a CSRF token bound to the session nonce (the sign-in
form: a double-submit cookie), checked on the server.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from regard.errors import NotFoundError, RegardError
from regard.service.auth import Caller
from regard.service.keys import AuthError
from regard.service.state import ServiceState

COOKIE = "regard_session"
SIGN_IN_COOKIE = "regard_sign_in"
SESSION_HOURS = 8
"""How long a console session lasts without signing in again."""


class SignedOut(RegardError):
    """No valid session: the page sends the browser to sign in."""


class BadCsrf(RegardError):
    """A form without this session's CSRF token (403)."""


@dataclass(frozen=True)
class Session:
    caller: Caller
    nonce: str

    @property
    def csrf(self) -> str:
        return csrf_token(self.nonce)


def _serializer(state: ServiceState) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(state.keys.session_secret(), salt="regard-console-session")


def csrf_token(nonce: str) -> str:
    return hashlib.sha256(b"regard console csrf:" + nonce.encode()).hexdigest()


def sign_in(state: ServiceState, token: str, response: Response, *, secure: bool) -> Caller:
    """Check a bearer secret and set the session cookie on `response`; AuthError if refused."""
    key = state.keys.authenticate_bearer(token.strip())
    value = _serializer(state).dumps({"key": key.key_id, "nonce": secrets.token_urlsafe(24)})
    response.set_cookie(
        COOKIE, value, max_age=SESSION_HOURS * 3600, httponly=True, samesite="strict", secure=secure, path="/console"
    )
    response.delete_cookie(SIGN_IN_COOKIE, path="/console")
    return Caller(key)


def sign_out(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/console")


def current(state: ServiceState, request: Request) -> Session:
    """The request's session; SignedOut when there is none, it expired, or its key was revoked."""
    value = request.cookies.get(COOKIE)
    if not value:
        raise SignedOut("sign in")
    try:
        data = _serializer(state).loads(value, max_age=SESSION_HOURS * 3600)
        key = state.store.get_api_key(str(data["key"]))
    except (SignatureExpired, BadSignature, KeyError, TypeError, NotFoundError, AuthError):
        raise SignedOut("sign in again") from None
    if not key.active:
        raise SignedOut("the key was revoked")
    caller = Caller(key)
    state.admit(caller)
    return Session(caller, str(data["nonce"]))


def sign_in_token(request: Request) -> tuple[str, bool]:
    """The sign-in form's double-submit token: the cookie's, or a new one (and whether it is new)."""
    existing = request.cookies.get(SIGN_IN_COOKIE)
    if existing:
        return existing, False
    return secrets.token_urlsafe(24), True


def check_csrf(expected: str, given: object) -> None:
    if not isinstance(given, str) or not hmac.compare_digest(expected, given):
        raise BadCsrf("this form is out of date or did not come from this console: reload the page and try again")
