"""The user operations: CreateUser (with its consent, from the X-Regard-Consent-* headers),
DeleteUser, ListUsers, AssociateFaces (which only confirms: a face belongs to its user from the
start), DisassociateFaces (which erases the faces), SearchUsers and SearchUsersByImage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from regard import gallery
from regard.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from regard.match import ThresholdTable
from regard.service import metrics
from regard.service.rekognition.call import (
    _FACE_ID,
    _USER_ID,
    AwsError,
    Call,
    _face_ids,
    _page,
)
from regard.service.rekognition.faces import _probe
from regard.service.rekognition.shapes import face_detail
from regard.service.rekognition.similarity import similarity_of_score
from regard.store.base import (
    Candidate,
    ConsentBasis,
    Role,
    SearchQuery,
    check_consent,
    check_optional_text,
)


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
    threshold = call.threshold("UserMatchThreshold", table=call.table_of(collection_id))
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
        model=call.store.model_of(collection_id),
    )
    call.report_threshold(results.threshold, call.store.table_for(results.model))
    metrics.searched(collection_id, purpose)
    return {
        "UserMatches": _user_matches(call.store.table_for(results.model), results, exclude, most),
        "FaceModelVersion": results.model,
        **searched,
    }


def search_users_by_image(call: Call) -> dict[str, Any]:
    collection_id = call.collection(Role.SEARCH, check=False)
    most = call.number("MaxUsers", 1, 500, 500)
    level = call.quality_filter("NONE")
    threshold = call.threshold("UserMatchThreshold", table=call.table_of(collection_id))
    purpose = call.purpose()
    rgb, digest, probe, others = _probe(call, level, collection_id)
    found = gallery.search_faces(
        call.store, collection_id, [probe], digest, actor=call.caller.actor, purpose=purpose,
        k=min(1000, most * 4 + 8), threshold=threshold, request={"operation": "SearchUsersByImage"},
        model=call.store.model_of(collection_id),
    )
    call.report_threshold(found.threshold, call.store.table_for(found.model))
    metrics.searched(collection_id, purpose)
    return {
        "UserMatches": _user_matches(call.store.table_for(found.model), [found[0].candidates], None, most),
        "FaceModelVersion": found.model,
        "SearchedFace": {"FaceDetail": face_detail(rgb, probe)},
        "UnsearchedFaces": [{"FaceDetails": face_detail(rgb, f), "Reasons": ["FACE_NOT_LARGEST"]} for f in others],
    }
