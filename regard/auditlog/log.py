"""The audit log in SQLite: its tables, and `append`, `entries` and `verify` on them.

The hash chain itself (entries, hashing, validation, queries, checking) is `regard.auditlog.chain`,
shared with the PostgreSQL log (`regard.auditlog.postgres`); its names are re-exported here, so
that `regard.auditlog.log` stays the one import for callers. See `chain` for the hash format and
what verification can and cannot detect.

Transactions belong to the caller. `append` runs inside the caller's write transaction (SQLite:
`BEGIN IMMEDIATE`), so an enrollment or a search and its audit entry commit or roll back together,
and concurrent writers are serialised by the database's write lock; it never begins, commits or
rolls back. `verify` only reads, inside a read transaction of its own when none is open, so that
it sees one consistent snapshot.

With no row in `audit_head` the log is empty (the head row is written with entry 1); the tables'
triggers refuse updates and deletes of entries, and a head that moves back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from regard.auditlog.chain import (
    COLUMNS,
    GENESIS_HASH,
    MAX_PROBLEMS,
    MAX_VECTOR_FLOATS,
    SELECT_ALL,
    SELECT_HEAD,
    AuditAction,
    AuditEntry,
    AuditError,
    ChainChecker,
    Row,
    VerifyReport,
    appendable_head,
    canonical_json,
    check_chain,
    check_details,
    entries_query,
    entry_from_row,
    entry_hash,
    entry_row,
    format_time,
    make_entry,
    stamp,
)

__all__ = [
    "AUDIT_SCHEMA",
    "AUDIT_SCHEMA_STATEMENTS",
    "COLUMNS",
    "GENESIS_HASH",
    "MAX_PROBLEMS",
    "MAX_VECTOR_FLOATS",
    "AuditAction",
    "AuditEntry",
    "AuditError",
    "ChainChecker",
    "VerifyReport",
    "append",
    "canonical_json",
    "check_details",
    "create_schema",
    "entries",
    "entries_query",
    "entry_from_row",
    "entry_hash",
    "format_time",
    "make_entry",
    "verify",
]

# --------------------------------------------------------------------------------------------------
# Schema. Statements are kept separate so they can be run one by one inside a transaction.

AUDIT_SCHEMA_STATEMENTS: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS audit_log (
    seq        INTEGER PRIMARY KEY,
    time       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    collection TEXT,
    purpose    TEXT,
    details    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS audit_log_collection ON audit_log (collection, seq)",
    "CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (actor, seq)",
    "CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log (time)",
    """CREATE TABLE IF NOT EXISTS audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
)""",
    # Append-only, enforced by the database against mistakes in application code. (Anyone who can
    # write the file can drop these; the hash chain and an external copy of the head catch that.)
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_head_forward_only BEFORE UPDATE ON audit_head
WHEN NEW.seq <= OLD.seq
BEGIN SELECT RAISE(ABORT, 'audit_head only moves forward'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN SELECT RAISE(ABORT, 'audit_head cannot be deleted'); END""",
)

AUDIT_SCHEMA: str = "".join(statement + ";\n" for statement in AUDIT_SCHEMA_STATEMENTS)
"""The audit tables, indexes and append-only triggers for SQLite, idempotent (IF NOT EXISTS).

Run it with `conn.executescript(AUDIT_SCHEMA)` (which commits first) or, inside a transaction, with
`create_schema(conn)`. Do not split it on ';': the triggers contain semicolons.
"""

_SQL_TAIL = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
_SQL_INSERT = f"INSERT INTO audit_log ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SQL_SET_HEAD = (
    "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash"
)


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the audit tables if missing, statement by statement, without committing."""
    for statement in AUDIT_SCHEMA_STATEMENTS:
        conn.execute(statement)


def append(
    conn: sqlite3.Connection, *, action: AuditAction, actor: str, collection: str | None,
    purpose: str | None, details: dict[str, Any], now: datetime | None = None,
) -> AuditEntry:  # fmt: skip
    """Append one entry inside the caller's write transaction and return it.

    The caller must hold a write transaction (SQLite: `BEGIN IMMEDIATE`, so that reading the head
    and writing the next entry cannot interleave with another writer); the entry commits or rolls
    back with it. The entry follows the one `audit_head` records, so entries deleted from the end
    stay visible as a gap. Raises AuditError (a ValueError) for an empty actor, an unknown action,
    details holding a vector or anything JSON cannot hold, a naive `now`, no open transaction, or a
    log whose head is inconsistent in a way that appending would hide.
    """
    if not conn.in_transaction:
        raise AuditError(
            "audit.append needs the caller's write transaction (BEGIN IMMEDIATE) to be open"
        )
    time = stamp(now)
    prev_seq, prev_hash = _head(conn)
    entry = make_entry(
        prev_seq=prev_seq, prev_hash=prev_hash, time=time, action=action, actor=actor,
        collection=collection, purpose=purpose, details=details,
    )  # fmt: skip
    conn.execute(_SQL_INSERT, entry_row(entry))
    conn.execute(_SQL_SET_HEAD, (entry.seq, entry.hash))
    return entry


def _head(conn: sqlite3.Connection) -> tuple[int, str]:
    """The (seq, hash) the next entry follows: the head row's, or the genesis when the log is empty."""
    head = conn.execute(SELECT_HEAD).fetchone()
    tail = conn.execute(_SQL_TAIL).fetchone()
    if head is not None:
        return appendable_head(int(head[0]), str(head[1]), None if tail is None else tail[0])
    if tail is not None:
        raise AuditError(
            f"audit_head is missing but the log holds entries up to seq {tail[0]}; "
            "refusing to append until an operator has run verify and restored it"
        )
    return 0, GENESIS_HASH


def entries(conn: sqlite3.Connection, **filters: Any) -> list[AuditEntry]:
    """Entries matching every filter given (collection, action, actor, since, until, limit,
    newest_first), in seq order: see `chain.entries_query`."""
    sql, params = entries_query("?", **filters)
    return [entry_from_row(row) for row in conn.execute(sql, params)]


def verify(
    conn: sqlite3.Connection, *, anchor: tuple[int, str] | None = None, chunk_size: int = 1000
) -> VerifyReport:
    """Check the whole chain, reading `chunk_size` rows at a time, and report every break found.

    What is found is `chain.ChainChecker`'s: edited, deleted, reordered or replaced entries, entries
    deleted from the end (the log stops short of `audit_head`), and, given `anchor=(seq, hash)` from
    an earlier report, a log rewritten from scratch. Only reads: when no transaction is open it
    reads inside one of its own (a consistent snapshot) and ends it; otherwise in the caller's.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    began = False
    if not conn.in_transaction:
        conn.execute("BEGIN")
        began = True
    cursor = None
    try:
        row = conn.execute(SELECT_HEAD).fetchone()
        head = (row[0], row[1]) if row is not None else None
        cursor = conn.execute(SELECT_ALL)
        return check_chain(head, _chunks(cursor, chunk_size), anchor)
    finally:
        if cursor is not None:
            cursor.close()
        if began:
            conn.execute("ROLLBACK")


def _chunks(cursor: sqlite3.Cursor, chunk_size: int) -> Iterator[Row]:
    while rows := cursor.fetchmany(chunk_size):
        yield from rows
