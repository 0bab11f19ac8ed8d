"""The console's collections section: collections, the persons in them and their consent, and
enrolling a person's photos (picking their face when a photo holds several).

Role `enroll` on the collection to see it and act on its persons (add, record or revoke consent,
forget, enroll); `admin` to create a collection or set its threshold, as in the native API. A key
scoped to other collections learns nothing of this one: it is not listed, and its pages answer 404.
Every change is the library's (the store's or `regard.gallery.enroll`), audited with the key as
the actor.

A photo in which several faces could be the person's is not enrolled (gallery's face choice rules):
the page draws its faces, numbered as `regard detect` numbers them, and asks which one. Until the
choice the photo waits in a temporary file of this process (`Pending`), usable only by the key that
uploaded it, deleted once the choice is made or after `PENDING_MINUTES`, whichever comes first.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from PIL import Image, ImageDraw, ImageFont
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from regard import gallery
from regard.console.common import form, see_other, signed_in, state
from regard.console.i18n import Words
from regard.console.render import data_uri, page, words_for
from regard.console.session import Session
from regard.errors import (
    AlreadyExistsError,
    ConsentError,
    ImageError,
    InvalidArgumentError,
    NotFoundError,
)
from regard.face import QualityLevel
from regard.match import DEFAULT_FPIR
from regard.service.errors import classify
from regard.service.state import ServiceState, declared_pixels
from regard.store.base import ID_PATTERN, Collection, ConsentBasis, Person, Role

router = APIRouter(prefix="/console", include_in_schema=False)

PENDING_MINUTES = 15
"""How long a photo waiting for its face to be picked is kept, at most."""
PENDING_PER_KEY = 20
"""Photos waiting for a choice per key at most; the oldest goes first."""
PREVIEW_SIDE = 1280
"""The longest side of a photo as drawn in the page, in pixels."""
_USABLE = (11, 92, 173)  # a face that could be the person's: the console's blue
_UNUSABLE = (90, 90, 90)  # a face below the quality gate: grey


# ---------------------------------------------------------------- who may see and do what


def _visible(session: Session, collection_id: str) -> None:
    """A key scoped to other collections learns nothing about this one, not even that it exists."""
    if not session.caller.may_see(collection_id):
        raise NotFoundError(f"no collection {collection_id!r}")


def _enroller(session: Session, collection_id: str) -> None:
    """What every page about one collection and its persons needs: to see it, and role enroll on it."""
    _visible(session, collection_id)
    session.caller.require(Role.ENROLL, collection_id)


# ---------------------------------------------------------------- words


def _percent(rate: float | None) -> str:
    if rate is None:
        return "?"
    return f"{rate * 100:.0f} %" if rate >= 0.1 else f"{rate * 100:.2g} %"


def expectation_words(service: ServiceState, collection: Collection, words: Words) -> str:
    """The threshold of a collection and what a search at it may be expected to do, in plain words:
    the library's own words in English, the same figures in the page's language otherwise."""
    store = service.store
    expected = store.search_expectations(collection.id)
    if words.lang == "en":
        return str(expected["words"])
    threshold = float(expected["threshold"])
    own = collection.threshold is not None and threshold == collection.threshold
    text = words(
        "collections.expect.fpir",
        threshold=f"{threshold:.1f}",
        set_by=words("collections.expect.set" if own else "collections.expect.default"),
        faces=expected["gallery_faces"],
        fpir=_percent(expected["expected_fpir"]),
        target=_percent(DEFAULT_FPIR),
    )
    fnir = expected["expected_fnir"]
    if fnir.get("1") is not None:
        text += words(
            "collections.expect.fnir",
            one=_percent(fnir["1"]),
            two=_percent(fnir["2"]),
            three=_percent(fnir["3"]),
            source=store.table.source.split(":")[0],
        )
    return text


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class PersonView:
    id: str
    display_name: str | None
    faces: int
    consent: str  # "valid", "expired" or "none"
    basis: str | None
    reference: str | None
    recorded: str
    recorded_by: str | None
    expires: str
    erase_revoke: str  # what revoking the consent erases, in words (the confirmation and the page)
    erase_forget: str  # what forgetting the person erases


def _person_view(person: Person, words: Words, now: datetime) -> PersonView:
    consent = person.consent
    state_ = "none" if consent is None else ("valid" if consent.valid_at(now) else "expired")
    name = person.display_name or person.id
    return PersonView(
        id=person.id,
        display_name=person.display_name,
        faces=person.face_count,
        consent=state_,
        basis=consent.basis.value if consent else None,
        reference=consent.reference if consent else None,
        recorded=_when(consent.recorded_at) if consent else "",
        recorded_by=consent.recorded_by if consent else None,
        expires=_when(consent.expires_at) if consent else "",
        erase_revoke=words("collections.erase.revoke", faces=person.face_count, person=name),
        erase_forget=words("collections.erase.forget", faces=person.face_count, person=name),
    )


# ---------------------------------------------------------------- the list and creating a collection


def _list_page(
    request: Request, session: Session, *, error: str | None = None, status: int = 200, entered: dict[str, str] | None = None
) -> Response:
    store = state(request).store
    collections = [c for c in store.list_collections() if session.caller.may_see(c.id)]
    thresholds = {c.id: f"{store.search_threshold(c.id):.1f}" for c in collections}
    return page(
        request,
        "collections_list.html",
        session=session,
        status=status,
        collections=collections,
        thresholds=thresholds,
        qualities=[q.value for q in QualityLevel],
        default_quality=QualityLevel.MEDIUM.value,
        entered=entered or {},
        error=error,
    )


@router.get("/collections", response_class=HTMLResponse)
def list_collections(request: Request, session: Session = Depends(signed_in)) -> Response:
    session.caller.require(Role.ENROLL)
    return _list_page(request, session)


@router.post("/collections")
async def create_collection(request: Request, session: Session = Depends(signed_in)) -> Response:
    data = await form(request, session)
    words = words_for(request)
    entered = {name: str(data.get(name) or "").strip() for name in ("id", "purpose", "retention_days", "min_quality")}
    collection_id = entered["id"]
    session.caller.require(Role.ADMIN, collection_id or None)  # a scoped admin creates only in its scope
    retention: int | None = None
    try:
        if entered["retention_days"]:
            try:
                retention = int(entered["retention_days"])
            except ValueError:
                raise InvalidArgumentError(words("collections.bad_retention")) from None
        if not entered["purpose"]:
            raise InvalidArgumentError(words("collections.need_purpose"))
        try:
            quality = QualityLevel(entered["min_quality"] or QualityLevel.MEDIUM.value)
        except ValueError:
            raise InvalidArgumentError(words("collections.bad_quality")) from None
        state(request).store.create_collection(
            collection_id,
            purpose=entered["purpose"],
            actor=session.caller.actor,
            retention_days=retention,
            min_quality=quality,
        )
    except (InvalidArgumentError, AlreadyExistsError) as exc:
        _, status, _ = classify(exc)
        return _list_page(request, session, error=str(exc), status=status, entered=entered)
    return see_other(f"/console/collections/{collection_id}?done=created")


# ---------------------------------------------------------------- describing a collection, its persons

_ID = ID_PATTERN
_DONE = {"created", "threshold", "person_added", "consent", "revoked", "forgotten"}
"""The changes a page may report after its redirect (?done=...)."""


def _describe_page(
    request: Request,
    session: Session,
    collection_id: str,
    *,
    error: str | None = None,
    status: int = 200,
    about: str | None = None,
    entered: dict[str, str] | None = None,
    done: str | None = None,
) -> Response:
    service = state(request)
    store = service.store
    words = words_for(request)
    collection = store.get_collection(collection_id)
    now = datetime.now(timezone.utc)
    persons = [_person_view(p, words, now) for p in store.list_persons(collection_id)]
    threshold = store.search_threshold(collection_id)
    return page(
        request,
        "collections_describe.html",
        session=session,
        status=status,
        collection=collection,
        created=_when(collection.created_at),
        threshold=f"{threshold:.1f}",
        threshold_fmr=f"{store.table.fmr_estimate(threshold):.2g}",
        expected=expectation_words(service, collection, words),
        persons=persons,
        bases=[b.value for b in ConsentBasis],
        error=error,
        # Where the error shows: by the form it is about (its section open), else at the top.
        place=about if about in {"threshold", "add", *(f"person:{p.id}" for p in persons)} else None,
        entered=entered or {},
        done=done,
    )


@router.get("/collections/{collection_id}", response_class=HTMLResponse)
def describe(
    request: Request,
    collection_id: str,
    done: str | None = None,
    person: str | None = None,
    faces: int | None = None,
    session: Session = Depends(signed_in),
) -> Response:
    _enroller(session, collection_id)
    message = None
    if done in _DONE and (person is None or _ID.fullmatch(person)):
        message = words_for(request)(f"collections.done.{done}", person=person or "", faces=faces or 0)
    return _describe_page(request, session, collection_id, done=message)


def _back(collection_id: str, done: str, person: str | None = None, faces: int | None = None) -> Response:
    query = f"?done={done}"
    if person is not None:
        query += f"&person={person}"  # an id: letters, digits, '_', '.', '-' only
    if faces is not None:
        query += f"&faces={faces}"
    anchor = f"#person-{person}" if person is not None and done != "forgotten" else ""
    return see_other(f"/console/collections/{collection_id}{query}{anchor}")


@router.post("/collections/{collection_id}/threshold")
async def set_threshold(request: Request, collection_id: str, session: Session = Depends(signed_in)) -> Response:
    data = await form(request, session)
    _visible(session, collection_id)
    session.caller.require(Role.ADMIN, collection_id)
    words = words_for(request)
    text = str(data.get("threshold") or "").strip()
    reason = str(data.get("reason") or "").strip()
    try:
        try:
            threshold = float(text) if text else None
        except ValueError:
            raise InvalidArgumentError(words("collections.bad_threshold")) from None
        if not reason:
            raise InvalidArgumentError(words("collections.need_reason"))
        state(request).store.set_threshold(
            collection_id, threshold, actor=session.caller.actor, reason=reason, source={"via": "console"}
        )
    except InvalidArgumentError as exc:
        entered = {"threshold": text, "threshold_reason": reason}
        return _describe_page(request, session, collection_id, error=str(exc), status=400, about="threshold", entered=entered)
    return _back(collection_id, "threshold")


@router.post("/collections/{collection_id}/persons")
async def add_person(request: Request, collection_id: str, session: Session = Depends(signed_in)) -> Response:
    data = await form(request, session)
    _enroller(session, collection_id)
    person_id = str(data.get("person_id") or "").strip()
    display_name = str(data.get("display_name") or "").strip() or None
    try:
        state(request).store.add_person(collection_id, person_id, actor=session.caller.actor, display_name=display_name)
    except (InvalidArgumentError, AlreadyExistsError) as exc:
        _, status, _ = classify(exc)
        entered = {"person_id": person_id, "display_name": display_name or ""}
        return _describe_page(request, session, collection_id, error=str(exc), status=status, about="add", entered=entered)
    return _back(collection_id, "person_added", person_id)


def _expiry(text: str, words: Words) -> datetime | None:
    """A consent's expiry from a date field (YYYY-MM-DD): the start of that day, UTC."""
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise InvalidArgumentError(words("collections.bad_expiry")) from None
    return day.replace(tzinfo=timezone.utc)


@router.post("/collections/{collection_id}/persons/{person_id}/consent")
async def record_consent(
    request: Request, collection_id: str, person_id: str, session: Session = Depends(signed_in)
) -> Response:
    data = await form(request, session)
    _enroller(session, collection_id)
    words = words_for(request)
    store = state(request).store
    store.get_person(collection_id, person_id)  # an unknown person: 404
    try:
        basis_text = str(data.get("basis") or "")
        try:
            basis = ConsentBasis(basis_text)
        except ValueError:
            raise InvalidArgumentError(words("collections.bad_basis")) from None
        store.record_consent(
            collection_id,
            person_id,
            basis=basis,
            actor=session.caller.actor,
            expires_at=_expiry(str(data.get("expires") or "").strip(), words),
            reference=str(data.get("reference") or "").strip() or None,
        )
    except InvalidArgumentError as exc:
        return _describe_page(request, session, collection_id, error=str(exc), status=400, about=f"person:{person_id}")
    return _back(collection_id, "consent", person_id)


async def _erase(request: Request, collection_id: str, person_id: str, session: Session, *, forget: bool) -> Response:
    data = await form(request, session)
    _enroller(session, collection_id)
    words = words_for(request)
    store = state(request).store
    store.get_person(collection_id, person_id)  # an unknown person: 404
    reason = str(data.get("reason") or "").strip()
    if not reason:
        return _describe_page(
            request, session, collection_id, error=words("collections.need_reason"), status=400, about=f"person:{person_id}"
        )
    erase = store.forget_person if forget else store.revoke_consent
    erased = erase(collection_id, person_id, actor=session.caller.actor, reason=reason)
    PENDING.drop(collection_id, person_id)  # photos of theirs waiting for a face to be picked go too
    return _back(collection_id, "forgotten" if forget else "revoked", person_id, erased)


@router.post("/collections/{collection_id}/persons/{person_id}/revoke")
async def revoke_consent(
    request: Request, collection_id: str, person_id: str, session: Session = Depends(signed_in)
) -> Response:
    return await _erase(request, collection_id, person_id, session, forget=False)


@router.post("/collections/{collection_id}/persons/{person_id}/forget")
async def forget_person(
    request: Request, collection_id: str, person_id: str, session: Session = Depends(signed_in)
) -> Response:
    return await _erase(request, collection_id, person_id, session, forget=True)


# ---------------------------------------------------------------- photos waiting for a face to be picked

_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")


class Pending:
    """Photos waiting for their person's face to be picked: each a file in a private temporary
    folder of this process (mode 0700, files 0600), named by a random token and bound to the key
    that uploaded it, the collection and the person. A photo goes once its face is picked, once
    its person's consent is revoked or they are forgotten, after `PENDING_MINUTES` (a background
    sweep), or when the process ends."""

    def __init__(self, minutes: float = PENDING_MINUTES) -> None:
        self.seconds = minutes * 60
        self._lock = threading.Lock()
        self._dir: str | None = None
        self._sweeper: threading.Thread | None = None

    def _folder(self) -> str:
        with self._lock:
            if self._dir is None or not os.path.isdir(self._dir):
                self._dir = tempfile.mkdtemp(prefix="regard-console-enroll-")
                atexit.register(shutil.rmtree, self._dir, True)
            if self._sweeper is None or not self._sweeper.is_alive():
                self._sweeper = threading.Thread(target=self._sweep_forever, name="regard-console-pending", daemon=True)
                self._sweeper.start()
            return self._dir

    def _paths(self, token: str) -> tuple[str, str]:
        folder = self._folder()
        return os.path.join(folder, f"{token}.photo"), os.path.join(folder, f"{token}.json")

    @staticmethod
    def _write(path: str, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)

    def put(self, key_id: str, collection: str, person: str, name: str, photo: bytes, faces: list[dict[str, Any]]) -> str:
        """Keep a photo for its face to be picked; its token."""
        token = secrets.token_urlsafe(24)  # 32 characters
        photo_path, meta_path = self._paths(token)
        meta = {"key": key_id, "collection": collection, "person": person, "name": name, "created": time.time(), "faces": faces}
        self._write(photo_path, photo)
        self._write(meta_path, json.dumps(meta).encode())
        mine = self._all(lambda m: m["key"] == key_id)
        for old in sorted(mine, key=lambda m: m["created"])[:-PENDING_PER_KEY]:
            self._remove(old["token"])
        return token

    def _meta(self, token: str) -> dict[str, Any] | None:
        if not _TOKEN.fullmatch(token):
            return None
        _, meta_path = self._paths(token)
        try:
            with open(meta_path, encoding="utf-8") as source:
                meta = dict(json.load(source))
        except (OSError, ValueError):
            return None
        if time.time() - float(meta["created"]) > self.seconds:
            self._remove(token)
            return None
        meta["token"] = token
        meta["expires"] = _when(datetime.fromtimestamp(float(meta["created"]) + self.seconds, timezone.utc))
        return meta

    def _all(self, keep: Any) -> list[dict[str, Any]]:
        found = []
        for entry in sorted(os.listdir(self._folder())):
            if entry.endswith(".json"):
                meta = self._meta(entry[: -len(".json")])
                if meta is not None and keep(meta):
                    found.append(meta)
        return found

    def _remove(self, token: str) -> None:
        for path in self._paths(token):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def waiting(self, key_id: str, collection: str, person: str) -> list[dict[str, Any]]:
        """The photos this key uploaded for this person that wait for a choice, oldest first."""
        found = self._all(lambda m: (m["key"], m["collection"], m["person"]) == (key_id, collection, person))
        return sorted(found, key=lambda m: m["created"])

    def get(self, token: str, key_id: str, collection: str, person: str) -> tuple[dict[str, Any], bytes] | None:
        """A waiting photo and what is known of it, if this key uploaded it for this person."""
        meta = self._meta(token)
        if meta is None or (meta["key"], meta["collection"], meta["person"]) != (key_id, collection, person):
            return None
        photo_path, _ = self._paths(token)
        try:
            with open(photo_path, "rb") as source:
                return meta, source.read()
        except OSError:
            return None

    def take(self, token: str, key_id: str, collection: str, person: str) -> tuple[dict[str, Any], bytes] | None:
        """`get`, and the photo is deleted."""
        found = self.get(token, key_id, collection, person)
        if found is not None:
            self._remove(token)
        return found

    def drop(self, collection: str, person: str) -> None:
        """Delete every photo waiting for this person, whoever uploaded it."""
        for meta in self._all(lambda m: (m["collection"], m["person"]) == (collection, person)):
            self._remove(meta["token"])

    def sweep(self) -> None:
        """Delete every file older than the time a photo is kept."""
        folder = self._dir
        if folder is None or not os.path.isdir(folder):
            return
        for entry in os.listdir(folder):
            path = os.path.join(folder, entry)
            try:
                if time.time() - os.lstat(path).st_mtime > self.seconds:
                    os.unlink(path)
            except FileNotFoundError:
                pass

    def _sweep_forever(self) -> None:
        """The background sweep, while the folder is there (the next photo kept starts it again)."""
        while self._dir is not None and os.path.isdir(self._dir):
            time.sleep(min(60.0, self.seconds / 4))
            try:
                self.sweep()
            except OSError:  # the folder went: the thread ends
                break


PENDING = Pending()


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
    could be the person's waits for a choice (`PENDING`)."""
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
        token = PENDING.put(key_id, collection_id, person_id, name, photo, faces)
        return Outcome(name, "choose", faces=faces, message=token)
    return Outcome(name, "no_usable_face" if faces else "no_face", faces=faces)


def _draw(photo: bytes, faces: list[dict[str, Any]], max_pixels: int) -> str:
    """The photo (at most PREVIEW_SIDE pixels a side) with every face outlined and numbered: blue if
    it could be the person's, grey if below the quality gate. A JPEG data URI for the page."""
    rgb, _ = gallery.decode_photo(photo, max_pixels)
    image = Image.fromarray(rgb).convert("RGB")
    scale = min(1.0, PREVIEW_SIDE / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
    draw = ImageDraw.Draw(image)
    line = max(2, round(max(image.size) / 300))
    font = ImageFont.load_default(size=max(16, round(max(image.size) / 30)))
    for face in faces:
        box = face["box"]
        colour = _USABLE if face["usable"] else _UNUSABLE
        left, top = box["left"] * scale, box["top"] * scale
        right, bottom = left + box["width"] * scale, top + box["height"] * scale
        draw.rectangle([left, top, right, bottom], outline=colour, width=line)
        label = str(face["number"])
        x0, y0, x1, y1 = draw.textbbox((0, 0), label, font=font)
        width, height = x1 - x0 + 10, y1 - y0 + 8
        label_top = top - height if top - height >= 0 else bottom
        draw.rectangle([left, label_top, left + width, label_top + height], fill=colour)
        draw.text((left + 5 - x0, label_top + 4 - y0), label, fill=(255, 255, 255), font=font)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return data_uri(buffer.getvalue(), "image/jpeg")


def _choices(service: ServiceState, session: Session, collection_id: str, person_id: str) -> list[dict[str, Any]]:
    """The photos this key uploaded for the person that wait for a face to be picked, drawn."""
    shown = []
    for meta in PENDING.waiting(session.caller.key.key_id, collection_id, person_id):
        found = PENDING.get(meta["token"], session.caller.key.key_id, collection_id, person_id)
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
    found = PENDING.get(token, key_id, collection_id, person_id)
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
    taken = PENDING.take(token, key_id, collection_id, person_id)  # the photo is deleted now, whatever follows
    if taken is None:
        return _enroll_page(request, session, collection_id, person_id, error=words("collections.enroll.gone"), status=410)
    outcome = await run_in_threadpool(
        _enroll_one, service, collection_id, person_id, key_id, session.caller.actor, meta["name"], taken[1],
        gallery.FaceChoice(index=number - 1),
    )  # fmt: skip
    if outcome.kind == "enrolled":
        return see_other(f"/console/collections/{collection_id}/persons/{person_id}/enroll?enrolled={outcome.face_ids[0]}")
    return _enroll_page(request, session, collection_id, person_id, outcomes=[outcome])
