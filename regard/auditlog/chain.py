"""The audit log's hash chain, for every backend: entries, hashing, validation, queries, checking.

Pure Python, no database: each backend (`log.py` for SQLite, `postgres.py` for PostgreSQL) reads
and writes its own tables and hands the rows to this module, so a log copied verbatim between
backends verifies on either.

Every entry records who did what, in which collection, for which declared purpose, and a small JSON
object of details (ids, counts, scores; never a face or an embedding). Entry `seq` carries

    hash = sha256_hex( prev_hash + canonical_json({"seq", "time", "actor", "action",
                                                   "collection", "purpose", "details"}) )

where `prev_hash` is the hash of entry `seq - 1` (64 zeros for entry 1), the string concatenation is
encoded as UTF-8 and canonical JSON is `json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=False, allow_nan=False)`. Editing, deleting, inserting or reordering entries breaks
the chain, and `check_chain` names the entries where it breaks. Floats are hashed as Python writes
them (shortest repr): put rounded values in details (`round(score, 2)`), not raw float32 noise.

A chain alone cannot show that its newest entries were deleted, so a one-row table `audit_head`
holds the seq and hash of the newest entry, written with each entry in the same transaction, and
verification checks that the log ends there. Someone who can write the database can rewrite the
log, the head and the triggers alike: for a stronger guarantee an operator copies
`VerifyReport.head_hash` (with its `head_seq`) somewhere the database's writers cannot change, and
later passes it back as `verify(conn, anchor=(seq, hash))`, which checks the log still contains
that exact entry.

The log cannot be edited, so details should hold pseudonymous ids rather than names or other
personal data: what goes in stays, even after a person is forgotten.

What a backend uses: `stamp` and `make_entry` build the entry that follows the head (after
`appendable_head` has refused a head that entries lie past), `entry_row` is the row to insert;
`entries_query` and `entry_from_row` read entries back; `check_chain` (a `ChainChecker` fed the
rows in seq order) verifies. The SQL here is standard text with the driver's placeholder; `details`
is stored as TEXT, never as a JSON type that would rewrite it (the hash is over the canonical text).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import numpy as np

from regard.errors import RegardError

GENESIS_HASH = "0" * 64
"""The prev_hash of entry 1."""

MAX_VECTOR_FLOATS = 16
"""A list (or array) holding this many floats or more looks like a face vector and is refused."""

FORBIDDEN_KEYS = frozenset({"embedding", "embeddings", "vector", "vectors"})
"""Detail keys (compared case-insensitively) that are refused whatever their value."""

MAX_PROBLEMS = 100
"""`verify` lists at most this many problems, then one line with the count of the rest."""

_HEX64 = re.compile(r"[0-9a-f]{64}")

COLUMNS = "seq, time, actor, action, collection, purpose, details, prev_hash, hash"
"""The audit_log columns, in the order of a row (`Row`, `entry_row`, `entry_from_row`)."""

SELECT_HEAD = "SELECT seq, hash FROM audit_head WHERE id = 1"
"""The (seq, hash) the head row records, without locking it."""

SELECT_ALL = f"SELECT {COLUMNS} FROM audit_log ORDER BY seq"
"""Every entry's row, in seq order: what `check_chain` reads."""

Row = tuple[Any, Any, Any, Any, Any, Any, Any, Any, Any]  # the columns of COLUMNS, in order

# --------------------------------------------------------------------------------------------------
# Types


class AuditError(RegardError, ValueError):
    """An audit entry was refused (empty actor, a vector in details, ...) or cannot be added."""


class AuditAction(str, Enum):
    """What an audit entry records. The value is what is stored and hashed."""

    COLLECTION_CREATE = "collection_create"
    COLLECTION_UPDATE = "collection_update"  # purpose, threshold or retention changed
    COLLECTION_DELETE = "collection_delete"
    PERSON_ADD = "person_add"
    CONSENT_RECORD = "consent_record"
    CONSENT_REVOKE = "consent_revoke"
    ENROLL = "enroll"
    SEARCH = "search"  # 1:N identification inside a collection
    VERIFY = "verify"  # 1:1 verification of a probe against one enrolled person
    FACE_DELETE = "face_delete"
    FORGET = "forget"  # a person and all their faces erased
    EXPORT = "export"  # a person's data exported (subject access request)
    SWEEP = "sweep"  # retention sweep: expired or unconsented faces removed
    KEY_CREATE = "key_create"  # a service API key issued
    KEY_REVOKE = "key_revoke"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the audit log, as stored."""

    seq: int  # 1, 2, 3, ... without gaps
    time: str  # ISO 8601 UTC with microseconds: 2024-05-01T12:00:00.000000Z
    actor: str  # who acted (a user or service name, as the caller authenticated it)
    action: AuditAction
    collection: str | None
    purpose: str | None  # the purpose declared for this action, if any
    details: dict[str, Any] = field(hash=False)  # JSON-serialisable; never a vector
    prev_hash: str  # hash of entry seq - 1; GENESIS_HASH for entry 1
    hash: str  # entry_hash(prev_hash, ...) of this entry

    def as_dict(self) -> dict[str, Any]:
        """The entry as a JSON-serialisable dict (action as its string value)."""
        return {
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "action": self.action.value,
            "collection": self.collection,
            "purpose": self.purpose,
            "details": json.loads(canonical_json(self.details)),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class VerifyReport:
    """What `verify` found.

    `head_seq` and `head_hash` are those of the newest entry in the log (None when it is empty):
    when `ok`, copy them somewhere the database's writers cannot change, and pass them back later as
    `verify(conn, anchor=(head_seq, head_hash))`.
    """

    ok: bool
    checked: int  # entries read
    head_seq: int | None
    head_hash: str | None
    problems: list[str]  # each names the seq concerned and what is wrong


# --------------------------------------------------------------------------------------------------
# Canonical form, hashing and the next entry


def canonical_json(obj: Any) -> str:
    """The canonical JSON text of `obj`: sorted keys, no spaces, UTF-8 kept, no NaN or infinity."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def format_time(moment: datetime) -> str:
    """`moment` as fixed-width ISO 8601 UTC with microseconds, e.g. 2024-05-01T12:00:00.000000Z.

    Fixed width, so the strings sort as the times do. Naive datetimes are refused (ambiguous).
    """
    if not isinstance(moment, datetime):
        raise AuditError(f"expected a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise AuditError("datetime must be timezone-aware (e.g. datetime.now(timezone.utc))")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stamp(now: datetime | None) -> str:
    """The time of a new entry: `now` (timezone-aware) or, when None, the current time."""
    return format_time(now if now is not None else datetime.now(UTC))


def entry_hash(
    prev_hash: str,
    seq: int,
    time: str,
    actor: str,
    action: str,
    collection: str | None,
    purpose: str | None,
    details: Mapping[str, Any],
) -> str:
    """sha256 hex of prev_hash followed by the canonical JSON of the entry's fields, as UTF-8."""
    payload = canonical_json(
        {
            "seq": seq,
            "time": time,
            "actor": actor,
            "action": str(action.value if isinstance(action, AuditAction) else action),
            "collection": collection,
            "purpose": purpose,
            "details": details,
        }
    )
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


def check_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """Validate details and return them as plain JSON data (tuples as lists, numpy as Python).

    Refused (AuditError, a ValueError): keys that are not strings; keys named embedding(s) or
    vector(s) at any depth; any list, tuple or array holding MAX_VECTOR_FLOATS floats or more
    (counting floats in nested lists), since that is what a face vector looks like (keep scores
    beside their ids: [{"person": "p1", "score": 71.3}, ...]); NaN and infinity; anything JSON
    cannot hold (bytes, objects). Integer vectors or encoded strings cannot be told apart from
    ordinary data: never put a face's data in details.
    """
    if not isinstance(details, Mapping):
        raise AuditError(f"details must be a dict, got {type(details).__name__}")
    plain = _plain(details, "details")
    try:
        text = canonical_json(plain)
    except (TypeError, ValueError) as e:  # pragma: no cover - _plain already checks every value
        raise AuditError(f"details are not JSON-serialisable: {e}") from None
    result: dict[str, Any] = json.loads(text)
    return result


def _plain(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AuditError(f"{path}: {value} is not allowed (JSON has no NaN or infinity)")
        return float(value)
    if isinstance(value, np.generic):
        return _plain(value.item(), path)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditError(f"{path}: keys must be strings, got {key!r}")
            if key.lower() in FORBIDDEN_KEYS:
                raise AuditError(f"{path}.{key}: the audit log never holds embeddings or vectors")
            out[key] = _plain(item, f"{path}.{key}")
        return out
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fc" and value.size >= MAX_VECTOR_FLOATS:
            raise AuditError(
                f"{path}: an array of {value.size} floats looks like a face vector; "
                "the audit log never holds embeddings or vectors"
            )
        return _plain(value.tolist(), path)
    if isinstance(value, (list, tuple)):
        floats = _count_floats(value)
        if floats >= MAX_VECTOR_FLOATS:
            raise AuditError(
                f"{path}: a list of {floats} floats looks like a face vector; "
                "the audit log never holds embeddings or vectors"
            )
        return [_plain(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise AuditError(f"{path}: {type(value).__name__} is not JSON-serialisable")


def _count_floats(items: Iterable[Any]) -> int:
    count = 0
    for item in items:
        if isinstance(item, (float, np.floating)):
            count += 1
        elif isinstance(item, np.ndarray) and item.dtype.kind in "fc":
            count += item.size
        elif isinstance(item, (list, tuple)):
            count += _count_floats(item)
    return count


def _check_text(name: str, value: str | None, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise AuditError(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise AuditError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise AuditError(f"{name} must not be empty" + ("" if required else " (use None)"))
    return value


def appendable_head(seq: int, digest: str, tail: int | None) -> tuple[int, str]:
    """The head (seq, hash) that a new entry follows, given the newest seq in the log (`tail`).

    Refuses (AuditError) a log holding entries past the head, which appending would hide.
    """
    if tail is not None and tail > seq:
        raise AuditError(
            f"the log holds entries up to seq {tail} past audit_head (seq {seq}); "
            "refusing to append until an operator has run verify"
        )
    return seq, digest


def make_entry(
    *,
    prev_seq: int,
    prev_hash: str,
    time: str,
    action: AuditAction | str,
    actor: str,
    collection: str | None,
    purpose: str | None,
    details: Mapping[str, Any],
) -> AuditEntry:
    """The entry that follows (prev_seq, prev_hash): validated, normalised and hashed."""
    try:
        action = AuditAction(action)
    except ValueError:
        raise AuditError(f"unknown audit action {action!r}") from None
    actor = _check_text("actor", actor, required=True)  # type: ignore[assignment]
    collection = _check_text("collection", collection, required=False)
    purpose = _check_text("purpose", purpose, required=False)
    plain = check_details(details)
    seq = prev_seq + 1
    digest = entry_hash(prev_hash, seq, time, actor, action, collection, purpose, plain)
    return AuditEntry(seq, time, actor, action, collection, purpose, plain, prev_hash, digest)


def entry_row(entry: AuditEntry) -> Row:
    """The row that stores `entry`, in COLUMNS order (details as their canonical text)."""
    return (
        entry.seq,
        entry.time,
        entry.actor,
        entry.action.value,
        entry.collection,
        entry.purpose,
        canonical_json(entry.details),
        entry.prev_hash,
        entry.hash,
    )


# --------------------------------------------------------------------------------------------------
# Reading entries back


def entries_query(
    placeholder: str,
    *,
    collection: str | None = None,
    action: AuditAction | str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> tuple[str, list[Any]]:
    """The SELECT of the entries matching every filter given, and its parameters, with the
    driver's `placeholder` ("?" for SQLite, "%s" for PostgreSQL).

    Entries come in seq order (newest first if asked). `since` is inclusive and `until` exclusive;
    both must be timezone-aware. `limit` keeps the first `limit` entries of that order (so
    `newest_first=True, limit=10` is the ten newest).
    """
    where: list[str] = []
    params: list[Any] = []
    if collection is not None:
        where.append(f"collection = {placeholder}")
        params.append(collection)
    if action is not None:
        try:
            value = AuditAction(action).value
        except ValueError:
            raise AuditError(f"unknown audit action {action!r}") from None
        where.append(f"action = {placeholder}")
        params.append(value)
    if actor is not None:
        where.append(f"actor = {placeholder}")
        params.append(actor)
    if since is not None:
        where.append(f"time >= {placeholder}")
        params.append(format_time(since))
    if until is not None:
        where.append(f"time < {placeholder}")
        params.append(format_time(until))
    sql = f"SELECT {COLUMNS} FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise AuditError(f"limit must be a non-negative integer, got {limit!r}")
        sql += f" LIMIT {placeholder}"
        params.append(limit)
    return sql, params


def entry_from_row(row: Row) -> AuditEntry:
    """An entry from a row of the audit_log columns, in order (either backend)."""
    seq, time, actor, action, collection, purpose, details, prev_hash, digest = row
    return AuditEntry(
        seq=int(seq),
        time=time,
        actor=actor,
        action=AuditAction(action),
        collection=collection,
        purpose=purpose,
        details=json.loads(details),
        prev_hash=prev_hash,
        hash=digest,
    )


# --------------------------------------------------------------------------------------------------
# Checking the chain: rows fed in seq order, one at a time.


def check_chain(
    head: tuple[int, str] | None, rows: Iterable[Row], anchor: tuple[int, str] | None = None
) -> VerifyReport:
    """Check `rows` (every entry, in seq order) against the `head` the head table records and the
    optional `anchor`, and report every break found (see `ChainChecker`)."""
    checker = ChainChecker(head, anchor)
    for row in rows:
        checker.add(row)
    return checker.finish()


class ChainChecker:
    """Checks audit rows fed in ascending seq order; memory stays constant whatever the log's size.

    `head` is the (seq, hash) the head table records (None if it has no row); `anchor` an optional
    (seq, hash) copied earlier from a VerifyReport.

    Found: an edited entry (its hash no longer matches), a changed prev_hash, deleted entries (a gap
    in seq), reordered or replaced entries (hash and link mismatches at each seq concerned), entries
    deleted from the end (the log stops short of the head), and, given an anchor from an earlier
    report, a log rewritten from scratch.
    """

    def __init__(self, head: tuple[int, str] | None, anchor: tuple[int, str] | None = None) -> None:
        self.head = head
        self.anchor = anchor
        self.checked = 0
        self.last_seq = 0
        self.last_hash = GENESIS_HASH
        self._problems: list[str] = []
        self._more = 0
        self._anchor_seen = False

    def _problem(self, message: str) -> None:
        if len(self._problems) < MAX_PROBLEMS:
            self._problems.append(message)
        else:
            self._more += 1

    def add(self, row: Row) -> None:
        """Check one row: its place in the sequence, its link to the previous entry, its hash."""
        seq, time, actor, action, collection, purpose, details, prev_hash, stored_hash = row
        self.checked += 1
        if not isinstance(seq, int) or seq <= self.last_seq:
            self._problem(f"seq {seq!r}: out of order after seq {self.last_seq}")
            return
        expected = self.last_seq + 1
        if seq > expected:
            where = f"jumps from seq {self.last_seq} to" if self.last_seq else "starts at"
            self._problem(f"{_span(expected, seq - 1)} missing: the log {where} seq {seq}")
        elif prev_hash != self.last_hash:
            before = "the genesis hash" if seq == 1 else f"the hash of seq {seq - 1}"
            self._problem(
                f"seq {seq}: prev_hash does not match {before} "
                "(this link, or an entry before it, was changed, moved or replaced)"
            )
        try:
            parsed = json.loads(details)
            computed = entry_hash(prev_hash, seq, time, actor, action, collection, purpose, parsed)
        except (TypeError, ValueError) as e:
            self._problem(f"seq {seq}: entry cannot be read ({e})")
        else:
            if computed != stored_hash:
                self._problem(
                    f"seq {seq}: hash does not match the entry's contents "
                    "(the entry was edited, moved or replaced)"
                )
            elif canonical_json(parsed) != details:
                self._problem(
                    f"seq {seq}: details are not in canonical form (written outside regard)"
                )
        if not (isinstance(stored_hash, str) and _HEX64.fullmatch(stored_hash)):
            self._problem(f"seq {seq}: hash is not 64 lowercase hex digits")
        if self.head is not None and seq == self.head[0] and stored_hash != self.head[1]:
            self._problem(f"seq {seq}: hash differs from the one audit_head records")
        if self.anchor is not None and seq == self.anchor[0]:
            self._anchor_seen = True
            if stored_hash != self.anchor[1]:
                self._problem(f"seq {seq}: hash differs from the anchor (the log was rewritten)")
        self.last_seq = seq
        self.last_hash = stored_hash

    def finish(self) -> VerifyReport:
        """Check the end of the log against the head and the anchor, and report."""
        last = self.last_seq
        if self.head is None:
            if self.checked:
                self._problem(
                    "audit_head is missing: cannot tell whether entries after "
                    f"seq {last} were deleted"
                )
        else:
            head_seq = self.head[0]
            if head_seq > last:
                ends = f"ends at seq {last}" if last else "is empty"
                self._problem(
                    f"{_span(last + 1, head_seq)} missing at the end: audit_head records "
                    f"seq {head_seq} but the log {ends}"
                )
            elif head_seq < last:
                self._problem(
                    f"{_span(head_seq + 1, last)} past audit_head (seq {head_seq}): "
                    "written outside regard, or audit_head was rolled back"
                )
        if self.anchor is not None and not self._anchor_seen:
            self._problem(f"seq {self.anchor[0]} (the anchor) is missing from the log")
        problems = list(self._problems)
        if self._more:
            problems.append(f"... and {self._more} more problems")
        return VerifyReport(
            ok=not problems,
            checked=self.checked,
            head_seq=last if self.checked else None,
            head_hash=self.last_hash if self.checked else None,
            problems=problems,
        )


def _span(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first} to {last}"
