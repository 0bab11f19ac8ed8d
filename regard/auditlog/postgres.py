"""The audit log in PostgreSQL: the same entries, hashes and checks as SQLite's (`log.py`).

Only the SQL and the connection's handling are here; building, hashing, validating, querying and
checking entries are `regard.auditlog.chain`'s, shared with SQLite, so a log copied verbatim
between backends verifies on either.

Serialising appends. Several Regard processes, on several machines, may write one database. Each
append reads the head row with `SELECT ... FOR UPDATE`, which makes every other appender wait until
the transaction holding it commits or rolls back; so entries get consecutive seqs and each links to
the one committed before it (a linear chain). The PostgreSQL store takes that same lock at the start
of each write transaction (`lock_head`), which also serialises its writers as SQLite's
`BEGIN IMMEDIATE` does. The head row exists from the schema's creation on (seq 0, the genesis hash),
so there is always a row to lock, even before the first entry.

The tables, indexes and append-only triggers are created by the store's versioned migrations
(regard/store/postgres/migrations/). `details` is TEXT, not JSONB: JSONB would rewrite the text and
the hash is over the canonical text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from regard.auditlog.chain import (
    COLUMNS,
    SELECT_ALL,
    SELECT_HEAD,
    AuditAction,
    AuditEntry,
    AuditError,
    VerifyReport,
    appendable_head,
    check_chain,
    entries_query,
    entry_from_row,
    entry_row,
    make_entry,
    stamp,
)

__all__ = ["append", "entries", "head", "head_locked", "lock_head", "request_head_lock", "verify"]

_SQL_INSERT = (
    f"WITH entry AS (INSERT INTO audit_log ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "RETURNING seq, hash) UPDATE audit_head SET seq = entry.seq, hash = entry.hash FROM entry WHERE id = 1"
)  # the entry and the head it becomes, in one statement


def _execute(
    conn: psycopg.Connection[Any], sql: str, params: Any = None
) -> psycopg.Cursor[tuple[Any, ...]]:
    """Run a statement with rows as tuples, whatever the connection's own row factory."""
    return conn.cursor(row_factory=tuple_row).execute(sql, params)  # type: ignore[arg-type]


def lock_head(conn: psycopg.Connection[Any]) -> tuple[int, str]:
    """Lock the head row for the rest of the caller's transaction and return its (seq, hash).

    Every other writer waits here until this transaction ends: this is what keeps the chain linear.
    Refuses (AuditError) a log with entries past the head, which appending would hide.
    """
    return head_locked(request_head_lock(conn))


def request_head_lock(conn: psycopg.Connection[Any]) -> psycopg.Cursor[tuple[Any, ...]]:
    """Send `lock_head`'s query; `head_locked` reads its answer. In pipeline mode the statements
    sent between the two go out with it and run once the lock is held, each with a snapshot taken
    then: they see every transaction committed before this one got the lock."""
    return _execute(
        conn,
        "SELECT h.seq, h.hash, (SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1) "
        "FROM audit_head h WHERE h.id = 1 FOR UPDATE OF h",
    )


def head_locked(cursor: psycopg.Cursor[tuple[Any, ...]]) -> tuple[int, str]:
    """The (seq, hash) of the head row that `request_head_lock` locked, checked as `lock_head` says."""
    row = cursor.fetchone()
    if row is None:
        raise AuditError(
            "audit_head has no row: the schema is damaged; "
            "refusing to append until an operator has run verify"
        )
    seq, digest, tail = row
    return appendable_head(int(seq), str(digest), None if tail is None else int(tail))


def head(conn: psycopg.Connection[Any]) -> tuple[int, str] | None:
    """The (seq, hash) the head row records, without locking; None if it has no row."""
    row = _execute(conn, SELECT_HEAD).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def append(
    conn: psycopg.Connection[Any], *, action: AuditAction, actor: str, collection: str | None,
    purpose: str | None, details: dict[str, Any], now: datetime | None = None,
    locked_head: tuple[int, str] | None = None,
) -> AuditEntry:  # fmt: skip
    """Append one entry inside the caller's open transaction and return it (see log.append).

    `locked_head` is what `lock_head` returned earlier in this same transaction, when the caller
    took the lock first (one query less); no other entry may have been appended since.
    """
    # In pipeline mode libpq learns the transaction status only at the pipeline's sync points, so
    # there it cannot tell; the caller's pipelined transaction is its own to open (the store's is).
    pipelined = conn.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF
    if not pipelined and conn.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS:
        raise AuditError("audit append needs the caller's transaction to be open")
    prev_seq, prev_hash = locked_head if locked_head is not None else lock_head(conn)
    entry = make_entry(
        prev_seq=prev_seq, prev_hash=prev_hash, time=stamp(now), action=action, actor=actor,
        collection=collection, purpose=purpose, details=details,
    )  # fmt: skip
    conn.execute(_SQL_INSERT, entry_row(entry))
    return entry


def entries(conn: psycopg.Connection[Any], **filters: Any) -> list[AuditEntry]:
    """Entries matching every filter given, in seq order (see log.entries)."""
    sql, params = entries_query("%s", **filters)
    return [entry_from_row(row) for row in _execute(conn, sql, params).fetchall()]


def verify(
    conn: psycopg.Connection[Any], *, anchor: tuple[int, str] | None = None, chunk_size: int = 1000
) -> VerifyReport:
    """Check the whole chain (see log.verify), streaming it through a server-side cursor inside a
    REPEATABLE READ transaction of its own: one consistent snapshot, constant memory."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise AuditError("verify runs in a transaction of its own: call it with no transaction open")
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        # The schema's placeholder row (seq 0) means "nothing appended yet", as a missing row does
        # in SQLite; a log with entries and such a head is reported as entries past the head.
        recorded = head(conn)
        with conn.cursor(name="regard_audit_verify", row_factory=tuple_row) as cursor:
            cursor.itersize = chunk_size
            cursor.execute(SELECT_ALL)
            rows = ((int(row[0]), *row[1:]) for row in cursor)
            return check_chain(recorded, rows, anchor)  # type: ignore[arg-type]
