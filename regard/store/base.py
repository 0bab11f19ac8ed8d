"""What a store holds, and the interface every backend implements.

A collection declares its purpose; a person (Rekognition's "user") belongs to one collection; a
person's faces may be enrolled only while a consent record covers them; every change and every
search writes an entry to the hash-chained audit log in the same transaction. Vectors never leave
the store except into its own index; no photo is kept unless the collection opts in to thumbnails.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

import numpy as np

from regard.errors import ConsentError, InvalidArgumentError
from regard.face import QualityLevel
from regard.match import (
    DEFAULT_FPIR,
    ThresholdTable,
    default_table,
    expected_fnir,
    expected_fpir,
    search_threshold,
    unit,
)
from regard.models.registry import EMBEDDING_SIZE

ID_PATTERN = re.compile(r"[a-zA-Z0-9_.\-]{1,255}")


def check_id(value: str, what: str) -> str:
    """`value` if it is a valid id (1-255 of letters, digits, '_', '.', '-'), else InvalidArgumentError."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidArgumentError(
            f"{what} {value!r} is not valid: use 1 to 255 letters, digits, '_', '.' or '-'"
        )
    return value


MAX_TEXT = 2000
"""Free text (a purpose, an actor, a reason, a reference, a display name) is at most this many
characters: it goes into the append-only audit log."""


def check_text(value: str | None, what: str) -> str:
    """A required, non-blank piece of text (a purpose, an actor, a reason), valid Unicode, at most
    MAX_TEXT characters."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{what} is required and cannot be blank")
    check_unicode(value, what)
    if len(value) > MAX_TEXT:
        raise InvalidArgumentError(f"{what} is {len(value):,} characters; at most {MAX_TEXT:,} are kept")
    return value.strip()


def check_optional_text(value: str | None, what: str) -> str | None:
    """Optional free text (a display name, a consent reference): None, or checked as check_text."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} is text")
    return check_text(value, what) if value.strip() else None


def check_unicode(value: str, what: str) -> str:
    """`value` if it can be written as UTF-8 (no lone surrogates such as \\ud800)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{what} holds text that is not valid Unicode (a lone surrogate)") from None
    return value


def check_new_collection(
    collection_id: str, purpose: str, actor: str, retention_days: int | None, min_quality: QualityLevel | str
) -> tuple[str, str, QualityLevel]:
    """The checked (purpose, actor, quality gate) of a collection to create."""
    check_id(collection_id, "collection id")
    purpose = check_text(purpose, "a collection's purpose")
    actor = check_text(actor, "the actor")
    if retention_days is not None and (not isinstance(retention_days, int) or retention_days < 1):
        raise InvalidArgumentError("retention_days is a whole number of days, at least 1")
    return purpose, actor, QualityLevel(min_quality)


def check_threshold(threshold: float | None) -> float | None:
    """A score threshold 0-100 as a float, or None."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 100:
        raise InvalidArgumentError("a threshold is a score from 0 to 100")
    return float(threshold)


def check_search(actor: str, purpose: str, k: int, threshold: float | None) -> tuple[str, str]:
    """The checked (actor, purpose) of a search, after checking k and the threshold."""
    actor, purpose = check_text(actor, "the actor"), check_text(purpose, "a search's purpose")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 1000:
        raise InvalidArgumentError("k is a whole number from 1 to 1000")
    check_threshold(threshold)
    return actor, purpose


class ConsentBasis(str, Enum):
    """The legal basis on which a person's face is processed."""

    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal-obligation"
    VITAL_INTERESTS = "vital-interests"
    PUBLIC_TASK = "public-task"
    LEGITIMATE_INTERESTS = "legitimate-interests"


@dataclass(frozen=True)
class Collection:
    id: str
    purpose: str
    model: str  # the embedder its vectors come from
    retention_days: int | None  # faces are erased this many days after enrollment
    min_quality: QualityLevel  # the enrollment quality gate
    store_thumbnails: bool
    created_at: datetime
    created_by: str
    face_count: int = 0
    person_count: int = 0
    # A search threshold set for this collection (by `regard audit --apply-to`), else None: the
    # default then follows the collection's size (FPIR <= 1 %).
    threshold: float | None = None
    threshold_source: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "purpose": self.purpose,
            "model": self.model,
            "retention_days": self.retention_days,
            "min_quality": self.min_quality.value,
            "store_thumbnails": self.store_thumbnails,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "faces": self.face_count,
            "persons": self.person_count,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
        }


@dataclass(frozen=True)
class Consent:
    basis: ConsentBasis
    recorded_by: str
    recorded_at: datetime
    expires_at: datetime | None
    reference: str | None  # e.g. the id of the signed release

    def valid_at(self, when: datetime) -> bool:
        return self.expires_at is None or when < self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "basis": self.basis.value,
            "recorded_by": self.recorded_by,
            "recorded_at": self.recorded_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "reference": self.reference,
        }


def check_consent(basis: ConsentBasis | str, expires_at: datetime | None, now: datetime) -> ConsentBasis:
    """The basis of a consent to record, after checking its expiry is a future, zoned time."""
    try:
        basis = ConsentBasis(basis)
    except ValueError:
        choices = ", ".join(b.value for b in ConsentBasis)
        raise InvalidArgumentError(f"unknown consent basis {basis!r}: use one of {choices}") from None
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidArgumentError("a consent's expiry needs a time zone")
        if expires_at <= now:
            raise InvalidArgumentError("a consent's expiry must be in the future")
    return basis


@dataclass(frozen=True)
class Person:
    collection: str
    id: str
    display_name: str | None
    created_at: datetime
    consent: Consent | None
    face_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "id": self.id,
            "display_name": self.display_name,
            "created_at": self.created_at.isoformat(),
            "consent": self.consent.to_dict() if self.consent else None,
            "faces": self.face_count,
        }


@dataclass(frozen=True)
class NewFace:
    """A face to enroll: what the pipeline measured, without the photo."""

    embedding: np.ndarray
    box: tuple[float, float, float, float]  # left, top, width, height
    quality_score: float
    quality_level: QualityLevel
    external_image_id: str | None = None
    thumbnail: bytes | None = None  # only stored if the collection opted in

    def __post_init__(self) -> None:
        if self.external_image_id is not None:
            if not isinstance(self.external_image_id, str) or not 1 <= len(self.external_image_id) <= 255:
                raise InvalidArgumentError("an external image id is 1 to 255 characters")
            check_unicode(self.external_image_id, "the external image id")


@dataclass(frozen=True)
class FaceRecord:
    face_id: str
    collection: str
    person_id: str | None
    external_image_id: str | None
    box: tuple[float, float, float, float]
    quality_score: float
    quality_level: QualityLevel
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        left, top, width, height = self.box
        return {
            "face_id": self.face_id,
            "collection": self.collection,
            "person_id": self.person_id,
            "external_image_id": self.external_image_id,
            "box": {"left": left, "top": top, "width": width, "height": height},
            "quality": {"score": round(self.quality_score, 1), "level": self.quality_level.value},
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class Candidate:
    """A search result: a candidate for a person to review, never an identification."""

    face_id: str
    person_id: str | None
    score: float  # 0..100
    fmr: float  # the estimated false-match rate of a threshold at this score

    def to_dict(self) -> dict[str, Any]:
        return {
            "face_id": self.face_id,
            "person_id": self.person_id,
            "score": round(self.score, 2),
            "fmr": float(f"{self.fmr:.3g}"),
        }


@dataclass(frozen=True)
class SearchQuery:
    """One probe of a search and what to say about it in the audit log (never the vector)."""

    vector: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)


class Role(str, Enum):
    """What an API key may do. `admin` may do everything, including key and collection management."""

    DETECT = "detect"  # detect and compare: nothing is stored, nothing searched
    ENROLL = "enroll"  # persons, consent, faces (add, list, delete, forget)
    SEARCH = "search"  # 1:N search inside a collection
    ADMIN = "admin"  # collections, thresholds, audit log, everything above


@dataclass(frozen=True)
class ApiKey:
    """A service credential. The store holds only a hash of its secret (see regard/service/keys.py)."""

    key_id: str
    name: str
    secret_hash: str
    roles: tuple[Role, ...]
    collections: tuple[str, ...] | None  # None: every collection
    default_purpose: str | None  # for APIs without a purpose field (Rekognition)
    rate_per_minute: int | None  # None: no limit
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """Everything but the secret's hash."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "roles": [r.value for r in self.roles],
            "collections": list(self.collections) if self.collections is not None else None,
            "default_purpose": self.default_purpose,
            "rate_per_minute": self.rate_per_minute,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revoked_by": self.revoked_by,
        }


@dataclass(frozen=True)
class SweepReport:
    faces_erased: int
    persons_erased: int
    details: list[dict[str, Any]]


def stored_vector(vector: np.ndarray) -> np.ndarray:
    """A face's embedding as both backends store and search it: 128 finite float32 numbers, not all
    0, scaled to length 1 (see `regard.match.unit`); InvalidArgumentError otherwise."""
    array = np.asarray(vector, dtype=np.float32)
    if array.shape != (EMBEDDING_SIZE,) or not np.isfinite(array).all() or not np.any(array):
        raise InvalidArgumentError(f"an embedding is {EMBEDDING_SIZE} finite numbers, not all 0, not shape {array.shape}")
    return unit(array)


def resolve_threshold(table: ThresholdTable, fixed: float | None, gallery_size: int) -> float:
    """The threshold a search uses when the caller gives none: the collection's own (`fixed`, set by
    `regard audit --apply-to`), else the calibrated default for its size. The one place this rule
    is written; both backends and `Store.search_threshold` call it."""
    return fixed if fixed is not None else search_threshold(table, gallery_size)


def require_consent(person: "Person", now: datetime) -> None:
    """ConsentError unless the person holds a consent record valid now (before enrolling faces)."""
    if person.consent is None:
        raise ConsentError(
            f"person {person.id!r} has no consent record in {person.collection!r}: record one first "
            "(regard consent record)"
        )
    if not person.consent.valid_at(now):
        expiry = person.consent.expires_at.isoformat() if person.consent.expires_at else None
        raise ConsentError(f"the consent of person {person.id!r} expired on {expiry}")


def _percent(rate: float | None) -> str:
    if rate is None:
        return "?"
    if rate >= 0.1:
        return f"{rate * 100:.0f} %"
    return f"{rate * 100:.2g} %"


class Store(ABC):
    """The operations every backend provides. Each call is one transaction, with its audit entry."""

    _table: ThresholdTable | None = None

    @property
    def table(self) -> ThresholdTable:
        """The score -> FMR table thresholds come from (the shipped one unless the store was given one)."""
        return self._table or default_table()

    def search_threshold(self, collection_id: str) -> float:
        """The threshold a search of this collection uses when the caller gives none: the one set for
        it (regard audit --apply-to), else FPIR <= 1 % at its current size."""
        collection = self.get_collection(collection_id)
        return resolve_threshold(self.table, collection.threshold, collection.face_count)

    @property
    def erasure_pending(self) -> bool:
        """Whether erased faces may still be readable somewhere the store will clear by itself soon
        (SQLite: its write-ahead log, while a reader holds it). False once erasure is complete."""
        return False

    def search_expectations(self, collection_id: str, threshold: float | None = None) -> dict[str, Any]:
        """What a search of this collection at `threshold` (default: its search threshold) may be
        expected to do at its current size, from the calibration: the FPIR (share of searches for
        someone not enrolled that return a candidate) and the FNIR (share of searches for an
        enrolled person that miss them) with 1, 2 or 3 enrolled photos each; and the same in words."""
        collection = self.get_collection(collection_id)
        size = collection.face_count
        if threshold is None:
            threshold = resolve_threshold(self.table, collection.threshold, size)
        fpir = expected_fpir(self.table, threshold, size)
        fnir = {g: expected_fnir(self.table, threshold, g) for g in (1, 2, 3)}
        set_by = "set for this collection" if collection.threshold is not None and threshold == collection.threshold else (
            "the default for its size" if threshold == search_threshold(self.table, size) else "given for this search"
        )
        words = (
            f"threshold {threshold:.1f} ({set_by}, {size:,} faces): about {_percent(fpir)} of searches for "
            f"people not enrolled return a candidate (target at most {_percent(DEFAULT_FPIR)})"
        )
        if fnir[1] is not None:
            words += (
                f"; a search for an enrolled person misses them about {_percent(fnir[1])} of the time with one "
                f"enrolled photo, {_percent(fnir[2])} with two, {_percent(fnir[3])} with three (measured on {self.table.source.split(':')[0]})"
            )
        return {
            "threshold": threshold,
            "gallery_faces": size,
            "expected_fpir": fpir,
            "expected_fnir": {str(g): v for g, v in fnir.items()},
            "words": words,
        }

    # Collections
    @abstractmethod
    def create_collection(
        self,
        collection_id: str,
        *,
        purpose: str,
        actor: str,
        retention_days: int | None = None,
        min_quality: QualityLevel = QualityLevel.MEDIUM,
        store_thumbnails: bool = False,
    ) -> Collection: ...

    @abstractmethod
    def get_collection(self, collection_id: str) -> Collection: ...

    @abstractmethod
    def list_collections(self) -> list[Collection]: ...

    @abstractmethod
    def delete_collection(self, collection_id: str, *, actor: str, reason: str) -> int: ...

    @abstractmethod
    def set_threshold(
        self,
        collection_id: str,
        threshold: float | None,
        *,
        actor: str,
        reason: str,
        source: dict[str, Any] | None = None,
    ) -> Collection:
        """Set (or with None, clear) the collection's search threshold, a score 0-100; `source` says
        where it came from (e.g. the audit report and target FMR). Audit-logged."""

    # Persons and consent
    @abstractmethod
    def add_person(
        self, collection_id: str, person_id: str, *, actor: str, display_name: str | None = None
    ) -> Person: ...

    @abstractmethod
    def get_person(self, collection_id: str, person_id: str) -> Person: ...

    @abstractmethod
    def list_persons(self, collection_id: str) -> list[Person]: ...

    @abstractmethod
    def record_consent(
        self,
        collection_id: str,
        person_id: str,
        *,
        basis: ConsentBasis,
        actor: str,
        expires_at: datetime | None = None,
        reference: str | None = None,
    ) -> Consent: ...

    @abstractmethod
    def revoke_consent(self, collection_id: str, person_id: str, *, actor: str, reason: str) -> int: ...

    @abstractmethod
    def forget_person(self, collection_id: str, person_id: str, *, actor: str, reason: str) -> int: ...

    # Faces
    @abstractmethod
    def add_faces(
        self, collection_id: str, person_id: str, faces: list[NewFace], *, actor: str
    ) -> list[FaceRecord]: ...

    @abstractmethod
    def has_image(self, collection_id: str, external_image_id: str) -> bool: ...

    @abstractmethod
    def get_face(self, collection_id: str, face_id: str) -> FaceRecord: ...

    @abstractmethod
    def list_faces(self, collection_id: str, person_id: str | None = None) -> list[FaceRecord]: ...

    @abstractmethod
    def delete_face(self, collection_id: str, face_id: str, *, actor: str, reason: str) -> None: ...

    @abstractmethod
    def face_vector(self, collection_id: str, face_id: str) -> np.ndarray: ...

    # Search and upkeep
    @abstractmethod
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
    ) -> list[list[Candidate]]: ...

    @abstractmethod
    def sweep(self, *, actor: str, now: datetime | None = None) -> SweepReport: ...

    @abstractmethod
    def purge_erased(self, *, full: bool = False) -> None:
        """Rewrite the store's files so that nothing of erased faces is left in them (SQLite:
        VACUUM; PostgreSQL: VACUUM, or VACUUM FULL with `full`). See docs/STORAGE.md."""

    @abstractmethod
    def audit_entries(
        self,
        *,
        collection: str | None = None,
        action: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[Any]: ...

    @abstractmethod
    def verify_audit(self) -> Any: ...

    # Service credentials
    @abstractmethod
    def create_api_key(self, key: ApiKey, *, actor: str) -> ApiKey: ...

    @abstractmethod
    def get_api_key(self, key_id: str) -> ApiKey:
        """The key, revoked or not; NotFoundError if there is none."""

    @abstractmethod
    def list_api_keys(self) -> list[ApiKey]: ...

    @abstractmethod
    def revoke_api_key(self, key_id: str, *, actor: str, reason: str) -> ApiKey: ...

    @abstractmethod
    def close(self) -> None: ...
