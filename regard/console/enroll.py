"""Enrolling a person's photos from the console (the collections section): each photo through
`regard.gallery.enroll`; a photo in which several faces could be the person's is drawn with its
faces numbered, as `regard detect` numbers them, and waits (pending.py) until one is picked."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from regard import gallery
from regard.console.collections import _enroller, _person_view, _when
from regard.console.common import form, see_other, signed_in, state
from regard.console.pending import PENDING_MINUTES, pending_for
from regard.console.pictures import numbered_faces
from regard.console.render import data_uri, page, words_for
from regard.console.session import Session
from regard.errors import (
    ConsentError,
    ImageError,
    InvalidArgumentError,
)
from regard.service.state import ServiceState, declared_pixels

router = APIRouter(prefix="/console", include_in_schema=False)

_USABLE = (11, 92, 173)  # a face that could be the person's: the console's blue
_UNUSABLE = (90, 90, 90)  # a face below the quality gate: grey


# ---------------------------------------------------------------- enrolling photos


@dataclass
class Outcome:
    """What became of one uploaded photo."""

    name: str
    kind: str  # enrolled, skipped, choose, no_usable_face, no_face, error
    face_ids: list[str] = field(default_factory=list)
    boxes: list[dict[str, float]] = field(default_factory=list)
    faces: list[dict[str, Any]] = field(default_factory=list)  # every face found, numbered, with its reasons
    message: str = ""


def _faces_of(not_enrolled: list[gallery.NotEnrolled]) -> list[dict[str, Any]]:
    """The faces of a photo that was not enrolled, numbered as regard detect numbers them (from 1)."""
    return [
        {
            "number": n.index + 1,
            "box": {k: round(float(v), 1) for k, v in n.face.box.to_dict().items()},
            "usable": gallery.Reason.MULTIPLE_FACES in n.reasons,
            "reasons": [r.value for r in n.reasons],
        }
        for n in sorted(not_enrolled, key=lambda n: n.index)
    ]


def _enroll_one(
    service: ServiceState, collection_id: str, person_id: str, key_id: str, actor: str, name: str, photo: bytes,
    choice: gallery.FaceChoice | None = None,
) -> Outcome:  # fmt: skip
    """Enroll one photo (the library decides whose face it is); a photo with several faces that
    could be the person's waits for a choice (`pending_for`)."""
    held = service.pixels.acquire(declared_pixels([photo]))
    try:
        result = gallery.enroll(
            service.store,
            collection_id,
            photo,
            person_id=person_id,
            actor=actor,
            max_pixels=service.config.max_pixels,
            face=choice,
        )
    except (ImageError, ConsentError, InvalidArgumentError) as exc:
        return Outcome(name, "error", message=str(exc))
    finally:
        service.pixels.release(held)
    if result.skipped:
        return Outcome(name, "skipped")
    if result.enrolled:
        return Outcome(
            name,
            "enrolled",
            face_ids=[r.face_id for r in result.enrolled],
            boxes=[{"left": r.box[0], "top": r.box[1], "width": r.box[2], "height": r.box[3]} for r in result.enrolled],
        )
    faces = _faces_of(result.not_enrolled)
    if any(f["usable"] for f in faces):
        token = pending_for(service.config).put(key_id, collection_id, person_id, name, photo, faces)
        return Outcome(name, "choose", faces=faces, message=token)
    return Outcome(name, "no_usable_face" if faces else "no_face", faces=faces)


def _draw(photo: bytes, faces: list[dict[str, Any]], max_pixels: int) -> str:
    """The photo with every face outlined and numbered: blue if it could be the person's, grey if
    below the quality gate. A JPEG data URI for the page."""
    rgb, _ = gallery.decode_photo(photo, max_pixels)
    drawn = [(f["number"], f["box"], _USABLE if f["usable"] else _UNUSABLE) for f in faces]
    return data_uri(numbered_faces(rgb, drawn), "image/jpeg")


def _choices(service: ServiceState, session: Session, collection_id: str, person_id: str) -> list[dict[str, Any]]:
    """The photos this key uploaded for the person that wait for a face to be picked, drawn."""
    shown = []
    pending = pending_for(service.config)
    for meta in pending.waiting(session.caller.key.key_id, collection_id, person_id):
        found = pending.get(meta["token"], session.caller.key.key_id, collection_id, person_id)
        if found is None:
            continue
        try:
            image = _draw(found[1], meta["faces"], service.config.max_pixels)
        except ImageError:
            continue
        shown.append({**meta, "image": image})
    return shown


def _enroll_page(
    request: Request,
    session: Session,
    collection_id: str,
    person_id: str,
    *,
    outcomes: list[Outcome] | None = None,
    error: str | None = None,
    status: int = 200,
    enrolled: str | None = None,
) -> Response:
    service = state(request)
    store = service.store
    words = words_for(request)
    collection = store.get_collection(collection_id)
    person = _person_view(store.get_person(collection_id, person_id), words, datetime.now(timezone.utc))
    faces = store.list_faces(collection_id, person_id)
    return page(
        request,
        "collections_enroll.html",
        session=session,
        status=status,
        collection=collection,
        person=person,
        faces=faces,
        when={f.face_id: _when(f.created_at) for f in faces},
        outcomes=outcomes or [],
        choices=_choices(service, session, collection_id, person_id),
        error=error,
        enrolled=enrolled if enrolled in {f.face_id for f in faces} else None,
        minutes=PENDING_MINUTES,
    )


@router.get("/collections/{collection_id}/persons/{person_id}/enroll", response_class=HTMLResponse)
def enroll_page(
    request: Request, collection_id: str, person_id: str, enrolled: str | None = None, session: Session = Depends(signed_in)
) -> Response:
    _enroller(session, collection_id)
    return _enroll_page(request, session, collection_id, person_id, enrolled=enrolled)


@router.post("/collections/{collection_id}/persons/{person_id}/enroll", response_class=HTMLResponse)
async def enroll(request: Request, collection_id: str, person_id: str, session: Session = Depends(signed_in)) -> Response:
    data = await form(request, session)
    _enroller(session, collection_id)
    words = words_for(request)
    service = state(request)
    person = service.store.get_person(collection_id, person_id)  # an unknown person: 404
    if person.consent is None or not person.consent.valid_at(datetime.now(timezone.utc)):
        return _enroll_page(request, session, collection_id, person_id, error=words("collections.enroll.no_consent"), status=409)
    uploads = [u for u in data.getlist("photos") if isinstance(u, UploadFile)]
    limit = service.config.max_image_bytes
    outcomes: list[Outcome] = []
    for upload in uploads:
        photo = await upload.read()
        name = (upload.filename or "").strip() or words("collections.enroll.unnamed")
        if not photo:
            continue
        if len(photo) > limit:
            outcomes.append(Outcome(name, "error", message=words("collections.enroll.too_large", size=len(photo), limit=limit)))
            continue
        outcomes.append(
            await run_in_threadpool(
                _enroll_one, service, collection_id, person_id, session.caller.key.key_id, session.caller.actor, name, photo
            )
        )
    if not outcomes:
        return _enroll_page(request, session, collection_id, person_id, error=words("collections.enroll.need_photo"), status=400)
    return _enroll_page(request, session, collection_id, person_id, outcomes=outcomes)


@router.post("/collections/{collection_id}/persons/{person_id}/enroll/choose", response_class=HTMLResponse)
async def choose(request: Request, collection_id: str, person_id: str, session: Session = Depends(signed_in)) -> Response:
    data = await form(request, session)
    _enroller(session, collection_id)
    words = words_for(request)
    service = state(request)
    service.store.get_person(collection_id, person_id)  # an unknown person: 404
    key_id = session.caller.key.key_id
    token = str(data.get("token") or "")
    found = pending_for(service.config).get(token, key_id, collection_id, person_id)
    if found is None:
        return _enroll_page(request, session, collection_id, person_id, error=words("collections.enroll.gone"), status=410)
    meta, _ = found
    usable = {int(f["number"]) for f in meta["faces"] if f["usable"]}
    try:
        number = int(str(data.get("face") or ""))
    except ValueError:
        number = 0
    if number not in usable:
        return _enroll_page(request, session, collection_id, person_id, error=words("collections.enroll.pick_one"), status=400)
    taken = pending_for(service.config).take(token, key_id, collection_id, person_id)  # the photo is deleted now, whatever follows
    if taken is None:
        return _enroll_page(request, session, collection_id, person_id, error=words("collections.enroll.gone"), status=410)
    outcome = await run_in_threadpool(
        _enroll_one, service, collection_id, person_id, key_id, session.caller.actor, meta["name"], taken[1],
        gallery.FaceChoice(index=number - 1),
    )  # fmt: skip
    if outcome.kind == "enrolled":
        return see_other(f"/console/collections/{collection_id}/persons/{person_id}/enroll?enrolled={outcome.face_ids[0]}")
    return _enroll_page(request, session, collection_id, person_id, outcomes=[outcome])
