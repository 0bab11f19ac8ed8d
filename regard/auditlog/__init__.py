"""The audit trail: an append-only, hash-chained log in the face store's own database.

    from regard import auditlog as audit
    conn.execute("BEGIN IMMEDIATE")
    ...                                          # the store's own writes
    audit.append(conn, action=audit.AuditAction.SEARCH, actor="alice", collection="staff",
                 purpose="door access", details={"candidates": [{"person": "p7", "score": 71.3}]})
    conn.execute("COMMIT")                       # the operation and its entry commit together

    report = audit.verify(conn)                  # report.ok, report.problems, report.head_hash

See `regard.auditlog.log` for the hash format and what `verify` can and cannot detect.
"""

from regard.auditlog.log import (
    AUDIT_SCHEMA,
    AUDIT_SCHEMA_STATEMENTS,
    GENESIS_HASH,
    AuditAction,
    AuditEntry,
    AuditError,
    ChainChecker,
    VerifyReport,
    append,
    canonical_json,
    check_details,
    create_schema,
    entries,
    entry_hash,
    format_time,
    make_entry,
    verify,
)

__all__ = [
    "AUDIT_SCHEMA",
    "AUDIT_SCHEMA_STATEMENTS",
    "GENESIS_HASH",
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
    "entry_hash",
    "format_time",
    "make_entry",
    "verify",
]
