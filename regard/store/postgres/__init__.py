"""The server store: the rules of `regard.store.core` over PostgreSQL with pgvector.

    store = open_store("postgresql://regard@db.internal/regard")     # or REGARD_STORE=postgresql://...

regard/store/postgres/backend.py says how it differs from the embedded store (schema, writers,
erasure); search.py how it searches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from regard.match import ThresholdTable
from regard.store.core import Store
from regard.store.postgres.backend import PostgresBackend, insert_rows, migrations
from regard.store.postgres.search import (
    EF_SEARCH,
    EF_SEARCH_MAX,
    EXACT_BELOW,
    HNSW_DEFINITION,
    HNSW_INDEX,
    HNSW_MAX_DIM,
    INDEXED,
    SearchPlan,
    index_definition,
    index_name,
    indexed,
    search_depth,
)

__all__ = [
    "EF_SEARCH",
    "EF_SEARCH_MAX",
    "EXACT_BELOW",
    "HNSW_DEFINITION",
    "HNSW_INDEX",
    "HNSW_MAX_DIM",
    "INDEXED",
    "PostgresBackend",
    "PostgresStore",
    "SearchPlan",
    "index_definition",
    "index_name",
    "indexed",
    "insert_rows",
    "migrations",
    "search_depth",
]


class PostgresStore(Store):
    """The server store. Open with `regard.store.open_store("postgresql://...")`.

    One connection per store object, used by one thread at a time (a lock); open one store per
    process (or per worker thread that must not wait for the others).
    """

    backend: PostgresBackend

    def __init__(self, url: str, *, table: ThresholdTable | None = None) -> None:
        super().__init__(PostgresBackend(url), table=table)
        self.url = url
        self.schema_version = self.backend.schema_version

    @property
    def ef_search(self) -> int:
        """The HNSW search depth of a collection alone in the table (EF_SEARCH unless changed):
        deeper finds more of the true nearest faces, in proportion more slowly."""
        return self.backend.ef_search

    @ef_search.setter
    def ef_search(self, depth: int) -> None:
        self.backend.ef_search = depth

    def drop_vector_index(self) -> None:
        """Drop the HNSW indexes (of every vector width) before loading many faces at once (see PostgresBackend)."""
        self.backend.drop_vector_index()

    def build_vector_index(
        self,
        *,
        maintenance_work_mem: str = "2GB",
        workers: int = 1,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """(Re)create the HNSW index of each vector width stored where it is missing (see PostgresBackend)."""
        self.backend.build_vector_index(maintenance_work_mem=maintenance_work_mem, workers=workers, progress=progress)

    @property
    def _conn(self) -> psycopg.Connection[Any]:
        """The backend's connection (tests reach for its session)."""
        return self.backend.connection

    @property
    def _plans(self) -> dict[str, SearchPlan]:
        """How the last search of each collection went (tests check the plans)."""
        return self.backend._plans  # noqa: SLF001
