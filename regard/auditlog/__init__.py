"""The audit trail: an append-only, hash-chained log in the face store's own database.

    from regard import auditlog as audit
    conn.execute("BEGIN IMMEDIATE")
    ...                                          # the store's own writes
    audit.append(conn, action=audit.AuditAction.SEARCH, actor="alice", collection="staff",
                 purpose="door access", details={"candidates": [{"person": "p7", "score": 71.3}]})
    conn.execute("COMMIT")                       # the operation and its entry commit together

    report = audit.verify(conn)                  # report.ok, report.problems, report.head_hash

See `regard.auditlog.chain` for the hash format and what `verify` can and cannot detect;
`regard.auditlog.log` is the SQLite table, `regard.auditlog.postgres` the PostgreSQL one.
"""

from regard.auditlog import log
from regard.auditlog.log import *  # the names log.__all__ lists: the chain's and SQLite's table's

__all__ = log.__all__
