"""Enrolling and searching photos: the face pipeline joined to a store.

`enroll` keeps the one face of a photo that is the person's: the face the caller names, else the
only face that passes the collection's quality gate, else (several pass) the only one that matches
the person's enrolled faces; otherwise nothing is stored (MULTIPLE_FACES), so a bystander is never
enrolled under someone else's consent. It says why every other face was not enrolled. `search` looks
for the faces of a photo (or an enrolled face) in a collection. The photo itself is never stored; its sha256 becomes the face's external image id unless
the caller gives one, which also lets an interrupted folder enrollment resume where it stopped.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar, overload

import numpy as np
from PIL import Image

from regard import align
from regard.errors import InvalidArgumentError
from regard.face import Face, QualityLevel, box_iou
from regard.image import DEFAULT_MAX_PIXELS, ImageSource, load_image
from regard.match import DEFAULT_FMR, score_matrix
from regard.pipeline import detect
from regard.quality import MIN_EYE_DISTANCE
from regard.store.base import (
    Candidate,
    FaceRecord,
    NewFace,
    SearchQuery,
    SearchResult,
    check_text,
)
from regard.store.core import Store


class Reason(str, Enum):
    """Why a face found in a photo was not enrolled (cf. Rekognition's UnindexedFaces reasons)."""

    EXCEEDS_MAX_FACES = "EXCEEDS_MAX_FACES"  # another face of the photo was enrolled (or named)
    MULTIPLE_FACES = "MULTIPLE_FACES"  # several faces pass the gate and none was named: whose is it?
    TOO_SMALL = "TOO_SMALL"
    EXTREME_POSE = "EXTREME_POSE"
    LOW_SHARPNESS = "LOW_SHARPNESS"
    LOW_CONFIDENCE = "LOW_CONFIDENCE"
    LOW_QUALITY = "LOW_QUALITY"


@dataclass(frozen=True)
class NotEnrolled:
    face: Face
    reasons: list[Reason]
    index: int = -1  # the face's position in regard.detect's list of the photo's faces (0-based)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
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


@dataclass(frozen=True)
class FaceChoice:
    """Which face of a photo the caller says is the person's: its position in `regard.detect`'s
    list (0-based; the CLI's `--face N` is 1-based, as `regard detect` numbers them), or a box in
    the photo's pixels (left, top, width, height), matched to the detected face it overlaps most."""

    index: int | None = None
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if (self.index is None) == (self.box is None):
            raise InvalidArgumentError("name a face by its index or by its box, one of the two")
        if self.index is not None and (isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0):
            raise InvalidArgumentError(f"a face index is a whole number from 0, not {self.index!r}")
        if self.box is not None:
            if len(self.box) != 4 or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in self.box):
                raise InvalidArgumentError("a face box is four numbers: left, top, width, height")
            if self.box[2] <= 0 or self.box[3] <= 0:
                raise InvalidArgumentError("a face box has a positive width and height")

    @classmethod
    def parse_box(cls, text: str) -> FaceChoice:
        """A choice from "left,top,width,height" (pixels)."""
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise InvalidArgumentError(f"a face box is left,top,width,height in pixels, not {text!r}") from None
        if len(values) != 4:
            raise InvalidArgumentError(f"a face box is left,top,width,height in pixels, not {text!r}")
        return cls(box=values)  # type: ignore[arg-type]

    def pick(self, faces: list[Face]) -> Face:
        """The face chosen among a photo's faces (in `regard.detect`'s order)."""
        if self.index is not None:
            if self.index >= len(faces):
                raise InvalidArgumentError(
                    f"face index {self.index} (face {self.index + 1} counting from 1, as regard detect numbers "
                    f"them) was named, but the photo has {len(faces)} face{'s' if len(faces) != 1 else ''}"
                )
            return faces[self.index]
        assert self.box is not None
        left, top, width, height = self.box
        best, best_iou = None, 0.0
        for face in faces:
            overlap = box_iou((left, top, left + width, top + height), (face.box.left, face.box.top, face.box.right, face.box.bottom))
            if overlap > best_iou:
                best, best_iou = face, overlap
        if best is None or best_iou < MIN_BOX_IOU:
            raise InvalidArgumentError(
                f"no face of the photo lies at the box {list(self.box)}: the best overlap is {best_iou:.2f} "
                f"(at least {MIN_BOX_IOU} is needed); run detect to see the faces' boxes"
            )
        return best


MIN_BOX_IOU = 0.4
"""A named box picks the detected face it overlaps by at least this intersection over union."""


def choose_face(
    faces: list[Face],
    min_quality_rank: int,
    *,
    named: FaceChoice | None = None,
    matches_person: Callable[[list[Face]], list[bool]] | None = None,
) -> tuple[Face | None, list[NotEnrolled]]:
    """The face to enroll from a photo's faces and every other face with the reasons it is not
    enrolled. Shared by `enroll` and bulk enrollment.

    The face `named` if given (when it passes the gate); else the only face that passes the gate;
    else, when several do, the only one of them that `matches_person` says matches the person's
    enrolled faces. Otherwise none: every face that passes is reported as MULTIPLE_FACES."""
    reasons_of = {id(f): rejection_reasons(f, min_quality_rank) for f in faces}
    usable = [f for f in faces if not reasons_of[id(f)]]
    target = named.pick(faces) if named is not None else None
    chosen: Face | None = None
    undecided = False
    if target is not None:
        chosen = target if not reasons_of[id(target)] else None
    elif len(usable) == 1:
        chosen = usable[0]
    elif len(usable) > 1:
        matching = []
        if matches_person is not None:
            matching = [f for f, ok in zip(usable, matches_person(usable)) if ok]
        if len(matching) == 1:
            chosen = matching[0]
        else:
            undecided = True
    not_enrolled: list[NotEnrolled] = []
    for index, face in enumerate(faces):
        if face is chosen:
            continue
        reasons = reasons_of[id(face)]
        if undecided and not reasons:
            reasons = [Reason.MULTIPLE_FACES]
        elif (chosen is not None or target is not None) and face is not target:
            reasons = [Reason.EXCEEDS_MAX_FACES, *reasons]
        not_enrolled.append(NotEnrolled(face, reasons, index))
    return chosen, not_enrolled


def faces_matching_person(store: Store, collection_id: str, person_id: str, embeddings: list[np.ndarray]) -> list[bool]:
    """Which embeddings match any enrolled face of the person at the 1:1 default threshold (FMR 1e-3)."""
    records = store.list_faces(collection_id, person_id)
    if not records or not embeddings:
        return [False] * len(embeddings)
    recognizer = store.recognizer(store.get_collection(collection_id).model)
    if not recognizer.calibrated:  # no threshold to match at: the caller must name the face
        return [False] * len(embeddings)
    known = np.stack([store.face_vector(collection_id, r.face_id) for r in records])
    best = score_matrix(np.stack(embeddings), known, recognizer.distance_at_zero).max(axis=1)
    threshold = store.table_for(recognizer.id).threshold_for(DEFAULT_FMR)
    return [bool(s >= threshold) for s in best]


def person_matcher(store: Store, collection_id: str, person_id: str) -> Callable[[list[Face]], list[bool]]:
    """For `choose_face`: which faces match the person's enrolled faces (`faces_matching_person`),
    read only when asked (a photo with several usable faces)."""
    return lambda faces: faces_matching_person(store, collection_id, person_id, [f.embedding for f in faces])  # type: ignore[misc]


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
    face: FaceChoice | None = None,
) -> EnrollResult:
    """Enroll the person's face of a photo for them (they must have a consent record).

    Whose face it is: the one `face` names; else the only face that passes the quality gate; else,
    if several pass, the only one that matches the person's enrolled faces at the 1:1 default
    threshold. Otherwise nothing is stored and every usable face is reported as MULTIPLE_FACES,
    with its box, so that the caller can name one.

    Photos already enrolled for the person (same external image id, by default the photo's
    sha256) are skipped when `resume` is on, so re-running an interrupted enrollment resumes it.
    `min_quality` can raise the collection's quality gate for this photo, never lower it.
    """
    check_text(actor, "the actor")
    collection = store.get_collection(collection_id)
    store.get_person(collection_id, person_id)  # fail early, before any work, if unknown
    rgb, digest = decode_photo(photo, max_pixels)
    size = (int(rgb.shape[1]), int(rgb.shape[0]))
    image_id = external_image_id or f"sha256:{digest}"
    # Resume: skip a photo already enrolled for this person (another person's face in the same
    # photo may still be enrolled for them).
    if resume and store.has_image(collection_id, image_id):
        if any(r.external_image_id == image_id for r in store.list_faces(collection_id, person_id)):
            return EnrollResult(external_image_id=image_id, skipped=True, image_size=size)
    gate = max(collection.min_quality.rank, min_quality.rank if min_quality is not None else 0)
    matcher = person_matcher(store, collection_id, person_id)
    chosen, not_enrolled = choose_face(detect(rgb, model=collection.model), gate, named=face, matches_person=matcher)
    if chosen is None:
        return EnrollResult(external_image_id=image_id, not_enrolled=not_enrolled, image_size=size)
    new = new_face(rgb, chosen, image_id, with_thumbnail=collection.store_thumbnails)
    records = store.add_faces(collection_id, person_id, [new], actor=actor, model=collection.model)
    return EnrollResult(
        external_image_id=image_id, enrolled=records, not_enrolled=not_enrolled, image_size=size, enrolled_faces=[chosen]
    )


@dataclass(frozen=True)
class PersonCandidate:
    """A person a searched face may be: their best-scoring enrolled face decides the score (on LFW
    fold 1 it did as well as the mean of the best two, bench/identification.py), with every face of
    theirs among the results, best first. A face enrolled without a person stands alone."""

    person_id: str | None
    score: float
    fmr: float
    face_ids: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "score": round(self.score, 2),
            "fmr": float(f"{self.fmr:.3g}"),
            "face_ids": self.face_ids,
        }


def rank_persons(candidates: list[Candidate], k: int) -> list[PersonCandidate]:
    """The top `k` persons among face candidates (sorted best first), each by their best face."""
    persons: dict[str, PersonCandidate] = {}
    ranked: list[PersonCandidate] = []
    for c in sorted(candidates, key=lambda c: -c.score):
        if c.person_id is None:
            ranked.append(PersonCandidate(None, c.score, c.fmr, [c.face_id]))
        elif c.person_id in persons:
            persons[c.person_id].face_ids.append(c.face_id)
        else:
            persons[c.person_id] = PersonCandidate(c.person_id, c.score, c.fmr, [c.face_id])
            ranked.append(persons[c.person_id])
    return ranked[:k]


FACES_PER_PERSON = 4
"""A search asks the store for this many faces per person wanted, so that people enrolled with
several faces do not crowd others out of the top k."""


@dataclass(frozen=True)
class SearchHit:
    """One searched face of the probe photo: where it is, and who it may be."""

    box: dict[str, float] | None
    quality: str | None
    candidates: list[Candidate]  # the faces found, best first (at most k)
    persons: list[PersonCandidate] = field(default_factory=list)  # the persons they belong to (at most k)

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": self.box,
            "quality": self.quality,
            "persons": [p.to_dict() for p in self.persons],
            "candidates": [c.to_dict() for c in self.candidates],
        }


T = TypeVar("T")


@dataclass(frozen=True)
class Found(Sequence[T], Generic[T]):
    """What a search found (`found[i]`: the hits of a photo's faces, or the candidates for an
    enrolled face), with what the search used, as the store read it in the search's transaction."""

    items: tuple[T, ...]
    threshold: float  # the score every candidate reaches
    collection_threshold: float | None  # the collection's own threshold, if one is set
    gallery_size: int  # faces in the collection
    model: str  # the embedder of the collection's vectors

    @classmethod
    def of(cls, result: SearchResult, items: Sequence[T]) -> Found[T]:
        return cls(tuple(items), result.threshold, result.collection_threshold, result.gallery_size, result.model)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...
    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)


def search_photo(
    store: Store,
    collection_id: str,
    photo: ImageSource | np.ndarray,
    *,
    actor: str,
    purpose: str,
    largest: bool = False,
    k: int = 10,
    threshold: float | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Found[SearchHit]:
    """Search a collection for every face of a photo (only the largest with `largest`): one
    search, one audit entry listing every face searched and what came back. `threshold`: the
    caller's, else the collection's own or the default for its size."""
    check_text(purpose, "a search's purpose")
    # An unknown collection, or one whose model is not calibrated, says so before the photo is read.
    model = store.get_collection(collection_id).model
    store.table_for(model)
    rgb, digest = decode_photo(photo, max_pixels)
    faces = detect(rgb, model=model)
    if largest and faces:
        faces = [max(faces, key=lambda f: f.box.width * f.box.height)]
    return search_faces(
        store, collection_id, faces, digest, actor=actor, purpose=purpose, k=k, threshold=threshold, model=model
    )


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
    model: str | None = None,
) -> Found[SearchHit]:
    """Search a collection for faces already detected in a photo (with embeddings of `model`, the
    collection's; None: the built-in model). Audited, with the photo's sha256 and each face's box,
    never the photo or the vectors."""
    queries = [
        SearchQuery(
            vector=f.embedding,  # type: ignore[arg-type]
            summary={"photo_sha256": photo_sha256, "box": f.box.to_dict(), "quality": f.quality.level.value},
        )
        for f in faces
    ]
    # Audited even when the photo has no face: someone searched, with this photo, for this purpose.
    request = {"photo_sha256": photo_sha256, "faces_found": len(faces), **(request or {})}
    result = store.search(
        collection_id, queries, actor=actor, purpose=purpose, k=min(1000, k * FACES_PER_PERSON),
        threshold=threshold, request=request, model=model,
    )  # fmt: skip
    hits = [
        SearchHit(box=f.box.to_dict(), quality=f.quality.level.value, candidates=c[:k], persons=rank_persons(c, k))
        for f, c in zip(faces, result)
    ]
    return Found.of(result, hits)


def search_face(
    store: Store,
    collection_id: str,
    face_id: str,
    *,
    actor: str,
    purpose: str,
    k: int = 10,
    threshold: float | None = None,
) -> Found[Candidate]:
    """Search a collection with one of its enrolled faces (the face itself is left out). Audited."""
    vector = store.face_vector(collection_id, face_id)
    query = SearchQuery(vector=vector, summary={"face_id": face_id})
    if k >= 1000:
        raise InvalidArgumentError("k is at most 999 when searching by face id")
    model = store.get_collection(collection_id).model  # the face's own vector: the collection's model
    result = store.search(collection_id, [query], actor=actor, purpose=purpose, k=k + 1, threshold=threshold, model=model)
    return Found.of(result, [c for c in result[0] if c.face_id != face_id][:k])
