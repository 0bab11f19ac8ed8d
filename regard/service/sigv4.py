"""Verification of AWS Signature Version 4 (`Authorization: AWS4-HMAC-SHA256 ...`), as boto3 and
the AWS CLI sign requests, so that unmodified AWS clients can call the Rekognition-compatible API
with a Regard-issued key (regard/service/keys.py).

The canonical request is rebuilt the way the AWS SigV4 documentation and botocore's signer build
it: method; the path with dot segments and repeated slashes removed, URI-encoded (the path is taken
as sent on the wire, still percent-encoded, so encoding it again gives the "encode twice" rule for
non-S3 services); the query pairs decoded, URI-encoded (RFC 3986 unreserved characters kept) and
sorted; the signed headers lower-cased, sorted, values trimmed with runs of whitespace collapsed and
repeated headers joined with ","; the signed header list; and the hex sha256 of the body.

What is refused, with `AuthError.reason`:
  "missing authorization", "malformed authorization" (not AWS4-HMAC-SHA256, bad credential scope,
  unsorted or empty SignedHeaders, a signature that is not 64 hex digits), "missing date" (no valid
  X-Amz-Date; a `Date` header alone is not accepted), "scope date mismatch", "wrong region",
  "wrong service", "request too old" / "request too far in the future" (more than `max_skew`, 5
  minutes by default, either way), "unsigned header" (`host` or some present `x-amz-*` or
  `x-regard-*` header is not signed: an unsigned X-Amz-Target could be switched to another
  operation, an unsigned X-Regard-Purpose rewritten on the way), "missing signed header",
  "unsigned payload" (X-Amz-Content-SHA256 of UNSIGNED-PAYLOAD or a streaming mode: the body must be
  signed), "bad payload hash" (X-Amz-Content-SHA256 differs from the body's hash), whatever
  `secret_for` raises ("unknown key", "revoked key", ...), and "bad signature".

Not supported: presigned URLs (signature in the query string), chunked/streaming payloads, SigV4a.
Signatures are compared with `hmac.compare_digest`. A request can be replayed within the skew window
(as with AWS); the body is covered by the signature, so a replay can only repeat the same call.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, unquote

from regard.errors import AuthError

__all__ = ["ALGORITHM", "verify_sigv4"]

ALGORITHM = "AWS4-HMAC-SHA256"
_TERMINATOR = "aws4_request"
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")  # an RFC 9110 token, lower case
_UNSIGNED_PAYLOADS = ("UNSIGNED-PAYLOAD", "STREAMING-")


@dataclass(frozen=True)
class _Authorization:
    key_id: str
    date: str  # YYYYMMDD
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def _malformed(message: str) -> AuthError:
    return AuthError("malformed authorization", message)


def _parse_authorization(value: str) -> _Authorization:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _malformed(f"the Authorization header must use {ALGORITHM}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, field_value = part.strip().partition("=")
        if not eq or name in fields:
            raise _malformed("the Authorization header must have Credential, SignedHeaders and Signature once each")
        fields[name] = field_value
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise _malformed("the Authorization header must have Credential, SignedHeaders and Signature once each")
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or not all(scope) or scope[4] != _TERMINATOR or not re.fullmatch(r"\d{8}", scope[1]):
        raise _malformed("Credential must be KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request")
    signed = tuple(fields["SignedHeaders"].split(";"))
    if (
        not all(_HEADER_NAME.fullmatch(h) for h in signed)
        or list(signed) != sorted(set(signed))
        or "authorization" in signed
    ):
        raise _malformed("SignedHeaders must be distinct lower-case header names, sorted, separated by ';'")
    if not _SIGNATURE.fullmatch(fields["Signature"]):
        raise _malformed("Signature must be 64 lower-case hex digits")
    return _Authorization(scope[0], scope[1], scope[2], scope[3], signed, fields["Signature"])


def _header_lists(headers: Mapping[str, str]) -> dict[str, list[str]]:
    """Headers by lower-cased name, every value kept in order. `items()` of a plain dict gives one
    value per name; of Starlette's `Headers` (or a list-backed multidict) every repeated value."""
    grouped: dict[str, list[str]] = {}
    for name, value in headers.items():
        grouped.setdefault(name.lower(), []).append(value)
    return grouped


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, and repeated slashes collapsed, as AWS services expect."""
    if not path:
        return "/"
    kept: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if kept:
                kept.pop()
        else:
            kept.append(segment)
    lead = "/" if path.startswith("/") else ""
    trail = "/" if path.endswith("/") and kept else ""
    return lead + "/".join(kept) + trail


def _canonical_uri(path: str) -> str:
    return quote(_remove_dot_segments(path), safe="/~")


def _canonical_query(query: str) -> str:
    pairs = []
    for pair in query.split("&") if query else []:
        name, _, value = pair.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _canonical_headers(grouped: dict[str, list[str]], signed: tuple[str, ...]) -> str:
    return "".join(f"{name}:{','.join(' '.join(v.split()) for v in grouped[name])}\n" for name in signed)


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(f"AWS4{secret}".encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, _TERMINATOR)


def verify_sigv4(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    secret_for: Callable[[str], str],
    region: str,
    service: str = "rekognition",
    now: datetime | None = None,
    max_skew: timedelta = timedelta(minutes=5),
) -> str:
    """The key id that signed this request, if its SigV4 `Authorization` header verifies; else
    AuthError with a `reason` (see the module docstring).

    `path` is the request path as sent (percent-encoded, e.g. ASGI's `raw_path`), `query` the raw
    query string without "?", `headers` every request header (names in any case), `body` the whole
    body. `secret_for(key_id)` returns the key's secret or raises AuthError (unknown or revoked
    key); it is called only once the cheap checks passed."""
    grouped = _header_lists(headers)
    values = grouped.get("authorization", [])
    if not values:
        raise AuthError("missing authorization", "the request is not signed: no Authorization header")
    if len(values) > 1:
        raise _malformed("more than one Authorization header")
    auth = _parse_authorization(values[0])

    dates = grouped.get("x-amz-date", [])
    if len(dates) != 1 or not _AMZ_DATE.fullmatch(dates[0].strip()):
        raise AuthError("missing date", "the request needs one X-Amz-Date header, as YYYYMMDDTHHMMSSZ")
    amz_date = dates[0].strip()
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise AuthError("missing date", f"X-Amz-Date {amz_date!r} is not a valid time") from None
    if auth.date != amz_date[:8]:
        raise AuthError("scope date mismatch", f"the credential's date {auth.date} is not X-Amz-Date's {amz_date[:8]}")
    if auth.region != region:
        raise AuthError("wrong region", f"the credential is scoped to region {auth.region!r}; this server is {region!r}")
    if auth.service != service:
        raise AuthError("wrong service", f"the credential is scoped to service {auth.service!r}, not {service!r}")

    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    if now - signed_at > max_skew:
        raise AuthError("request too old", f"the request was signed at {amz_date}, more than {max_skew} ago")
    if signed_at - now > max_skew:
        raise AuthError("request too far in the future", f"the request is dated {amz_date}, more than {max_skew} ahead")

    # X-Regard-* headers carry the purpose, the consenting user and the reasons that go into the
    # audit log: a proxy must not be able to add or change them after the client signed.
    must_sign = {"host"} | {name for name in grouped if name.startswith(("x-amz-", "x-regard-"))}
    unsigned = sorted(must_sign - set(auth.signed_headers))
    if unsigned:
        raise AuthError("unsigned header", f"these headers must be signed: {', '.join(unsigned)}")
    missing = [name for name in auth.signed_headers if name not in grouped]
    if missing:
        raise AuthError("missing signed header", f"signed headers missing from the request: {', '.join(missing)}")

    payload_hash = hashlib.sha256(body).hexdigest()
    declared = grouped.get("x-amz-content-sha256")
    if declared is not None:
        if len(declared) != 1 or declared[0].strip().startswith(_UNSIGNED_PAYLOADS):
            raise AuthError("unsigned payload", "the body must be signed: send its sha256 in X-Amz-Content-SHA256")
        if not hmac.compare_digest(declared[0].strip().encode("utf-8", "replace"), payload_hash.encode("ascii")):
            raise AuthError("bad payload hash", "X-Amz-Content-SHA256 is not the sha256 of the body")

    secret = secret_for(auth.key_id)

    canonical_request = "\n".join(
        [
            method.upper(),
            _canonical_uri(path),
            _canonical_query(query),
            _canonical_headers(grouped, auth.signed_headers),
            ";".join(auth.signed_headers),
            payload_hash,
        ]
    )
    scope = f"{auth.date}/{auth.region}/{auth.service}/{_TERMINATOR}"
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()]
    )
    expected = hmac.new(
        _signing_key(secret, auth.date, auth.region, auth.service), string_to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, auth.signature):
        raise AuthError("bad signature", "the request signature does not match")
    return auth.key_id
