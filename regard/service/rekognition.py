"""The Rekognition-compatible API: `POST /` with `X-Amz-Target: RekognitionService.<Operation>`,
AWS JSON 1.1 bodies shaped as in botocore's `rekognition` service model, signed with AWS SigV4
using a Regard key. Unmodified boto3 works:

    boto3.client("rekognition", endpoint_url="http://localhost:8080", region_name="us-east-1",
                 aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)

Where Regard's safeguards need something Rekognition has no field for, it comes from a header
(add it with a botocore `before-sign` event hook) or from the key:
  X-Regard-Purpose          why a search is made / what a new collection is for (else the key's default purpose)
  X-Regard-User-Id          IndexFaces: the consenting person (user) the face belongs to
  X-Regard-Face-Box         IndexFaces of a photo of several people: the person's face, as
                            "Left,Top,Width,Height" in ratios of the image (DetectFaces' BoundingBox)
  X-Regard-Face-Index       ... or by its position (from 0) in DetectFaces' FaceDetails
                            (else ExternalImageId, when it names a user of the collection)
  X-Regard-Consent-Basis    CreateUser: record consent in the same call (consent, contract, ...);
  X-Regard-Consent-Reference, X-Regard-Consent-Expires   with its reference and expiry (ISO 8601)
  X-Regard-Reason           why faces, users or a collection are deleted (else a default naming the operation)
Every response to a comparison or search carries `X-Regard-Threshold` (the score threshold used)
and `X-Regard-Threshold-FMR` (its estimated false-match rate).

Deliberate differences (docs/SERVICE.md has the full list): no attribute is ever inferred (AgeRange,
Gender, Emotions, Smile, ... are absent even with Attributes=["ALL"]); a face always belongs to a
consenting user, so IndexFaces needs one, IndexFaces indexes one face per photo (the largest that
passes the quality gate), DisassociateFaces and DeleteUser erase the faces, and DeleteFaces works on
associated faces too; thresholds default to Regard's calibrated ones, not 80; no S3.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from regard import gallery
from regard.errors import (
    AlreadyExistsError,
    ImageTooLargeError,
    InvalidArgumentError,
    NotFoundError,
    RegardError,
)
from regard.face import LANDMARK_NAMES, Face, QualityLevel
from regard.match import ThresholdTable, compare_embeddings
from regard.pipeline import detect
from regard.service import jsonbody
from regard.service.auth import Caller, Unauthorized, public_reason
from regard.service.keys import AuthError
from regard.service.sigv4 import verify_sigv4
from regard.service.state import AWS_JSON, ServiceState, declared_pixels, state_of
from regard.store.base import (
    ApiKey,
    Candidate,
    ConsentBasis,
    FaceRecord,
    Role,
    SearchQuery,
    check_consent,
    check_optional_text,
)
from regard.store.core import Store

router = APIRouter()

TARGET_PREFIX = "RekognitionService."
ACCOUNT = "000000000000"


class AwsError(RegardError):
    """An error with a specific Rekognition exception name."""

    def __init__(self, aws_type: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.aws_type = aws_type
        self.status = status


# ---------------------------------------------------------------- request plumbing


@dataclass
class Call:
    """One Rekognition call: who, what, and the headers to add to the answer."""

    state: ServiceState
    caller: Caller
    headers: Mapping[str, str]
    body: dict[str, Any]
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return self.state.store

    # Parameters, checked on the server too (not every client validates like botocore).
    def get(self, name: str, kind: type | tuple[type, ...], required: bool = False, default: Any = None) -> Any:
        value = self.body.get(name)
        if value is None:
            if required:
                raise InvalidArgumentError(f"{name} is required")
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise InvalidArgumentError(f"{name} has the wrong type")
        return value

    def strings(self, name: str, required: bool = False, default: Any = None) -> Any:
        """A list of strings (FaceIds, UserIds, Attributes, ...)."""
        value = self.get(name, list, required, default)
        if value is not None and not all(isinstance(v, str) for v in value):
            raise InvalidArgumentError(f"{name} is a list of strings")
        return value

    def ident(self, name: str, pattern: str = r"[a-zA-Z0-9_.\-]+", max_len: int = 255, required: bool = True) -> Any:
        value = self.get(name, str, required)
        if value is not None and (len(value) > max_len or not re.fullmatch(pattern, value)):
            raise InvalidArgumentError(f"{name} {value!r} must match {pattern} and be at most {max_len} characters")
        return value

    def collection(self, role: Role | None, *, check: bool = True) -> str:
        """The call's CollectionId, if the caller's key may use it in `role`; with `check`, read to
        be sure it exists (a search leaves that to the store, which reads it in its transaction)."""
        collection_id = self.ident("CollectionId")
        if not self.caller.may_see(collection_id):
            raise AwsError("ResourceNotFoundException", f"The collection id: {collection_id} does not exist")
        if role is not None:
            self.caller.require(role, collection_id)
        if check:
            self.store.get_collection(collection_id)  # ResourceNotFoundException when unknown
        return collection_id

    def number(self, name: str, low: float, high: float, default: Any) -> Any:
        kind = float if isinstance(default, float) or default is None and name.endswith("Threshold") else int
        value = self.get(name, kind, default=default)
        if value is not None and not low <= value <= high:
            raise InvalidArgumentError(f"{name} must be between {low:g} and {high:g}")
        return value

    def quality_filter(self, default: str) -> QualityLevel | None:
        value = self.get("QualityFilter", str, default=default)
        if value not in {"NONE", "AUTO", "LOW", "MEDIUM", "HIGH"}:
            raise InvalidArgumentError("QualityFilter is one of NONE, AUTO, LOW, MEDIUM, HIGH")
        if value == "NONE":
            return None
        return QualityLevel.MEDIUM if value == "AUTO" else QualityLevel(value)

    def image(self, name: str = "Image") -> tuple[np.ndarray, str]:
        """The decoded photo of an Image parameter and its sha256."""
        image = self.get(name, dict, required=True)
        if "S3Object" in image:
            raise AwsError(
                "InvalidS3ObjectException",
                "Regard has no S3: send the photo itself as Image.Bytes (boto3 accepts the file's bytes)",
            )
        data = image.get("Bytes")
        if not isinstance(data, str) or not data:
            raise InvalidArgumentError(f"{name}.Bytes is required")
        try:
            raw = base64.b64decode("".join(data.split()), validate=True)  # line breaks allowed
        except (binascii.Error, ValueError):
            raise InvalidArgumentError(f"{name}.Bytes is not valid base64") from None
        limit = self.state.config.max_image_bytes
        if len(raw) > limit:
            raise ImageTooLargeError(f"{name} is {len(raw):,} bytes, over the limit of {limit:,} bytes")
        return gallery.decode_photo(raw, self.state.config.max_pixels)

    def purpose(self) -> str:
        purpose = self.headers.get("x-regard-purpose") or self.caller.key.default_purpose
        if not purpose or not purpose.strip():
            raise InvalidArgumentError(
                "Regard needs a purpose for this call: send the X-Regard-Purpose header, or give the key a "
                "default purpose (regard keys create --purpose ...)"
            )
        return purpose.strip()

    def reason(self, operation: str) -> str:
        return (self.headers.get("x-regard-reason") or "").strip() or f"{operation} via the Rekognition API"

    def threshold(self, name: str, default: float | None = None) -> float | None:
        """The Regard score threshold of a call: the caller's `name` (a Rekognition Similarity,
        mapped to a score by `score_of_similarity`), else `default` (a score; for a search None,
        and the store decides: `report_threshold` then says what it used)."""
        value = self.number(name, 0.0, 100.0, None)
        threshold = default if value is None else score_of_similarity(self.store.table, float(value))
        if threshold is not None:
            self.report_threshold(threshold)
        return threshold

    def report_threshold(self, threshold: float) -> None:
        """Say in the response's headers which threshold the call used, on both scales, and its FMR."""
        self.response_headers["X-Regard-Threshold"] = f"{threshold:.2f}"
        self.response_headers["X-Regard-Similarity-Threshold"] = f"{similarity_of_score(self.store.table, threshold):.2f}"
        self.response_headers["X-Regard-Threshold-FMR"] = f"{self.store.table.fmr_estimate(threshold):.3g}"


SIMILARITY_ANCHORS = ((1e-3, 80.0), (1e-6, 99.0))
"""The Rekognition API's Similarity scale: 80 (the FaceMatchThreshold and SimilarityThreshold of
AWS's own examples, and Rekognition's default) is Regard's 1:1 default threshold, the score whose
measured false-match rate is 1e-3; 99 (what AWS advises for uses such as law enforcement) is the
score whose estimated false-match rate is 1e-6. Between and beyond, Similarity is linear in the
score (0 -> 0, 100 -> 100). The native API keeps Regard's own score."""


def _similarity_knots(table: ThresholdTable) -> tuple[list[float], list[float]]:
    scores = [0.0] + [table.threshold_for_estimate(fmr) for fmr, _ in SIMILARITY_ANCHORS] + [100.0]
    similarities = [0.0] + [sim for _, sim in SIMILARITY_ANCHORS] + [100.0]
    return scores, similarities


def similarity_of_score(table: ThresholdTable, score: float) -> float:
    """A Regard score (0-100) on the Rekognition API's Similarity scale (see SIMILARITY_ANCHORS)."""
    scores, similarities = _similarity_knots(table)
    return round(float(np.interp(score, scores, similarities)), 4)


def score_of_similarity(table: ThresholdTable, similarity: float) -> float:
    """The Regard score a Rekognition Similarity (or threshold) stands for: the inverse of
    `similarity_of_score`."""
    scores, similarities = _similarity_knots(table)
    return float(np.interp(similarity, similarities, scores))


def _page(call: Call, items: list[Any], max_results: int) -> tuple[list[Any], str | None]:
    """One page of `items` and the token for the next, if any."""
    token = call.get("NextToken", str)
    start = 0
    if token:
        try:
            start = jsonbody.parse(base64.urlsafe_b64decode(token.encode()))["offset"]
            if not isinstance(start, int) or isinstance(start, bool) or start < 0:
                raise ValueError(start)
        except (ValueError, KeyError, TypeError, binascii.Error):  # BadJson is a ValueError too
            raise AwsError("InvalidPaginationTokenException", "NextToken is not a token this service issued") from None
    end = start + max_results
    next_token = base64.urlsafe_b64encode(json.dumps({"offset": end}).encode()).decode() if end < len(items) else None
    return items[start:end], next_token


# ---------------------------------------------------------------- shapes


# Regard's landmarks in Rekognition's names: Rekognition's "eyeLeft" is the eye on the image's left,
# which is the person's right eye (LANDMARK_NAMES order: right_eye, left_eye, nose, mouth_right, mouth_left).
_LANDMARK_TYPES = dict(zip(LANDMARK_NAMES, ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight")))

_REASONS = {
    "TOO_SMALL": "SMALL_BOUNDING_BOX",
    "LOW_QUALITY": "LOW_FACE_QUALITY",
    "EXCEEDS_MAX_FACES": "EXCEEDS_MAX_FACES",
    "MULTIPLE_FACES": "MULTIPLE_FACES",  # Regard's own: several faces, none named (X-Regard-Face-Box)
    "EXTREME_POSE": "EXTREME_POSE",
    "LOW_SHARPNESS": "LOW_SHARPNESS",
    "LOW_CONFIDENCE": "LOW_CONFIDENCE",
}


def _ratio_box(left: float, top: float, width: float, height: float, size: tuple[int, int]) -> dict[str, float]:
    w, h = size
    return {"Width": width / w, "Height": height / h, "Left": left / w, "Top": top / h}


def _brightness(rgb: np.ndarray, face: Face) -> float:
    h, w = rgb.shape[:2]
    left, top = max(0, int(face.box.left)), max(0, int(face.box.top))
    right, bottom = min(w, int(np.ceil(face.box.right))), min(h, int(np.ceil(face.box.bottom)))
    region = rgb[top:bottom, left:right]
    if region.size == 0:
        return 0.0
    luma = region[..., 0] * 0.299 + region[..., 1] * 0.587 + region[..., 2] * 0.114
    return float(luma.mean() / 255.0 * 100.0)


def face_detail(rgb: np.ndarray, face: Face) -> dict[str, Any]:
    """A FaceDetail (also valid as a ComparedFace): geometry and quality only, never attributes."""
    size = (rgb.shape[1], rgb.shape[0])
    q = face.quality
    return {
        "BoundingBox": _ratio_box(face.box.left, face.box.top, face.box.width, face.box.height, size),
        "Landmarks": [
            {"Type": _LANDMARK_TYPES[name], "X": float(x) / size[0], "Y": float(y) / size[1]}
            for name, (x, y) in zip(LANDMARK_NAMES, face.landmarks)
        ],
        "Pose": {"Roll": q.roll, "Yaw": q.yaw, "Pitch": q.pitch},
        "Quality": {"Brightness": _brightness(rgb, face), "Sharpness": q.sharpness},
        "Confidence": face.confidence * 100.0,
    }


def _passes(face: Face, level: QualityLevel | None) -> bool:
    return level is None or face.quality.level.rank >= level.rank


def _largest(faces: list[Face]) -> Face | None:
    return max(faces, key=lambda f: f.box.width * f.box.height) if faces else None


def _face_shape(record: FaceRecord, model: str) -> dict[str, Any]:
    """A stored face as Rekognition's Face (no geometry: Regard keeps none)."""
    out: dict[str, Any] = {"FaceId": record.face_id, "IndexFacesModelVersion": model}
    if record.external_image_id:
        out["ExternalImageId"] = record.external_image_id
    if record.person_id:
        out["UserId"] = record.person_id
    return out


# ---------------------------------------------------------------- operations


def detect_faces(call: Call) -> dict[str, Any]:
    call.caller.require(Role.DETECT)
    attributes = call.strings("Attributes", default=[])
    known = {"DEFAULT", "ALL", "AGE_RANGE", "BEARD", "EMOTIONS", "EYE_DIRECTION", "EYEGLASSES", "EYES_OPEN",
             "GENDER", "MOUTH_OPEN", "MUSTACHE", "FACE_OCCLUDED", "SMILE", "SUNGLASSES"}
    if any(a not in known for a in attributes):
        raise InvalidArgumentError(f"Attributes are from {sorted(known)}")
    # Whatever Attributes asks for, Regard answers with geometry and quality only: it never infers
    # age, gender, emotion or appearance attributes (docs/SERVICE.md).
    rgb, _ = call.image()
    faces = detect(rgb, embed=False)
    return {"FaceDetails": [face_detail(rgb, f) for f in faces]}


def compare_faces(call: Call) -> dict[str, Any]:
    call.caller.require(Role.DETECT)
    level = call.quality_filter("NONE")
    threshold = call.threshold("SimilarityThreshold", call.store.table.threshold_for(1e-3))
    source_rgb, _ = call.image("SourceImage")
    target_rgb, _ = call.image("TargetImage")
    source = _largest([f for f in detect(source_rgb) if _passes(f, level)])
    if source is None:
        raise InvalidArgumentError("There are no faces in the source image (that pass the QualityFilter)")
    matches, unmatched = [], []
    for face in detect(target_rgb):
        if not _passes(face, level):
            continue
        comparison = compare_embeddings(source.embedding, face.embedding, threshold=threshold)  # type: ignore[arg-type]
        compared = face_detail(target_rgb, face)
        if comparison.match:
            matches.append({"Similarity": similarity_of_score(call.store.table, comparison.score), "Face": compared})
        else:
            unmatched.append(compared)
    matches.sort(key=lambda m: -m["Similarity"])
    source_detail = face_detail(source_rgb, source)
    return {
        "SourceImageFace": {"BoundingBox": source_detail["BoundingBox"], "Confidence": source_detail["Confidence"]},
        "FaceMatches": matches,
        "UnmatchedFaces": unmatched,
    }


def _arn(call: Call, collection_id: str) -> str:
    return f"arn:aws:rekognition:{call.state.config.region}:{ACCOUNT}:collection/{collection_id}"


def create_collection(call: Call) -> dict[str, Any]:
    collection_id = call.ident("CollectionId")
    call.caller.require(Role.ADMIN, collection_id)
    try:
        collection = call.store.create_collection(collection_id, purpose=call.purpose(), actor=call.caller.actor)
    except AlreadyExistsError:
        raise AwsError("ResourceAlreadyExistsException", f"The collection id: {collection_id} already exists") from None
    return {"StatusCode": 200, "CollectionArn": _arn(call, collection_id), "FaceModelVersion": collection.model}


def delete_collection(call: Call) -> dict[str, Any]:
    collection_id = call.collection(Role.ADMIN)
    call.store.delete_collection(collection_id, actor=call.caller.actor, reason=call.reason("DeleteCollection"))
    return {"StatusCode": 200}


def describe_collection(call: Call) -> dict[str, Any]:
    collection = call.store.get_collection(call.collection(None))
    return {
        "FaceCount": collection.face_count,
        "UserCount": collection.person_count,
        "FaceModelVersion": collection.model,
        "CollectionARN": _arn(call, collection.id),
        "CreationTimestamp": collection.created_at.timestamp(),
    }


def list_collections(call: Call) -> dict[str, Any]:
    max_results = call.number("MaxResults", 0, 4096, 1000)
    visible = [c for c in call.store.list_collections() if call.caller.may_see(c.id)]
    page, token = _page(call, visible, max_results)
    out: dict[str, Any] = {"CollectionIds": [c.id for c in page], "FaceModelVersions": [c.model for c in page]}
    if token:
        out["NextToken"] = token
    return out


_USER_ID = r"[a-zA-Z0-9_.\-:]+"
_FACE_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _person_for_index(call: Call, collection_id: str, external_image_id: str | None) -> str:
    person_id = (call.headers.get("x-regard-user-id") or "").strip() or None
    if person_id is None and external_image_id is not None and _user_exists(call, collection_id, external_image_id):
        person_id = external_image_id
    if person_id is None:
        raise InvalidArgumentError(
            "Regard enrolls a face only for a user with recorded consent: create the user (CreateUser with the "
            "X-Regard-Consent-Basis header, or `regard consent record`), then name it in the X-Regard-User-Id "
            "header or as the ExternalImageId"
        )
    return person_id


def _named_face(call: Call, width: int, height: int) -> gallery.FaceChoice | None:
    """The face IndexFaces is told is the user's (X-Regard-Face-Box or X-Regard-Face-Index), if any."""
    box = (call.headers.get("x-regard-face-box") or "").strip()
    index = (call.headers.get("x-regard-face-index") or "").strip()
    if box and index:
        raise InvalidArgumentError("send X-Regard-Face-Box or X-Regard-Face-Index, not both")
    if index:
        if not index.isdigit():
            raise InvalidArgumentError(f"X-Regard-Face-Index is a whole number from 0, not {index!r}")
        return gallery.FaceChoice(index=int(index))
    if not box:
        return None
    try:
        left, top, w, h = (float(v) for v in box.split(","))
    except ValueError:
        raise InvalidArgumentError(
            f"X-Regard-Face-Box is Left,Top,Width,Height in ratios of the image (as DetectFaces' BoundingBox), not {box!r}"
        ) from None
    return gallery.FaceChoice(box=(left * width, top * height, w * width, h * height))


def index_faces(call: Call) -> dict[str, Any]:
    collection_id = call.collection(Role.ENROLL)
    external_image_id = call.ident("ExternalImageId", _USER_ID, required=False)
    call.number("MaxFaces", 1, 4096, None)
    level = call.quality_filter("AUTO")
    person_id = _person_for_index(call, collection_id, external_image_id)
    call.store.get_person(collection_id, person_id)
    rgb, _ = call.image()
    result = gallery.enroll(
        call.store,
        collection_id,
        rgb,
        person_id=person_id,
        actor=call.caller.actor,
        external_image_id=external_image_id,
        max_pixels=call.state.config.max_pixels,
        min_quality=level,
        resume=False,
        face=_named_face(call, rgb.shape[1], rgb.shape[0]),
    )
    size = (rgb.shape[1], rgb.shape[0])
    model = call.store.get_collection(collection_id).model
    records = []
    for record, face in zip(result.enrolled, result.enrolled_faces):
        detail = face_detail(rgb, face)
        stored = _face_shape(record, model)
        stored.update(BoundingBox=_ratio_box(*record.box, size), Confidence=detail["Confidence"])
        if not external_image_id:  # the photo's sha256 stands in for it in the store; not the caller's
            stored.pop("ExternalImageId", None)
        records.append({"Face": stored, "FaceDetail": detail})
    unindexed = [
        {"Reasons": [_REASONS[r.value] for r in n.reasons], "FaceDetail": face_detail(rgb, n.face)}
        for n in result.not_enrolled
    ]
    return {"FaceRecords": records, "UnindexedFaces": unindexed, "FaceModelVersion": model}


def list_faces(call: Call) -> dict[str, Any]:
    collection_id = call.collection(Role.ENROLL)
    max_results = call.number("MaxResults", 0, 4096, 1000)
    user_id = call.ident("UserId", _USER_ID, 128, required=False)
    face_ids = call.strings("FaceIds")
    records = call.store.list_faces(collection_id, user_id) if user_id is None or _user_exists(call, collection_id, user_id) else []
    if face_ids is not None:
        wanted = set(face_ids)
        records = [r for r in records if r.face_id in wanted]
    page, token = _page(call, records, max_results)
    model = call.store.get_collection(collection_id).model
    out: dict[str, Any] = {"Faces": [_face_shape(r, model) for r in page], "FaceModelVersion": model}
    if token:
        out["NextToken"] = token
    return out


def _user_exists(call: Call, collection_id: str, user_id: str) -> bool:
    try:
        call.store.get_person(collection_id, user_id)
        return True
    except (NotFoundError, InvalidArgumentError):
        return False


def _face_ids(call: Call, name: str = "FaceIds", most: int = 4096) -> list[str]:
    ids = call.strings(name, required=True)
    if not 1 <= len(ids) <= most or not all(isinstance(i, str) and re.fullmatch(_FACE_ID, i) for i in ids):
        raise InvalidArgumentError(f"{name} is a list of 1 to {most} face ids (UUIDs)")
    return ids


def delete_faces(call: Call) -> dict[str, Any]:
    collection_id = call.collection(Role.ENROLL)
    reason = call.reason("DeleteFaces")
    deleted, failed = [], []
    for face_id in _face_ids(call):
        try:
            call.store.delete_face(collection_id, face_id, actor=call.caller.actor, reason=reason)
            deleted.append(face_id)
        except NotFoundError:
            failed.append({"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]})
    return {"DeletedFaces": deleted, "UnsuccessfulFaceDeletions": failed}


def _matches(call: Call, candidates: Sequence[Candidate], model: str) -> list[dict[str, Any]]:
    """Rekognition's FaceMatches, from the face records the search read with its candidates."""
    return [
        {"Similarity": similarity_of_score(call.store.table, c.score), "Face": _face_shape(c.face, model)}  # type: ignore[arg-type]
        for c in candidates
    ]


def search_faces(call: Call) -> dict[str, Any]:
    collection_id = call.collection(Role.SEARCH, check=False)
    face_id = call.ident("FaceId", _FACE_ID)
    k = min(call.number("MaxFaces", 1, 4096, 100), 999)
    threshold = call.threshold("FaceMatchThreshold")
    found = gallery.search_face(
        call.store, collection_id, face_id, actor=call.caller.actor, purpose=call.purpose(), k=k, threshold=threshold
    )
    call.report_threshold(found.threshold)
    return {"SearchedFaceId": face_id, "FaceMatches": _matches(call, found, found.model), "FaceModelVersion": found.model}


def _probe(call: Call, level: QualityLevel | None, collection_id: str) -> tuple[np.ndarray, str, Face, list[Face]]:
    """The photo, its sha256, its largest face that passes the filter, and the others."""
    rgb, digest = call.image()
    faces = detect(rgb)
    usable = [f for f in faces if _passes(f, level)]
    probe = _largest(usable)
    if probe is None:
        call.store.get_collection(collection_id)  # an unknown collection says so first
        raise InvalidArgumentError("There are no faces in the image (that pass the QualityFilter). Should be at least 1.")
    return rgb, digest, probe, [f for f in faces if f is not probe]


def search_faces_by_image(call: Call) -> dict[str, Any]:
    collection_id = call.collection(Role.SEARCH, check=False)
    k = min(call.number("MaxFaces", 1, 4096, 100), 1000)
    level = call.quality_filter("NONE")
    threshold = call.threshold("FaceMatchThreshold")
    purpose = call.purpose()
    rgb, digest, probe, _ = _probe(call, level, collection_id)
    found = gallery.search_faces(
        call.store, collection_id, [probe], digest, actor=call.caller.actor, purpose=purpose, k=k, threshold=threshold,
        request={"operation": "SearchFacesByImage"},
    )
    call.report_threshold(found.threshold)
    detail = face_detail(rgb, probe)
    return {
        "SearchedFaceBoundingBox": detail["BoundingBox"],
        "SearchedFaceConfidence": detail["Confidence"],
        "FaceMatches": _matches(call, found[0].candidates, found.model),
        "FaceModelVersion": found.model,
    }


def create_user(call: Call) -> dict[str, Any]:
    collection_id = call.collection(Role.ENROLL)
    user_id = call.ident("UserId", _USER_ID, 128)
    basis = (call.headers.get("x-regard-consent-basis") or "").strip()
    expires_text = (call.headers.get("x-regard-consent-expires") or "").strip()
    expires = None
    if expires_text:
        try:
            expires = datetime.fromisoformat(expires_text)
        except ValueError:
            raise InvalidArgumentError("X-Regard-Consent-Expires is an ISO 8601 time with a zone") from None
    reference = (call.headers.get("x-regard-consent-reference") or "").strip() or None
    if basis:
        # Every check of the consent before the user is written: a refused consent leaves no user
        # behind (a retry would otherwise meet ConflictException).
        check_consent(basis, expires, datetime.now(timezone.utc))
        check_optional_text(reference, "X-Regard-Consent-Reference")
    elif expires_text or reference:
        raise InvalidArgumentError("X-Regard-Consent-Expires and -Reference need X-Regard-Consent-Basis")
    try:
        call.store.add_person(collection_id, user_id, actor=call.caller.actor)
    except AlreadyExistsError:
        raise AwsError("ConflictException", f"The user {user_id} already exists in {collection_id}") from None
    if basis:
        call.store.record_consent(
            collection_id,
            user_id,
            basis=ConsentBasis(basis),
            actor=call.caller.actor,
            expires_at=expires,
            reference=reference,
        )
    return {}


def delete_user(call: Call) -> dict[str, Any]:
    collection_id = call.collection(Role.ENROLL)
    user_id = call.ident("UserId", _USER_ID, 128)
    call.store.forget_person(collection_id, user_id, actor=call.caller.actor, reason=call.reason("DeleteUser"))
    return {}


def _status(person: Any) -> str:
    return "ACTIVE" if person.face_count else "CREATED"


def list_users(call: Call) -> dict[str, Any]:
    collection_id = call.collection(Role.ENROLL)
    max_results = call.number("MaxResults", 1, 500, 500)
    page, token = _page(call, call.store.list_persons(collection_id), max_results)
    out: dict[str, Any] = {"Users": [{"UserId": p.id, "UserStatus": _status(p)} for p in page]}
    if token:
        out["NextToken"] = token
    return out


def _user_faces(call: Call) -> tuple[str, str, list[tuple[str, str | None]]]:
    """The collection, the user, and for each face id asked: (face id, its user or None if unknown)."""
    collection_id = call.collection(Role.ENROLL)
    user_id = call.ident("UserId", _USER_ID, 128)
    call.store.get_person(collection_id, user_id)
    faces = []
    for face_id in _face_ids(call, most=100):
        try:
            faces.append((face_id, call.store.get_face(collection_id, face_id).person_id))
        except NotFoundError:
            faces.append((face_id, None))
    return collection_id, user_id, faces


def _refused(face_id: str, owner: str | None) -> dict[str, Any]:
    """An Unsuccessful(Dis)Association entry: the face is unknown, or another user's."""
    entry: dict[str, Any] = {"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND" if owner is None else "ASSOCIATED_TO_A_DIFFERENT_USER"]}
    if owner:
        entry["UserId"] = owner
    return entry


def associate_faces(call: Call) -> dict[str, Any]:
    # A face enrolled in Regard belongs to its consenting user from the start, so association only
    # confirms it; a face of another user cannot be moved (that user's consent covers it).
    collection_id, user_id, faces = _user_faces(call)
    associated, failed = [], []
    for face_id, owner in faces:
        if owner == user_id:
            associated.append({"FaceId": face_id})
        else:
            failed.append(_refused(face_id, owner))
    return {
        "AssociatedFaces": associated,
        "UnsuccessfulFaceAssociations": failed,
        "UserStatus": _status(call.store.get_person(collection_id, user_id)),
    }


def disassociate_faces(call: Call) -> dict[str, Any]:
    # A face without a consenting user has no basis to be kept: disassociating erases it.
    collection_id, user_id, faces = _user_faces(call)
    reason = call.reason("DisassociateFaces")
    done, failed = [], []
    for face_id, owner in faces:
        if owner == user_id:
            call.store.delete_face(collection_id, face_id, actor=call.caller.actor, reason=reason)
            done.append({"FaceId": face_id})
        else:
            failed.append(_refused(face_id, owner))
    return {
        "DisassociatedFaces": done,
        "UnsuccessfulFaceDisassociations": failed,
        "UserStatus": _status(call.store.get_person(collection_id, user_id)),
    }


def _user_matches(
    table: ThresholdTable, candidates: Sequence[Sequence[Candidate]], exclude: str | None, most: int
) -> list[dict[str, Any]]:
    """Users ranked by their best face among the candidates of every query (gallery.rank_persons,
    as the native API ranks persons), without faces of no user and without `exclude`."""
    pooled = [c for row in candidates for c in row if c.person_id and c.person_id != exclude]
    return [
        {"Similarity": similarity_of_score(table, p.score), "User": {"UserId": p.person_id, "UserStatus": "ACTIVE"}}
        for p in gallery.rank_persons(pooled, most)
    ]


def search_users(call: Call) -> dict[str, Any]:
    collection_id = call.collection(Role.SEARCH, check=False)
    user_id = call.ident("UserId", _USER_ID, 128, required=False)
    face_id = call.ident("FaceId", _FACE_ID, required=False)
    if (user_id is None) == (face_id is None):
        raise InvalidArgumentError("give exactly one of UserId and FaceId")
    most = call.number("MaxUsers", 1, 500, 500)
    threshold = call.threshold("UserMatchThreshold")
    purpose = call.purpose()
    if face_id is not None:
        record = call.store.get_face(collection_id, face_id)
        queries = [SearchQuery(call.store.face_vector(collection_id, face_id), {"face_id": face_id})]
        exclude = record.person_id
        searched: dict[str, Any] = {"SearchedFace": {"FaceId": face_id}}
    else:
        faces = call.store.list_faces(collection_id, user_id)
        if not faces:
            call.store.get_person(collection_id, user_id)  # unknown user: ResourceNotFoundException
            raise InvalidArgumentError(f"user {user_id} has no faces to search with")
        queries = [SearchQuery(call.store.face_vector(collection_id, f.face_id), {"face_id": f.face_id}) for f in faces]
        exclude = user_id
        searched = {"SearchedUser": {"UserId": user_id}}
    k = min(1000, most * 4 + 8)
    results = call.store.search(
        collection_id, queries, actor=call.caller.actor, purpose=purpose, k=k, threshold=threshold,
        request={"operation": "SearchUsers", "user_id": user_id, "face_id": face_id},
    )
    call.report_threshold(results.threshold)
    return {
        "UserMatches": _user_matches(call.store.table, results, exclude, most),
        "FaceModelVersion": results.model,
        **searched,
    }


def search_users_by_image(call: Call) -> dict[str, Any]:
    collection_id = call.collection(Role.SEARCH, check=False)
    most = call.number("MaxUsers", 1, 500, 500)
    level = call.quality_filter("NONE")
    threshold = call.threshold("UserMatchThreshold")
    purpose = call.purpose()
    rgb, digest, probe, others = _probe(call, level, collection_id)
    found = gallery.search_faces(
        call.store, collection_id, [probe], digest, actor=call.caller.actor, purpose=purpose,
        k=min(1000, most * 4 + 8), threshold=threshold, request={"operation": "SearchUsersByImage"},
    )
    call.report_threshold(found.threshold)
    return {
        "UserMatches": _user_matches(call.store.table, [found[0].candidates], None, most),
        "FaceModelVersion": found.model,
        "SearchedFace": {"FaceDetail": face_detail(rgb, probe)},
        "UnsearchedFaces": [{"FaceDetails": face_detail(rgb, f), "Reasons": ["FACE_NOT_LARGEST"]} for f in others],
    }


OPERATIONS: dict[str, Callable[[Call], dict[str, Any]]] = {
    "DetectFaces": detect_faces,
    "CompareFaces": compare_faces,
    "CreateCollection": create_collection,
    "DeleteCollection": delete_collection,
    "DescribeCollection": describe_collection,
    "ListCollections": list_collections,
    "IndexFaces": index_faces,
    "ListFaces": list_faces,
    "DeleteFaces": delete_faces,
    "SearchFaces": search_faces,
    "SearchFacesByImage": search_faces_by_image,
    "CreateUser": create_user,
    "DeleteUser": delete_user,
    "ListUsers": list_users,
    "AssociateFaces": associate_faces,
    "DisassociateFaces": disassociate_faces,
    "SearchUsers": search_users,
    "SearchUsersByImage": search_users_by_image,
}


# ---------------------------------------------------------------- the endpoint


def _photos_of(payload: dict[str, Any]) -> list[bytes]:
    """The photos a request carries (Image, SourceImage, TargetImage), for the pixel budget."""
    photos = []
    for name in ("Image", "SourceImage", "TargetImage"):
        image = payload.get(name)
        data = image.get("Bytes") if isinstance(image, dict) else None
        if isinstance(data, str):
            try:
                photos.append(base64.b64decode(data))
            except (binascii.Error, ValueError):
                pass  # Call.image says what is wrong with it
    return photos


def _handle(state: ServiceState, scope: dict[str, Any], headers: Mapping[str, str], body: bytes) -> JSONResponse:
    raw_path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"").decode("latin-1")
    keys: dict[str, ApiKey] = {}

    def secret_for(key_id: str) -> str:  # the key is read once, for its secret and for the caller
        keys[key_id], secret = state.keys.signing_key(key_id)
        return secret

    try:
        key_id = verify_sigv4(
            method=scope["method"],
            path=raw_path.decode("latin-1"),
            query=query,
            headers=headers,
            body=body,
            secret_for=secret_for,
            region=state.config.region,
        )
    except AuthError as exc:
        # Which headers were left unsigned is the client's own information: name them.
        detail = str(exc) if exc.reason == "unsigned header" else public_reason(exc)
        raise Unauthorized(f"the request signature was refused: {detail}") from None
    caller = Caller(keys[key_id])
    state.admit(caller)
    target = headers.get("x-amz-target", "")
    operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else None
    handler = OPERATIONS.get(operation or "")
    if handler is None:
        raise AwsError("UnknownOperationException", f"Regard does not provide the operation {target!r}")
    try:
        payload = jsonbody.parse(body or b"{}")
    except jsonbody.BadJson as exc:
        raise AwsError("SerializationException", "the request body is not valid JSON" if exc.syntax else str(exc)) from None
    if not isinstance(payload, dict):
        raise AwsError("SerializationException", "the request body must be a JSON object")
    call = Call(state, caller, headers, payload)
    with state.pixels.hold(declared_pixels(_photos_of(payload))):
        result = handler(call)
    return JSONResponse(result, media_type=AWS_JSON, headers=call.response_headers)


@router.post("/", include_in_schema=False)
async def rekognition(request: Request) -> JSONResponse:
    body = await request.body()
    return await run_in_threadpool(_handle, state_of(request), request.scope, request.headers, body)


__all__ = ["OPERATIONS", "AwsError", "face_detail", "router"]
