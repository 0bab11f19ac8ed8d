"""The console's search section: upload a photo, say why, and see every face of it with the
persons it may be, for a person to review.

Role `search` on the collection, checked on the server for the page and for each search (a key
scoped to other collections is refused). The search is `regard.gallery.search_photo`, so it is one
audit entry with the key as the actor and the purpose given, exactly as through the API; the
threshold is the store's (the collection's own, else the default for its size). The photo is never
stored: it is drawn with its faces outlined and numbered, sent back inside the page, and forgotten.
No inferred attribute (age, gender, emotion...) is ever computed or shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from regard import gallery
from regard.console.common import form, signed_in, state
from regard.console.i18n import Words
from regard.console.pictures import numbered_faces
from regard.console.render import data_uri, page, words_for
from regard.console.session import Session
from regard.errors import ImageError
from regard.service import metrics
from regard.service.errors import classify
from regard.service.keys import allowed
from regard.service.state import declared_pixels
from regard.store.base import Role
from regard.store.core import expectations

router = APIRouter(prefix="/console", include_in_schema=False)

CANDIDATES = 10
"""Persons shown per face at most (the API's default k)."""
_WITH = (11, 92, 173)  # a face with at least one candidate: the console's blue
_WITHOUT = (74, 74, 74)  # a face without: dark grey


def _searchable(session: Session, collections: list[Any]) -> list[str]:
    """The collections this key may search, by id."""
    return [c.id for c in collections if allowed(session.caller.key, Role.SEARCH, c.id)]


def grouped(number: float | int, lang: str) -> str:
    """A whole number with its thousands grouped as the language writes them (12,000 / 12 000)."""
    text = f"{round(number):,}"
    return text.replace(",", "\u202f") if lang == "fr" else text


def rate(fmr: float, words: Words) -> str:
    """A false-match rate in words and figures: "1 in 12,000 (8.3e-05)"."""
    if fmr <= 0:
        return "0"
    return words("search.rate", n=grouped(max(1.0, 1 / fmr), words.lang), value=f"{fmr:.2g}")


@dataclass(frozen=True)
class FaceView:
    number: int  # 1-based, as drawn on the photo
    box: dict[str, float]
    quality: str | None
    persons: list[dict[str, Any]]  # person_id, score, fmr (words), faces


def _draw(rgb: np.ndarray, hits: list[gallery.SearchHit]) -> bytes:
    """The photo with each searched face outlined and numbered: blue with a candidate, grey
    without. A JPEG for the page."""
    drawn = [(n, hit.box, _WITH if hit.persons else _WITHOUT) for n, hit in enumerate(hits, 1) if hit.box is not None]
    return numbered_faces(rgb, drawn)


def _form_page(
    request: Request,
    session: Session,
    *,
    chosen: str | None = None,
    purpose: str = "",
    largest: bool = False,
    error: str | None = None,
    result: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    store = state(request).store
    collections = _searchable(session, store.list_collections())
    if chosen is None and len(collections) == 1:
        chosen = collections[0]
    return page(
        request,
        "search_page.html",
        session=session,
        status=status,
        collections=collections,
        chosen=chosen,
        purpose=purpose,
        largest=largest,
        error=error,
        result=result,
    )


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, collection: str | None = None, session: Session = Depends(signed_in)) -> Response:
    session.caller.require(Role.SEARCH, collection)
    return _form_page(request, session, chosen=collection)


@router.post("/search", response_class=HTMLResponse)
async def search(request: Request, session: Session = Depends(signed_in)) -> Response:
    data = await form(request, session)
    caller = session.caller
    caller.require(Role.SEARCH)
    words = words_for(request)
    collection = str(data.get("collection") or "").strip()
    purpose = str(data.get("purpose") or "").strip()
    largest = str(data.get("largest") or "") in {"1", "on", "true", "yes"}
    again = {"chosen": collection or None, "purpose": purpose, "largest": largest}
    if not collection:
        return _form_page(request, session, **again, error=words("search.need_collection"), status=400)
    caller.require(Role.SEARCH, collection)  # a key scoped to other collections is refused (403)
    if not purpose:
        return _form_page(request, session, **again, error=words("search.need_purpose"), status=400)
    upload = data.get("photo")
    photo = await upload.read() if isinstance(upload, UploadFile) else b""
    if not photo:
        return _form_page(request, session, **again, error=words("search.need_photo"), status=400)
    service = state(request)
    limit = service.config.max_image_bytes
    if len(photo) > limit:
        error = words("search.too_large", size=grouped(len(photo), words.lang), limit=grouped(limit, words.lang))
        return _form_page(request, session, **again, error=error, status=413)
    held = await run_in_threadpool(service.pixels.acquire, declared_pixels([photo]))
    try:
        result = await run_in_threadpool(
            _search, service, collection, photo, caller.actor, purpose, largest, words
        )  # fmt: skip
    except ImageError as exc:
        _, status, _ = classify(exc)
        return _form_page(request, session, **again, error=words("search.bad_photo", reason=str(exc)), status=status)
    finally:
        service.pixels.release(held)
    return _form_page(request, session, **again, result=result)


def _search(service: Any, collection: str, photo: bytes, actor: str, purpose: str, largest: bool, words: Words) -> dict[str, Any]:
    """Search (audited by the library) and what the page shows of it."""
    store = service.store
    found = gallery.search_photo(
        store,
        collection,
        photo,
        actor=actor,
        purpose=purpose,
        largest=largest,
        k=CANDIDATES,
        threshold=None,  # the store decides: the collection's own, else the default for its size
        max_pixels=service.config.max_pixels,
    )
    metrics.searched(collection, purpose)
    rgb, _ = gallery.decode_photo(photo, service.config.max_pixels)
    faces = [
        FaceView(
            number=number,
            box=hit.box or {},
            quality=hit.quality,
            persons=[
                {
                    "person_id": person.person_id,
                    "score": f"{person.score:.1f}",
                    "fmr": rate(person.fmr, words),
                    "faces": len(person.face_ids),
                }
                for person in hit.persons
            ],
        )
        for number, hit in enumerate(found, 1)
    ]
    return {
        "collection": collection,
        "image": data_uri(_draw(rgb, list(found)), "image/jpeg"),
        "width": int(rgb.shape[1]),
        "height": int(rgb.shape[0]),
        "faces": faces,
        "with_candidates": sum(1 for f in faces if f.persons),
        "threshold": f"{found.threshold:.1f}",
        "threshold_fmr": rate(store.table_for(found.model).fmr_estimate(found.threshold), words),
        "expected": expectations(store.table_for(found.model), found.threshold, found.gallery_size, found.collection_threshold)["words"],
        "gallery_size": grouped(found.gallery_size, words.lang),
        "largest": largest,
    }
