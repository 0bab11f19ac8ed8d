"""The server backend: PostgreSQL with pgvector, shared by several Regard processes and machines.

    store = open_store("postgresql://regard@db.internal/regard")     # or REGARD_STORE=postgresql://...

The store's rules are regard/store/core.py's, as for SQLite; what differs is how:

- Schema: versioned SQL files in regard/store/postgres/migrations/, applied in order at open, in
  one transaction under an advisory lock (so replicas starting together do not race), and recorded
  in `regard_schema_version`.
- Writers: every write transaction starts by locking the audit log's head row (`SELECT ... FOR
  UPDATE`, regard/auditlog/postgres.py). Writers therefore queue as they do on SQLite's write lock, the
  audit chain stays linear whatever the number of processes, and each writer sees everything
  committed before it (READ COMMITTED), so a consent check and the insert it guards cannot
  interleave with a revocation.
- Search runs in the database (regard/store/postgres/search.py): vectors of every width live in
  one `vector` column, with an HNSW index of their half-precision copies per width (Euclidean
  distance, the embedders' metric; `ensure_index` creates a width's at its first enrolment), in
  one pipelined transaction of two round trips.
- Erasure deletes the rows in the erasing transaction: no live table holds the vector afterwards.
  The bytes of deleted rows stay in the table's pages until VACUUM reuses them, in the write-ahead
  log until it is recycled, and in backups: see docs/STORAGE.md and `purge_erased`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.rows import dict_row

from regard.auditlog import postgres as pglog
from regard.auditlog.log import AuditEntry, VerifyReport
from regard.errors import InvalidArgumentError
from regard.store.backend import (
    STANDARD,
    AuditRecord,
    Backend,
    Finish,
    Row,
    T,
    Transaction,
    check_probe_model,
)
from regard.store.postgres import search as pgsearch
from regard.store.postgres.search import (
    DIM,
    EF_SEARCH,
    EF_SEARCH_MAX,
    HNSW_INDEX,
    HNSW_MAX_DIM,
    SearchPlan,
    index_definition,
    index_name,
)

_COLLECTION = "SELECT c.*, (SELECT COUNT(*) FROM persons p WHERE p.collection_id = c.id) AS person_count FROM collections c"
SQL = dataclasses.replace(
    STANDARD,
    # face_count is a column here, kept by a statement-level trigger (migration 0001): counting a
    # large collection's faces for every call would cost a scan.
    collection=_COLLECTION + " WHERE c.id = ?",
    collections=_COLLECTION + " ORDER BY c.id",
)


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    """psycopg's %s for the standard statements' ? (none of ours holds a ? or % otherwise)."""
    return sql.replace("?", "%s")


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
_INDEX_LOCK = 0x52454749  # with a width: the advisory lock of whoever creates that width's index ("REGI")
_EMBEDDING = STANDARD.insert_faces.split("(", 1)[1].split(")", 1)[0].split(", ").index("embedding")


def ensure_index(conn: psycopg.Connection[Any], dim: int) -> bool:
    """In a write transaction about to store vectors `dim` wide: create that width's HNSW index if
    it has none and no face of that width is stored yet. Returns whether the width is settled (its
    index exists, or need not be made here); False only while someone else is building it.

    The index is made in the writer's own transaction (CREATE INDEX, not CONCURRENTLY, which no
    transaction may run), so it appears with the first faces of its width or not at all. It locks
    the faces table against other writes (SHARE: searches go on) until the transaction ends;
    writers queue on the audit head's lock anyway, which also keeps two processes from creating the
    same index at once (IF NOT EXISTS covers anyone who does without the head, and the advisory
    lock `build_vector_index` holds). For a width no face has yet this is quick however large the
    table: the check that none is stored and the build each read the table once (the faces of other
    widths are NULL in the index's expression and left out of it), and nothing goes into the graph;
    seconds at a million faces, once per width (the table is locked that long). A width with
    faces and no index is left alone: its index was dropped for a bulk load (`drop_vector_index`),
    and `build_vector_index` makes it once the load is done. Widths above pgvector's HNSW limit
    have no index: their collections are searched exactly."""
    if dim > HNSW_MAX_DIM:
        return True
    if conn.execute("SELECT to_regclass(%s) IS NOT NULL AS present", (index_name(dim),)).fetchone()["present"]:  # type: ignore[index]
        return True
    if not conn.execute("SELECT pg_try_advisory_xact_lock(%s::int, %s::int) AS mine", (_INDEX_LOCK, dim)).fetchone()["mine"]:  # type: ignore[index]
        return False  # build_vector_index is building it: not here, and not waiting for it
    stored = conn.execute("SELECT EXISTS (SELECT 1 FROM faces WHERE vector_dims(embedding) = %s) AS stored", (dim,))
    if not stored.fetchone()["stored"]:  # type: ignore[index]
        conn.execute(index_definition(dim))  # type: ignore[arg-type]
    return True


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, SQL) of every schema migration shipped with Regard, in order."""
    folder = resources.files("regard.store.postgres") / "migrations"
    found = []
    for item in folder.iterdir():
        name = item.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, item.read_text(encoding="utf-8")))
    return sorted(found)


class _Transaction(Transaction):
    def __init__(
        self, conn: psycopg.Connection[Any], head: tuple[int, str] | None, widths: set[int] | None = None
    ) -> None:
        self.conn = conn
        self.head = head  # the audit head this transaction locked first, if it is a write
        self.widths = widths if widths is not None else set()  # widths whose index is settled (see ensure_index)
        self.settled: set[int] = set()  # ...in this transaction: the backend's once it commits

    def _vectors(self, vectors: Sequence[Any]) -> None:
        """About to store these vectors: their widths' indexes first (`ensure_index`)."""
        for dim in {len(v) for v in vectors} - self.widths - self.settled:
            if ensure_index(self.conn, dim):
                self.settled.add(dim)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        return self.conn.execute(_placeholders(sql), params).fetchone()  # type: ignore[arg-type]

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.conn.execute(_placeholders(sql), params).fetchall()  # type: ignore[arg-type]

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        if sql == SQL.set_face_vector:  # a collection moved to another model (its vectors' width may change)
            self._vectors([params[0]])
        return int(self.conn.execute(_placeholders(sql), params).rowcount)  # type: ignore[arg-type]

    def insert_many(self, insert: str, rows: Sequence[Sequence[Any]]) -> None:
        if insert == SQL.insert_faces:
            self._vectors([row[_EMBEDDING] for row in rows])
        insert_rows(self.conn, insert, rows)

    def audit(self, record: AuditRecord) -> None:
        head, self.head = self.head, None  # locked at the start of this transaction; one entry each
        pglog.append(
            self.conn, action=record.action, actor=record.actor, collection=record.collection,
            purpose=record.purpose, details=record.details, locked_head=head,
        )  # fmt: skip


class PostgresBackend(Backend):
    """One connection per backend object, used by one thread at a time (a lock); open one store per
    process (or per worker thread that must not wait for the others)."""

    sql = SQL

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._closed = False
        self._ef_search = EF_SEARCH
        self._plans: dict[str, SearchPlan] = {}  # collection -> how its last search went; see search.search
        self._widths: set[int] = set()  # vector widths whose HNSW index is settled (see ensure_index)
        self._conn = self._connect()
        self.schema_version = self._migrate()
        register_vector(self._conn)

    @property
    def connection(self) -> psycopg.Connection[Any]:
        """The backend's connection, for the store package's own tools (regard/store/migrate.py)."""
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A plain transaction on the backend's connection, holding its lock (regard/store/migrate.py
        copies rows verbatim, audit entries included, past the store's rules)."""
        with self._lock:
            self._ensure()
            with self._conn.transaction():
                yield self._conn

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
    def write(self) -> Iterator[Transaction]:
        """One write transaction that first takes the audit head's row lock: writers queue."""
        with self._lock:
            self._ensure()
            with self._conn.transaction():
                tx = _Transaction(self._conn, pglog.lock_head(self._conn), self._widths)
                yield tx
            self._widths |= tx.settled  # committed: an index made in it exists now

    @contextmanager
    def read(self) -> Iterator[Transaction]:
        """A consistent snapshot for several reads."""
        with self._lock:
            self._ensure()
            with self._conn.transaction():
                self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield _Transaction(self._conn, None)

    @contextmanager
    def _pipelined(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction whose statements go out in a pipeline: each is sent without waiting for
        the one before, and the client waits for the server only where it reads a result and once
        at the end (BEGIN travels with the first query, COMMIT with the last); see `search.search`.
        Caller holds the lock."""
        conn = self._conn
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                yield conn
                conn.execute("COMMIT")
        except BaseException:
            if not conn.broken and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            raise

    def vector_param(self, vector: np.ndarray) -> np.ndarray:
        return vector  # pgvector's adapter sends numpy arrays as vectors (of any width)

    def vector_value(self, value: Any) -> np.ndarray:
        return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32).copy()

    def search(self, collection_id: str, vectors: list[np.ndarray], k: int, finish: Finish[T], model: str) -> T:
        with self._lock:
            self._ensure()
            with self._pipelined() as conn:
                gallery, hits, head = pgsearch.search(
                    conn, self._plans, self._ef_search, collection_id, vectors, k, model
                )
                check_probe_model(gallery, model)  # (search.search refused a mismatch already)
                result, record = finish(gallery, hits)
                _Transaction(conn, head).audit(record)
            return result

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._conn.close()

    def audit_entries(self, **filters: Any) -> list[AuditEntry]:
        with self._lock, self.read():
            return pglog.entries(self._conn, **filters)

    def verify_audit(self) -> VerifyReport:
        with self._lock:
            self._ensure()
            return pglog.verify(self._conn)

    # ------------------------------------------------------------------ upkeep of the vector index

    def _vector_indexes(self) -> list[str]:
        """The names of the faces table's HNSW indexes, of every width."""
        rows = self._conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'faces' "
            "AND indexname ~ %s ORDER BY indexname",
            (f"^{HNSW_INDEX}(_[0-9]+)?$",),
        )
        return [r["indexname"] for r in rows]

    def drop_vector_index(self) -> None:
        """Drop the HNSW indexes (of every width) before loading many faces at once (regard migrate,
        benchmarks): building them once afterwards is far faster than inserting into them face by
        face. Searches of large collections are exact (slow) until `build_vector_index` has run."""
        with self._lock:
            self._ensure()
            for name in self._vector_indexes():
                self._conn.execute(f"DROP INDEX IF EXISTS {name}")  # type: ignore[arg-type]
            self._widths.clear()

    def build_vector_index(
        self, *, maintenance_work_mem: str = "2GB", workers: int = 1, progress: Any = None
    ) -> None:
        """(Re)create the HNSW index of each vector width the faces table holds (and the built-in
        model's, always) where it is missing; widths above pgvector's HNSW limit have none.
        `progress(done, total)` is called every few seconds from a second connection
        (pg_stat_progress_create_index) while one builds."""
        with self._lock:
            self._ensure()
            present = set(self._vector_indexes())
            stored = {r["dim"] for r in self._conn.execute("SELECT DISTINCT vector_dims(embedding) AS dim FROM faces")}
            missing = [dim for dim in sorted(stored | {DIM}) if dim <= HNSW_MAX_DIM and index_name(dim) not in present]
            if not missing:
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
                for dim in missing:
                    # A writer enrolling the first faces of this width makes the index itself,
                    # unless this lock is held (ensure_index): one of the two makes it.
                    self._conn.execute("SELECT pg_advisory_lock(%s::int, %s::int)", (_INDEX_LOCK, dim))
                    try:
                        self._conn.execute(index_definition(dim))  # type: ignore[arg-type]
                    finally:
                        self._conn.execute("SELECT pg_advisory_unlock(%s::int, %s::int)", (_INDEX_LOCK, dim))
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


def _setting(value: str) -> str:
    """A memory setting such as '2GB', checked so it can be written into SET (no parameters there)."""
    if not re.fullmatch(r"[0-9]+\s*(kB|MB|GB|TB)?", value):
        raise InvalidArgumentError(f"not a memory size: {value!r} (e.g. 2GB)")
    return value
