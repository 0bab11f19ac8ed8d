"""The embedded store: one SQLite file in WAL mode, safe for several processes at once.

Every operation is one transaction that also appends its audit entry, so a crash leaves either both
or neither. Writers take the write lock up front (BEGIN IMMEDIATE) and wait for each other (busy
timeout). Erasure is real: `secure_delete` overwrites deleted rows in the file, and after an erasure
the write-ahead log is checkpointed and truncated so no old page with a vector survives in it.

Each process keeps an index per collection in memory and brings it up to date before every search
from the faces added since (face rows have increasing ids) and the tombstones of faces deleted since
(a tombstone holds a row id, never a vector), so the index is never stale and never needs a
separate file to repair after a crash.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from regard.auditlog.log import (
    AUDIT_SCHEMA,
    AuditAction,
    AuditEntry,
    VerifyReport,
    append,
    entries,
    verify,
)
from regard.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from regard.face import QualityLevel
from regard.index import VectorIndex, new_index
from regard.match import ThresholdTable, score_of_distance, unit
from regard.models.registry import EMBEDDER_ID, EMBEDDING_SIZE
from regard.store.base import (
    ApiKey,
    Candidate,
    Collection,
    Consent,
    ConsentBasis,
    FaceRecord,
    NewFace,
    Person,
    Role,
    SearchQuery,
    Store,
    SweepReport,
    check_consent,
    check_id,
    check_new_collection,
    check_optional_text,
    check_search,
    check_text,
    check_threshold,
    require_consent,
    resolve_threshold,
    stored_vector,
)

MODEL_NAME = EMBEDDER_ID

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    id TEXT PRIMARY KEY,
    generation TEXT NOT NULL,
    purpose TEXT NOT NULL,
    model TEXT NOT NULL,
    retention_days INTEGER,
    min_quality TEXT NOT NULL,
    store_thumbnails INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS persons (
    collection_id TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    person_id TEXT NOT NULL,
    display_name TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (collection_id, person_id)
);
CREATE TABLE IF NOT EXISTS consents (
    collection_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    basis TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    expires_at TEXT,
    reference TEXT,
    PRIMARY KEY (collection_id, person_id),
    FOREIGN KEY (collection_id, person_id) REFERENCES persons(collection_id, person_id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS faces (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    face_id TEXT NOT NULL UNIQUE,
    collection_id TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    person_id TEXT,
    external_image_id TEXT,
    box_left REAL NOT NULL, box_top REAL NOT NULL, box_width REAL NOT NULL, box_height REAL NOT NULL,
    quality_score REAL NOT NULL,
    quality_level TEXT NOT NULL,
    embedding BLOB NOT NULL,
    thumbnail BLOB,
    created_at TEXT NOT NULL,
    FOREIGN KEY (collection_id, person_id) REFERENCES persons(collection_id, person_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS faces_by_collection ON faces(collection_id, row);
CREATE INDEX IF NOT EXISTS faces_by_person ON faces(collection_id, person_id);
CREATE INDEX IF NOT EXISTS faces_by_image ON faces(collection_id, external_image_id);
CREATE TABLE IF NOT EXISTS face_tombstones (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection_id TEXT NOT NULL,
    face_row INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstones_by_collection ON face_tombstones(collection_id, seq);
CREATE TRIGGER IF NOT EXISTS faces_tombstone AFTER DELETE ON faces BEGIN
    INSERT INTO face_tombstones(collection_id, face_row) VALUES (old.collection_id, old.row);
END;
"""

# Schema changes after the first release, applied in order to a file whose PRAGMA user_version is
# lower (a new file gets _SCHEMA and then all of them). Never edit one; append a new one.
_MIGRATIONS: list[tuple[int, str]] = [
    (
        2,
        """
ALTER TABLE collections ADD COLUMN threshold REAL;
ALTER TABLE collections ADD COLUMN threshold_source TEXT;
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    roles TEXT NOT NULL,
    collections TEXT,
    default_purpose TEXT,
    rate_per_minute INTEGER,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT,
    revoked_by TEXT
);
""",
    ),
    (
        3,
        # Regard 0.2 compares faces by the angle between their embeddings: a collection's own search
        # threshold was a score on the old scale and is cleared (the calibrated default applies until
        # `regard audit --apply-to` is run again; docs/STORAGE.md). Stored vectors stay as they are:
        # the index scales them to length 1 as it loads them.
        """
UPDATE collections SET threshold_source = json_object('cleared_by', '3_unit_vectors',
        'previous_threshold', threshold, 'previous_source', json(threshold_source)),
    threshold = NULL
WHERE threshold IS NOT NULL;
""",
    ),
]
SCHEMA_VERSION = _MIGRATIONS[-1][0]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(timezone.utc).isoformat()


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _vector_bytes(vector: np.ndarray) -> bytes:
    """A face's embedding as stored and searched (`store.base.stored_vector`), as bytes."""
    return stored_vector(vector).tobytes()


@dataclass
class _IndexState:
    generation: str
    index: VectorIndex
    last_row: int
    last_tombstone: int


class SQLiteStore(Store):
    """The embedded default store. Open with `regard.store.open_store("sqlite:///path.db")`."""

    def __init__(self, path: Path | str, *, table: ThresholdTable | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._table = table
        self._lock = threading.RLock()
        self._indexes: dict[str, _IndexState] = {}
        self._closed = False
        self._wal_pending = False
        self._retrier: threading.Thread | None = None
        self._conn = sqlite3.connect(
            str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout = 60000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA secure_delete = ON")
        with self._lock:
            # One transaction, so that processes opening a new file at once do not race.
            self._conn.executescript("BEGIN IMMEDIATE;\n" + _SCHEMA + "\n" + AUDIT_SCHEMA)
            try:
                version = self._conn.execute("PRAGMA user_version").fetchone()[0]
                for number, script in _MIGRATIONS:
                    if version < number:
                        for statement in script.split(";"):
                            if statement.strip():
                                self._conn.execute(statement)
                        self._conn.execute(f"PRAGMA user_version = {number}")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front so writers queue instead of failing."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several reads."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def _audit(
        self,
        action: AuditAction,
        actor: str,
        collection: str | None,
        purpose: str | None,
        details: dict[str, Any],
    ) -> None:
        append(self._conn, action=action, actor=actor, collection=collection, purpose=purpose, details=details)

    def _erase_traces(self) -> None:
        """After an erasure: push the WAL into the file (where secure_delete zeroed the rows) and
        truncate it, so that no copy of a deleted page stays in the log.

        Without waiting: a reader elsewhere (a backup, `log verify`, the sqlite3 shell) holding an
        older snapshot keeps the WAL, and waiting for it would stall every request behind the
        store's lock. Then a background thread tries again, briefly, until the WAL is truncated;
        `erasure_pending` says so meanwhile."""
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

    def audit_entries(
        self,
        *,
        collection: str | None = None,
        action: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        with self._read() as conn:
            return entries(
                conn, collection=collection, action=action, actor=actor, since=since, until=until, limit=limit
            )

    def verify_audit(self) -> VerifyReport:
        with self._read() as conn:
            return verify(conn)

    # ------------------------------------------------------------------ collections

    def _collection_row(self, conn: sqlite3.Connection, collection_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM collections WHERE id = ?", (collection_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no collection {collection_id!r}")
        return row

    def _collection(self, conn: sqlite3.Connection, row: sqlite3.Row) -> Collection:
        faces = conn.execute("SELECT COUNT(*) FROM faces WHERE collection_id = ?", (row["id"],)).fetchone()[0]
        persons = conn.execute("SELECT COUNT(*) FROM persons WHERE collection_id = ?", (row["id"],)).fetchone()[0]
        return Collection(
            id=row["id"],
            purpose=row["purpose"],
            model=row["model"],
            retention_days=row["retention_days"],
            min_quality=QualityLevel(row["min_quality"]),
            store_thumbnails=bool(row["store_thumbnails"]),
            created_at=_time(row["created_at"]),  # type: ignore[arg-type]
            created_by=row["created_by"],
            face_count=faces,
            person_count=persons,
            threshold=row["threshold"],
            threshold_source=json.loads(row["threshold_source"]) if row["threshold_source"] else None,
        )

    def create_collection(
        self,
        collection_id: str,
        *,
        purpose: str,
        actor: str,
        retention_days: int | None = None,
        min_quality: QualityLevel = QualityLevel.MEDIUM,
        store_thumbnails: bool = False,
    ) -> Collection:
        purpose, actor, min_quality = check_new_collection(collection_id, purpose, actor, retention_days, min_quality)
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM collections WHERE id = ?", (collection_id,)).fetchone():
                raise AlreadyExistsError(f"collection {collection_id!r} exists already")
            conn.execute(
                "INSERT INTO collections (id, generation, purpose, model, retention_days, min_quality, "
                "store_thumbnails, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    collection_id,
                    uuid.uuid4().hex,
                    purpose,
                    MODEL_NAME,
                    retention_days,
                    min_quality.value,
                    int(store_thumbnails),
                    _iso(_now()),
                    actor,
                ),
            )
            self._audit(
                AuditAction.COLLECTION_CREATE,
                actor,
                collection_id,
                purpose,
                {"retention_days": retention_days, "min_quality": min_quality.value, "model": MODEL_NAME},
            )
            return self._collection(conn, self._collection_row(conn, collection_id))

    def get_collection(self, collection_id: str) -> Collection:
        with self._read() as conn:
            return self._collection(conn, self._collection_row(conn, collection_id))

    def list_collections(self) -> list[Collection]:
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM collections ORDER BY id").fetchall()
            return [self._collection(conn, row) for row in rows]

    def delete_collection(self, collection_id: str, *, actor: str, reason: str) -> int:
        actor, reason = check_text(actor, "the actor"), check_text(reason, "a reason")
        with self._write() as conn:
            self._collection_row(conn, collection_id)
            faces = conn.execute("SELECT COUNT(*) FROM faces WHERE collection_id = ?", (collection_id,)).fetchone()[0]
            conn.execute("DELETE FROM faces WHERE collection_id = ?", (collection_id,))
            conn.execute("DELETE FROM collections WHERE id = ?", (collection_id,))
            conn.execute("DELETE FROM face_tombstones WHERE collection_id = ?", (collection_id,))
            self._audit(AuditAction.COLLECTION_DELETE, actor, collection_id, None, {"reason": reason, "faces_erased": faces})
        self._indexes.pop(collection_id, None)
        self._erase_traces()
        return int(faces)

    def set_threshold(
        self,
        collection_id: str,
        threshold: float | None,
        *,
        actor: str,
        reason: str,
        source: dict[str, Any] | None = None,
    ) -> Collection:
        actor, reason = check_text(actor, "the actor"), check_text(reason, "a reason")
        threshold = check_threshold(threshold)
        with self._write() as conn:
            before = self._collection_row(conn, collection_id)["threshold"]
            conn.execute(
                "UPDATE collections SET threshold = ?, threshold_source = ? WHERE id = ?",
                (threshold, json.dumps(source, sort_keys=True) if source and threshold is not None else None, collection_id),
            )
            self._audit(
                AuditAction.COLLECTION_UPDATE,
                actor,
                collection_id,
                None,
                {"threshold": threshold, "previous_threshold": before, "reason": reason, "source": source},
            )
            return self._collection(conn, self._collection_row(conn, collection_id))

    # ------------------------------------------------------------------ persons and consent

    def _person(self, conn: sqlite3.Connection, collection_id: str, person_id: str) -> Person:
        row = conn.execute(
            "SELECT * FROM persons WHERE collection_id = ? AND person_id = ?", (collection_id, person_id)
        ).fetchone()
        if row is None:
            self._collection_row(conn, collection_id)
            raise NotFoundError(f"no person {person_id!r} in collection {collection_id!r}")
        consent_row = conn.execute(
            "SELECT * FROM consents WHERE collection_id = ? AND person_id = ?", (collection_id, person_id)
        ).fetchone()
        faces = conn.execute(
            "SELECT COUNT(*) FROM faces WHERE collection_id = ? AND person_id = ?", (collection_id, person_id)
        ).fetchone()[0]
        consent = None
        if consent_row is not None:
            consent = Consent(
                basis=ConsentBasis(consent_row["basis"]),
                recorded_by=consent_row["recorded_by"],
                recorded_at=_time(consent_row["recorded_at"]),  # type: ignore[arg-type]
                expires_at=_time(consent_row["expires_at"]),
                reference=consent_row["reference"],
            )
        return Person(
            collection=collection_id,
            id=person_id,
            display_name=row["display_name"],
            created_at=_time(row["created_at"]),  # type: ignore[arg-type]
            consent=consent,
            face_count=faces,
        )

    def add_person(
        self, collection_id: str, person_id: str, *, actor: str, display_name: str | None = None
    ) -> Person:
        check_id(person_id, "person id")
        actor = check_text(actor, "the actor")
        display_name = check_optional_text(display_name, "a display name")
        with self._write() as conn:
            self._collection_row(conn, collection_id)
            exists = conn.execute(
                "SELECT 1 FROM persons WHERE collection_id = ? AND person_id = ?", (collection_id, person_id)
            ).fetchone()
            if exists:
                raise AlreadyExistsError(f"person {person_id!r} exists already in {collection_id!r}")
            conn.execute(
                "INSERT INTO persons VALUES (?, ?, ?, ?)", (collection_id, person_id, display_name, _iso(_now()))
            )
            self._audit(AuditAction.PERSON_ADD, actor, collection_id, None, {"person_id": person_id})
            return self._person(conn, collection_id, person_id)

    def get_person(self, collection_id: str, person_id: str) -> Person:
        with self._read() as conn:
            return self._person(conn, collection_id, person_id)

    def list_persons(self, collection_id: str) -> list[Person]:
        with self._read() as conn:
            self._collection_row(conn, collection_id)
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT person_id FROM persons WHERE collection_id = ? ORDER BY person_id", (collection_id,)
                )
            ]
            return [self._person(conn, collection_id, pid) for pid in ids]

    def record_consent(
        self,
        collection_id: str,
        person_id: str,
        *,
        basis: ConsentBasis,
        actor: str,
        expires_at: datetime | None = None,
        reference: str | None = None,
    ) -> Consent:
        actor = check_text(actor, "the actor")
        now = _now()
        basis = check_consent(basis, expires_at, now)
        reference = check_optional_text(reference, "a consent reference")
        with self._write() as conn:
            self._person(conn, collection_id, person_id)
            conn.execute(
                "INSERT OR REPLACE INTO consents VALUES (?, ?, ?, ?, ?, ?, ?)",
                (collection_id, person_id, basis.value, actor, _iso(now), _iso(expires_at), reference),
            )
            self._audit(
                AuditAction.CONSENT_RECORD,
                actor,
                collection_id,
                None,
                {"person_id": person_id, "basis": basis.value, "expires_at": _iso(expires_at), "reference": reference},
            )
            consent = self._person(conn, collection_id, person_id).consent
        assert consent is not None
        return consent

    def revoke_consent(self, collection_id: str, person_id: str, *, actor: str, reason: str) -> int:
        """Withdraw a person's consent: the record goes, and with it every face enrolled under it."""
        return self._erase_person(collection_id, person_id, actor, reason, AuditAction.CONSENT_REVOKE, "consents")

    def forget_person(self, collection_id: str, person_id: str, *, actor: str, reason: str) -> int:
        """Erase a person: faces, vectors, thumbnails, consent, and the person record itself."""
        return self._erase_person(collection_id, person_id, actor, reason, AuditAction.FORGET, "persons")

    def _erase_person(
        self, collection_id: str, person_id: str, actor: str, reason: str, action: AuditAction, table: str
    ) -> int:
        """Erase a person's faces and the row of `table` ("consents", or "persons", whose deletion
        takes the consent with it), with one audit entry that keeps who, why and how many."""
        actor, reason = check_text(actor, "the actor"), check_text(reason, "a reason")
        with self._write() as conn:
            self._person(conn, collection_id, person_id)
            erased = self._delete_person_faces(conn, collection_id, person_id)
            conn.execute(f"DELETE FROM {table} WHERE collection_id = ? AND person_id = ?", (collection_id, person_id))
            self._audit(
                action, actor, collection_id, None, {"person_id": person_id, "reason": reason, "faces_erased": erased}
            )
        self._erase_traces()
        return erased

    def _delete_person_faces(self, conn: sqlite3.Connection, collection_id: str, person_id: str) -> int:
        cursor = conn.execute("DELETE FROM faces WHERE collection_id = ? AND person_id = ?", (collection_id, person_id))
        return int(cursor.rowcount)

    # ------------------------------------------------------------------ faces

    def _face(self, row: sqlite3.Row) -> FaceRecord:
        return FaceRecord(
            face_id=row["face_id"],
            collection=row["collection_id"],
            person_id=row["person_id"],
            external_image_id=row["external_image_id"],
            box=(row["box_left"], row["box_top"], row["box_width"], row["box_height"]),
            quality_score=row["quality_score"],
            quality_level=QualityLevel(row["quality_level"]),
            created_at=_time(row["created_at"]),  # type: ignore[arg-type]
        )

    def add_faces(
        self, collection_id: str, person_id: str, faces: list[NewFace], *, actor: str
    ) -> list[FaceRecord]:
        """Enroll faces for a person, who must hold a valid consent record. All or nothing."""
        actor = check_text(actor, "the actor")
        vectors = [_vector_bytes(f.embedding) for f in faces]
        now = _now()
        with self._write() as conn:
            collection = self._collection(conn, self._collection_row(conn, collection_id))
            require_consent(self._person(conn, collection_id, person_id), now)
            records = []
            for face, vector in zip(faces, vectors):
                if face.quality_level.rank < collection.min_quality.rank:
                    raise InvalidArgumentError(
                        f"a {face.quality_level.value} quality face is below {collection_id!r}'s gate "
                        f"({collection.min_quality.value})"
                    )
                face_id = str(uuid.uuid4())
                conn.execute(
                    "INSERT INTO faces (face_id, collection_id, person_id, external_image_id, box_left, box_top, "
                    "box_width, box_height, quality_score, quality_level, embedding, thumbnail, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        face_id,
                        collection_id,
                        person_id,
                        face.external_image_id,
                        *[float(v) for v in face.box],
                        float(face.quality_score),
                        face.quality_level.value,
                        vector,
                        face.thumbnail if collection.store_thumbnails else None,
                        _iso(now),
                    ),
                )
                row = conn.execute("SELECT * FROM faces WHERE face_id = ?", (face_id,)).fetchone()
                records.append(self._face(row))
            self._audit(
                AuditAction.ENROLL,
                actor,
                collection_id,
                None,
                {
                    "person_id": person_id,
                    "face_ids": [r.face_id for r in records],
                    "external_image_ids": sorted({r.external_image_id for r in records if r.external_image_id}),
                },
            )
        return records

    def has_image(self, collection_id: str, external_image_id: str) -> bool:
        with self._read() as conn:
            self._collection_row(conn, collection_id)
            row = conn.execute(
                "SELECT 1 FROM faces WHERE collection_id = ? AND external_image_id = ? LIMIT 1",
                (collection_id, external_image_id),
            ).fetchone()
            return row is not None

    def _face_row(self, conn: sqlite3.Connection, collection_id: str, face_id: str) -> sqlite3.Row:
        row = conn.execute(
            "SELECT * FROM faces WHERE collection_id = ? AND face_id = ?", (collection_id, face_id)
        ).fetchone()
        if row is None:
            self._collection_row(conn, collection_id)
            raise NotFoundError(f"no face {face_id!r} in collection {collection_id!r}")
        return row

    def get_face(self, collection_id: str, face_id: str) -> FaceRecord:
        with self._read() as conn:
            return self._face(self._face_row(conn, collection_id, face_id))

    def face_vector(self, collection_id: str, face_id: str) -> np.ndarray:
        with self._read() as conn:
            row = self._face_row(conn, collection_id, face_id)
            return np.frombuffer(row["embedding"], dtype=np.float32).copy()

    def list_faces(self, collection_id: str, person_id: str | None = None) -> list[FaceRecord]:
        with self._read() as conn:
            self._collection_row(conn, collection_id)
            if person_id is None:
                rows = conn.execute("SELECT * FROM faces WHERE collection_id = ? ORDER BY row", (collection_id,))
            else:
                self._person(conn, collection_id, person_id)
                rows = conn.execute(
                    "SELECT * FROM faces WHERE collection_id = ? AND person_id = ? ORDER BY row",
                    (collection_id, person_id),
                )
            return [self._face(r) for r in rows.fetchall()]

    def delete_face(self, collection_id: str, face_id: str, *, actor: str, reason: str) -> None:
        actor, reason = check_text(actor, "the actor"), check_text(reason, "a reason")
        with self._write() as conn:
            row = self._face_row(conn, collection_id, face_id)
            conn.execute("DELETE FROM faces WHERE row = ?", (row["row"],))
            self._audit(
                AuditAction.FACE_DELETE,
                actor,
                collection_id,
                None,
                {"face_id": face_id, "person_id": row["person_id"], "reason": reason},
            )
        self._erase_traces()

    # ------------------------------------------------------------------ search

    def _synced_index(self, collection_id: str) -> tuple[VectorIndex, int]:
        """The collection's index, brought up to date with the file; and the collection's size."""
        with self._read() as conn:
            row = self._collection_row(conn, collection_id)
            generation = row["generation"]
            state = self._indexes.get(collection_id)
            if state is None or state.generation != generation:
                size = conn.execute(
                    "SELECT COUNT(*) FROM faces WHERE collection_id = ?", (collection_id,)
                ).fetchone()[0]
                last_tombstone = conn.execute(
                    "SELECT COALESCE(MAX(seq), 0) FROM face_tombstones WHERE collection_id = ?", (collection_id,)
                ).fetchone()[0]
                state = _IndexState(generation, new_index(size), 0, last_tombstone)
                self._indexes[collection_id] = state
            added = conn.execute(
                "SELECT row, embedding FROM faces WHERE collection_id = ? AND row > ? ORDER BY row",
                (collection_id, state.last_row),
            ).fetchall()
            removed = conn.execute(
                "SELECT seq, face_row FROM face_tombstones WHERE collection_id = ? AND seq > ? ORDER BY seq",
                (collection_id, state.last_tombstone),
            ).fetchall()
        if removed:
            state.index.remove(np.array([r["face_row"] for r in removed], dtype=np.int64))
            state.last_tombstone = removed[-1]["seq"]
        if added:
            ids = np.array([r["row"] for r in added], dtype=np.int64)
            vectors = np.frombuffer(b"".join(r["embedding"] for r in added), dtype=np.float32).reshape(-1, EMBEDDING_SIZE)
            state.index.add(ids, unit(vectors))  # faces enrolled before 0.2 are stored unscaled
            state.last_row = int(ids[-1])
        return state.index, len(state.index)

    def search(
        self,
        collection_id: str,
        queries: list[SearchQuery],
        *,
        actor: str,
        purpose: str,
        k: int = 10,
        threshold: float | None = None,
        request: dict[str, Any] | None = None,
    ) -> list[list[Candidate]]:
        """Top-k candidates at or above the threshold for each query, written to the audit log."""
        actor, purpose = check_search(actor, purpose, k, threshold)
        with self._lock:
            index, size = self._synced_index(collection_id)
            if threshold is None:
                with self._read() as conn:
                    fixed = self._collection_row(conn, collection_id)["threshold"]
                threshold = resolve_threshold(self.table, fixed, size)
            vectors = np.stack([np.frombuffer(_vector_bytes(q.vector), np.float32) for q in queries]) if queries else None
            found: list[list[tuple[int, float]]] = []
            if vectors is not None and len(index):
                ids, distances = index.search(vectors, min(k, len(index)))
                for id_row, d_row in zip(ids, distances):
                    hits = []
                    for face_row, d in zip(id_row, d_row):
                        score = score_of_distance(float(d))
                        if face_row >= 0 and score >= threshold:
                            hits.append((int(face_row), score))
                    found.append(hits)
            else:
                found = [[] for _ in queries]
            results: list[list[Candidate]] = []
            with self._write() as conn:
                for hits in found:
                    candidates = []
                    for face_row, score in hits:
                        row = conn.execute("SELECT face_id, person_id FROM faces WHERE row = ?", (face_row,)).fetchone()
                        if row is None:  # erased since the index was brought up to date
                            continue
                        candidates.append(
                            Candidate(row["face_id"], row["person_id"], score, self.table.fmr_estimate(score))
                        )
                    results.append(candidates)
                self._audit(
                    AuditAction.SEARCH,
                    actor,
                    collection_id,
                    purpose,
                    {
                        "request": request or {},
                        "threshold": round(float(threshold), 1),
                        "k": k,
                        "gallery_size": size,
                        "queries": [q.summary for q in queries],
                        "results": [
                            [{"face_id": c.face_id, "person_id": c.person_id, "score": round(c.score, 2)} for c in cs]
                            for cs in results
                        ],
                    },
                )
        return results

    # ------------------------------------------------------------------ service credentials

    @staticmethod
    def _api_key(row: sqlite3.Row) -> ApiKey:
        collections = json.loads(row["collections"]) if row["collections"] is not None else None
        return ApiKey(
            key_id=row["key_id"],
            name=row["name"],
            secret_hash=row["secret_hash"],
            roles=tuple(Role(r) for r in json.loads(row["roles"])),
            collections=tuple(collections) if collections is not None else None,
            default_purpose=row["default_purpose"],
            rate_per_minute=row["rate_per_minute"],
            created_at=_time(row["created_at"]),  # type: ignore[arg-type]
            created_by=row["created_by"],
            revoked_at=_time(row["revoked_at"]),
            revoked_by=row["revoked_by"],
        )

    def create_api_key(self, key: ApiKey, *, actor: str) -> ApiKey:
        actor = check_text(actor, "the actor")
        check_id(key.key_id, "key id")
        if not key.roles:
            raise InvalidArgumentError("a key needs at least one role")
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM api_keys WHERE key_id = ?", (key.key_id,)).fetchone():
                raise AlreadyExistsError(f"key {key.key_id!r} exists already")
            conn.execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                (
                    key.key_id,
                    key.name,
                    key.secret_hash,
                    json.dumps([Role(r).value for r in key.roles]),
                    json.dumps(list(key.collections)) if key.collections is not None else None,
                    key.default_purpose,
                    key.rate_per_minute,
                    _iso(key.created_at),
                    actor,
                ),
            )
            details = key.to_dict()
            details.pop("created_at"), details.pop("revoked_at"), details.pop("revoked_by")
            self._audit(AuditAction.KEY_CREATE, actor, None, None, details)
            row = conn.execute("SELECT * FROM api_keys WHERE key_id = ?", (key.key_id,)).fetchone()
            return self._api_key(row)

    def get_api_key(self, key_id: str) -> ApiKey:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no key {key_id!r}")
        return self._api_key(row)

    def list_api_keys(self) -> list[ApiKey]:
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM api_keys ORDER BY created_at, key_id").fetchall()
        return [self._api_key(r) for r in rows]

    def revoke_api_key(self, key_id: str, *, actor: str, reason: str) -> ApiKey:
        actor, reason = check_text(actor, "the actor"), check_text(reason, "a reason")
        with self._write() as conn:
            row = conn.execute("SELECT * FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no key {key_id!r}")
            if row["revoked_at"] is None:
                conn.execute(
                    "UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE key_id = ?", (_iso(_now()), actor, key_id)
                )
                self._audit(AuditAction.KEY_REVOKE, actor, None, None, {"key_id": key_id, "reason": reason})
            return self._api_key(conn.execute("SELECT * FROM api_keys WHERE key_id = ?", (key_id,)).fetchone())

    # ------------------------------------------------------------------ retention

    def sweep(self, *, actor: str, now: datetime | None = None) -> SweepReport:
        """Erase faces whose collection's retention ran out and persons whose consent expired."""
        actor = check_text(actor, "the actor")
        now = now or _now()
        details: list[dict[str, Any]] = []
        faces_erased = persons_erased = 0
        with self._write() as conn:
            for row in conn.execute("SELECT id, retention_days FROM collections WHERE retention_days IS NOT NULL").fetchall():
                cutoff = _iso(now - timedelta(days=row["retention_days"]))
                cursor = conn.execute(
                    "DELETE FROM faces WHERE collection_id = ? AND created_at < ?", (row["id"], cutoff)
                )
                if cursor.rowcount:
                    faces_erased += cursor.rowcount
                    details.append({"collection": row["id"], "reason": "retention", "faces_erased": cursor.rowcount})
            expired = conn.execute(
                "SELECT collection_id, person_id FROM consents WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (_iso(now),),
            ).fetchall()
            for row in expired:
                erased = self._delete_person_faces(conn, row["collection_id"], row["person_id"])
                conn.execute(
                    "DELETE FROM consents WHERE collection_id = ? AND person_id = ?",
                    (row["collection_id"], row["person_id"]),
                )
                faces_erased += erased
                persons_erased += 1
                details.append(
                    {
                        "collection": row["collection_id"],
                        "person_id": row["person_id"],
                        "reason": "consent expired",
                        "faces_erased": erased,
                    }
                )
            if details:
                self._audit(AuditAction.SWEEP, actor, None, None, {"erased": details, "at": _iso(now)})
        if details:
            self._erase_traces()
        return SweepReport(faces_erased=faces_erased, persons_erased=persons_erased, details=details)

