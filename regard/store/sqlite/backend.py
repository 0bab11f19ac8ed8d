"""The embedded backend: one SQLite file in WAL mode, safe for several processes at once.

Writers take the write lock up front (BEGIN IMMEDIATE) and wait for each other (busy timeout).
Erasure is real: `secure_delete` overwrites deleted rows in the file, and after an erasure the
write-ahead log is checkpointed and truncated so no old page with a vector survives in it.

Each process keeps an index per collection in memory and brings it up to date before every search
from the faces added since (face rows have increasing ids) and the tombstones of faces deleted since
(a tombstone holds a row id, never a vector), so the index is never stale and never needs a
separate file to repair after a crash.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from regard.auditlog.log import (
    AUDIT_SCHEMA,
    AuditEntry,
    VerifyReport,
    append,
    entries,
    verify,
)
from regard.index import VectorIndex, new_index
from regard.match import unit
from regard.models import model_width as width_of
from regard.store.backend import (
    FACE_COLUMNS,
    STANDARD,
    AuditRecord,
    Backend,
    Finish,
    Gallery,
    Row,
    T,
    Transaction,
    check_probe_model,
    no_collection,
)
from regard.store.sqlite.schema import migrate

SQL = dataclasses.replace(
    STANDARD,
    # Each collection has a generation, so that an index this process holds for a collection
    # deleted and created again under the same id is recognised as another's.
    insert_collection=(
        "INSERT INTO collections (id, purpose, model, retention_days, min_quality, store_thumbnails, "
        "created_at, created_by, generation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, lower(hex(randomblob(16))))"
    ),
    # A collection moved to another model gets a new generation too: every process's index of it
    # holds the old model's vectors.
    set_collection_model=(
        "UPDATE collections SET model = ?, threshold = NULL, threshold_source = NULL, "
        "generation = lower(hex(randomblob(16))) WHERE id = ?"
    ),
)

_MATCHED = f"SELECT {FACE_COLUMNS} FROM faces WHERE row IN (SELECT value FROM json_each(?))"


def _param(value: Any) -> Any:
    """Times are stored as ISO 8601 text in UTC."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    return value


def _row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> dict[str, Any]:
    """A row by column name, times (the *_at columns) as datetimes."""
    row = {}
    for column, value in zip(cursor.description, values):
        name = column[0]
        row[name] = datetime.fromisoformat(value) if name.endswith("_at") and isinstance(value, str) else value
    return row


class _Transaction(Transaction):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def _execute(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        cursor = self.conn.cursor()
        cursor.row_factory = _row
        return cursor.execute(sql, [_param(p) for p in params])

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return self._execute(sql, params).fetchone()  # type: ignore[no-any-return]

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._execute(sql, params).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self._execute(sql, params).rowcount)

    def insert_many(self, insert: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            values = "(" + ", ".join(["?"] * len(rows[0])) + ")"
            self.conn.executemany(f"{insert} VALUES {values}", [[_param(v) for v in row] for row in rows])

    def audit(self, record: AuditRecord) -> None:
        append(
            self.conn, action=record.action, actor=record.actor, collection=record.collection,
            purpose=record.purpose, details=record.details,
        )  # fmt: skip


@dataclass
class _IndexState:
    generation: str
    index: VectorIndex
    last_row: int
    last_tombstone: int


class SQLiteBackend(Backend):
    """One SQLite file, one connection shared by this process's threads (a lock)."""

    sql = SQL

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._indexes: dict[str, _IndexState] = {}
        self._closed = False
        self._wal_pending = False
        self._retrier: threading.Thread | None = None
        self._conn = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout = 60000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA secure_delete = ON")
        with self._lock:
            migrate(self._conn, AUDIT_SCHEMA)

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def write(self) -> Iterator[Transaction]:
        """One write transaction, taken up front so writers queue instead of failing."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _Transaction(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Transaction]:
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield _Transaction(self._conn)
            finally:
                self._conn.execute("COMMIT")

    def vector_param(self, vector: np.ndarray) -> bytes:
        return np.asarray(vector, dtype=np.float32).tobytes()

    def vector_value(self, value: Any) -> np.ndarray:
        return np.frombuffer(value, dtype=np.float32).copy()

    # ------------------------------------------------------------------ search

    def _synced_index(self, tx: Transaction, collection_id: str) -> tuple[VectorIndex, Gallery]:
        """The collection's index, brought up to date with the file; and what the search needs of it."""
        row = tx.one("SELECT generation, threshold, model FROM collections WHERE id = ?", (collection_id,))
        if row is None:
            raise no_collection(collection_id)
        state = self._indexes.get(collection_id)
        if state is None or state.generation != row["generation"]:
            counts = tx.one(
                "SELECT (SELECT COUNT(*) FROM faces WHERE collection_id = ?1) AS size, "
                "(SELECT COALESCE(MAX(seq), 0) FROM face_tombstones WHERE collection_id = ?1) AS tombstone",
                (collection_id,),
            )
            assert counts is not None
            state = _IndexState(row["generation"], new_index(counts["size"], width_of(row["model"])), 0, counts["tombstone"])
            self._indexes[collection_id] = state
        added = tx.all(
            "SELECT row, embedding FROM faces WHERE collection_id = ? AND row > ? ORDER BY row",
            (collection_id, state.last_row),
        )
        removed = tx.all(
            "SELECT seq, face_row FROM face_tombstones WHERE collection_id = ? AND seq > ? ORDER BY seq",
            (collection_id, state.last_tombstone),
        )
        if removed:
            state.index.remove(np.array([r["face_row"] for r in removed], dtype=np.int64))
            state.last_tombstone = removed[-1]["seq"]
        if added:
            ids = np.array([r["row"] for r in added], dtype=np.int64)
            vectors = np.frombuffer(b"".join(r["embedding"] for r in added), dtype=np.float32)
            state.index.add(ids, unit(vectors.reshape(len(added), -1)))  # faces enrolled before 0.2 are stored unscaled
            state.last_row = int(ids[-1])
        return state.index, Gallery(size=len(state.index), threshold=row["threshold"], model=row["model"])

    def search(self, collection_id: str, vectors: list[np.ndarray], k: int, finish: Finish[T], model: str) -> T:
        """Brings the collection's index up to date and searches it; then, in a write transaction
        (which orders the search among the writers in the audit log), reads the records of the
        faces found that are still there, in one query, and appends the audit entry."""
        with self._lock:
            with self.read() as tx:
                index, gallery = self._synced_index(tx, collection_id)
            check_probe_model(gallery, model)
            nearest: list[list[tuple[int, float]]] = [[] for _ in vectors]
            if vectors and len(index):
                ids, distances = index.search(np.stack(vectors), min(k, len(index)))
                nearest = [
                    [(int(i), float(d)) for i, d in zip(id_row, d_row) if i >= 0] for id_row, d_row in zip(ids, distances)
                ]
            with self.write() as tx:
                wanted = sorted({i for hits in nearest for i, _ in hits})
                rows = {r["row"]: r for r in tx.all(_MATCHED, (json.dumps(wanted),))} if wanted else {}
                # a face missing from `rows` was erased since the index was brought up to date
                result, record = finish(gallery, [[(rows[i], d) for i, d in hits if i in rows] for hits in nearest])
                tx.audit(record)
            return result

    # ------------------------------------------------------------------ erasure

    def erased(self, collection_id: str | None = None) -> None:
        """After an erasure: forget the index of a deleted collection; push the WAL into the file
        (where secure_delete zeroed the rows) and truncate it, so that no copy of a deleted page
        stays in the log.

        Without waiting: a reader elsewhere (a backup, `log verify`, the sqlite3 shell) holding an
        older snapshot keeps the WAL, and waiting for it would stall every request behind the
        store's lock. Then a background thread tries again, briefly, until the WAL is truncated;
        `erasure_pending` says so meanwhile."""
        if collection_id is not None:
            self._indexes.pop(collection_id, None)
        if not self._truncate_wal():
            self._retry_truncation()

    def _truncate_wal(self) -> bool:
        """One try at the checkpoint that truncates the WAL, failing at once if a reader is in the
        way; whether it succeeded."""
        with self._lock:
            if self._closed:
                return True
            self._conn.execute("PRAGMA busy_timeout = 0")
            try:
                busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.OperationalError:  # SQLITE_BUSY: another writer holds the lock
                busy = 1
            finally:
                self._conn.execute("PRAGMA busy_timeout = 60000")
            self._wal_pending = busy != 0
            return not self._wal_pending

    def _retry_truncation(self) -> None:
        with self._lock:
            if self._retrier is not None and self._retrier.is_alive():
                return

            def retry() -> None:
                delay = 0.2
                while not self._closed and not self._truncate_wal():
                    time.sleep(delay)
                    delay = min(5.0, delay * 2)

            self._retrier = threading.Thread(target=retry, name="regard-wal-truncation", daemon=True)
            self._retrier.start()

    @property
    def erasure_pending(self) -> bool:
        """Whether erased rows may still be readable in the write-ahead log (a reader holds it; a
        background thread truncates it as soon as it can)."""
        return self._wal_pending

    def purge_erased(self, *, full: bool = False) -> None:
        """secure_delete already zeroes erased rows in place; VACUUM also rebuilds the file without
        their pages (so its size no longer tells how much was erased), and the WAL is truncated.
        `full` changes nothing here (the PostgreSQL store's VACUUM FULL)."""
        with self._lock:
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            if self._wal_pending:  # a last try, waiting a little for the reader
                self._conn.execute("PRAGMA busy_timeout = 2000")
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.OperationalError:
                    pass
            self._closed = True
            self._conn.close()

    # ------------------------------------------------------------------ the audit log

    def audit_entries(self, **filters: Any) -> list[AuditEntry]:
        with self._lock, self.read():
            return entries(self._conn, **filters)

    def verify_audit(self) -> VerifyReport:
        with self._lock, self.read():
            return verify(self._conn)
