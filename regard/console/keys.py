"""The console's keys section: list, create and revoke the service's API keys (role `admin`).

Keys are issued through regard/service/keys.py's KeyRing, as `regard keys create` issues them, and
the store writes each creation and revocation to the audit log with the signed-in key as the actor.
The new key's secret is shown once, on the page that answers the creation (Cache-Control:
no-store, as every console page); the store keeps only its hash.

Who may do what. The native API issues no keys (only `regard keys`, run by an operator), so the rule
here follows the scope rule every other call follows: a key limited to collections acts only
inside them. An admin key that is not limited to collections manages every key. An admin key
limited to collections may create only keys limited to some of its own collections and without the
admin role (an admin or unlimited key would reach beyond its scope); it sees and revokes only such
keys, and itself; any other key looks as if it did not exist (404). Revoking the key you are
signed in with ends the session at once (every request re-reads the key).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from regard.console import session as sessions
from regard.console.common import form, see_other, signed_in, state
from regard.console.render import page, words_for
from regard.console.session import Session
from regard.errors import InvalidArgumentError, NotFoundError
from regard.store.base import ID_PATTERN, MAX_TEXT, ApiKey, Role

router = APIRouter(prefix="/console", include_in_schema=False)

ROLES: list[str] = [r.value for r in Role]
"""The roles offered on the form, in Role's order."""


def _when(moment: datetime | None) -> str:
    """A key's time, to the minute, in UTC."""
    if moment is None:
        return "–"
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _admin(session: Session) -> ApiKey:
    """The signed-in key, if it is an admin key (else Forbidden: 403)."""
    session.caller.require(Role.ADMIN)
    return session.caller.key


def manages(admin: ApiKey, key: ApiKey) -> bool:
    """Whether the admin key `admin` may see and revoke `key`: every key for an unscoped admin; for
    an admin scoped to collections, the keys it could have created (scoped inside its own
    collections, without the admin role) and itself (anyone may revoke their own key)."""
    if admin.collections is None or key.key_id == admin.key_id:
        return True
    return key.collections is not None and set(key.collections) <= set(admin.collections) and Role.ADMIN not in key.roles


@dataclass
class Wanted:
    """What the creation form asked for, as typed (to show the form again with a message)."""

    name: str = ""
    roles: list[str] = field(default_factory=list)
    collections: str = ""
    purpose: str = ""
    rate: str = ""

    @classmethod
    def of(cls, data: Any) -> Wanted:
        return cls(
            name=str(data.get("name") or "").strip(),
            roles=[str(r) for r in data.getlist("roles")],
            collections=str(data.get("collections") or "").strip(),
            purpose=str(data.get("purpose") or "").strip(),
            rate=str(data.get("rate_per_minute") or "").strip(),
        )

    def scope(self) -> list[str] | None:
        """The collections typed (comma or space separated), None when none were."""
        names = [c.strip() for c in self.collections.replace(",", " ").split()]
        names = [c for c in names if c]
        return list(dict.fromkeys(names)) or None


@dataclass
class Refusal(Exception):
    """A mistake on the creation form: its message, and the status to answer it with."""

    message: str
    status: int = 400


def _check(admin: ApiKey, wanted: Wanted, words: Any) -> tuple[list[Role], list[str] | None, int | None]:
    """The roles, scope and rate the form asks for, once they pass the rules (else Refusal)."""
    if not wanted.name:
        raise Refusal(words("keys.need_name"))
    if len(wanted.name) > MAX_TEXT or len(wanted.purpose) > MAX_TEXT:
        raise Refusal(words("keys.too_long", limit=MAX_TEXT))
    unknown = [r for r in wanted.roles if r not in ROLES]
    if unknown:
        raise Refusal(words("keys.bad_role", role=unknown[0]))
    roles = [Role(r) for r in dict.fromkeys(wanted.roles)]
    if not roles:
        raise Refusal(words("keys.need_role"))
    scope = wanted.scope()
    bad = [c for c in scope or [] if not ID_PATTERN.fullmatch(c)]
    if bad:
        raise Refusal(words("keys.bad_collection", collection=bad[0]))
    rate: int | None = None
    if wanted.rate:
        try:
            rate = int(wanted.rate)
        except ValueError:
            raise Refusal(words("keys.bad_rate")) from None
        if rate < 1:
            raise Refusal(words("keys.bad_rate"))
    if admin.collections is not None:  # a scoped admin: only narrower keys, inside its scope
        if Role.ADMIN in roles:
            raise Refusal(words("keys.scoped_no_admin"), 403)
        if scope is None:
            raise Refusal(words("keys.scoped_needs_scope", scope=", ".join(admin.collections)), 403)
        outside = [c for c in scope if c not in admin.collections]
        if outside:
            raise Refusal(words("keys.scoped_outside", collection=outside[0]), 403)
    return roles, scope, rate


def _list_page(
    request: Request, session: Session, *, wanted: Wanted | None = None, error: str | None = None,
    revoke_error: str | None = None, revoked: str | None = None, status: int = 200,
) -> HTMLResponse:  # fmt: skip
    admin = session.caller.key
    keys = [k for k in state(request).keys.list() if manages(admin, k)]
    keys.sort(key=lambda k: k.created_at, reverse=True)
    keys.sort(key=lambda k: not k.active)  # active keys first, each group newest first
    wanted = wanted or Wanted(collections=", ".join(admin.collections) if admin.collections is not None else "")
    return page(
        request, "keys_list.html", session=session, status=status, keys=keys, roles=ROLES, wanted=wanted,
        error=error, revoke_error=revoke_error, revoked=revoked, own=admin.key_id, scoped=admin.collections, when=_when,
    )  # fmt: skip


@router.get("/keys", response_class=HTMLResponse)
def keys_page(request: Request, revoked: str | None = None, session: Session = Depends(signed_in)) -> Response:
    admin = _admin(session)
    shown = None
    if revoked:
        try:
            key = state(request).store.get_api_key(revoked)
        except NotFoundError:
            key = None
        shown = key.key_id if key is not None and manages(admin, key) and not key.active else None
    return _list_page(request, session, revoked=shown)


@router.post("/keys", response_class=HTMLResponse)
async def create_key(request: Request, session: Session = Depends(signed_in)) -> Response:
    data = await form(request, session)
    admin = _admin(session)
    words = words_for(request)
    wanted = Wanted.of(data)
    try:
        roles, scope, rate = _check(admin, wanted, words)
        key, secret = state(request).keys.create(
            name=wanted.name,
            roles=roles,
            collections=scope,
            default_purpose=wanted.purpose or None,
            rate_per_minute=rate,
            actor=session.caller.actor,
        )
    except Refusal as refused:
        return _list_page(request, session, wanted=wanted, error=refused.message, status=refused.status)
    except InvalidArgumentError as exc:  # what the key ring itself refuses
        return _list_page(request, session, wanted=wanted, error=str(exc), status=400)
    # Shown once, on this answer: the page is never cached (render.HEADERS: no-store) and a reload
    # does not show it again from the server (it would ask to send the form again).
    return page(
        request, "keys_created.html", session=session, status=201, key=key, secret=secret,
        bearer=f"{key.key_id}.{secret}",
    )  # fmt: skip


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, session: Session = Depends(signed_in)) -> Response:
    data = await form(request, session)
    admin = _admin(session)
    words = words_for(request)
    store = state(request).store
    try:
        key = store.get_api_key(key_id)
    except NotFoundError:
        key = None
    if key is None or not manages(admin, key):
        raise NotFoundError(f"no key {key_id!r}")
    reason = str(data.get("reason") or "").strip()
    if not reason:
        return _list_page(request, session, revoke_error=words("keys.need_reason", id=key_id), status=400)
    if len(reason) > MAX_TEXT:
        return _list_page(request, session, revoke_error=words("keys.too_long", limit=MAX_TEXT), status=400)
    state(request).keys.revoke(key_id, actor=session.caller.actor, reason=reason)
    if key_id == admin.key_id:  # the key of this session: it ends here
        response = see_other("/console/sign-in")
        sessions.sign_out(response)
        return response
    return see_other(f"/console/keys?revoked={key_id}")
