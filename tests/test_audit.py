"""The audit log: hash chain, tamper detection, refusal of vectors, concurrent writers, queries.

Real SQLite files in tmp_path; tampering is done with raw SQL after dropping the append-only
triggers, as someone with write access to the database file could.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from regard import auditlog as audit
from regard.auditlog import AuditAction, AuditError
from regard.auditlog.log import MAX_PROBLEMS
from regard.errors import RegardError

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def connect(path: Path) -> sqlite3.Connection:
    """A connection the way the store opens one: WAL, a busy timeout, explicit transactions."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(audit.AUDIT_SCHEMA)
    return conn


def record(conn: sqlite3.Connection, **kwargs: Any) -> audit.AuditEntry:
    """Append one entry in its own write transaction."""
    fields: dict[str, Any] = {
        "action": AuditAction.SEARCH,
        "actor": "alice",
        "collection": "staff",
        "purpose": "door access",
        "details": {},
    }
    fields.update(kwargs)
    conn.execute("BEGIN IMMEDIATE")
    try:
        entry = audit.append(conn, **fields)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return entry


def seven(conn: sqlite3.Connection) -> list[audit.AuditEntry]:
    """Seven entries of different kinds, one minute apart."""
    a = AuditAction
    specs: list[tuple[AuditAction, str, dict[str, Any]]] = [
        (a.COLLECTION_CREATE, "admin", {"threshold": 61.2}),
        (a.PERSON_ADD, "admin", {"person": "p1"}),
        (a.CONSENT_RECORD, "admin", {"person": "p1", "form": "F-17"}),
        (a.ENROLL, "admin", {"person": "p1", "face": "f1", "quality": 88.5}),
        (a.SEARCH, "alice", {"candidates": [{"person": "p1", "score": 71.25}]}),
        (a.SEARCH, "bob", {"candidates": []}),
        (a.FORGET, "admin", {"person": "p1", "faces": 1, "note": "Zoë ✓"}),
    ]
    written = []
    for i, (action, actor, details) in enumerate(specs):
        where = {"collection": "visitors", "purpose": "reception"} if actor == "bob" else {}
        now = T0 + timedelta(minutes=i)
        written.append(record(conn, action=action, actor=actor, details=details, now=now, **where))
    return written


def tamper(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run raw SQL on the log the way an intruder with the file would: triggers dropped first."""
    triggers = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
    for (name,) in triggers:
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute(sql, params)


def problems_naming(report: audit.VerifyReport, seq: int) -> list[str]:
    """The problems that blame `seq` (those starting "seq N:" or "seq N ")."""
    return [p for p in report.problems if p.startswith((f"seq {seq}:", f"seq {seq} "))]


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    c = connect(tmp_path / "regard.db")
    yield c
    c.close()


# -- the chain -------------------------------------------------------------------------------------


def test_chain_verifies_and_links(conn: sqlite3.Connection) -> None:
    written = seven(conn)
    assert [e.seq for e in written] == list(range(1, 8))
    assert written[0].prev_hash == audit.GENESIS_HASH == "0" * 64
    for before, after in zip(written, written[1:]):
        assert after.prev_hash == before.hash
    assert audit.entries(conn) == written  # what append returned is what was stored
    assert written[6].details["note"] == "Zoë ✓"
    assert written[0].time == "2024-05-01T12:00:00.000000Z"

    report = audit.verify(conn)
    assert report.ok and report.problems == []
    assert report.checked == 7 and report.head_seq == 7 and report.head_hash == written[-1].hash
    assert not conn.in_transaction  # verify ended the read transaction it began


def test_hash_is_the_documented_formula(conn: sqlite3.Connection) -> None:
    e = record(conn, details={"b": [1, 2.5], "a": "é"}, now=T0)
    payload = json.dumps(
        {"seq": 1, "time": e.time, "actor": "alice", "action": "search", "collection": "staff",
         "purpose": "door access", "details": {"a": "é", "b": [1, 2.5]}},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    assert e.hash == hashlib.sha256(("0" * 64 + payload).encode("utf-8")).hexdigest()
    stored = conn.execute("SELECT details FROM audit_log").fetchone()[0]
    assert stored == '{"a":"é","b":[1,2.5]}'


def test_empty_log_verifies(conn: sqlite3.Connection) -> None:
    report = audit.verify(conn)
    assert report.ok and report.checked == 0
    assert report.head_seq is None and report.head_hash is None


def test_works_with_row_factory(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row  # as the store sets it
    written = seven(conn)
    assert audit.entries(conn) == written and audit.verify(conn).ok


def test_verify_reads_in_chunks_and_inside_a_callers_transaction(conn: sqlite3.Connection) -> None:
    seven(conn)
    assert audit.verify(conn, chunk_size=2) == audit.verify(conn)
    conn.execute("BEGIN")
    assert audit.verify(conn).ok
    assert conn.in_transaction  # the caller's transaction is left alone
    conn.execute("ROLLBACK")


# -- tampering -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("details", '{"candidates":[]}'),
        ("actor", "mallory"),
        ("time", "2024-05-01T11:00:00.000000Z"),
        ("action", "verify"),
        ("collection", "visitors"),
        ("purpose", "curiosity"),
    ],
)
def test_edited_entry_is_caught_and_named(
    conn: sqlite3.Connection, column: str, value: str
) -> None:
    seven(conn)
    tamper(conn, f"UPDATE audit_log SET {column} = ? WHERE seq = 5", (value,))
    report = audit.verify(conn)
    assert not report.ok
    assert problems_naming(report, 5) == report.problems  # only seq 5 is blamed
    assert any("hash does not match" in p for p in report.problems)


def test_edit_with_recomputed_hash_breaks_the_next_link(conn: sqlite3.Connection) -> None:
    written = seven(conn)
    e = written[2]
    new = {"person": "p2"}
    forged = audit.entry_hash(
        e.prev_hash, e.seq, e.time, e.actor, e.action, e.collection, e.purpose, new
    )
    tamper(
        conn,
        "UPDATE audit_log SET details = ?, hash = ? WHERE seq = 3",
        (audit.canonical_json(new), forged),
    )
    report = audit.verify(conn)
    assert not report.ok and len(report.problems) == 1
    assert report.problems[0].startswith("seq 4: prev_hash does not match the hash of seq 3")


def test_changed_prev_hash_is_caught(conn: sqlite3.Connection) -> None:
    seven(conn)
    tamper(conn, "UPDATE audit_log SET prev_hash = ? WHERE seq = 4", ("f" * 64,))
    report = audit.verify(conn)
    assert not report.ok and report.problems == problems_naming(report, 4)
    assert any("prev_hash does not match" in p for p in report.problems)
    assert any("hash does not match" in p for p in report.problems)


def test_deleted_middle_entry_is_caught(conn: sqlite3.Connection) -> None:
    seven(conn)
    tamper(conn, "DELETE FROM audit_log WHERE seq = 3")
    report = audit.verify(conn)
    assert not report.ok and report.checked == 6
    assert report.problems == ["seq 3 missing: the log jumps from seq 2 to seq 4"]


def test_deleted_range_is_caught(conn: sqlite3.Connection) -> None:
    seven(conn)
    tamper(conn, "DELETE FROM audit_log WHERE seq BETWEEN 1 AND 3")
    report = audit.verify(conn)
    assert report.problems == ["seq 1 to 3 missing: the log starts at seq 4"]


def test_deleted_last_entry_is_caught_by_the_head(conn: sqlite3.Connection) -> None:
    seven(conn)
    tamper(conn, "DELETE FROM audit_log WHERE seq = 7")
    report = audit.verify(conn)
    assert not report.ok and report.head_seq == 6
    assert report.problems == [
        "seq 7 missing at the end: audit_head records seq 7 but the log ends at seq 6"
    ]


def test_appending_after_truncation_keeps_the_gap(conn: sqlite3.Connection) -> None:
    seven(conn)
    tamper(conn, "DELETE FROM audit_log WHERE seq >= 6")
    e = record(conn)
    assert e.seq == 8  # chained from audit_head, not from the truncated log
    report = audit.verify(conn)
    assert report.problems == ["seq 6 to 7 missing: the log jumps from seq 5 to seq 8"]


def test_truncation_with_head_rewritten_is_caught_by_an_anchor(conn: sqlite3.Connection) -> None:
    seven(conn)
    anchor = audit.verify(conn)
    tamper(conn, "DELETE FROM audit_log WHERE seq = 7")
    tamper(conn, "UPDATE audit_head SET seq = 6, hash = (SELECT hash FROM audit_log WHERE seq = 6)")
    assert audit.verify(conn).ok  # the database alone cannot tell
    report = audit.verify(conn, anchor=(anchor.head_seq, anchor.head_hash))
    assert report.problems == ["seq 7 (the anchor) is missing from the log"]


def test_entries_past_the_head_are_caught_and_append_refuses(conn: sqlite3.Connection) -> None:
    seven(conn)
    tamper(conn, "UPDATE audit_head SET seq = 6, hash = (SELECT hash FROM audit_log WHERE seq = 6)")
    assert audit.verify(conn).problems == [
        "seq 7 past audit_head (seq 6): written outside regard, or audit_head was rolled back"
    ]
    with pytest.raises(AuditError, match="past audit_head"):
        record(conn)


def test_emptied_log_is_caught(conn: sqlite3.Connection) -> None:
    seven(conn)
    tamper(conn, "DELETE FROM audit_log")
    assert audit.verify(conn).problems == [
        "seq 1 to 7 missing at the end: audit_head records seq 7 but the log is empty"
    ]


def test_missing_head_is_caught_and_append_refuses(conn: sqlite3.Connection) -> None:
    seven(conn)
    tamper(conn, "DELETE FROM audit_head")
    report = audit.verify(conn)
    assert not report.ok and "audit_head is missing" in report.problems[0]
    with pytest.raises(AuditError, match="audit_head is missing"):
        record(conn)


def test_swapped_entries_are_caught(conn: sqlite3.Connection) -> None:
    seven(conn)
    tamper(conn, "UPDATE audit_log SET seq = -1 WHERE seq = 3")
    tamper(conn, "UPDATE audit_log SET seq = 3 WHERE seq = 5")
    tamper(conn, "UPDATE audit_log SET seq = 5 WHERE seq = -1")
    report = audit.verify(conn)
    assert not report.ok
    for seq in (3, 5):
        assert any(p.startswith(f"seq {seq}: hash does not match") for p in report.problems)
    blamed = {int(p.split()[1].rstrip(":")) for p in report.problems}
    assert blamed == {3, 4, 5, 6}  # the two moved entries and the links after them


def test_problem_list_is_capped(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for _ in range(MAX_PROBLEMS + 20):
        audit.append(
            conn, action=AuditAction.SEARCH, actor="a", collection="c", purpose="p", details={}
        )
    conn.execute("COMMIT")
    tamper(conn, "UPDATE audit_log SET actor = 'mallory'")
    report = audit.verify(conn)
    assert len(report.problems) == MAX_PROBLEMS + 1
    assert report.problems[-1] == "... and 20 more problems"


def test_triggers_keep_the_log_append_only(conn: sqlite3.Connection) -> None:
    seven(conn)
    for sql in (
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 7",
        "UPDATE audit_head SET seq = 6",
        "DELETE FROM audit_head",
    ):
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(sql)
    assert audit.verify(conn).ok


# -- append's rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "details",
    [
        {"probe": [0.1] * 128},
        {"probe": np.zeros(128, np.float32)},
        {"candidates": [{"person": "p1", "template": np.linspace(0, 1, 16)}]},
        {"probe": [[0.5] * 8, [0.25] * 8]},  # a vector split into short rows
        {"embedding": None},
        {"nested": {"Vector": "base64..."}},
        {"meta": [{"embeddings": []}]},
    ],
)
def test_vectors_are_refused(conn: sqlite3.Connection, details: dict[str, Any]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(ValueError, match="never holds embeddings or vectors"):
        audit.append(
            conn, action=AuditAction.ENROLL, actor="a", collection="c", purpose="p", details=details
        )
    conn.execute("COMMIT")
    assert audit.entries(conn) == []


def test_small_numeric_details_are_kept_as_plain_json(conn: sqlite3.Connection) -> None:
    e = record(conn, details={
        "scores": [71.25, 64.0, 12.5],
        "box": np.array([10, 20, 30, 40]),
        "count": np.int64(3),
        "score": np.float32(0.5),
        "pair": ("p1", "p2"),
        "ids": list(range(100)),
    })
    assert e.details == {
        "scores": [71.25, 64.0, 12.5],
        "box": [10, 20, 30, 40],
        "count": 3,
        "score": 0.5,
        "pair": ["p1", "p2"],
        "ids": list(range(100)),
    }
    assert audit.verify(conn).ok


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"actor": ""}, "actor"),
        ({"actor": "  "}, "actor"),
        ({"actor": None}, "actor"),
        ({"purpose": ""}, "purpose"),
        ({"action": "stare"}, "unknown audit action"),
        ({"details": {"x": float("nan")}}, "NaN"),
        ({"details": {1: "x"}}, "keys must be strings"),
        ({"details": {"raw": b"\x00\x01"}}, "not JSON-serialisable"),
        ({"details": ["not", "a", "dict"]}, "must be a dict"),
        ({"now": datetime(2024, 5, 1, 12)}, "timezone-aware"),
    ],
)
def test_bad_entries_are_refused(
    conn: sqlite3.Connection, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(AuditError, match=message) as caught:
        record(conn, **kwargs)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, RegardError)
    assert audit.entries(conn) == [] and audit.verify(conn).ok


def test_append_needs_the_callers_transaction(conn: sqlite3.Connection) -> None:
    with pytest.raises(AuditError, match="BEGIN IMMEDIATE"):
        audit.append(
            conn, action=AuditAction.SEARCH, actor="a", collection="c", purpose="p", details={}
        )


def test_entry_rolls_back_with_the_operation(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE faces (id TEXT PRIMARY KEY)")
    record(conn)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO faces VALUES ('f1')")
    audit.append(
        conn, action=AuditAction.ENROLL, actor="a", collection="c", purpose="p", details={"f": 1}
    )
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT COUNT(*) FROM faces").fetchone()[0] == 0
    assert [e.seq for e in audit.entries(conn)] == [1]
    assert record(conn).seq == 2 and audit.verify(conn).ok


def test_non_utc_time_is_stored_as_utc(conn: sqlite3.Connection) -> None:
    paris = timezone(timedelta(hours=2))
    e = record(conn, now=datetime(2024, 5, 1, 14, 0, 0, 123, tzinfo=paris))
    assert e.time == "2024-05-01T12:00:00.000123Z"


# -- concurrency -----------------------------------------------------------------------------------


def _append_many(path: str, actor: str, count: int, start: Any) -> None:
    conn = connect(Path(path))
    start.wait()
    for i in range(count):
        conn.execute("BEGIN IMMEDIATE")
        audit.append(
            conn,
            action=AuditAction.SEARCH,
            actor=actor,
            collection="c",
            purpose="p",
            details={"i": i},
        )
        conn.execute("COMMIT")
        time.sleep(0.001)  # the work a store does between operations; lets the other writer in
    conn.close()


def test_concurrent_writers_make_one_gap_free_chain(tmp_path: Path) -> None:
    path = tmp_path / "regard.db"
    connect(path).close()  # schema and WAL mode set up once
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    count = 300
    workers = [
        ctx.Process(target=_append_many, args=(str(path), f"worker{k}", count, start))
        for k in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    conn = connect(path)
    report = audit.verify(conn)
    assert report.ok, report.problems
    assert report.checked == report.head_seq == 2 * count
    log = audit.entries(conn)
    assert [e.seq for e in log] == list(range(1, 2 * count + 1))
    switches = sum(1 for a, b in zip(log, log[1:]) if a.actor != b.actor)
    assert switches >= 2  # the writers really interleaved
    for k in range(2):  # each writer's entries are all there, in its own order
        assert [e.details["i"] for e in log if e.actor == f"worker{k}"] == list(range(count))
    conn.close()


# -- queries ---------------------------------------------------------------------------------------


def test_entries_filters(conn: sqlite3.Connection) -> None:
    seven(conn)

    def seqs(**kwargs: Any) -> list[int]:
        return [e.seq for e in audit.entries(conn, **kwargs)]

    assert seqs() == [1, 2, 3, 4, 5, 6, 7]
    assert seqs(collection="visitors") == [6]
    assert seqs(collection="staff") == [1, 2, 3, 4, 5, 7]
    assert seqs(action=AuditAction.SEARCH) == [5, 6]
    assert seqs(action="search", collection="staff") == [5]
    assert seqs(actor="admin") == [1, 2, 3, 4, 7]
    assert seqs(since=T0 + timedelta(minutes=2)) == [3, 4, 5, 6, 7]  # inclusive
    assert seqs(until=T0 + timedelta(minutes=2)) == [1, 2]  # exclusive
    one, four = T0 + timedelta(minutes=1), T0 + timedelta(minutes=4)
    assert seqs(since=one, until=four, actor="admin") == [2, 3, 4]
    assert seqs(newest_first=True) == [7, 6, 5, 4, 3, 2, 1]
    assert seqs(newest_first=True, limit=2) == [7, 6]
    assert seqs(actor="admin", limit=3) == [1, 2, 3]
    assert seqs(limit=0) == []
    assert seqs(actor="nobody") == []
    paris = timezone(timedelta(hours=2))
    assert seqs(since=datetime(2024, 5, 1, 14, 1, tzinfo=paris)) == [2, 3, 4, 5, 6, 7]
    with pytest.raises(AuditError):
        audit.entries(conn, since=datetime(2024, 5, 1))  # naive
    with pytest.raises(AuditError):
        audit.entries(conn, action="stare")
    with pytest.raises(AuditError):
        audit.entries(conn, limit=-1)


def test_entry_as_dict_is_json(conn: sqlite3.Connection) -> None:
    e = seven(conn)[4]
    d = e.as_dict()
    assert d["action"] == "search" and d["seq"] == 5 and json.loads(json.dumps(d)) == d
