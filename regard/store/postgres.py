"""The server store: PostgreSQL with pgvector, shared by several Regard processes and machines.

    store = open_store("postgresql://regard@db.internal/regard")     # or REGARD_STORE=postgresql://...

Behaviour is the SQLite store's (regard/store/sqlite.py), operation for operation: the same
checks, errors, audit entries and erasure. What differs is how:

- Schema: versioned SQL files in regard/store/migrations/postgres/, applied in order at open, in
  one transaction under an advisory lock (so replicas starting together do not race), and recorded
  in `regard_schema_version`.
- Writers: every write transaction starts by locking the audit log's head row (`SELECT ... FOR
  UPDATE`, regard/auditlog/postgres.py). Writers therefore queue as they do on SQLite's write lock, the
  audit chain stays linear whatever the number of processes, and each writer sees everything
  committed before it (READ COMMITTED), so a consent check and the insert it guards cannot
  interleave with a revocation.
- Search runs in the database: vectors live in a `vector(128)` column, with an HNSW index of their
  half-precision copies (Euclidean distance, the embedder's metric). Collections smaller than
  EXACT_BELOW faces are searched exactly (every face of the collection; at that size as fast, and
  never misses); larger ones through the HNSW graph, with a search depth (`hnsw.ef_search`: the
  session's, or set for the transaction) that grows as the collection's share of the table shrinks, and pgvector's
  iterative scan where the share is too small for any depth (`search_depth`), so the filter on the
  collection still returns k results. Distances are computed exactly either way.
- Erasure deletes the rows in the erasing transaction: no live table holds the vector afterwards.
  The bytes of deleted rows stay in the table's pages until VACUUM reuses them, in the write-ahead
  log until it is recycled, and in backups: see docs/STORAGE.md and `purge_erased`.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import dict_row

from regard.auditlog import postgres as pglog
from regard.auditlog.log import AuditAction, AuditEntry, VerifyReport
from regard.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from regard.face import QualityLevel
from regard.match import ThresholdTable, score_of_distance
from regard.models.registry import EMBEDDER_ID as MODEL_NAME
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

EXACT_BELOW = 10_000
"""Collections with fewer faces are searched exactly; larger ones through the HNSW index.
Measured on 2 cores: an exact scan costs about 0.45 ms per 1,000 faces (44 ms at 100k), so 10k faces cost about what an
HNSW search of a million does, and has perfect recall."""

EF_SEARCH = 350
"""HNSW search depth (pgvector's hnsw.ef_search) for a collection that is the whole table; see
`search_depth` for one that shares it. At a million faces (bench/search.py's gallery and server, 2
cores, through `Store.search` with its audit entry, 2026-11-29) recall@10 is 0.977 / 0.982 / 0.986
at ef 300 / 350 / 400, p50 16.2 / 18.8 / 20.1 ms (20.2 ms at ef 350 in a later run, 19.2 ms with
the two-round-trip search): 350 is the shallowest depth above 0.98 (the same 0.982-0.983 in five
builds), 400 buys 0.004 of recall for 7 to 13 % more time. Search time grows in proportion to the
depth; `PostgresStore.ef_search` changes it for a store."""

EF_SEARCH_MAX = 1000
"""pgvector's largest hnsw.ef_search."""

INDEXED = "embedding::halfvec(128)"
"""What the HNSW index holds: half-precision copies of the embeddings (migration 0002). Candidates
are found by their distance in it and scored with the exact vectors of the faces table."""

HNSW_INDEX = "faces_embedding_hnsw"
HNSW_DEFINITION = (
    f"CREATE INDEX IF NOT EXISTS {HNSW_INDEX} ON faces USING hnsw (({INDEXED}) halfvec_l2_ops) "
    "WITH (m = 24, ef_construction = 200)"
)
"""The vector index as the migrations create it; `build_vector_index` recreates it after a bulk load.
m 24 rather than pgvector's default 16: at 1M faces recall@10 0.985 against 0.959 at ef 400.
ef_construction 200 rather than 128: recall@10 at ef 400 0.987 against 0.983 (so ef 350 does what
ef 400 did), for a build of 18 instead of 13 minutes at a million faces on 2 cores. ef_construction
400 adds only 0.002 more (0.984 at ef 350, 0.980 at ef 300) and the bench's build and settling took
36 minutes instead of 21: not worth it.
m 32 (ef_construction 200) reaches recall@10 0.985 at ef 250 touching about 15 % fewer pages than
m 24 at ef 400, but its build took 72 minutes: not worth it on 2 cores."""


def search_depth(collection_faces: int, table_faces: int, ef_search: int = EF_SEARCH) -> tuple[int, bool]:
    """(hnsw.ef_search, iterative scan?) for a collection of `collection_faces` in a table of
    `table_faces`. The index covers every collection, and the filter on the collection keeps about
    its share of the graph's candidates: the depth grows by the inverse of that share so about
    `ef_search` of its own faces are examined, as when it is alone. Where even pgvector's largest
    depth cannot do that (a share under 40 % at the default), the iterative scan keeps going until
    k are found."""
    share = collection_faces / max(table_faces, collection_faces, 1)
    depth = math.ceil(ef_search / share) if share > 0 else EF_SEARCH_MAX + 1
    if depth <= EF_SEARCH_MAX:
        return depth, False
    return EF_SEARCH_MAX, True


@dataclass(frozen=True)
class SearchPlan:
    """How a collection is searched: exactly, or through the HNSW graph at a depth (iteratively or not)."""

    exact: bool
    depth: int = 0
    iterative: bool = False

    def covers(self, needed: SearchPlan) -> bool:
        """Whether what this plan finds serves a search that `needed` is the plan for. An exact
        search serves any (it finds the true nearest faces; it only took longer than a graph search
        would have). A graph search serves another if it went at least as deep, less a twentieth:
        a collection's share of the table, and with it the depth, moves little between two searches
        (another collection's enrollment), and a depth 5 % short moves recall@10 by about 0.002."""
        if self.exact:
            return True
        if needed.exact:
            return False
        return (self.iterative or not needed.iterative) and self.depth >= needed.depth - needed.depth // 20


FACES_INSERT = (
    "INSERT INTO faces (face_id, collection_id, person_id, external_image_id, box_left, box_top, box_width, "
    "box_height, quality_score, quality_level, embedding, thumbnail, created_at)"
)

_MAX_PARAMETERS = 65_535  # PostgreSQL's limit on the parameters of one statement


def insert_rows(
    conn: psycopg.Connection[Any], insert: str, rows: Sequence[Sequence[Any]], *, on_conflict: str = ""
) -> None:
    """Insert rows with one multi-row statement per chunk (`insert` is "INSERT INTO table (columns)"),
    not a statement per row: far fewer round trips, and the faces table's statement-level counting
    trigger updates each collection's row once per statement (once per face, a bulk load left a
    million dead versions of that row for every search to step over)."""
    if not rows:
        return
    group = "(" + ", ".join(["%s"] * len(rows[0])) + ")"
    step = _MAX_PARAMETERS // len(rows[0])
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        conn.execute(
            f"{insert} VALUES {', '.join([group] * len(chunk))} {on_conflict}",
            [value for row in chunk for value in row],
        )


_MIGRATION_LOCK = 0x52454741  # pg_advisory_xact_lock key while migrations run ("REGA")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, SQL) of every schema migration shipped with Regard, in order."""
    folder = resources.files("regard.store") / "migrations" / "postgres"
    found = []
    for item in folder.iterdir():
        name = item.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, item.read_text(encoding="utf-8")))
    return sorted(found)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(timezone.utc).isoformat()


_vector = stored_vector  # checked, length 1: what the faces table and its index hold


class PostgresStore(Store):
    """The server store. Open with `regard.store.open_store("postgresql://...")`.

    One connection per store object, used by one thread at a time (a lock); open one store per
    process (or per worker thread that must not wait for the others).
    """

    def __init__(self, url: str, *, table: ThresholdTable | None = None) -> None:
        self.url = url
        self._table = table
        self._lock = threading.RLock()
        self._closed = False
        self._head: tuple[int, str] | None = None  # the audit head locked by the open write transaction
        self._ef_search = EF_SEARCH
        self._plans: dict[str, SearchPlan] = {}  # collection -> how its last search went; see _search
        self._conn = self._connect()
        self.schema_version = self._migrate()
        register_vector(self._conn)

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row)  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            raise InvalidArgumentError(f"cannot connect to the PostgreSQL store: {exc}".strip()) from None
        conn.execute("SET TIME ZONE 'UTC'")
        # The search depth of a collection alone in the table, for the whole session: its searches
        # need no settings of their own (one round trip less); see _search.
        conn.execute(f"SET hnsw.ef_search = {self._ef_search}")
        conn.execute("SET hnsw.iterative_scan = off")
        return conn

    @property
    def ef_search(self) -> int:
        """The HNSW search depth of a collection alone in the table (EF_SEARCH unless changed):
        deeper finds more of the true nearest faces, in proportion more slowly."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, depth: int) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= EF_SEARCH_MAX:
            raise InvalidArgumentError(f"ef_search is a whole number from 1 to {EF_SEARCH_MAX}, not {depth!r}")
        with self._lock:
            self._ensure()
            self._conn.execute(f"SET hnsw.ef_search = {depth}")
            self._ef_search = depth

    def _ensure(self) -> None:
        """Reconnect once if the server closed the connection (a restart, a failover): the failed
        call raised already; the next one gets a fresh connection. Caller holds the lock."""
        if self._conn.broken and not self._closed:
            self._conn = self._connect()
            register_vector(self._conn)

    def _migrate(self) -> int:
        """Apply the migrations this database has not had yet, in one transaction; its version."""
        with self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS regard_schema_version ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            applied = {r["version"] for r in self._conn.execute("SELECT version FROM regard_schema_version")}
            version = max(applied, default=0)
            for number, name, script in migrations():
                if number in applied:
                    continue
                self._conn.execute(script)  # type: ignore[arg-type]  (our own file, several statements)
                self._conn.execute("INSERT INTO regard_schema_version (version, name) VALUES (%s, %s)", (number, name))
                version = number
            return version

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        """One write transaction that first takes the audit head's row lock: writers queue."""
        with self._lock:
            self._ensure()
            with self._conn.transaction():
                self._head = pglog.lock_head(self._conn)
                try:
                    yield self._conn
                finally:
                    self._head = None

    @contextmanager
    def _pipelined(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction whose statements go out in a pipeline: each is sent without waiting for
        the one before, and the client waits for the server only where it reads a result and once
        at the end (BEGIN travels with the first query, COMMIT with the last). A search takes
        two round trips instead of seven (the collection's row with the vector queries, the audit
        head's lock and the check of which hits are still there; then the audit entry with COMMIT),
        which counts double when the database is across a network. Caller holds the lock."""
        conn = self._conn
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                yield conn
                conn.execute("COMMIT")
        except BaseException:
            if not conn.broken and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            self._head = None
            raise

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        """A consistent snapshot for several reads."""
        with self._lock:
            self._ensure()
            with self._conn.transaction():
                self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield self._conn

    def _audit(
        self, action: AuditAction, actor: str, collection: str | None, purpose: str | None, details: dict[str, Any]
    ) -> None:
        head, self._head = self._head, None  # locked at the start of this transaction; one entry each
        pglog.append(
            self._conn, action=action, actor=actor, collection=collection, purpose=purpose, details=details,
            locked_head=head,
        )  # fmt: skip

    def close(self) -> None:
        with self._lock:
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
            return pglog.entries(
                conn, collection=collection, action=action, actor=actor, since=since, until=until, limit=limit
            )

    def verify_audit(self) -> VerifyReport:
        with self._lock:
            self._ensure()
            return pglog.verify(self._conn)

    # ------------------------------------------------------------------ upkeep of the vector index

    def drop_vector_index(self) -> None:
        """Drop the HNSW index before loading many faces at once (regard migrate, benchmarks):
        building it once afterwards is far faster than inserting into it face by face. Searches
        of large collections are exact (slow) until `build_vector_index` has run."""
        with self._lock:
            self._conn.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")

    def build_vector_index(
        self, *, maintenance_work_mem: str = "2GB", workers: int = 1, progress: Any = None
    ) -> None:
        """(Re)create the HNSW index if it is missing. `progress(done, total)` is called every few
        seconds from a second connection (pg_stat_progress_create_index) while it builds."""
        with self._lock:
            exists = self._conn.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", (HNSW_INDEX,)).fetchone()
            if exists:
                return
            stop = threading.Event()
            watcher = None
            if progress is not None:
                pid = self._conn.info.backend_pid
                watcher = threading.Thread(target=self._watch_build, args=(pid, progress, stop), daemon=True)
                watcher.start()
            try:
                self._conn.execute(f"SET maintenance_work_mem = '{_setting(maintenance_work_mem)}'")
                self._conn.execute(f"SET max_parallel_maintenance_workers = {int(workers)}")
                self._conn.execute(HNSW_DEFINITION)
            finally:
                stop.set()
                if watcher is not None:
                    watcher.join()
                self._conn.execute("RESET maintenance_work_mem")
                self._conn.execute("RESET max_parallel_maintenance_workers")

    def _watch_build(self, pid: int, progress: Any, stop: threading.Event) -> None:
        with psycopg.connect(self.url, autocommit=True) as watch:
            while not stop.wait(2.0):
                row = watch.execute(
                    "SELECT tuples_done, tuples_total, blocks_done, blocks_total FROM pg_stat_progress_create_index "
                    "WHERE pid = %s",
                    (pid,),
                ).fetchone()
                if row:
                    done, total = (row[0], row[1]) if row[1] else (row[2], row[3])
                    progress(int(done or 0), int(total or 0))

    def purge_erased(self, *, full: bool = False) -> None:
        """VACUUM the faces table: the space of erased rows becomes reusable (plain), or the table
        and its indexes are rewritten into new files without them (`full`, which locks the table
        while it runs). See docs/STORAGE.md for what this does and does not reach (WAL, backups)."""
        with self._lock:
            self._conn.execute("VACUUM (FULL, ANALYZE) faces" if full else "VACUUM (ANALYZE) faces")

    # ------------------------------------------------------------------ collections

    def _collection_row(self, conn: psycopg.Connection[Any], collection_id: str, *, lock: str = "") -> dict[str, Any]:
        row = conn.execute(f"SELECT * FROM collections WHERE id = %s {lock}", (collection_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no collection {collection_id!r}")
        return row  # type: ignore[no-any-return]

    def _collection(self, conn: psycopg.Connection[Any], row: dict[str, Any]) -> Collection:
        persons = conn.execute("SELECT COUNT(*) AS n FROM persons WHERE collection_id = %s", (row["id"],)).fetchone()
        return Collection(
            id=row["id"],
            purpose=row["purpose"],
            model=row["model"],
            retention_days=row["retention_days"],
            min_quality=QualityLevel(row["min_quality"]),
            store_thumbnails=bool(row["store_thumbnails"]),
            created_at=row["created_at"],
            created_by=row["created_by"],
            face_count=int(row["face_count"]),
            person_count=int(persons["n"]),  # type: ignore[index]
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
            if conn.execute("SELECT 1 FROM collections WHERE id = %s", (collection_id,)).fetchone():
                raise AlreadyExistsError(f"collection {collection_id!r} exists already")
            conn.execute(
                "INSERT INTO collections (id, purpose, model, retention_days, min_quality, store_thumbnails, "
                "created_at, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (collection_id, purpose, MODEL_NAME, retention_days, min_quality.value, store_thumbnails, _now(), actor),
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
            faces = conn.execute("DELETE FROM faces WHERE collection_id = %s", (collection_id,)).rowcount
            conn.execute("DELETE FROM collections WHERE id = %s", (collection_id,))
            self._audit(
                AuditAction.COLLECTION_DELETE, actor, collection_id, None, {"reason": reason, "faces_erased": faces}
            )
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
                "UPDATE collections SET threshold = %s, threshold_source = %s WHERE id = %s",
                (
                    threshold,
                    json.dumps(source, sort_keys=True) if source and threshold is not None else None,
                    collection_id,
                ),
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

    def _person(self, conn: psycopg.Connection[Any], collection_id: str, person_id: str) -> Person:
        row = conn.execute(
            "SELECT * FROM persons WHERE collection_id = %s AND person_id = %s", (collection_id, person_id)
        ).fetchone()
        if row is None:
            self._collection_row(conn, collection_id)
            raise NotFoundError(f"no person {person_id!r} in collection {collection_id!r}")
        consent_row = conn.execute(
            "SELECT * FROM consents WHERE collection_id = %s AND person_id = %s", (collection_id, person_id)
        ).fetchone()
        faces = conn.execute(
            "SELECT COUNT(*) AS n FROM faces WHERE collection_id = %s AND person_id = %s", (collection_id, person_id)
        ).fetchone()
        consent = None
        if consent_row is not None:
            consent = Consent(
                basis=ConsentBasis(consent_row["basis"]),
                recorded_by=consent_row["recorded_by"],
                recorded_at=consent_row["recorded_at"],
                expires_at=consent_row["expires_at"],
                reference=consent_row["reference"],
            )
        return Person(
            collection=collection_id,
            id=person_id,
            display_name=row["display_name"],
            created_at=row["created_at"],
            consent=consent,
            face_count=int(faces["n"]),  # type: ignore[index]
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
                "SELECT 1 FROM persons WHERE collection_id = %s AND person_id = %s", (collection_id, person_id)
            ).fetchone()
            if exists:
                raise AlreadyExistsError(f"person {person_id!r} exists already in {collection_id!r}")
            conn.execute(
                "INSERT INTO persons VALUES (%s, %s, %s, %s)", (collection_id, person_id, display_name, _now())
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
                r["person_id"]
                for r in conn.execute(
                    "SELECT person_id FROM persons WHERE collection_id = %s ORDER BY person_id", (collection_id,)
                ).fetchall()
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
                "INSERT INTO consents VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (collection_id, person_id) "
                "DO UPDATE SET basis = excluded.basis, recorded_by = excluded.recorded_by, "
                "recorded_at = excluded.recorded_at, expires_at = excluded.expires_at, reference = excluded.reference",
                (collection_id, person_id, basis.value, actor, now, expires_at, reference),
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
        actor, reason = check_text(actor, "the actor"), check_text(reason, "a reason")
        assert table in ("consents", "persons")
        with self._write() as conn:
            self._person(conn, collection_id, person_id)
            erased = self._delete_person_faces(conn, collection_id, person_id)
            conn.execute(
                f"DELETE FROM {table} WHERE collection_id = %s AND person_id = %s", (collection_id, person_id)
            )
            self._audit(
                action, actor, collection_id, None, {"person_id": person_id, "reason": reason, "faces_erased": erased}
            )
        return erased

    @staticmethod
    def _delete_person_faces(conn: psycopg.Connection[Any], collection_id: str, person_id: str) -> int:
        cursor = conn.execute(
            "DELETE FROM faces WHERE collection_id = %s AND person_id = %s", (collection_id, person_id)
        )
        return int(cursor.rowcount)

    # ------------------------------------------------------------------ faces

    @staticmethod
    def _face(row: dict[str, Any]) -> FaceRecord:
        return FaceRecord(
            face_id=row["face_id"],
            collection=row["collection_id"],
            person_id=row["person_id"],
            external_image_id=row["external_image_id"],
            box=(row["box_left"], row["box_top"], row["box_width"], row["box_height"]),
            quality_score=row["quality_score"],
            quality_level=QualityLevel(row["quality_level"]),
            created_at=row["created_at"],
        )

    _FACE_COLUMNS = (
        "face_id, collection_id, person_id, external_image_id, box_left, box_top, box_width, box_height, "
        "quality_score, quality_level, created_at"
    )

    def add_faces(
        self, collection_id: str, person_id: str, faces: list[NewFace], *, actor: str
    ) -> list[FaceRecord]:
        """Enroll faces for a person, who must hold a valid consent record. All or nothing."""
        actor = check_text(actor, "the actor")
        vectors = [_vector(f.embedding) for f in faces]
        now = _now()
        with self._write() as conn:
            collection = self._collection(conn, self._collection_row(conn, collection_id))
            require_consent(self._person(conn, collection_id, person_id), now)
            rows = []
            for face, vector in zip(faces, vectors):
                if face.quality_level.rank < collection.min_quality.rank:
                    raise InvalidArgumentError(
                        f"a {face.quality_level.value} quality face is below {collection_id!r}'s gate "
                        f"({collection.min_quality.value})"
                    )
                rows.append(
                    (
                        str(uuid.uuid4()),
                        collection_id,
                        person_id,
                        face.external_image_id,
                        *[float(v) for v in face.box],
                        float(face.quality_score),
                        face.quality_level.value,
                        vector,
                        face.thumbnail if collection.store_thumbnails else None,
                        now,
                    )
                )
            insert_rows(conn, FACES_INSERT, rows)
            records = [
                FaceRecord(
                    face_id=r[0],
                    collection=collection_id,
                    person_id=person_id,
                    external_image_id=r[3],
                    box=(r[4], r[5], r[6], r[7]),
                    quality_score=r[8],
                    quality_level=QualityLevel(r[9]),
                    created_at=now,
                )
                for r in rows
            ]
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
                "SELECT 1 FROM faces WHERE collection_id = %s AND external_image_id = %s LIMIT 1",
                (collection_id, external_image_id),
            ).fetchone()
            return row is not None

    def _face_row(self, conn: psycopg.Connection[Any], collection_id: str, face_id: str, columns: str) -> dict[str, Any]:
        row = conn.execute(
            f"SELECT {columns} FROM faces WHERE collection_id = %s AND face_id = %s", (collection_id, face_id)
        ).fetchone()
        if row is None:
            self._collection_row(conn, collection_id)
            raise NotFoundError(f"no face {face_id!r} in collection {collection_id!r}")
        return row  # type: ignore[no-any-return]

    def get_face(self, collection_id: str, face_id: str) -> FaceRecord:
        with self._read() as conn:
            return self._face(self._face_row(conn, collection_id, face_id, self._FACE_COLUMNS))

    def face_vector(self, collection_id: str, face_id: str) -> np.ndarray:
        with self._read() as conn:
            row = self._face_row(conn, collection_id, face_id, "embedding")
            value = row["embedding"]
            return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32).copy()

    def list_faces(self, collection_id: str, person_id: str | None = None) -> list[FaceRecord]:
        with self._read() as conn:
            self._collection_row(conn, collection_id)
            if person_id is None:
                rows = conn.execute(
                    f"SELECT {self._FACE_COLUMNS} FROM faces WHERE collection_id = %s ORDER BY row", (collection_id,)
                ).fetchall()
            else:
                self._person(conn, collection_id, person_id)
                rows = conn.execute(
                    f"SELECT {self._FACE_COLUMNS} FROM faces WHERE collection_id = %s AND person_id = %s ORDER BY row",
                    (collection_id, person_id),
                ).fetchall()
            return [self._face(r) for r in rows]

    def delete_face(self, collection_id: str, face_id: str, *, actor: str, reason: str) -> None:
        actor, reason = check_text(actor, "the actor"), check_text(reason, "a reason")
        with self._write() as conn:
            row = self._face_row(conn, collection_id, face_id, "row, person_id")
            conn.execute("DELETE FROM faces WHERE row = %s", (row["row"],))
            self._audit(
                AuditAction.FACE_DELETE,
                actor,
                collection_id,
                None,
                {"face_id": face_id, "person_id": row["person_id"], "reason": reason},
            )

    # ------------------------------------------------------------------ search

    def _plan(self, collection_faces: int, table_faces: int, k: int) -> SearchPlan:
        """How to search a collection of this size in a table of that size for k faces."""
        if collection_faces < EXACT_BELOW:
            return SearchPlan(exact=True)
        depth, iterative = search_depth(collection_faces, table_faces, self._ef_search)
        return SearchPlan(exact=False, depth=max(depth, k), iterative=iterative)

    def _send_nearest(
        self,
        conn: psycopg.Connection[Any],
        plan: SearchPlan,
        collection_id: str,
        vectors: list[np.ndarray],
        k: int,
        *,
        settings: tuple[int, bool],
    ) -> tuple[list[psycopg.Cursor[Any]], tuple[int, bool]]:
        """Send the queries for the k nearest faces of a collection to each vector (row, face_id,
        person_id, distance), without waiting for their answers; `settings` are the (depth,
        iterative) in force in this transaction. Returns the cursors and the settings now in force.
        Query i also records the rows it found in a setting of the transaction, regard.hits_i, for
        `_send_check` to read back on the server."""
        if plan.exact:
            # l2_distance() is not the indexed operator: the planner scans the collection's rows.
            nearest = (
                "SELECT row, face_id, person_id, l2_distance(embedding, %(q)s) AS distance FROM faces "
                "WHERE collection_id = %(c)s ORDER BY distance LIMIT %(k)s"
            )
        else:
            # Candidates in the order of the index's half-precision distances, scored exactly; the
            # exact distances then order them (rounding can swap two near-equal neighbours).
            nearest = (
                "SELECT row, face_id, person_id, embedding <-> %(q)s AS distance FROM faces "
                f"WHERE collection_id = %(c)s ORDER BY {INDEXED} <-> %(q)s::halfvec(128) LIMIT %(k)s"
            )
            if (plan.depth, plan.iterative) != settings:
                conn.execute(
                    "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', %s, true)",
                    (str(plan.depth), "strict_order" if plan.iterative else "off"),
                )
                settings = (plan.depth, plan.iterative)
        cursors = [
            conn.execute(
                f"WITH hits AS MATERIALIZED ({nearest}) SELECT row, face_id, person_id, distance, "
                f"set_config('regard.hits_{i}', (SELECT array_agg(row)::text FROM hits), true) FROM hits",
                {"q": vector, "c": collection_id, "k": k},
            )
            for i, vector in enumerate(vectors)
        ]
        return cursors, settings

    @staticmethod
    def _send_check(conn: psycopg.Connection[Any], queries: int) -> psycopg.Cursor[Any]:
        """Send the query for which of the rows that `_send_nearest`'s queries recorded are still in
        the faces table (a setting never set in this transaction reads as no rows)."""
        recorded = " || ".join(
            f"coalesce(nullif(current_setting('regard.hits_{i}', true), ''), '{{}}')::bigint[]" for i in range(queries)
        )
        return conn.execute(f"SELECT row FROM faces WHERE row = ANY({recorded or 'ARRAY[]::bigint[]'})")  # type: ignore[arg-type]

    def _send_search(
        self,
        conn: psycopg.Connection[Any],
        plan: SearchPlan,
        collection_id: str,
        vectors: list[np.ndarray],
        k: int,
        *,
        settings: tuple[int, bool],
    ) -> tuple[list[psycopg.Cursor[Any]], psycopg.Cursor[Any], psycopg.Cursor[Any], tuple[int, bool]]:
        """Send a search's three steps without waiting: the vector queries (`_send_nearest`), the
        audit head's lock, and the check of which hits are still there, which runs once the lock is
        held. Returns their cursors and the settings now in force."""
        sent, settings = self._send_nearest(conn, plan, collection_id, vectors, k, settings=settings)
        return sent, pglog.request_head_lock(conn), self._send_check(conn, len(vectors)), settings

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
        vectors = [_vector(q.vector) for q in queries]
        with self._lock:
            self._ensure()
            return self._search(collection_id, queries, vectors, actor, purpose, k, threshold, request)

    def _search(
        self,
        collection_id: str,
        queries: list[SearchQuery],
        vectors: list[np.ndarray],
        actor: str,
        purpose: str,
        k: int,
        threshold: float | None,
        request: dict[str, Any] | None,
    ) -> list[list[Candidate]]:
        # Three steps: the vector queries; the audit head's lock, which orders this search among
        # the writers; once it is held, the check of which hits are still there (faces erased by a
        # writer that committed after the queries ran are left out), with a snapshot taken then.
        # The collection's row says how to search it, but waiting for it costs a round trip: all
        # three go out with it, the queries planned from the sizes this store saw at its last
        # search of the collection. If the row calls for a plan the old one does not cover, the
        # queries go again; they then run under the lock, where no face can be erased before this
        # search is logged, and need no check.
        guess = self._plans.get(collection_id)
        settings = (self._ef_search, False)  # the session's own; the transaction may change them
        with self._pipelined() as conn:
            collection = conn.execute(
                "SELECT face_count, threshold, (SELECT sum(face_count) FROM collections) AS table_faces "
                "FROM collections WHERE id = %s",
                (collection_id,),
            )
            check: psycopg.Cursor[Any] | None
            if guess is not None:
                sent, head_lock, check, settings = self._send_search(
                    conn, guess, collection_id, vectors, k, settings=settings
                )
            row = collection.fetchone()
            if row is None:
                self._plans.pop(collection_id, None)
                raise NotFoundError(f"no collection {collection_id!r}")
            size = int(row["face_count"])
            plan = self._plan(size, int(row["table_faces"]), k)
            if guess is None:
                sent, head_lock, check, settings = self._send_search(
                    conn, plan, collection_id, vectors, k, settings=settings
                )
            elif not guess.covers(plan):
                sent, settings = self._send_nearest(conn, plan, collection_id, vectors, k, settings=settings)
                check = None
            self._plans[collection_id] = plan
            if threshold is None:
                fixed = row["threshold"]
                threshold = resolve_threshold(self.table, fixed, size)
            found: list[list[tuple[dict[str, Any], float]]] = []
            for cursor in sent:
                nearest = sorted(cursor.fetchall(), key=lambda r: float(r["distance"]))
                scored = [(hit, score_of_distance(float(hit["distance"]))) for hit in nearest]
                found.append([(hit, score) for hit, score in scored if score >= threshold])
            self._head = pglog.head_locked(head_lock)
            if check is not None:
                alive = {r["row"] for r in check}
            else:  # the queries ran under the lock: every hit is still there
                alive = {hit["row"] for hits in found for hit, _ in hits}
            results = [
                [
                    Candidate(hit["face_id"], hit["person_id"], score, self.table.fmr_estimate(score))
                    for hit, score in hits
                    if hit["row"] in alive
                ]
                for hits in found
            ]
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
    def _api_key(row: dict[str, Any]) -> ApiKey:
        collections = json.loads(row["collections"]) if row["collections"] is not None else None
        return ApiKey(
            key_id=row["key_id"],
            name=row["name"],
            secret_hash=row["secret_hash"],
            roles=tuple(Role(r) for r in json.loads(row["roles"])),
            collections=tuple(collections) if collections is not None else None,
            default_purpose=row["default_purpose"],
            rate_per_minute=row["rate_per_minute"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            revoked_at=row["revoked_at"],
            revoked_by=row["revoked_by"],
        )

    def create_api_key(self, key: ApiKey, *, actor: str) -> ApiKey:
        actor = check_text(actor, "the actor")
        check_id(key.key_id, "key id")
        if not key.roles:
            raise InvalidArgumentError("a key needs at least one role")
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM api_keys WHERE key_id = %s", (key.key_id,)).fetchone():
                raise AlreadyExistsError(f"key {key.key_id!r} exists already")
            conn.execute(
                "INSERT INTO api_keys VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, NULL)",
                (
                    key.key_id,
                    key.name,
                    key.secret_hash,
                    json.dumps([Role(r).value for r in key.roles]),
                    json.dumps(list(key.collections)) if key.collections is not None else None,
                    key.default_purpose,
                    key.rate_per_minute,
                    key.created_at,
                    actor,
                ),
            )
            details = key.to_dict()
            details.pop("created_at"), details.pop("revoked_at"), details.pop("revoked_by")
            self._audit(AuditAction.KEY_CREATE, actor, None, None, details)
            row = conn.execute("SELECT * FROM api_keys WHERE key_id = %s", (key.key_id,)).fetchone()
            return self._api_key(row)  # type: ignore[arg-type]

    def get_api_key(self, key_id: str) -> ApiKey:
        with self._read() as conn:
            row = conn.execute("SELECT * FROM api_keys WHERE key_id = %s", (key_id,)).fetchone()
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
            row = conn.execute("SELECT * FROM api_keys WHERE key_id = %s", (key_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no key {key_id!r}")
            if row["revoked_at"] is None:
                conn.execute(
                    "UPDATE api_keys SET revoked_at = %s, revoked_by = %s WHERE key_id = %s", (_now(), actor, key_id)
                )
                self._audit(AuditAction.KEY_REVOKE, actor, None, None, {"key_id": key_id, "reason": reason})
            return self._api_key(conn.execute("SELECT * FROM api_keys WHERE key_id = %s", (key_id,)).fetchone())  # type: ignore[arg-type]

    # ------------------------------------------------------------------ retention

    def sweep(self, *, actor: str, now: datetime | None = None) -> SweepReport:
        """Erase faces whose collection's retention ran out and persons whose consent expired."""
        actor = check_text(actor, "the actor")
        now = now or _now()
        details: list[dict[str, Any]] = []
        faces_erased = persons_erased = 0
        with self._write() as conn:
            for row in conn.execute(
                "SELECT id, retention_days FROM collections WHERE retention_days IS NOT NULL ORDER BY id"
            ).fetchall():
                cutoff = now - timedelta(days=row["retention_days"])
                cursor = conn.execute(
                    "DELETE FROM faces WHERE collection_id = %s AND created_at < %s", (row["id"], cutoff)
                )
                if cursor.rowcount:
                    faces_erased += cursor.rowcount
                    details.append({"collection": row["id"], "reason": "retention", "faces_erased": cursor.rowcount})
            expired = conn.execute(
                "SELECT collection_id, person_id FROM consents WHERE expires_at IS NOT NULL AND expires_at <= %s "
                "ORDER BY collection_id, person_id",
                (now,),
            ).fetchall()
            for row in expired:
                erased = self._delete_person_faces(conn, row["collection_id"], row["person_id"])
                conn.execute(
                    "DELETE FROM consents WHERE collection_id = %s AND person_id = %s",
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
        return SweepReport(faces_erased=faces_erased, persons_erased=persons_erased, details=details)


def _setting(value: str) -> str:
    """A memory setting such as '2GB', checked so it can be written into SET (no parameters there)."""
    import re

    if not re.fullmatch(r"[0-9]+\s*(kB|MB|GB|TB)?", value):
        raise InvalidArgumentError(f"not a memory size: {value!r} (e.g. 2GB)")
    return value
