"""Enrolling and searching photos: the face pipeline joined to a store.

`enroll` keeps the photo's largest face that passes the collection's quality gate and says why any
other face was not enrolled; `search` looks for the faces of a photo (or an enrolled face) in a
collection. The photo itself is never stored; its sha256 becomes the face's external image id unless
the caller gives one, which also lets an interrupted folder enrollment resume where it stopped.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from regard import align
from regard.errors import InvalidArgumentError
from regard.face import Face, QualityLevel
from regard.image import DEFAULT_MAX_PIXELS, ImageSource, load_image
from regard.pipeline import detect
from regard.store.base import Candidate, FaceRecord, NewFace, SearchQuery, Store, check_text

MIN_EYE_DISTANCE = 16.0
"""Faces with less than this many pixels between the eyes are not enrolled (TOO_SMALL)."""


class Reason(str, Enum):
    """Why a face found in a photo was not enrolled (cf. Rekognition's UnindexedFaces reasons)."""

    EXCEEDS_MAX_FACES = "EXCEEDS_MAX_FACES"
    TOO_SMALL = "TOO_SMALL"
    EXTREME_POSE = "EXTREME_POSE"
    LOW_SHARPNESS = "LOW_SHARPNESS"
    LOW_CONFIDENCE = "LOW_CONFIDENCE"
    LOW_QUALITY = "LOW_QUALITY"


@dataclass(frozen=True)
class NotEnrolled:
    face: Face
    reasons: list[Reason]

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": self.face.box.to_dict(),
            "quality": self.face.quality.to_dict(),
            "reasons": [r.value for r in self.reasons],
        }


@dataclass(frozen=True)
class EnrollResult:
    external_image_id: str
    enrolled: list[FaceRecord] = field(default_factory=list)
    not_enrolled: list[NotEnrolled] = field(default_factory=list)
    skipped: bool = False  # the photo was enrolled in this collection already
    image_size: tuple[int, int] | None = None  # width, height of the decoded photo
    enrolled_faces: list[Face] = field(default_factory=list)  # as detected, in `enrolled`'s order

    def to_dict(self) -> dict[str, Any]:
        return {
            "external_image_id": self.external_image_id,
            "skipped_already_enrolled": self.skipped,
            "enrolled": [f.to_dict() for f in self.enrolled],
            "not_enrolled": [n.to_dict() for n in self.not_enrolled],
        }


def decode_photo(photo: ImageSource | np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """The decoded photo and its sha256 (of the encoded bytes, or of the pixels for an array)."""
    data: bytes | None = None
    if isinstance(photo, (str, Path)) and Path(photo).is_file():
        data = Path(photo).read_bytes()
    elif isinstance(photo, (bytes, bytearray, memoryview)):
        data = bytes(photo)
    elif hasattr(photo, "read"):
        data = photo.read()  # type: ignore[union-attr]
    if data is not None:
        return load_image(data, max_pixels=max_pixels), hashlib.sha256(data).hexdigest()
    # An array, or a path that is not a file: load_image validates it or says what is wrong.
    rgb = load_image(photo, max_pixels=max_pixels)
    return rgb, hashlib.sha256(rgb.tobytes()).hexdigest()


def rejection_reasons(face: Face, min_quality_rank: int) -> list[Reason]:
    """Why a face cannot be enrolled under a quality gate; empty if it can."""
    q = face.quality
    reasons = []
    if q.eye_distance < MIN_EYE_DISTANCE:
        reasons.append(Reason.TOO_SMALL)
    if abs(q.yaw) > 45 or abs(q.pitch) > 40:
        reasons.append(Reason.EXTREME_POSE)
    if q.sharpness < 15:
        reasons.append(Reason.LOW_SHARPNESS)
    if q.confidence < 0.6:
        reasons.append(Reason.LOW_CONFIDENCE)
    if q.level.rank < min_quality_rank and not reasons:
        reasons.append(Reason.LOW_QUALITY)
    return reasons


def choose_face(faces: list[Face], min_quality_rank: int) -> tuple[Face | None, list[NotEnrolled]]:
    """The face to enroll from a photo's faces (the largest that passes the gate, if any) and
    every other face with the reasons it is not enrolled. Shared by `enroll` and bulk enrollment."""
    chosen: Face | None = None
    not_enrolled: list[NotEnrolled] = []
    for face in sorted(faces, key=lambda f: f.box.width * f.box.height, reverse=True):
        reasons = rejection_reasons(face, min_quality_rank)
        if chosen is not None:
            reasons = [Reason.EXCEEDS_MAX_FACES, *reasons]
        if reasons:
            not_enrolled.append(NotEnrolled(face, reasons))
        else:
            chosen = face
    return chosen, not_enrolled


def thumbnail(rgb: np.ndarray, face: Face) -> bytes:
    """A small aligned JPEG of the face, for collections that opted in to thumbnails."""
    chip = align.align(rgb, face.landmarks)
    buffer = io.BytesIO()
    Image.fromarray(chip).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def new_face(rgb: np.ndarray, face: Face, external_image_id: str, *, with_thumbnail: bool) -> NewFace:
    """What the store keeps of a face chosen for enrollment (never the photo)."""
    assert face.embedding is not None
    return NewFace(
        embedding=face.embedding,
        box=(face.box.left, face.box.top, face.box.width, face.box.height),
        quality_score=face.quality.score,
        quality_level=face.quality.level,
        external_image_id=external_image_id,
        thumbnail=thumbnail(rgb, face) if with_thumbnail else None,
    )


def enroll(
    store: Store,
    collection_id: str,
    photo: ImageSource | np.ndarray,
    *,
    person_id: str,
    actor: str,
    external_image_id: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_quality: QualityLevel | None = None,
    resume: bool = True,
) -> EnrollResult:
    """Enroll the largest usable face of a photo for a person (who must have a consent record).

    Photos already enrolled in the collection (same external image id, by default the photo's
    sha256) are skipped when `resume` is on, so re-running an interrupted enrollment resumes it.
    `min_quality` can raise the collection's quality gate for this photo, never lower it.
    """
    check_text(actor, "the actor")
    collection = store.get_collection(collection_id)
    store.get_person(collection_id, person_id)  # fail early, before any work, if unknown
    rgb, digest = decode_photo(photo, max_pixels)
    size = (int(rgb.shape[1]), int(rgb.shape[0]))
    image_id = external_image_id or f"sha256:{digest}"
    if resume and store.has_image(collection_id, image_id):
        return EnrollResult(external_image_id=image_id, skipped=True, image_size=size)
    gate = max(collection.min_quality.rank, min_quality.rank if min_quality is not None else 0)
    chosen, not_enrolled = choose_face(detect(rgb), gate)
    if chosen is None:
        return EnrollResult(external_image_id=image_id, not_enrolled=not_enrolled, image_size=size)
    new = new_face(rgb, chosen, image_id, with_thumbnail=collection.store_thumbnails)
    records = store.add_faces(collection_id, person_id, [new], actor=actor)
    return EnrollResult(
        external_image_id=image_id, enrolled=records, not_enrolled=not_enrolled, image_size=size, enrolled_faces=[chosen]
    )


@dataclass(frozen=True)
class SearchHit:
    """One searched face of the probe photo and its candidates."""

    box: dict[str, float] | None
    quality: str | None
    candidates: list[Candidate]

    def to_dict(self) -> dict[str, Any]:
        return {"box": self.box, "quality": self.quality, "candidates": [c.to_dict() for c in self.candidates]}


def search_photo(
    store: Store,
    collection_id: str,
    photo: ImageSource | np.ndarray,
    *,
    actor: str,
    purpose: str,
    all_faces: bool = False,
    k: int = 10,
    threshold: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[SearchHit]:
    """Search a collection for the photo's largest face (or every face). Audited."""
    check_text(purpose, "a search's purpose")
    store.get_collection(collection_id)
    rgb, digest = decode_photo(photo, max_pixels)
    faces = detect(rgb)
    if not all_faces and faces:
        faces = [max(faces, key=lambda f: f.box.width * f.box.height)]
    return search_faces(store, collection_id, faces, digest, actor=actor, purpose=purpose, k=k, threshold=threshold)


def search_faces(
    store: Store,
    collection_id: str,
    faces: list[Face],
    photo_sha256: str,
    *,
    actor: str,
    purpose: str,
    k: int = 10,
    threshold: float | None = None,
    request: dict[str, Any] | None = None,
) -> list[SearchHit]:
    """Search a collection for faces already detected in a photo (with embeddings). Audited, with
    the photo's sha256 and each face's box, never the photo or the vectors."""
    queries = [
        SearchQuery(
            vector=f.embedding,  # type: ignore[arg-type]
            summary={"photo_sha256": photo_sha256, "box": f.box.to_dict(), "quality": f.quality.level.value},
        )
        for f in faces
    ]
    # Audited even when the photo has no face: someone searched, with this photo, for this purpose.
    request = {"photo_sha256": photo_sha256, "faces_found": len(faces), **(request or {})}
    results = store.search(
        collection_id, queries, actor=actor, purpose=purpose, k=k, threshold=threshold, request=request
    )
    return [
        SearchHit(box=f.box.to_dict(), quality=f.quality.level.value, candidates=c) for f, c in zip(faces, results)
    ]


def search_face(
    store: Store,
    collection_id: str,
    face_id: str,
    *,
    actor: str,
    purpose: str,
    k: int = 10,
    threshold: float | None = None,
) -> list[Candidate]:
    """Search a collection with one of its enrolled faces (the face itself is left out). Audited."""
    vector = store.face_vector(collection_id, face_id)
    query = SearchQuery(vector=vector, summary={"face_id": face_id})
    if k >= 1000:
        raise InvalidArgumentError("k is at most 999 when searching by face id")
    candidates = store.search(collection_id, [query], actor=actor, purpose=purpose, k=k + 1, threshold=threshold)[0]
    return [c for c in candidates if c.face_id != face_id][:k]
