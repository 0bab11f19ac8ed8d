"""Where collections, persons, consent, faces and the audit log live.

    store = open_store()                              # $REGARD_STORE, else the user's data folder
    store = open_store("sqlite:///srv/regard.db")     # the embedded default backend

    store = open_store("postgresql://regard@db/regard")  # PostgreSQL + pgvector, for servers

One `Store` (regard/store/core.py: the rules, written once) over two backends that hold only SQL
and their database's mechanics (regard/store/backend.py: the interface): SQLite embedded
(regard/store/sqlite/), PostgreSQL for servers (regard/store/postgres/).
"""

from __future__ import annotations

from pathlib import Path

from regard.errors import InvalidArgumentError, NotFoundError
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
    SearchResult,
    SweepReport,
)
from regard.store.core import Store

__all__ = [
    "ApiKey",
    "NoStoreError",
    "Candidate",
    "Collection",
    "Consent",
    "ConsentBasis",
    "FaceRecord",
    "NewFace",
    "Person",
    "Role",
    "SearchQuery",
    "SearchResult",
    "Store",
    "SweepReport",
    "default_store_url",
    "open_store",
]


def default_store_url() -> str:
    """$REGARD_STORE, else sqlite:///<$XDG_DATA_HOME or ~/.local/share>/regard/regard.db."""
    from regard import config

    return config.current().default_store_url


class NoStoreError(NotFoundError):
    """The URL names a store that does not exist (and `create` was not asked for)."""


def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """Open the store at a URL: `sqlite:///relative/or//absolute/path.db`, or
    `postgresql://user:password@host:port/database` (schema migrations are applied on open).

    With `create` (the library's default) a SQLite file that does not exist is created, with its
    folders. Without it (the CLI and `regard serve`, for any store but the user's default one) a
    missing file raises NoStoreError and nothing is created on disk: a mistyped URL must not
    start a new, empty store. `regard init` creates one on purpose."""
    url = url or default_store_url()
    if url.startswith("sqlite:///"):
        from regard.store.sqlite import SQLiteStore

        path = url[len("sqlite:///") :]
        if not path:
            raise InvalidArgumentError("a sqlite store URL needs a file path: sqlite:///path/regard.db")
        if not create and not Path(path).is_file():
            raise NoStoreError(
                f"there is no store at {url} (no file {path}); nothing was created. "
                f"Check the URL, or create the store: regard init --store {url}"
            )
        return SQLiteStore(Path(path))
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from regard.store.postgres import PostgresStore
        except ImportError as exc:
            raise InvalidArgumentError(
                f"a postgresql store needs the postgres extra: pip install 'regard[postgres]' ({exc})"
            ) from None
        return PostgresStore(url)
    scheme = url.split(":", 1)[0]
    raise InvalidArgumentError(
        f"unknown store {url!r}: use sqlite:///path/regard.db or postgresql://user@host/db "
        f"(scheme {scheme!r} is not supported)"
    )
