"""Who is calling, and may they: the caller behind a request and the role/scope check.

Native API calls carry `Authorization: Bearer KEY_ID.SECRET`; Rekognition calls are signed with AWS
SigV4 using the same key (access key id = KEY_ID, secret access key = SECRET). Either way the caller
is a key, and the audit log names it as `key:KEY_ID`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from regard.errors import RegardError
from regard.service.keys import AuthError, allowed
from regard.store.base import ApiKey, Role

if TYPE_CHECKING:
    from regard.service.state import ServiceState


log = logging.getLogger("regard.service")


class Unauthorized(RegardError):
    """No credentials, or credentials that do not check out (401)."""


class Forbidden(RegardError):
    """Valid credentials without the role or collection scope for this call (403)."""


@dataclass(frozen=True)
class Caller:
    key: ApiKey

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"key:{self.key.key_id}"

    def require(self, role: Role, collection: str | None = None) -> None:
        if not allowed(self.key, role, collection):
            where = f" on collection {collection!r}" if collection else ""
            roles = ", ".join(r.value for r in self.key.roles)
            raise Forbidden(f"key {self.key.key_id} (roles: {roles}) may not {role.value}{where}")

    def may_see(self, collection: str) -> bool:
        return self.key.collections is None or collection in self.key.collections


_SERVER_SIDE = {"no master key", "master key mismatch"}


def public_reason(error: AuthError) -> str:
    """What to tell a client about a refused credential: the reason, unless it is the server's own
    misconfiguration (logged instead, so clients learn nothing about the server's keys)."""
    if error.reason in _SERVER_SIDE:
        log.error("authentication failed on the server side: %s (%s)", error.reason, error)
        return "the server cannot check this key (see the server log)"
    return error.reason


def authenticate_bearer(state: ServiceState, request: Request) -> Caller:
    """The caller of a native API request, rate limit included; Unauthorized without a valid key."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("this call needs an API key: send 'Authorization: Bearer KEY_ID.SECRET' (see `regard keys create`)")
    try:
        key = state.keys.authenticate_bearer(token.strip())
    except AuthError as exc:
        raise Unauthorized(f"the API key was refused: {public_reason(exc)}") from None
    caller = Caller(key)
    state.admit(caller)
    return caller
