"""The face operations: IndexFaces (for a consenting user, named by X-Regard-User-Id or the
ExternalImageId; one face a photo, or the one X-Regard-Face-Box / -Index names), ListFaces,
DeleteFaces, SearchFaces and SearchFacesByImage; and the probe face of a search by image
(`_probe`), which SearchUsersByImage uses too."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from regard import gallery
from regard.errors import InvalidArgumentError, NotFoundError
from regard.face import Face, QualityLevel
from regard.pipeline import detect
from regard.service import metrics
from regard.service.rekognition.call import _FACE_ID, _USER_ID, Call, _face_ids, _page
from regard.service.rekognition.detect import _largest, _passes
from regard.service.rekognition.shapes import (
    _REASONS,
    _face_shape,
    _ratio_box,
    face_detail,
)
from regard.service.rekognition.similarity import similarity_of_score
from regard.store.base import Candidate, Role


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
        {"Similarity": similarity_of_score(call.store.table_for(model), c.score), "Face": _face_shape(c.face, model)}  # type: ignore[arg-type]
        for c in candidates
    ]


def search_faces(call: Call) -> dict[str, Any]:
    collection_id = call.collection(Role.SEARCH, check=False)
    face_id = call.ident("FaceId", _FACE_ID)
    k = min(call.number("MaxFaces", 1, 4096, 100), 999)
    threshold = call.threshold("FaceMatchThreshold", table=call.table_of(collection_id))
    found = gallery.search_face(
        call.store, collection_id, face_id, actor=call.caller.actor, purpose=(purpose := call.purpose()), k=k, threshold=threshold
    )
    call.report_threshold(found.threshold, call.store.table_for(found.model))
    metrics.searched(collection_id, purpose)
    return {"SearchedFaceId": face_id, "FaceMatches": _matches(call, found, found.model), "FaceModelVersion": found.model}


def _probe(call: Call, level: QualityLevel | None, collection_id: str) -> tuple[np.ndarray, str, Face, list[Face]]:
    """The photo, its sha256, its largest face that passes the filter, and the others."""
    rgb, digest = call.image()
    model = call.store.model_of(collection_id)  # an unknown collection says so here, before the photo's faces
    call.store.table_for(model)  # and one whose model is not calibrated
    faces = detect(rgb, model=model)
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
    threshold = call.threshold("FaceMatchThreshold", table=call.table_of(collection_id))
    purpose = call.purpose()
    rgb, digest, probe, _ = _probe(call, level, collection_id)
    found = gallery.search_faces(
        call.store, collection_id, [probe], digest, actor=call.caller.actor, purpose=purpose, k=k, threshold=threshold,
        request={"operation": "SearchFacesByImage"}, model=call.store.model_of(collection_id),
    )
    call.report_threshold(found.threshold, call.store.table_for(found.model))
    metrics.searched(collection_id, purpose)
    detail = face_detail(rgb, probe)
    return {
        "SearchedFaceBoundingBox": detail["BoundingBox"],
        "SearchedFaceConfidence": detail["Confidence"],
        "FaceMatches": _matches(call, found[0].candidates, found.model),
        "FaceModelVersion": found.model,
    }
