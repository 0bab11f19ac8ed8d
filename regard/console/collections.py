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
Enrolling lives in enroll.py, the waiting photos in pending.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from regard.console.common import form, see_other, signed_in, state
from regard.console.i18n import Words
from regard.console.pending import _when, pending_for
from regard.console.render import page, words_for
from regard.console.session import Session
from regard.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
)
from regard.face import QualityLevel
from regard.match import DEFAULT_FPIR
from regard.service.errors import classify
from regard.service.state import ServiceState
from regard.store.base import ID_PATTERN, Collection, ConsentBasis, Person, Role
from regard.store.core import percent

router = APIRouter(prefix="/console", include_in_schema=False)



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
        fpir=percent(expected["expected_fpir"]),
        target=percent(DEFAULT_FPIR),
    )
    fnir = expected["expected_fnir"]
    if fnir.get("1") is not None:
        text += words(
            "collections.expect.fnir",
            one=percent(fnir["1"]),
            two=percent(fnir["2"]),
            three=percent(fnir["3"]),
            source=store.table_for(collection.model).source.split(":")[0],
        )
    return text


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
        threshold_fmr=f"{store.table_for(collection.model).fmr_estimate(threshold):.2g}",
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
    service = state(request)
    store = service.store
    store.get_person(collection_id, person_id)  # an unknown person: 404
    reason = str(data.get("reason") or "").strip()
    if not reason:
        return _describe_page(
            request, session, collection_id, error=words("collections.need_reason"), status=400, about=f"person:{person_id}"
        )
    erase = store.forget_person if forget else store.revoke_consent
    erased = erase(collection_id, person_id, actor=session.caller.actor, reason=reason)
    pending_for(service.config).drop(collection_id, person_id)  # photos of theirs waiting for a face to be picked go too
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
