"""The hash-chained audit log in PostgreSQL: the same entries, hashes and checks as `regard.auditlog.log`.

Only the SQL differs; hashing, canonical JSON, validation and chain checking are `log.py`'s own
(`make_entry`, `ChainChecker`), so a log copied verbatim between backends verifies on either.

Serialising appends. Several Regard processes, on several machines, may write one database. Each
append reads the head row with `SELECT ... FOR UPDATE`, which makes every other appender wait until
the transaction holding it commits or rolls back; so entries get consecutive seqs and each links to
the one committed before it (a linear chain). The PostgreSQL store takes that same lock at the start
of each write transaction (`lock_head`), which also serialises its writers as SQLite's
`BEGIN IMMEDIATE` does. The head row exists from the schema's creation on (seq 0, the genesis hash),
so there is always a row to lock, even before the first entry.

The tables, indexes and append-only triggers are created by the store's versioned migrations
(regard/store/migrations/postgres/). `details` is TEXT, not JSONB: JSONB would rewrite the text and
the hash is over the canonical text.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from regard.auditlog.log import (
    COLUMNS,
    AuditAction,
    AuditEntry,
    AuditError,
    ChainChecker,
    VerifyReport,
    canonical_json,
    entries_query,
    entry_from_row,
    format_time,
    make_entry,
)

__all__ = ["append", "entries", "head", "head_locked", "lock_head", "request_head_lock", "verify"]

def _execute(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> psycopg.Cursor[tuple[Any, ...]]:
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
        raise AuditError("audit_head has no row: the schema is damaged; refusing to append until an operator has run verify")
    seq, digest, tail = int(row[0]), str(row[1]), row[2]
    if tail is not None and int(tail) > seq:
        raise AuditError(
            f"the log holds entries up to seq {tail} past audit_head (seq {seq}); "
            "refusing to append until an operator has run verify"
        )
    return seq, digest


def head(conn: psycopg.Connection[Any]) -> tuple[int, str] | None:
    """The (seq, hash) the head row records, without locking; None if it has no row."""
    row = _execute(conn, "SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def append(
    conn: psycopg.Connection[Any],
    *,
    action: AuditAction,
    actor: str,
    collection: str | None,
    purpose: str | None,
    details: dict[str, Any],
    now: datetime | None = None,
    locked_head: tuple[int, str] | None = None,
) -> AuditEntry:
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
        prev_seq=prev_seq,
        prev_hash=prev_hash,
        time=format_time(now if now is not None else datetime.now(timezone.utc)),
        action=action,
        actor=actor,
        collection=collection,
        purpose=purpose,
        details=details,
    )
    conn.execute(
        f"WITH entry AS (INSERT INTO audit_log ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "RETURNING seq, hash) UPDATE audit_head SET seq = entry.seq, hash = entry.hash FROM entry WHERE id = 1",
        (
            entry.seq,
            entry.time,
            entry.actor,
            entry.action.value,
            entry.collection,
            entry.purpose,
            canonical_json(entry.details),
            entry.prev_hash,
            entry.hash,
        ),
    )
    return entry


def entries(
    conn: psycopg.Connection[Any],
    *,
    collection: str | None = None,
    action: AuditAction | str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[AuditEntry]:
    """Entries matching every filter given, in seq order (see log.entries)."""
    sql, params = entries_query(
        "%s", collection=collection, action=action, actor=actor, since=since, until=until, limit=limit, newest_first=newest_first
    )
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
        recorded = head(conn)
        # The schema's placeholder row (seq 0) means "nothing appended yet", as a missing row does
        # in SQLite; a log with entries and such a head is reported as entries past the head.
        checker = ChainChecker(recorded, anchor)
        with conn.cursor(name="regard_audit_verify", row_factory=tuple_row) as cursor:
            cursor.itersize = chunk_size
            cursor.execute(f"SELECT {COLUMNS} FROM audit_log ORDER BY seq")
            for row in cursor:
                checker.add((int(row[0]), *row[1:]))  # type: ignore[arg-type]
    return checker.finish()
