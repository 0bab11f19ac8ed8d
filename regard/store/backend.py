"""What a store backend provides, and the SQL both backends run alike.

The rules of a store (argument and consent checks, the quality gate, what each audit entry says,
thresholds, retention, the assembly of search results) are written once, in `regard.store.core`,
over this interface. A backend holds only its database's mechanics:

- transactions: `write()` (writers queue; the audit log's order is the commit order) and `read()`
  (a consistent snapshot), each yielding a `Transaction` that runs statements and appends the
  audit entry of its operation;
- its schema and migrations, and the statements its database words differently from `STANDARD`
  (`dataclasses.replace(STANDARD, ...)`);
- how vectors travel (`vector_param`, `vector_value`), and one coarse `search` call, so that each
  backend can search in its own way (SQLite: an index in this process kept in step with the file;
  PostgreSQL: pgvector in the database, pipelined) inside one transaction with its audit entry;
- erasure upkeep (`erased`, `erasure_pending`, `purge_erased`) and the audit log's reading.

The statements of `STANDARD` are standard SQL with `?` for each parameter; a backend whose driver
wants another placeholder translates them. Times are passed and returned as zoned datetimes
(a backend that stores text converts both ways); JSON columns are text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from regard.auditlog.log import AuditAction
from regard.errors import ModelError, NotFoundError

Row = Mapping[str, Any]
"""One result row, by column name, with Python values (datetimes for times)."""

FACE_COLUMNS = (
    "row, face_id, collection_id, person_id, external_image_id, box_left, box_top, box_width, box_height, "
    "quality_score, quality_level, created_at"
)
"""The columns of a face's record (never its vector or thumbnail)."""

_PERSON = (
    "SELECT p.person_id, p.display_name, p.created_at, c.basis, c.recorded_by, c.recorded_at, c.expires_at, "
    "c.reference, (SELECT COUNT(*) FROM faces f WHERE f.collection_id = p.collection_id "
    "AND f.person_id = p.person_id) AS face_count "
    "FROM persons p LEFT JOIN consents c ON c.collection_id = p.collection_id AND c.person_id = p.person_id "
    "WHERE p.collection_id = ?"
)
_COLLECTION = (
    "SELECT c.*, (SELECT COUNT(*) FROM persons p WHERE p.collection_id = c.id) AS person_count, "
    "(SELECT COUNT(*) FROM faces f WHERE f.collection_id = c.id) AS face_count FROM collections c"
)


@dataclass(frozen=True)
class Statements:
    """Every statement the store's rules run, by what it does. Parameters in the order written."""

    # collections
    collection: str = _COLLECTION + " WHERE c.id = ?"  # (id): the row with face_count and person_count
    collections: str = _COLLECTION + " ORDER BY c.id"
    insert_collection: str = (
        "INSERT INTO collections (id, purpose, model, retention_days, min_quality, store_thumbnails, "
        "created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    set_threshold: str = "UPDATE collections SET threshold = ?, threshold_source = ? WHERE id = ?"
    # (model, id): a collection moved to another model; its own threshold meant the old model's scores
    set_collection_model: str = "UPDATE collections SET model = ?, threshold = NULL, threshold_source = NULL WHERE id = ?"
    delete_collection_faces: str = "DELETE FROM faces WHERE collection_id = ?"
    delete_collection: str = "DELETE FROM collections WHERE id = ?"
    retention: str = "SELECT id, retention_days FROM collections WHERE retention_days IS NOT NULL ORDER BY id"
    # persons and consent
    person: str = _PERSON + " AND p.person_id = ?"  # (collection, person): with consent and face_count
    persons: str = _PERSON + " ORDER BY p.person_id"
    insert_person: str = "INSERT INTO persons (collection_id, person_id, display_name, created_at) VALUES (?, ?, ?, ?)"
    record_consent: str = (
        "INSERT INTO consents (collection_id, person_id, basis, recorded_by, recorded_at, expires_at, reference) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (collection_id, person_id) DO UPDATE SET basis = excluded.basis, "
        "recorded_by = excluded.recorded_by, recorded_at = excluded.recorded_at, expires_at = excluded.expires_at, "
        "reference = excluded.reference"
    )
    delete_consent: str = "DELETE FROM consents WHERE collection_id = ? AND person_id = ?"
    delete_person: str = "DELETE FROM persons WHERE collection_id = ? AND person_id = ?"
    expired_consents: str = (
        "SELECT collection_id, person_id FROM consents WHERE expires_at IS NOT NULL AND expires_at <= ? "
        "ORDER BY collection_id, person_id"
    )
    # faces
    insert_faces: str = (
        "INSERT INTO faces (face_id, collection_id, person_id, external_image_id, box_left, box_top, box_width, "
        "box_height, quality_score, quality_level, embedding, thumbnail, created_at)"
    )  # the rows follow (Transaction.insert_many)
    face: str = f"SELECT {FACE_COLUMNS} FROM faces WHERE collection_id = ? AND face_id = ?"
    face_vector: str = "SELECT embedding FROM faces WHERE collection_id = ? AND face_id = ?"
    face_ids: str = "SELECT face_id FROM faces WHERE collection_id = ?"
    face_thumbnails: str = "SELECT face_id, thumbnail FROM faces WHERE collection_id = ? ORDER BY row"
    set_face_vector: str = "UPDATE faces SET embedding = ? WHERE collection_id = ? AND face_id = ?"
    faces: str = f"SELECT {FACE_COLUMNS} FROM faces WHERE collection_id = ? ORDER BY row"
    person_faces: str = f"SELECT {FACE_COLUMNS} FROM faces WHERE collection_id = ? AND person_id = ? ORDER BY row"
    has_image: str = "SELECT 1 AS found FROM faces WHERE collection_id = ? AND external_image_id = ? LIMIT 1"
    delete_face: str = "DELETE FROM faces WHERE row = ?"
    delete_person_faces: str = "DELETE FROM faces WHERE collection_id = ? AND person_id = ?"
    delete_faces_before: str = "DELETE FROM faces WHERE collection_id = ? AND created_at < ?"
    # service credentials
    api_key: str = "SELECT * FROM api_keys WHERE key_id = ?"
    api_keys: str = "SELECT * FROM api_keys ORDER BY created_at, key_id"
    insert_api_key: str = (
        "INSERT INTO api_keys (key_id, name, secret_hash, roles, collections, default_purpose, rate_per_minute, "
        "created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    revoke_api_key: str = "UPDATE api_keys SET revoked_at = ?, revoked_by = ? WHERE key_id = ?"


STANDARD = Statements()


def no_collection(collection_id: str) -> NotFoundError:
    return NotFoundError(f"no collection {collection_id!r}")


@dataclass(frozen=True)
class AuditRecord:
    """What one operation writes to the audit log, in its own transaction."""

    action: AuditAction
    actor: str
    collection: str | None
    purpose: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class Gallery:
    """What a search needs to know of the collection it searches, read in the search's transaction."""

    size: int  # faces
    threshold: float | None  # the collection's own search threshold, if set
    model: str


def check_probe_model(gallery: Gallery, model: str) -> None:
    """A collection is searched only with vectors of the model its own come from: ModelError
    otherwise (vectors of two models are not comparable, whatever their widths)."""
    if gallery.model != model:
        raise ModelError(
            f"this collection's faces come from the model {gallery.model}, the query's from {model}: "
            "vectors of different models cannot be compared; search with the collection's model"
        )


Hits = list[list[tuple[Row, float]]]
"""For each query, the nearest faces still enrolled, nearest first: (face row of FACE_COLUMNS,
Euclidean distance between unit vectors)."""

T = TypeVar("T")
Finish = Callable[[Gallery, Hits], tuple[T, AuditRecord]]
"""Turns what a search found into its result and its audit entry (the store's rules)."""


class Transaction(ABC):
    """One open transaction of a backend."""

    @abstractmethod
    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a statement's result, or None."""

    @abstractmethod
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    @abstractmethod
    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement that changes rows; how many it changed."""

    @abstractmethod
    def insert_many(self, insert: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows: `insert` is "INSERT INTO table (columns)"."""

    @abstractmethod
    def audit(self, record: AuditRecord) -> None:
        """Append the operation's entry to the audit log (once per write transaction)."""


class Backend(ABC):
    """A database for `regard.store.core.Store`. One object per store; thread-safe."""

    sql: Statements = STANDARD

    @abstractmethod
    def write(self) -> AbstractContextManager[Transaction]:
        """A write transaction: writers queue; committed when the block ends, rolled back on error."""

    @abstractmethod
    def read(self) -> AbstractContextManager[Transaction]:
        """A read-only, consistent snapshot."""

    @abstractmethod
    def vector_param(self, vector: np.ndarray) -> Any:
        """A checked unit vector (`store.base.stored_vector`) as this database takes it."""

    @abstractmethod
    def vector_value(self, value: Any) -> np.ndarray:
        """A stored vector as float32 numbers."""

    @abstractmethod
    def search(self, collection_id: str, vectors: list[np.ndarray], k: int, finish: Finish[T], model: str) -> T:
        """In one transaction: read the collection (NotFoundError if there is none), check that its
        vectors come from `model`, the model the query vectors come from (`check_probe_model`,
        before any vector is compared), find the k nearest faces of each unit vector that are still
        enrolled, let `finish` make the result and its audit entry, and append that entry. Returns
        the result."""

    def erased(self, collection_id: str | None = None) -> None:
        """Called after a transaction that erased faces committed (`collection_id`: the collection
        it deleted, if it deleted one): clear what the backend keeps of them outside its tables."""

    @property
    def erasure_pending(self) -> bool:
        """Whether erased faces may still be readable somewhere the backend clears by itself soon."""
        return False

    @abstractmethod
    def purge_erased(self, *, full: bool = False) -> None: ...

    @abstractmethod
    def audit_entries(self, **filters: Any) -> list[Any]:
        """The audit log's entries, filtered as `regard.auditlog.log.entries` says."""

    @abstractmethod
    def verify_audit(self) -> Any: ...

    @abstractmethod
    def close(self) -> None: ...

