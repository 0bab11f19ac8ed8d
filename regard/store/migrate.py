"""Copy a SQLite store into PostgreSQL: every table, the audit log verbatim, then verify.

    report = migrate("sqlite:///srv/regard.db", "postgresql://regard@db/regard")
    report.ok, report.counts, report.audit_head

Everything is copied as it is: collection, person, consent, face and key records with their ids and
times, vectors and thumbnails, and the audit log entry for entry (same seq, time, details and
hashes), so the chain verifies on the target and its head hash is the one the source had; an
anchor copied from `regard log verify` before the move still checks. The copy goes in batches,
each committed, and skips what the target holds already, so running it again after an
interruption resumes it. At the end it compares the counts of every table (and of each
collection's faces) and verifies the target's audit chain.

Run it while nothing writes to the source (stop the services first): what is written to the
source after its rows were read would not be copied, and the counts would not match.
A target that holds anything else than an earlier, partial copy of this source is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from regard.errors import InvalidArgumentError, RegardError
from regard.match import unit
from regard.store.backend import STANDARD
from regard.store.postgres import EXACT_BELOW, PostgresStore, insert_rows
from regard.store.sqlite import SQLiteStore

TABLES = ("collections", "persons", "consents", "api_keys", "faces", "audit_log")

Progress = Callable[[str, int, int], None]
"""progress(table, rows copied so far, rows in the source)."""


class MigrationError(RegardError):
    """The target cannot take this source (it holds something else)."""


@dataclass(frozen=True)
class MigrationReport:
    counts: dict[str, tuple[int, int]]  # table -> (source rows, target rows)
    audit_head: tuple[int, str] | None  # the source's newest entry (seq, hash)
    target_head: tuple[int, str] | None
    problems: list[str] = field(default_factory=list)
    index_built: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": {t: {"source": s, "target": d} for t, (s, d) in self.counts.items()},
            "audit_head": list(self.audit_head) if self.audit_head else None,
            "target_head": list(self.target_head) if self.target_head else None,
            "problems": self.problems,
        }


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def migrate(
    source_url: str,
    target_url: str,
    *,
    batch_size: int = 2000,
    progress: Progress | None = None,
    build_progress: Callable[[int, int], None] | None = None,
) -> MigrationReport:
    """Copy the SQLite store at `source_url` into the PostgreSQL store at `target_url` (see above)."""
    if not source_url.startswith("sqlite:///"):
        raise InvalidArgumentError(f"migrate copies from a sqlite:/// store, not {source_url!r}")
    if not target_url.startswith(("postgresql://", "postgres://")):
        raise InvalidArgumentError(f"migrate copies to a postgresql:// store, not {target_url!r}")
    path = Path(source_url[len("sqlite:///") :])
    if not path.is_file():
        raise InvalidArgumentError(f"no SQLite store at {path}")
    SQLiteStore(path).close()  # brings an older file's schema up to date
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    source.row_factory = sqlite3.Row
    target = PostgresStore(target_url)
    try:
        source.execute("BEGIN")  # one snapshot of the source for the whole copy
        _check_target(source, target)
        return _copy(source, target, batch_size, progress, build_progress)
    finally:
        if source.in_transaction:
            source.execute("ROLLBACK")
        source.close()
        target.close()


def _source_head(source: sqlite3.Connection) -> tuple[int, str] | None:
    row = source.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    return (int(row[0]), str(row[1])) if row else None


def _check_target(source: sqlite3.Connection, target: PostgresStore) -> None:
    """Refuse a target whose audit log is not a prefix of the source's (another store's data)."""
    conn = target.backend.connection
    last = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    if last is None:
        # Empty, or a copy interrupted before the audit log: its collections must be the source's.
        mine = {r[0]: _time(r[1]) for r in source.execute("SELECT id, created_at FROM collections")}
        for row in conn.execute("SELECT id, created_at FROM collections").fetchall():
            if mine.get(row["id"]) != row["created_at"]:  # type: ignore[index]
                raise MigrationError(
                    f"the target holds collection {row['id']!r}, which is not this store's: "  # type: ignore[index]
                    "migrate into an empty database, or the one an interrupted migration of this store left"
                )
        return
    mine = source.execute("SELECT hash FROM audit_log WHERE seq = ?", (last["seq"],)).fetchone()  # type: ignore[index]
    if mine is None or mine[0] != last["hash"]:  # type: ignore[index]
        raise MigrationError(
            f"the target's audit log (up to seq {last['seq']}) is not this store's: "  # type: ignore[index]
            "migrate into an empty database, or the one an interrupted migration of this store left"
        )


def _copy(
    source: sqlite3.Connection,
    target: PostgresStore,
    batch_size: int,
    progress: Progress | None,
    build_progress: Callable[[int, int], None] | None,
) -> MigrationReport:
    conn = target.backend.connection
    totals = {t: source.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}

    def copy(
        table: str, select: str, insert: str, on_conflict: str, convert: Callable[[sqlite3.Row], tuple[Any, ...]]
    ) -> None:
        cursor = source.execute(select)
        done = 0
        while rows := cursor.fetchmany(batch_size):
            with target.backend.transaction():
                insert_rows(conn, insert, [convert(r) for r in rows], on_conflict=on_conflict)
            done += len(rows)
            if progress is not None:
                progress(table, done, totals[table])

    copy(
        "collections",
        "SELECT * FROM collections ORDER BY id",
        "INSERT INTO collections (id, purpose, model, retention_days, min_quality, store_thumbnails, created_at, "
        "created_by, threshold, threshold_source)",
        "ON CONFLICT (id) DO NOTHING",
        lambda r: (
            r["id"], r["purpose"], r["model"], r["retention_days"], r["min_quality"], bool(r["store_thumbnails"]),
            _time(r["created_at"]), r["created_by"], r["threshold"], r["threshold_source"],
        ),
    )  # fmt: skip
    copy(
        "persons",
        "SELECT * FROM persons ORDER BY collection_id, person_id",
        "INSERT INTO persons",
        "ON CONFLICT DO NOTHING",
        lambda r: (r["collection_id"], r["person_id"], r["display_name"], _time(r["created_at"])),
    )
    copy(
        "consents",
        "SELECT * FROM consents ORDER BY collection_id, person_id",
        "INSERT INTO consents",
        "ON CONFLICT DO NOTHING",
        lambda r: (
            r["collection_id"], r["person_id"], r["basis"], r["recorded_by"], _time(r["recorded_at"]),
            _time(r["expires_at"]), r["reference"],
        ),
    )  # fmt: skip
    copy(
        "api_keys",
        "SELECT * FROM api_keys ORDER BY key_id",
        "INSERT INTO api_keys",
        "ON CONFLICT DO NOTHING",
        lambda r: (
            r["key_id"], r["name"], r["secret_hash"], r["roles"], r["collections"], r["default_purpose"],
            r["rate_per_minute"], _time(r["created_at"]), r["created_by"], _time(r["revoked_at"]), r["revoked_by"],
        ),
    )  # fmt: skip
    # Many faces: load them without the HNSW index and build it once at the end (far faster).
    rebuild = totals["faces"] >= EXACT_BELOW
    if rebuild:
        target.drop_vector_index()
    copy(
        "faces",
        "SELECT * FROM faces ORDER BY row",
        STANDARD.insert_faces,
        "ON CONFLICT (face_id) DO NOTHING",
        lambda r: (
            r["face_id"], r["collection_id"], r["person_id"], r["external_image_id"], r["box_left"], r["box_top"],
            r["box_width"], r["box_height"], r["quality_score"], r["quality_level"],
            unit(np.frombuffer(r["embedding"], dtype=np.float32)), r["thumbnail"],  # any model's width
            _time(r["created_at"]),
        ),
    )  # fmt: skip
    copy(
        "audit_log",
        "SELECT seq, time, actor, action, collection, purpose, details, prev_hash, hash FROM audit_log ORDER BY seq",
        "INSERT INTO audit_log (seq, time, actor, action, collection, purpose, details, prev_hash, hash)",
        "ON CONFLICT (seq) DO NOTHING",
        lambda r: tuple(r),
    )
    head = _source_head(source)
    if head is not None:
        with target.backend.transaction():
            current = conn.execute("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE").fetchone()
            if current["seq"] < head[0]:  # type: ignore[index]
                conn.execute("UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", head)
    target.build_vector_index(progress=build_progress)
    return _verify(source, target, totals, head, rebuild)


def _verify(
    source: sqlite3.Connection,
    target: PostgresStore,
    totals: dict[str, int],
    head: tuple[int, str] | None,
    rebuilt: bool,
) -> MigrationReport:
    conn = target.backend.connection
    counts: dict[str, tuple[int, int]] = {}
    problems: list[str] = []
    for table in TABLES:
        copied = int(conn.execute(f"SELECT COUNT(*) AS n FROM {table}").fetchone()["n"])  # type: ignore[index]
        counts[table] = (int(totals[table]), copied)
        if copied != totals[table]:
            problems.append(f"{table}: {totals[table]} rows in the source, {copied} in the target")
    per_source = dict(source.execute("SELECT collection_id, COUNT(*) FROM faces GROUP BY collection_id").fetchall())
    for row in conn.execute("SELECT id, face_count FROM collections ORDER BY id").fetchall():
        expected = per_source.get(row["id"], 0)  # type: ignore[index]
        if row["face_count"] != expected:  # type: ignore[index]
            problems.append(f"collection {row['id']!r}: {expected} faces in the source, {row['face_count']} in the target")  # type: ignore[index]
    report = target.verify_audit()
    problems.extend(f"audit log on the target: {p}" for p in report.problems)
    target_head = (report.head_seq, report.head_hash) if report.head_seq is not None else None
    if head != target_head and not (head is None and target_head is None):
        problems.append(f"audit head differs: source {head}, target {target_head}")
    return MigrationReport(
        counts=counts, audit_head=head, target_head=target_head, problems=problems, index_built=rebuilt  # type: ignore[arg-type]
    )
