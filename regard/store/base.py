"""What a store holds: its frozen records, and the checks of what goes into it.

A collection declares its purpose; a person (Rekognition's "user") belongs to one collection; a
person's faces may be enrolled only while a consent record covers them; every change and every
search writes an entry to the hash-chained audit log in the same transaction. Vectors never leave
the store except into its own index; no photo is kept unless the collection opts in to thumbnails.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, overload

import numpy as np

from regard.errors import ConsentError, InvalidArgumentError
from regard.face import QualityLevel
from regard.match import ThresholdTable, search_threshold, unit
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
    face: FaceRecord | None = field(default=None, compare=False, repr=False)  # the matched face's record

    def to_dict(self) -> dict[str, Any]:
        return {
            "face_id": self.face_id,
            "person_id": self.person_id,
            "score": round(self.score, 2),
            "fmr": float(f"{self.fmr:.3g}"),
        }


@dataclass(frozen=True)
class SearchResult(Sequence[list[Candidate]]):
    """What one search found, read in the search's own transaction: for each query (in order, as
    `result[i]`), its candidates best first; and the threshold used, the collection's size and the
    model its vectors come from, as the search saw them."""

    collection: str
    threshold: float  # the score the candidates reach: the caller's, the collection's, or the default
    collection_threshold: float | None  # the collection's own threshold, if one is set
    gallery_size: int  # faces in the collection
    model: str
    matches: tuple[list[Candidate], ...]

    @overload
    def __getitem__(self, index: int) -> list[Candidate]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[list[Candidate]]: ...
    def __getitem__(self, index: int | slice) -> list[Candidate] | Sequence[list[Candidate]]:
        return self.matches[index]

    def __len__(self) -> int:
        return len(self.matches)


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


def stored_vector(vector: np.ndarray, width: int = EMBEDDING_SIZE) -> np.ndarray:
    """A face's embedding as both backends store and search it: `width` finite float32 numbers (the
    model's width: 128 for the built-in one), not all 0, scaled to length 1 (see
    `regard.match.unit`); InvalidArgumentError otherwise."""
    array = np.asarray(vector, dtype=np.float32)
    if array.shape != (width,) or not np.isfinite(array).all() or not np.any(array):
        raise InvalidArgumentError(f"an embedding of this model is {width} finite numbers, not all 0, not shape {array.shape}")
    return unit(array)


def resolve_threshold(table: ThresholdTable, fixed: float | None, gallery_size: int) -> float:
    """The threshold a search uses when the caller gives none: the collection's own (`fixed`, set by
    `regard audit --apply-to`), else the calibrated default for its size. The one place this rule
    is written; `Store.search` and `Store.search_threshold` call it."""
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
