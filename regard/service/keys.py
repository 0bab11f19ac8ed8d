"""API keys for the HTTP service: issue, authenticate, revoke, and check what a key may do.

A key is a pair (key id, secret). The key id looks like an AWS access key id ("RGK" and 17 of
[A-Z0-9]) so that boto3 and the AWS CLI take it as `aws_access_key_id`; the secret is its
`aws_secret_access_key`. The native API takes the same pair as a bearer token `<key id>.<secret>`.

Why the secret is derived rather than random: AWS Signature Version 4 is an HMAC keyed by the
secret, so a server that verifies it must be able to compute the secret; a one-way hash alone will
not do. So each secret is derived from a master key that lives outside the database:

    secret = base64url(HMAC-SHA256(master_key, b"regard-api-key:" + key_id))[:40]

and the store keeps only `sha256(secret)` (hex). A copy of the database alone reveals no secret and
cannot be used to sign requests; a copy of the database *and* the master key can, so guard the
master key file like a private key.

The master key is 32 random bytes in a file: the one the settings name (`$REGARD_MASTER_KEY_FILE`,
the config file's `master_key`, a command's `--master-key`), else the store's default by the one rule
of `regard.config.Settings.master_key_for`: `<store file>.master.key` beside a SQLite store;
`<$XDG_DATA_HOME or ~/.local/share>/regard/master.key` for the default store and for PostgreSQL.
The first `KeyRing.create` makes it (mode 0600) if it does not exist; it is never overwritten. The
file may hold the 32 bytes raw or as 64 hex digits (`openssl rand -hex 32 > master.key`).
**Replicas or worker hosts that share a database must share the same master key file**: a key issued under one master key does not authenticate under
another (the derived secret would not match the stored hash), and losing the master key makes every
issued key useless (issue new ones). Rotating the master key likewise means re-issuing every key.

Nothing here is cached: every authentication reads the key's record from the store, so a revoked
key stops working on the next request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import string
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from regard.errors import AuthError, InvalidArgumentError, NotFoundError, RegardError
from regard.store.base import ApiKey, Role, check_id, check_text
from regard.store.core import Store

__all__ = [
    "AuthError",
    "KeyRing",
    "allowed",
    "default_master_key_path",
    "derive_secret",
    "hash_secret",
    "new_key_id",
]

log = logging.getLogger(__name__)

KEY_ID_PREFIX = "RGK"
KEY_ID_LENGTH = 20
KEY_ID_ALPHABET = string.ascii_uppercase + string.digits
SECRET_LENGTH = 40
MASTER_KEY_BYTES = 32
_DERIVATION_LABEL = b"regard-api-key:"


def default_master_key_path() -> Path:
    """The master key file of the settings' store (regard.config: the one named, else the store's
    default). A KeyRing over another store should be given that store's
    (`config.current().master_key_for(url)`), as the CLI and `regard serve` do."""
    from regard import config

    return config.current().default_master_key_file


def new_key_id() -> str:
    """A fresh key id: "RGK" and 17 random characters of [A-Z0-9] (about 88 bits)."""
    return KEY_ID_PREFIX + "".join(secrets.choice(KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH - len(KEY_ID_PREFIX)))


def derive_secret(master_key: bytes, key_id: str) -> str:
    """The secret of `key_id` under `master_key`: 40 base64url characters (240 bits)."""
    digest = hmac.new(master_key, _DERIVATION_LABEL + key_id.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:SECRET_LENGTH]


def hash_secret(secret: str) -> str:
    """What the store keeps of a secret: its sha256, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _parse_master_key(data: bytes, path: Path) -> bytes:
    if len(data) == MASTER_KEY_BYTES:
        return data
    text = data.strip()
    if len(text) == 2 * MASTER_KEY_BYTES:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    raise RegardError(
        f"the master key file {path} must hold {MASTER_KEY_BYTES} bytes, raw or as {2 * MASTER_KEY_BYTES} hex digits"
    )


def _create_master_key(path: Path) -> None:
    """Write 32 random bytes to `path` with mode 0600, unless a file is there already.

    Written to a private temporary file first and then hard-linked into place, so a concurrent
    reader never sees a half-written key and two concurrent creators cannot both win."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(MASTER_KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            log.info("created the master key %s: replicas that share this database must share it", path)
        except FileExistsError:
            pass  # somebody else's key won; use theirs
    finally:
        tmp.unlink(missing_ok=True)


def _coerce_role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidArgumentError(
            f"unknown role {role!r}: use one of {', '.join(r.value for r in Role)}"
        ) from None


def allowed(key: ApiKey, role: Role | str, collection: str | None) -> bool:
    """Whether `key` may do what needs `role`, on `collection` (None: a call not about a collection,
    such as detect, compare or listing collections).

    A revoked key may do nothing. `admin` implies every role. A key scoped to collections may act
    only on those, whatever its roles; listing collections is then the caller's job to filter."""
    if not key.active:
        return False
    wanted = _coerce_role(role)
    if wanted not in key.roles and Role.ADMIN not in key.roles:
        return False
    if collection is not None and key.collections is not None and collection not in key.collections:
        return False
    return True


class KeyRing:
    """Issues and checks API keys, holding the store and the master key. Safe to share between
    threads as far as the store is."""

    def __init__(self, store: Store, master_key_path: Path | None = None) -> None:
        self.store = store
        self.master_key_path = Path(master_key_path) if master_key_path is not None else default_master_key_path()
        self._master_key: bytes | None = None

    # ------------------------------------------------------------------ master key

    def _master(self, *, create: bool) -> bytes:
        if self._master_key is None:
            path = self.master_key_path
            if not path.exists():
                if not create:
                    raise AuthError("no master key", f"the master key file {path} does not exist")
                _create_master_key(path)
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                log.warning("the master key file %s is readable by others (mode %o): chmod 600 it", path, mode)
            self._master_key = _parse_master_key(path.read_bytes(), path)
        return self._master_key

    # ------------------------------------------------------------------ issue and revoke

    def create(
        self,
        *,
        name: str,
        roles: Sequence[Role | str],
        collections: Sequence[str] | None,
        default_purpose: str | None,
        rate_per_minute: int | None,
        actor: str,
    ) -> tuple[ApiKey, str]:
        """Issue a key; returns it and its secret. The secret is shown this once: the store keeps
        only its hash (and it can be derived again only with the master key)."""
        name = check_text(name, "a key name")
        role_set = tuple(dict.fromkeys(_coerce_role(r) for r in roles))
        if not role_set:
            raise InvalidArgumentError("a key needs at least one role")
        scope = None if collections is None else tuple(dict.fromkeys(check_id(c, "collection id") for c in collections))
        purpose = None if default_purpose is None else check_text(default_purpose, "a default purpose")
        if rate_per_minute is not None and (isinstance(rate_per_minute, bool) or int(rate_per_minute) < 1):
            raise InvalidArgumentError("rate_per_minute must be a whole number of requests, at least 1")
        master = self._master(create=True)
        key_id = new_key_id()
        secret = derive_secret(master, key_id)
        key = ApiKey(
            key_id=key_id,
            name=name,
            secret_hash=hash_secret(secret),
            roles=role_set,
            collections=scope,
            default_purpose=purpose,
            rate_per_minute=None if rate_per_minute is None else int(rate_per_minute),
            created_at=datetime.now(timezone.utc),
            created_by=actor,
        )
        return self.store.create_api_key(key, actor=actor), secret

    def revoke(self, key_id: str, *, actor: str, reason: str) -> ApiKey:
        """Revoke a key (audit-logged); it stops working on the next request. Revoking twice is a
        no-op that returns the key; an unknown key id raises NotFoundError."""
        return self.store.revoke_api_key(key_id, actor=actor, reason=reason)

    def list(self) -> list[ApiKey]:
        """Every key, active or revoked, oldest first."""
        return self.store.list_api_keys()

    # ------------------------------------------------------------------ authenticate

    def _active_key(self, key_id: str) -> ApiKey:
        try:
            key = self.store.get_api_key(key_id)
        except NotFoundError:
            raise AuthError("unknown key", "the access key id is not known") from None
        if not key.active:
            raise AuthError("revoked key", "the key was revoked")
        return key

    def session_secret(self) -> bytes:
        """The secret that signs the web console's session cookies: derived from the master key,
        so every worker and replica that shares it accepts the same sessions."""
        return hmac.new(self._master(create=False), b"regard console sessions v1", "sha256").digest()

    def secret_for(self, key_id: str) -> str:
        """The secret of an active key, for verifying a SigV4 signature. The key must exist, be
        active, and its secret derived under this master key must hash to the stored hash (else the
        master key is not the one the key was issued under); otherwise AuthError."""
        return self.signing_key(key_id)[1]

    def signing_key(self, key_id: str) -> tuple[ApiKey, str]:
        """The active key and its secret, as `secret_for` checks them (one read of the key)."""
        key = self._active_key(key_id)
        return key, self._derived_secret(key)

    def _derived_secret(self, key: ApiKey) -> str:
        secret = derive_secret(self._master(create=False), key.key_id)
        if not hmac.compare_digest(hash_secret(secret), key.secret_hash):
            log.error("key %s was not issued under the master key %s", key.key_id, self.master_key_path)
            raise AuthError("master key mismatch", "the key was not issued under this server's master key")
        return secret

    def authenticate_bearer(self, token: str) -> ApiKey:
        """The active key a bearer token `<key id>.<secret>` names, if the secret is right."""
        key_id, dot, secret = token.strip().partition(".") if isinstance(token, str) else ("", "", "")
        if not dot or not key_id or not secret:
            raise AuthError("malformed authorization", "a bearer token is <key id>.<secret>")
        key = self._active_key(key_id)
        if not hmac.compare_digest(hash_secret(secret), key.secret_hash):
            raise AuthError("bad secret", "the secret is wrong")
        # Same rule as SigV4: a key works only under the master key it was issued with, so that
        # both APIs agree on which keys are valid on a misconfigured replica.
        self._derived_secret(key)
        return key
