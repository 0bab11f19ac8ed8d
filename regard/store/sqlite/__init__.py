"""The embedded default store: the rules of `regard.store.core` over one SQLite file."""

from __future__ import annotations

from pathlib import Path

from regard.match import ThresholdTable
from regard.store.core import Store
from regard.store.sqlite.backend import SQLiteBackend
from regard.store.sqlite.schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "SQLiteBackend", "SQLiteStore"]


class SQLiteStore(Store):
    """The embedded default store. Open with `regard.store.open_store("sqlite:///path.db")`."""

    backend: SQLiteBackend

    def __init__(self, path: Path | str, *, table: ThresholdTable | None = None) -> None:
        super().__init__(SQLiteBackend(path), table=table)
        self.path = self.backend.path
