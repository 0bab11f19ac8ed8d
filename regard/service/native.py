"""The native JSON API, under /v1. Thin: it parses, checks the caller's role and scope, calls the
library (regard.pipeline, regard.gallery, the store) and formats; semantics and errors are the
library's and the CLI's.

Photos come as multipart/form-data file fields or as base64 strings in a JSON body (same field
names). Every call needs `Authorization: Bearer KEY_ID.SECRET`.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from regard import gallery
from regard.errors import (
    InvalidArgumentError,
    NoFaceError,
    NotFoundError,
)
from regard.face import QualityLevel
from regard.pipeline import compare, detect, embed
from regard.service import metrics
from regard.service.auth import Caller
from regard.service.deps import Upload, bearer, upload
from regard.service.state import ServiceState, state_of
from regard.store.base import ConsentBasis, Role
from regard.store.core import Store, expectations

router = APIRouter(prefix="/v1")


def _erasure(store: Store) -> dict[str, Any]:
    """What an erasure's answer says of its traces: complete, or (SQLite, while a reader holds the
    write-ahead log) still being cleared in the background."""
    if store.erasure_pending:
        return {"erasure_complete": False, "note": "the rows are gone; their old copies in the write-ahead log are "
                "cleared as soon as the reader holding it ends"}  # fmt: skip
    return {"erasure_complete": True}


def _photo_body(*names: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAPI description of a body with photos, in both encodings."""
    file_props = {n: {"type": "string", "format": "binary"} for n in names}
    b64_props = {n: {"type": "string", "format": "byte", "description": "base64"} for n in names}
    extra = fields or {}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": {**file_props, **extra}, "required": list(names)}},
                "application/json": {"schema": {"type": "object", "properties": {**b64_props, **extra}, "required": list(names)}},
            },
        }
    }


def _decode(state: ServiceState, data: bytes) -> tuple[Any, str]:
    return gallery.decode_photo(data, state.config.max_pixels)


# ---------------------------------------------------------------- detect and compare


@router.post("/detect", tags=["faces"], openapi_extra=_photo_body("image"))
def detect_faces(request: Request, caller: Caller = Depends(bearer), body: Upload = Depends(upload)) -> dict[str, Any]:
    """Every face in a photo: box (pixels), landmarks, quality. Nothing is stored or searched."""
    caller.require(Role.DETECT)
    state = state_of(request)
    rgb, _ = _decode(state, body.photo("image"))  # type: ignore[arg-type]
    faces = detect(rgb, embed=False)
    metrics.faces_detected(len(faces))
    return {"width": rgb.shape[1], "height": rgb.shape[0], "faces": [f.to_dict() for f in faces]}


@router.post(
    "/compare",
    tags=["faces"],
    openapi_extra=_photo_body("source", "target", fields={"threshold": {"type": "number"}, "fmr": {"type": "number"}}),
)
def compare_faces(request: Request, caller: Caller = Depends(bearer), body: Upload = Depends(upload)) -> dict[str, Any]:
    """Compare the main faces of two photos: score 0-100, the threshold used and its false-match rate."""
    caller.require(Role.DETECT)
    state = state_of(request)
    vectors = []
    for name in ("source", "target"):  # as regard.compare: the main face of each photo
        rgb, _ = _decode(state, body.photo(name))  # type: ignore[arg-type]
        try:
            vectors.append(embed(rgb))
        except NoFaceError:
            raise NoFaceError(f"no face found in the {name} photo") from None
    result = compare(vectors[0], vectors[1], threshold=body.number("threshold", float), fmr=body.number("fmr", float))
    return result.to_dict()


# ---------------------------------------------------------------- collections


class NewCollection(BaseModel):
    id: str
    purpose: str = Field(description="what the collection is for; recorded with every search")
    retention_days: int | None = None
    min_quality: QualityLevel = QualityLevel.MEDIUM
    store_thumbnails: bool = False
    model: str | None = Field(default=None, description="the recognition model (a registered one's name or id); default: the built-in one")


class ThresholdChange(BaseModel):
    threshold: float | None = Field(description="a score 0-100, or null for the size-based default")
    reason: str


def _collection_dict(store: Store, collection_id: str) -> dict[str, Any]:
    out = store.get_collection(collection_id).to_dict()
    out["search_threshold"] = store.search_threshold(collection_id)
    out["search_expected"] = store.search_expectations(collection_id)
    return out


@router.get("/collections", tags=["collections"])
def list_collections(request: Request, caller: Caller = Depends(bearer)) -> dict[str, Any]:
    """The collections this key may see."""
    store = state_of(request).store
    return {"collections": [c.to_dict() for c in store.list_collections() if caller.may_see(c.id)]}


@router.post("/collections", tags=["collections"], status_code=201)
def create_collection(request: Request, new: NewCollection, caller: Caller = Depends(bearer)) -> dict[str, Any]:
    caller.require(Role.ADMIN, new.id)
    store = state_of(request).store
    store.create_collection(
        new.id,
        purpose=new.purpose,
        actor=caller.actor,
        retention_days=new.retention_days,
        min_quality=new.min_quality,
        store_thumbnails=new.store_thumbnails,
        model=new.model,
    )
    return _collection_dict(store, new.id)


def _visible(caller: Caller, collection_id: str) -> None:
    """A key scoped to other collections learns nothing about this one, not even that it exists."""
    if not caller.may_see(collection_id):
        raise NotFoundError(f"no collection {collection_id!r}")


@router.get("/collections/{collection_id}", tags=["collections"])
def describe_collection(request: Request, collection_id: str, caller: Caller = Depends(bearer)) -> dict[str, Any]:
    _visible(caller, collection_id)
    return _collection_dict(state_of(request).store, collection_id)


@router.delete("/collections/{collection_id}", tags=["collections"])
def delete_collection(
    request: Request, collection_id: str, reason: str = Query(...), caller: Caller = Depends(bearer)
) -> dict[str, Any]:
    """Delete a collection and erase every face in it."""
    caller.require(Role.ADMIN, collection_id)
    erased = state_of(request).store.delete_collection(collection_id, actor=caller.actor, reason=reason)
    return {"deleted": collection_id, "faces_erased": erased, **_erasure(state_of(request).store)}


@router.put("/collections/{collection_id}/threshold", tags=["collections"])
def set_threshold(
    request: Request, collection_id: str, change: ThresholdChange, caller: Caller = Depends(bearer)
) -> dict[str, Any]:
    caller.require(Role.ADMIN, collection_id)
    store = state_of(request).store
    store.set_threshold(collection_id, change.threshold, actor=caller.actor, reason=change.reason, source={"via": "api"})
    return _collection_dict(store, collection_id)


# ---------------------------------------------------------------- persons and consent


class NewPerson(BaseModel):
    id: str
    display_name: str | None = None


class ConsentRecord(BaseModel):
    basis: ConsentBasis = ConsentBasis.CONSENT
    expires_at: datetime | None = Field(default=None, description="ISO 8601 with a time zone")
    reference: str | None = Field(default=None, description="e.g. the id of the signed release")


@router.get("/collections/{collection_id}/persons", tags=["persons"])
def list_persons(request: Request, collection_id: str, caller: Caller = Depends(bearer)) -> dict[str, Any]:
    caller.require(Role.ENROLL, collection_id)
    return {"persons": [p.to_dict() for p in state_of(request).store.list_persons(collection_id)]}


@router.post("/collections/{collection_id}/persons", tags=["persons"], status_code=201)
def add_person(request: Request, collection_id: str, new: NewPerson, caller: Caller = Depends(bearer)) -> dict[str, Any]:
    caller.require(Role.ENROLL, collection_id)
    person = state_of(request).store.add_person(collection_id, new.id, actor=caller.actor, display_name=new.display_name)
    return person.to_dict()


@router.get("/collections/{collection_id}/persons/{person_id}", tags=["persons"])
def get_person(request: Request, collection_id: str, person_id: str, caller: Caller = Depends(bearer)) -> dict[str, Any]:
    caller.require(Role.ENROLL, collection_id)
    return state_of(request).store.get_person(collection_id, person_id).to_dict()


@router.delete("/collections/{collection_id}/persons/{person_id}", tags=["persons"])
def forget_person(
    request: Request, collection_id: str, person_id: str, reason: str = Query(...), caller: Caller = Depends(bearer)
) -> dict[str, Any]:
    """Forget a person: faces, vectors, thumbnails, consent and the person record are erased."""
    caller.require(Role.ENROLL, collection_id)
    erased = state_of(request).store.forget_person(collection_id, person_id, actor=caller.actor, reason=reason)
    return {"forgotten": person_id, "faces_erased": erased, **_erasure(state_of(request).store)}


@router.put("/collections/{collection_id}/persons/{person_id}/consent", tags=["persons"])
def record_consent(
    request: Request, collection_id: str, person_id: str, consent: ConsentRecord, caller: Caller = Depends(bearer)
) -> dict[str, Any]:
    caller.require(Role.ENROLL, collection_id)
    record = state_of(request).store.record_consent(
        collection_id,
        person_id,
        basis=consent.basis,
        actor=caller.actor,
        expires_at=consent.expires_at,
        reference=consent.reference,
    )
    return record.to_dict()


@router.delete("/collections/{collection_id}/persons/{person_id}/consent", tags=["persons"])
def revoke_consent(
    request: Request, collection_id: str, person_id: str, reason: str = Query(...), caller: Caller = Depends(bearer)
) -> dict[str, Any]:
    """Withdraw consent: every face enrolled under it is erased."""
    caller.require(Role.ENROLL, collection_id)
    erased = state_of(request).store.revoke_consent(collection_id, person_id, actor=caller.actor, reason=reason)
    return {"revoked": person_id, "faces_erased": erased, **_erasure(state_of(request).store)}


# ---------------------------------------------------------------- faces


@router.post(
    "/collections/{collection_id}/persons/{person_id}/faces",
    tags=["faces"],
    status_code=201,
    openapi_extra=_photo_body(
        "image",
        fields={
            "external_image_id": {"type": "string"},
            "face_index": {
                "type": "integer",
                "description": "in a photo of several people: the person's face, by its position (from 0) in "
                "the faces /v1/detect lists",
            },
            "face_box": {
                "type": "string",
                "description": "in a photo of several people: the person's face, by its box in pixels, "
                "\"left,top,width,height\" (the detected face it overlaps most)",
            },
        },
    ),
)
def enroll_face(
    request: Request,
    collection_id: str,
    person_id: str,
    caller: Caller = Depends(bearer),
    body: Upload = Depends(upload),
) -> dict[str, Any]:
    """Enroll the person's face of a photo, for a person with a valid consent record.

    A photo in which several faces pass the quality gate is enrolled only if `face_index` or
    `face_box` names the person's face, or exactly one of them matches the person's enrolled faces;
    otherwise nothing is stored and every such face is listed with the reason MULTIPLE_FACES."""
    caller.require(Role.ENROLL, collection_id)
    state = state_of(request)
    index, box = body.number("face_index", int), body.text("face_box")
    if index is not None and box:
        raise InvalidArgumentError("name the face by face_index or by face_box, not both")
    choice = gallery.FaceChoice(index=index) if index is not None else gallery.FaceChoice.parse_box(box) if box else None
    result = gallery.enroll(
        state.store,
        collection_id,
        body.photo("image"),  # type: ignore[arg-type]
        person_id=person_id,
        actor=caller.actor,
        external_image_id=body.text("external_image_id"),
        max_pixels=state.config.max_pixels,
        face=choice,
    )
    return result.to_dict()


@router.get("/collections/{collection_id}/faces", tags=["faces"])
def list_faces(
    request: Request, collection_id: str, person_id: str | None = None, caller: Caller = Depends(bearer)
) -> dict[str, Any]:
    caller.require(Role.ENROLL, collection_id)
    return {"faces": [f.to_dict() for f in state_of(request).store.list_faces(collection_id, person_id)]}


@router.delete("/collections/{collection_id}/faces/{face_id}", tags=["faces"])
def delete_face(
    request: Request, collection_id: str, face_id: str, reason: str = Query(...), caller: Caller = Depends(bearer)
) -> dict[str, Any]:
    caller.require(Role.ENROLL, collection_id)
    state_of(request).store.delete_face(collection_id, face_id, actor=caller.actor, reason=reason)
    return {"deleted": face_id, **_erasure(state_of(request).store)}


# ---------------------------------------------------------------- search


@router.post(
    "/collections/{collection_id}/search",
    tags=["search"],
    openapi_extra=_photo_body(
        "image",
        fields={
            "purpose": {"type": "string", "description": "why this search is made (required, audit-logged)"},
            "k": {"type": "integer", "default": 10},
            "threshold": {"type": "number"},
            "largest": {"type": "boolean", "default": False, "description": "search only the largest face"},
        },
    ),
)
def search(
    request: Request, collection_id: str, caller: Caller = Depends(bearer), body: Upload = Depends(upload)
) -> dict[str, Any]:
    """Search a collection for every face of the photo (only the largest with `largest`), or for an
    enrolled face (`face_id` instead of a photo). Each face comes back with its box, the persons it
    may be (ranked by their best face, with the face ids that matched) and the faces themselves.
    `purpose` is required; the search is one audit entry listing every face searched."""
    caller.require(Role.SEARCH, collection_id)
    state = state_of(request)
    purpose = body.text("purpose")
    if not purpose or not purpose.strip():
        raise InvalidArgumentError("a search needs a 'purpose': why it is made (it is written to the audit log)")
    k = body.number("k", int, 10)
    threshold = body.number("threshold", float)  # None: the collection's own, else the default for its size
    face_id = body.text("face_id")
    store = state.store
    found: gallery.Found[Any]
    if face_id is not None:
        found = gallery.search_face(
            store, collection_id, face_id, actor=caller.actor, purpose=purpose, k=k, threshold=threshold
        )
        hits = [{"face_id": face_id, "candidates": [c.to_dict() for c in found]}]
    else:
        found = gallery.search_photo(
            store,
            collection_id,
            body.photo("image"),  # type: ignore[arg-type]
            actor=caller.actor,
            purpose=purpose,
            largest=body.flag("largest"),
            k=k,
            threshold=threshold,
            max_pixels=state.config.max_pixels,
        )
        hits = [h.to_dict() for h in found]
    metrics.searched(collection_id, purpose)
    return {
        "collection": collection_id,
        "threshold": found.threshold,
        "threshold_fmr": store.table_for(found.model).fmr_estimate(found.threshold),
        "expected": expectations(store.table_for(found.model), found.threshold, found.gallery_size, found.collection_threshold),
        "note": "candidates for a person to review, not identifications",
        "faces": hits,
    }


# ---------------------------------------------------------------- audit log


@router.get("/audit", tags=["audit"])
def audit_log(
    request: Request,
    collection: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(1000, ge=1, le=100_000),
    caller: Caller = Depends(bearer),
) -> dict[str, Any]:
    """Audit entries, oldest first (admin keys). A key scoped to collections sees only the entries
    of those collections; store-wide entries (keys, migrations) only an unscoped admin key sees."""
    caller.require(Role.ADMIN, collection)
    store = state_of(request).store
    scope = caller.key.collections
    if collection is not None or scope is None:
        entries = store.audit_entries(collection=collection, action=action, actor=actor, since=since, until=until, limit=limit)
    else:
        entries = sorted(
            (
                e
                for c in scope
                for e in store.audit_entries(collection=c, action=action, actor=actor, since=since, until=until, limit=limit)
            ),
            key=lambda e: e.seq,
        )[:limit]
    return {"entries": [e.as_dict() for e in entries]}


@router.get("/audit/verify", tags=["audit"])
def audit_verify(request: Request, caller: Caller = Depends(bearer)) -> dict[str, Any]:
    """Check the audit log's hash chain from the first entry to the head. A key scoped to
    collections learns whether the whole chain verifies and its head, not which entries failed
    (they may be other collections')."""
    caller.require(Role.ADMIN)
    report = state_of(request).store.verify_audit()
    if caller.key.collections is not None:
        return {"ok": report.ok, "head_seq": report.head_seq, "head_hash": report.head_hash}
    return dataclasses.asdict(report)
