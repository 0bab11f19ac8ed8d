"""How the PostgreSQL backend searches: exactly for a small collection, through pgvector's HNSW
graph for a large one, in one pipelined transaction with the audit head's lock.

Collections smaller than EXACT_BELOW faces are searched exactly (every face of the collection; at
that size as fast, and never misses); larger ones through the HNSW graph, with a search depth
(`hnsw.ef_search`: the session's, or set for the transaction) that grows as the collection's share
of the table shrinks, and pgvector's iterative scan where the share is too small for any depth
(`search_depth`), so the filter on the collection still returns k results. Distances are computed
exactly either way.

Vectors of every width share the faces table (migration 0004); each width has an HNSW index of its
own (`index_name`: faces_embedding_hnsw for the built-in model's 128, faces_embedding_hnsw_<width>
for others, created by the backend at the first enrolment of that width), which holds only the
faces of that width. A search's statements name the width of its query vectors, so the planner
takes that width's index. Vectors wider than pgvector's HNSW limit (HNSW_MAX_DIM) have no index and
are always searched exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from regard.auditlog import postgres as pglog
from regard.store.backend import (
    FACE_COLUMNS,
    Gallery,
    Hits,
    check_probe_model,
    no_collection,
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

DIM = 128
"""The built-in model's width: the index of its vectors keeps the name the first releases gave it."""

HNSW_MAX_DIM = 4000
"""pgvector indexes half-precision vectors of at most 4,000 numbers in an HNSW graph: collections of
wider vectors (a model of up to 4,096) have no index and are always searched exactly."""


def indexed(dim: int) -> str:
    """What the HNSW index of vectors `dim` wide holds: half-precision copies of those embeddings
    (migrations 0002 and 0004), NULL for the faces of other widths, which pgvector leaves out of
    the graph. Candidates are found by their distance in it and scored with the exact vectors of the
    faces table. (The faces column holds vectors of any width since 0004; an expression index needs
    the cast to a fixed width, and the cast of a vector of another width fails: hence the CASE.)"""
    return f"(CASE WHEN vector_dims(embedding) = {int(dim)} THEN embedding END)::halfvec({int(dim)})"


def index_name(dim: int) -> str:
    """The name of the HNSW index of the vectors `dim` wide."""
    return "faces_embedding_hnsw" if dim == DIM else f"faces_embedding_hnsw_{int(dim)}"


def index_definition(dim: int) -> str:
    """The statement that creates the HNSW index of the vectors `dim` wide, if it is missing."""
    if not 1 <= dim <= HNSW_MAX_DIM:
        raise ValueError(f"pgvector indexes vectors of at most {HNSW_MAX_DIM} numbers, not {dim}")
    return (
        f"CREATE INDEX IF NOT EXISTS {index_name(dim)} ON faces USING hnsw (({indexed(dim)}) halfvec_l2_ops) "
        "WITH (m = 24, ef_construction = 200)"
    )


INDEXED = indexed(DIM)
"""What the 128-d vectors' index holds (see `indexed`)."""

HNSW_INDEX = index_name(DIM)
HNSW_DEFINITION = index_definition(DIM)
"""The 128-d vectors' index as the migrations create it (every width's is alike, `index_definition`);
`build_vector_index` recreates them after a bulk load.
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


def plan(collection_faces: int, table_faces: int, k: int, ef_search: int = EF_SEARCH, dim: int = DIM) -> SearchPlan:
    """How to search a collection of this size, of vectors `dim` wide, in a table of that size for
    k faces. (`table_faces` counts the faces of every width, which overstates the share of the
    graph of a width that others share the table with: such a collection is searched deeper than it
    needs, never shallower.)"""
    if collection_faces < EXACT_BELOW or dim > HNSW_MAX_DIM:  # wider than pgvector indexes: no index
        return SearchPlan(exact=True)
    depth, iterative = search_depth(collection_faces, table_faces, ef_search)
    return SearchPlan(exact=False, depth=max(depth, k), iterative=iterative)


Settings = tuple[int, bool]
"""(hnsw.ef_search, iterative scan?) in force in a transaction."""


def width(vectors: list[np.ndarray]) -> int:
    """The width of a search's query vectors (one model's: all alike)."""
    widths = {int(np.shape(v)[-1]) for v in vectors}
    if len(widths) > 1:
        raise ValueError(f"the query vectors of one search have one width, not {sorted(widths)}")
    return widths.pop() if widths else DIM


def send_nearest(
    conn: psycopg.Connection[Any], plan: SearchPlan, collection_id: str, vectors: list[np.ndarray], k: int,
    settings: Settings,
) -> tuple[list[psycopg.Cursor[Any]], Settings]:  # fmt: skip
    """Send the queries for the k nearest faces of a collection to each vector (the face's
    FACE_COLUMNS and its distance), without waiting for their answers; `settings` are those in force
    in this transaction. Returns the cursors and the settings now in force. Query i also records
    the rows it found in a setting of the transaction, regard.hits_i, for `send_check` to read
    back on the server.

    Only faces of the query vectors' width are looked at (`vector_dims(embedding) = dim`, written
    into the statement, as is the width of the index's cast, so each width has statements, and
    plans, of its own): a query of another model's width finds nothing, and no vector of another
    width ever reaches a distance operator (pgvector raises for those); the caller then refuses the
    search (`check_probe_model`)."""
    dim = width(vectors)
    same_width = f"vector_dims(embedding) = {dim}"
    if plan.exact or dim > HNSW_MAX_DIM:
        # l2_distance() is not the indexed operator: the planner scans the collection's rows.
        nearest = (
            f"SELECT {FACE_COLUMNS}, l2_distance(embedding, %(q)s) AS distance FROM faces "
            f"WHERE collection_id = %(c)s AND {same_width} ORDER BY distance LIMIT %(k)s"
        )
    else:
        # Candidates in the order of the index's half-precision distances (the index of this width:
        # the ORDER BY is its expression), scored exactly; the exact distances then order them
        # (rounding can swap two near-equal neighbours).
        nearest = (
            f"SELECT {FACE_COLUMNS}, embedding <-> %(q)s AS distance FROM faces "
            f"WHERE collection_id = %(c)s AND {same_width} "
            f"ORDER BY {indexed(dim)} <-> %(q)s::halfvec({dim}) LIMIT %(k)s"
        )
        if (plan.depth, plan.iterative) != settings:
            conn.execute(
                "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', %s, true)",
                (str(plan.depth), "strict_order" if plan.iterative else "off"),
            )
            settings = (plan.depth, plan.iterative)
    cursors = [
        conn.execute(
            f"WITH hits AS MATERIALIZED ({nearest}) SELECT hits.*, "
            f"set_config('regard.hits_{i}', (SELECT array_agg(row)::text FROM hits), true) AS recorded FROM hits",
            {"q": vector, "c": collection_id, "k": k},
        )
        for i, vector in enumerate(vectors)
    ]
    return cursors, settings


def send_check(conn: psycopg.Connection[Any], queries: int) -> psycopg.Cursor[Any]:
    """Send the query for which of the rows that `send_nearest`'s queries recorded are still in
    the faces table (a setting never set in this transaction reads as no rows)."""
    recorded = " || ".join(
        f"coalesce(nullif(current_setting('regard.hits_{i}', true), ''), '{{}}')::bigint[]" for i in range(queries)
    )
    return conn.execute(f"SELECT row FROM faces WHERE row = ANY({recorded or 'ARRAY[]::bigint[]'})")  # type: ignore[arg-type]


def send_search(
    conn: psycopg.Connection[Any], plan: SearchPlan, collection_id: str, vectors: list[np.ndarray], k: int,
    settings: Settings,
) -> tuple[list[psycopg.Cursor[Any]], psycopg.Cursor[Any], psycopg.Cursor[Any], Settings]:  # fmt: skip
    """Send a search's three steps without waiting: the vector queries (`send_nearest`), the
    audit head's lock, and the check of which hits are still there, which runs once the lock is
    held. Returns their cursors and the settings now in force."""
    sent, settings = send_nearest(conn, plan, collection_id, vectors, k, settings)
    return sent, pglog.request_head_lock(conn), send_check(conn, len(vectors)), settings


def search(
    conn: psycopg.Connection[Any],
    plans: dict[str, SearchPlan],
    ef_search: int,
    collection_id: str,
    vectors: list[np.ndarray],
    k: int,
    model: str | None = None,
) -> tuple[Gallery, Hits, tuple[int, str]]:
    """Search a collection in the caller's pipelined transaction: what the search saw of the
    collection, the faces found, and the audit head this transaction now holds locked.

    Three steps: the vector queries; the audit head's lock, which orders this search among the
    writers; once it is held, the check of which hits are still there (faces erased by a writer
    that committed after the queries ran are left out), with a snapshot taken then. The
    collection's row says how to search it, but waiting for it costs a round trip: all three go out
    with it, the queries planned from the sizes this store saw at its last search of the
    collection (`plans`, updated here). If the row calls for a plan the old one does not cover, the
    queries go again; they then run under the lock, where no face can be erased before this search
    is logged, and need no check. So a search takes two round trips (this, then the audit entry
    with COMMIT) instead of seven, which counts double when the database is across a network.

    `model`, the model the query vectors come from (None: not checked here, the caller does):
    once the row is read, a collection of another model is refused (ModelError) before any query
    is sent, or sent again; queries sent ahead of the row look only at faces of their own width
    (`send_nearest`), so they cannot fail on another model's vectors, and what they found is
    dropped with the error."""
    guess = plans.get(collection_id)
    settings = (ef_search, False)  # the session's own; the transaction may change them
    collection = conn.execute(
        "SELECT face_count, threshold, model, (SELECT sum(face_count) FROM collections) AS table_faces "
        "FROM collections WHERE id = %s",
        (collection_id,),
    )
    check: psycopg.Cursor[Any] | None
    if guess is not None:
        sent, head_lock, check, settings = send_search(conn, guess, collection_id, vectors, k, settings)
    row = collection.fetchone()
    if row is None:
        plans.pop(collection_id, None)
        raise no_collection(collection_id)
    size = int(row["face_count"])
    gallery = Gallery(size=size, threshold=row["threshold"], model=row["model"])
    if model is not None:
        check_probe_model(gallery, model)
    needed = plan(size, int(row["table_faces"]), k, ef_search, width(vectors))
    if guess is None:
        sent, head_lock, check, settings = send_search(conn, needed, collection_id, vectors, k, settings)
    elif not guess.covers(needed):
        sent, settings = send_nearest(conn, needed, collection_id, vectors, k, settings)
        check = None
    plans[collection_id] = needed
    found = [sorted(cursor.fetchall(), key=lambda r: float(r["distance"])) for cursor in sent]
    head = pglog.head_locked(head_lock)
    if check is not None:
        alive = {r["row"] for r in check}
    else:  # the queries ran under the lock: every hit is still there
        alive = {hit["row"] for hits in found for hit in hits}
    hits = [[(hit, float(hit["distance"])) for hit in nearest if hit["row"] in alive] for nearest in found]
    return gallery, hits, head
