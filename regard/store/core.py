"""The store: its rules, written once for every backend.

    store = open_store("sqlite:///srv/regard.db")   # regard.store.open_store picks the backend

Each operation checks its arguments, runs in one transaction of the backend
(`regard.store.backend`), and writes its audit entry in that same transaction, so a crash leaves
both or neither. Faces are enrolled only for a person whose consent record is valid, and only if
they pass the collection's quality gate. A search's threshold is the caller's, else the
collection's own, else the calibrated default for its size, decided inside the search's
transaction from the size the search saw (`SearchResult.threshold` says which).

One job, so one file (a little over 600 lines): every operation's rules, in the order of the
records they are about.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from regard.auditlog.log import AuditAction, AuditEntry, VerifyReport
from regard.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    ModelError,
    NotFoundError,
)
from regard.face import QualityLevel
from regard.match import (
    DEFAULT_FPIR,
    ThresholdTable,
    default_table,
    expected_fnir,
    expected_fpir,
    score_of_distance,
    search_threshold,
)
from regard.models import get_recognizer
from regard.models.recognizer import BUILT_IN, Recognizer
from regard.store.backend import (
    AuditRecord,
    Backend,
    Gallery,
    Hits,
    Row,
    Transaction,
    check_probe_model,
    no_collection,
)
from regard.store.base import (
    ApiKey,
    Candidate,
    Collection,
    Consent,
    ConsentBasis,
    FaceRecord,
    NewFace,
    Person,
    Role,
    SearchQuery,
    SearchResult,
    SweepReport,
    check_consent,
    check_id,
    check_new_collection,
    check_optional_text,
    check_search,
    check_text,
    check_threshold,
    require_consent,
    resolve_threshold,
    stored_vector,
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(timezone.utc).isoformat()


def percent(rate: float | None) -> str:
    """A rate as people read it: "3 %", "0.42 %", "?" when unknown."""
    if rate is None:
        return "?"
    if rate >= 0.1:
        return f"{rate * 100:.0f} %"
    return f"{rate * 100:.2g} %"


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def collection_of(row: Row) -> Collection:
    return Collection(
        id=row["id"],
        purpose=row["purpose"],
        model=row["model"],
        retention_days=row["retention_days"],
        min_quality=QualityLevel(row["min_quality"]),
        store_thumbnails=bool(row["store_thumbnails"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
        face_count=int(row["face_count"]),
        person_count=int(row["person_count"]),
        threshold=row["threshold"],
        threshold_source=_json(row["threshold_source"]),
    )


def person_of(collection_id: str, row: Row) -> Person:
    consent = None
    if row["basis"] is not None:
        consent = Consent(
            basis=ConsentBasis(row["basis"]),
            recorded_by=row["recorded_by"],
            recorded_at=row["recorded_at"],
            expires_at=row["expires_at"],
            reference=row["reference"],
        )
    return Person(
        collection=collection_id,
        id=row["person_id"],
        display_name=row["display_name"],
        created_at=row["created_at"],
        consent=consent,
        face_count=int(row["face_count"]),
    )


def face_of(row: Row) -> FaceRecord:
    return FaceRecord(
        face_id=row["face_id"],
        collection=row["collection_id"],
        person_id=row["person_id"],
        external_image_id=row["external_image_id"],
        box=(row["box_left"], row["box_top"], row["box_width"], row["box_height"]),
        quality_score=row["quality_score"],
        quality_level=QualityLevel(row["quality_level"]),
        created_at=row["created_at"],
    )


def api_key_of(row: Row) -> ApiKey:
    collections = _json(row["collections"])
    return ApiKey(
        key_id=row["key_id"],
        name=row["name"],
        secret_hash=row["secret_hash"],
        roles=tuple(Role(r) for r in json.loads(row["roles"])),
        collections=tuple(collections) if collections is not None else None,
        default_purpose=row["default_purpose"],
        rate_per_minute=row["rate_per_minute"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        revoked_at=row["revoked_at"],
        revoked_by=row["revoked_by"],
    )


def expectations(
    table: ThresholdTable, threshold: float, gallery_size: int, collection_threshold: float | None
) -> dict[str, Any]:
    """What a search at `threshold` of a collection of `gallery_size` faces (whose own threshold is
    `collection_threshold`) may be expected to do, from the calibration: the FPIR (share of searches
    for someone not enrolled that return a candidate) and the FNIR (share of searches for an
    enrolled person that miss them) with 1, 2 or 3 enrolled photos each; and the same in words."""
    size = gallery_size
    fpir = expected_fpir(table, threshold, size)
    fnir = {g: expected_fnir(table, threshold, g) for g in (1, 2, 3)}
    set_by = "set for this collection" if collection_threshold is not None and threshold == collection_threshold else (
        "the default for its size" if threshold == search_threshold(table, size) else "given for this search"
    )
    words = (
        f"threshold {threshold:.1f} ({set_by}, {size:,} faces): about {percent(fpir)} of searches for "
        f"people not enrolled return a candidate (target at most {percent(DEFAULT_FPIR)})"
    )
    if fnir[1] is not None:
        words += (
            f"; a search for an enrolled person misses them about {percent(fnir[1])} of the time with one "
            f"enrolled photo, {percent(fnir[2])} with two, {percent(fnir[3])} with three (measured on {table.source.split(':')[0]})"
        )
    return {
        "threshold": threshold,
        "gallery_faces": size,
        "expected_fpir": fpir,
        "expected_fnir": {str(g): v for g, v in fnir.items()},
        "words": words,
    }


class Store:
    """Collections, persons, consent, faces, keys and the audit log, over one backend. Each call is
    one transaction with its audit entry. Open with `regard.store.open_store(url)`."""

    def __init__(self, backend: Backend, *, table: ThresholdTable | None = None) -> None:
        self.backend = backend
        self._table = table
        self.sql = backend.sql
        self._models: dict[str, str] = {}  # collection id -> its model id (see model_of)

    @property
    def table(self) -> ThresholdTable:
        """The built-in model's score -> FMR table (the shipped one unless the store was given one)."""
        return self._table or default_table()

    def recognizer(self, model: str) -> Recognizer:
        """The model a collection's vectors come from (its id, as the collection records it)."""
        return BUILT_IN if model == BUILT_IN.id else get_recognizer(model)

    def model_of(self, collection_id: str) -> str:
        """The id of the model a collection's faces come from, remembered after the first read
        (it does not change while the collection exists). Safe even if another process deleted
        and re-created the collection with another model meanwhile: enrolment and search check the
        model again in their own transaction (`check_probe_model`) and refuse a mismatch."""
        model = self._models.get(collection_id)
        if model is None:
            model = self.get_collection(collection_id).model
            self._models[collection_id] = model
        return model

    def table_for(self, model: str) -> ThresholdTable:
        """The table thresholds of a collection of `model` come from; ModelError for a model that is
        not calibrated (it may enrol, not search)."""
        return self.table if model == BUILT_IN.id else self.recognizer(model).table()

    @property
    def erasure_pending(self) -> bool:
        """Whether erased faces may still be readable somewhere the store will clear by itself soon
        (SQLite: its write-ahead log, while a reader holds it). False once erasure is complete."""
        return self.backend.erasure_pending

    def close(self) -> None:
        self.backend.close()

    def purge_erased(self, *, full: bool = False) -> None:
        """Rewrite the store's files so that nothing of erased faces is left in them (SQLite:
        VACUUM; PostgreSQL: VACUUM, or VACUUM FULL with `full`). See docs/STORAGE.md."""
        self.backend.purge_erased(full=full)

    # ------------------------------------------------------------------ rows the rules need

    def _collection(self, tx: Transaction, collection_id: str) -> Collection:
        row = tx.one(self.sql.collection, (collection_id,))
        if row is None:
            raise no_collection(collection_id)
        return collection_of(row)

    def _person(self, tx: Transaction, collection_id: str, person_id: str) -> Person:
        row = tx.one(self.sql.person, (collection_id, person_id))
        if row is None:
            self._collection(tx, collection_id)
            raise NotFoundError(f"no person {person_id!r} in collection {collection_id!r}")
        return person_of(collection_id, row)

    def _face_row(self, tx: Transaction, sql: str, collection_id: str, face_id: str) -> Row:
        row = tx.one(sql, (collection_id, face_id))
        if row is None:
            self._collection(tx, collection_id)
            raise NotFoundError(f"no face {face_id!r} in collection {collection_id!r}")
        return row

    # ------------------------------------------------------------------ collections

    def create_collection(
        self,
        collection_id: str,
        *,
        purpose: str,
        actor: str,
        retention_days: int | None = None,
        min_quality: QualityLevel = QualityLevel.MEDIUM,
        store_thumbnails: bool = False,
        model: str | None = None,
    ) -> Collection:
        """A new collection, pinned to one recognition model (`model`: a registered model's name or
        id; None: the built-in one): its faces are embedded, and it is searched, only by that model."""
        purpose, actor, min_quality = check_new_collection(collection_id, purpose, actor, retention_days, min_quality)
        model_id = get_recognizer(model).id
        with self.backend.write() as tx:
            if tx.one(self.sql.collection, (collection_id,)) is not None:
                raise AlreadyExistsError(f"collection {collection_id!r} exists already")
            tx.run(
                self.sql.insert_collection,
                (collection_id, purpose, model_id, retention_days, min_quality.value, store_thumbnails, _now(), actor),
            )
            tx.audit(
                AuditRecord(
                    AuditAction.COLLECTION_CREATE,
                    actor,
                    collection_id,
                    purpose,
                    {"retention_days": retention_days, "min_quality": min_quality.value, "model": model_id},
                )
            )
            return self._collection(tx, collection_id)

    def get_collection(self, collection_id: str) -> Collection:
        with self.backend.read() as tx:
            return self._collection(tx, collection_id)

    def list_collections(self) -> list[Collection]:
        with self.backend.read() as tx:
            return [collection_of(row) for row in tx.all(self.sql.collections)]

    def delete_collection(self, collection_id: str, *, actor: str, reason: str) -> int:
        """Erase a collection with every person, consent and face in it. How many faces went."""
        actor, reason = check_text(actor, "the actor"), check_text(reason, "a reason")
        with self.backend.write() as tx:
            self._collection(tx, collection_id)
            faces = tx.run(self.sql.delete_collection_faces, (collection_id,))
            tx.run(self.sql.delete_collection, (collection_id,))
            tx.audit(
                AuditRecord(
                    AuditAction.COLLECTION_DELETE, actor, collection_id, None, {"reason": reason, "faces_erased": faces}
                )
            )
        self._models.pop(collection_id, None)
        self.backend.erased(collection_id)
        return faces

    def set_threshold(
        self,
        collection_id: str,
        threshold: float | None,
        *,
        actor: str,
        reason: str,
        source: dict[str, Any] | None = None,
    ) -> Collection:
        """Set (or with None, clear) the collection's search threshold, a score 0-100; `source` says
        where it came from (e.g. the audit report and target FMR). Audit-logged."""
        actor, reason = check_text(actor, "the actor"), check_text(reason, "a reason")
        threshold = check_threshold(threshold)
        with self.backend.write() as tx:
            before = self._collection(tx, collection_id).threshold
            kept_source = json.dumps(source, sort_keys=True) if source and threshold is not None else None
            tx.run(self.sql.set_threshold, (threshold, kept_source, collection_id))
            tx.audit(
                AuditRecord(
                    AuditAction.COLLECTION_UPDATE,
                    actor,
                    collection_id,
                    None,
                    {"threshold": threshold, "previous_threshold": before, "reason": reason, "source": source},
                )
            )
            return self._collection(tx, collection_id)

    def search_threshold(self, collection_id: str) -> float:
        """The threshold a search of this collection uses when the caller gives none: the one set for
        it (regard audit --apply-to), else FPIR <= 1 % at its current size."""
        collection = self.get_collection(collection_id)
        return resolve_threshold(self.table_for(collection.model), collection.threshold, collection.face_count)

    def search_expectations(self, collection_id: str, threshold: float | None = None) -> dict[str, Any]:
        """What a search of this collection at `threshold` (default: its search threshold) may be
        expected to do at its current size (see `expectations`)."""
        collection = self.get_collection(collection_id)
        size = collection.face_count
        table = self.table_for(collection.model)
        if threshold is None:
            threshold = resolve_threshold(table, collection.threshold, size)
        return expectations(table, threshold, size, collection.threshold)

    # ------------------------------------------------------------------ persons and consent

    def add_person(
        self, collection_id: str, person_id: str, *, actor: str, display_name: str | None = None
    ) -> Person:
        check_id(person_id, "person id")
        actor = check_text(actor, "the actor")
        display_name = check_optional_text(display_name, "a display name")
        with self.backend.write() as tx:
            self._collection(tx, collection_id)
            if tx.one(self.sql.person, (collection_id, person_id)) is not None:
                raise AlreadyExistsError(f"person {person_id!r} exists already in {collection_id!r}")
            tx.run(self.sql.insert_person, (collection_id, person_id, display_name, _now()))
            tx.audit(AuditRecord(AuditAction.PERSON_ADD, actor, collection_id, None, {"person_id": person_id}))
            return self._person(tx, collection_id, person_id)

    def get_person(self, collection_id: str, person_id: str) -> Person:
        with self.backend.read() as tx:
            return self._person(tx, collection_id, person_id)

    def list_persons(self, collection_id: str) -> list[Person]:
        with self.backend.read() as tx:
            self._collection(tx, collection_id)
            return [person_of(collection_id, row) for row in tx.all(self.sql.persons, (collection_id,))]

    def record_consent(
        self,
        collection_id: str,
        person_id: str,
        *,
        basis: ConsentBasis,
        actor: str,
        expires_at: datetime | None = None,
        reference: str | None = None,
    ) -> Consent:
        """Record (or replace) the basis on which a person's faces may be enrolled."""
        actor = check_text(actor, "the actor")
        now = _now()
        basis = check_consent(basis, expires_at, now)
        reference = check_optional_text(reference, "a consent reference")
        with self.backend.write() as tx:
            self._person(tx, collection_id, person_id)
            tx.run(self.sql.record_consent, (collection_id, person_id, basis.value, actor, now, expires_at, reference))
            tx.audit(
                AuditRecord(
                    AuditAction.CONSENT_RECORD,
                    actor,
                    collection_id,
                    None,
                    {"person_id": person_id, "basis": basis.value, "expires_at": _iso(expires_at), "reference": reference},
                )
            )
            consent = self._person(tx, collection_id, person_id).consent
        assert consent is not None
        return consent

    def revoke_consent(self, collection_id: str, person_id: str, *, actor: str, reason: str) -> int:
        """Withdraw a person's consent: the record goes, and with it every face enrolled under it."""
        return self._erase_person(collection_id, person_id, actor, reason, AuditAction.CONSENT_REVOKE)

    def forget_person(self, collection_id: str, person_id: str, *, actor: str, reason: str) -> int:
        """Erase a person: faces, vectors, thumbnails, consent, and the person record itself."""
        return self._erase_person(collection_id, person_id, actor, reason, AuditAction.FORGET)

    def _erase_person(self, collection_id: str, person_id: str, actor: str, reason: str, action: AuditAction) -> int:
        """Erase a person's faces and their consent (and with FORGET the person record, whose
        deletion takes the consent with it), with one audit entry that keeps who, why and how many."""
        actor, reason = check_text(actor, "the actor"), check_text(reason, "a reason")
        with self.backend.write() as tx:
            self._person(tx, collection_id, person_id)
            erased = tx.run(self.sql.delete_person_faces, (collection_id, person_id))
            record = self.sql.delete_person if action is AuditAction.FORGET else self.sql.delete_consent
            tx.run(record, (collection_id, person_id))
            tx.audit(
                AuditRecord(
                    action, actor, collection_id, None, {"person_id": person_id, "reason": reason, "faces_erased": erased}
                )
            )
        self.backend.erased()
        return erased

    # ------------------------------------------------------------------ faces

    def add_faces(
        self, collection_id: str, person_id: str, faces: list[NewFace], *, actor: str, model: str | None = None
    ) -> list[FaceRecord]:
        """Enroll faces for a person, who must hold a valid consent record. All or nothing. The
        faces' embeddings come from `model` (id; None: the built-in model), which must be the
        collection's."""
        actor = check_text(actor, "the actor")
        model = model or BUILT_IN.id
        width = self.recognizer(model).width
        vectors = [self.backend.vector_param(stored_vector(f.embedding, width)) for f in faces]
        now = _now()
        with self.backend.write() as tx:
            collection = self._collection(tx, collection_id)
            check_probe_model(Gallery(collection.face_count, collection.threshold, collection.model), model)
            require_consent(self._person(tx, collection_id, person_id), now)
            records, rows = [], []
            for face, vector in zip(faces, vectors):
                if face.quality_level.rank < collection.min_quality.rank:
                    raise InvalidArgumentError(
                        f"a {face.quality_level.value} quality face is below {collection_id!r}'s gate "
                        f"({collection.min_quality.value})"
                    )
                record = FaceRecord(
                    face_id=str(uuid.uuid4()),
                    collection=collection_id,
                    person_id=person_id,
                    external_image_id=face.external_image_id,
                    box=(float(face.box[0]), float(face.box[1]), float(face.box[2]), float(face.box[3])),
                    quality_score=float(face.quality_score),
                    quality_level=face.quality_level,
                    created_at=now,
                )
                records.append(record)
                thumbnail = face.thumbnail if collection.store_thumbnails else None
                rows.append(
                    (record.face_id, collection_id, person_id, record.external_image_id, *record.box,
                     record.quality_score, record.quality_level.value, vector, thumbnail, now)
                )  # fmt: skip
            tx.insert_many(self.sql.insert_faces, rows)
            tx.audit(
                AuditRecord(
                    AuditAction.ENROLL,
                    actor,
                    collection_id,
                    None,
                    {
                        "person_id": person_id,
                        "face_ids": [r.face_id for r in records],
                        "external_image_ids": sorted({r.external_image_id for r in records if r.external_image_id}),
                    },
                )
            )
        return records

    def face_thumbnails(self, collection_id: str) -> dict[str, bytes | None]:
        """Each face's kept thumbnail (its aligned chip as JPEG; None where the collection keeps
        none), by face id: what `regard collection reembed` re-embeds from."""
        with self.backend.read() as tx:
            self._collection(tx, collection_id)
            return {r["face_id"]: (bytes(r["thumbnail"]) if r["thumbnail"] is not None else None)
                    for r in tx.all(self.sql.face_thumbnails, (collection_id,))}  # fmt: skip

    def move_collection(
        self,
        collection_id: str,
        model: str,
        vectors: dict[str, np.ndarray],
        *,
        actor: str,
        reason: str,
        source: str,
    ) -> Collection:
        """Move a collection to another recognition model: every face's vector replaced by
        `vectors[face_id]` (of `model`, a registered model's name or id) and the collection pinned
        to it, in one transaction, all or nothing. Consent, persons and face records carry over;
        the collection's own threshold is cleared (it was a score of the old model). Refused if
        the faces are not exactly those enrolled now (one enrolled or erased meanwhile).
        Audit-logged with both models, the count and `source` (where the vectors came from)."""
        actor, reason = check_text(actor, "the actor"), check_text(reason, "a reason")
        recognizer = get_recognizer(model)
        stored = {face_id: self.backend.vector_param(stored_vector(v, recognizer.width)) for face_id, v in vectors.items()}
        with self.backend.write() as tx:
            collection = self._collection(tx, collection_id)
            if collection.model == recognizer.id:
                raise InvalidArgumentError(f"collection {collection_id!r} uses the model {recognizer.id} already")
            enrolled = {r["face_id"] for r in tx.all(self.sql.face_ids, (collection_id,))}
            if enrolled != set(stored):
                missing, extra = len(enrolled - set(stored)), len(set(stored) - enrolled)
                raise InvalidArgumentError(
                    f"the faces of {collection_id!r} changed ({missing} without a new vector, {extra} no longer "
                    "enrolled): nothing was moved; run it again"
                )
            for face_id, vector in stored.items():
                tx.run(self.sql.set_face_vector, (vector, collection_id, face_id))
            tx.run(self.sql.set_collection_model, (recognizer.id, collection_id))
            tx.audit(
                AuditRecord(
                    AuditAction.COLLECTION_UPDATE, actor, collection_id, None,
                    {"model": recognizer.id, "previous_model": collection.model, "faces_reembedded": len(stored),
                     "source": source, "reason": reason, "previous_threshold": collection.threshold},
                )
            )  # fmt: skip
            moved = self._collection(tx, collection_id)
        self._models.pop(collection_id, None)
        self.backend.erased(collection_id)  # the old vectors: no index or log copy of them is kept
        return moved

    def has_image(self, collection_id: str, external_image_id: str) -> bool:
        """Whether a face from this photo (its external image id) is enrolled in the collection."""
        with self.backend.read() as tx:
            self._collection(tx, collection_id)
            return tx.one(self.sql.has_image, (collection_id, external_image_id)) is not None

    def get_face(self, collection_id: str, face_id: str) -> FaceRecord:
        with self.backend.read() as tx:
            return face_of(self._face_row(tx, self.sql.face, collection_id, face_id))

    def face_vector(self, collection_id: str, face_id: str) -> np.ndarray:
        with self.backend.read() as tx:
            row = self._face_row(tx, self.sql.face_vector, collection_id, face_id)
            return self.backend.vector_value(row["embedding"])

    def list_faces(self, collection_id: str, person_id: str | None = None) -> list[FaceRecord]:
        with self.backend.read() as tx:
            self._collection(tx, collection_id)
            if person_id is None:
                rows = tx.all(self.sql.faces, (collection_id,))
            else:
                self._person(tx, collection_id, person_id)
                rows = tx.all(self.sql.person_faces, (collection_id, person_id))
            return [face_of(r) for r in rows]

    def delete_face(self, collection_id: str, face_id: str, *, actor: str, reason: str) -> None:
        actor, reason = check_text(actor, "the actor"), check_text(reason, "a reason")
        with self.backend.write() as tx:
            row = self._face_row(tx, self.sql.face, collection_id, face_id)
            tx.run(self.sql.delete_face, (row["row"],))
            tx.audit(
                AuditRecord(
                    AuditAction.FACE_DELETE,
                    actor,
                    collection_id,
                    None,
                    {"face_id": face_id, "person_id": row["person_id"], "reason": reason},
                )
            )
        self.backend.erased()

    # ------------------------------------------------------------------ search

    def search(
        self,
        collection_id: str,
        queries: list[SearchQuery],
        *,
        actor: str,
        purpose: str,
        k: int = 10,
        threshold: float | None = None,
        request: dict[str, Any] | None = None,
        model: str | None = None,
    ) -> SearchResult:
        """The top-k candidates at or above the threshold for each query (the caller's, else the
        collection's own, else the default for its size), with the matched faces' records, in one
        transaction with its audit entry. The query vectors come from `model` (id; None: the
        built-in model), which must be the collection's, and calibrated."""
        actor, purpose = check_search(actor, purpose, k, threshold)
        model = model or BUILT_IN.id
        recognizer = self.recognizer(model)
        table = self.table_for(model)  # an uncalibrated model is refused here, before any work
        scale = recognizer.distance_at_zero
        vectors = [stored_vector(q.vector, recognizer.width) for q in queries]

        def finish(gallery: Gallery, hits: Hits) -> tuple[SearchResult, AuditRecord]:
            used = threshold if threshold is not None else resolve_threshold(table, gallery.threshold, gallery.size)
            matches = []
            for nearest in hits:
                scored = ((row, score_of_distance(distance, scale)) for row, distance in nearest)
                matches.append(
                    [
                        Candidate(row["face_id"], row["person_id"], score, table.fmr_estimate(score), face=face_of(row))
                        for row, score in scored
                        if score >= used
                    ]
                )
            result = SearchResult(
                collection=collection_id,
                threshold=float(used),
                collection_threshold=gallery.threshold,
                gallery_size=gallery.size,
                model=gallery.model,
                matches=tuple(matches),
            )
            details = {
                "request": request or {},
                "threshold": round(float(used), 1),
                "k": k,
                "gallery_size": gallery.size,
                "queries": [q.summary for q in queries],
                "results": [
                    [{"face_id": c.face_id, "person_id": c.person_id, "score": round(c.score, 2)} for c in cs]
                    for cs in matches
                ],
            }
            return result, AuditRecord(AuditAction.SEARCH, actor, collection_id, purpose, details)

        try:
            return self.backend.search(collection_id, vectors, k, finish, model)
        except ModelError:
            self._models.pop(collection_id, None)  # re-created with another model: read it again next time
            raise

    # ------------------------------------------------------------------ retention

    def sweep(self, *, actor: str, now: datetime | None = None) -> SweepReport:
        """Erase faces whose collection's retention ran out and persons whose consent expired."""
        actor = check_text(actor, "the actor")
        now = now or _now()
        details: list[dict[str, Any]] = []
        faces_erased = persons_erased = 0
        with self.backend.write() as tx:
            for row in tx.all(self.sql.retention):
                cutoff = now - timedelta(days=row["retention_days"])
                erased = tx.run(self.sql.delete_faces_before, (row["id"], cutoff))
                if erased:
                    faces_erased += erased
                    details.append({"collection": row["id"], "reason": "retention", "faces_erased": erased})
            for row in tx.all(self.sql.expired_consents, (now,)):
                collection_id, person_id = row["collection_id"], row["person_id"]
                erased = tx.run(self.sql.delete_person_faces, (collection_id, person_id))
                tx.run(self.sql.delete_consent, (collection_id, person_id))
                faces_erased += erased
                persons_erased += 1
                details.append(
                    {"collection": collection_id, "person_id": person_id, "reason": "consent expired", "faces_erased": erased}
                )
            if details:
                tx.audit(AuditRecord(AuditAction.SWEEP, actor, None, None, {"erased": details, "at": _iso(now)}))
        if details:
            self.backend.erased()
        return SweepReport(faces_erased=faces_erased, persons_erased=persons_erased, details=details)

    # ------------------------------------------------------------------ the audit log

    def audit_entries(
        self,
        *,
        collection: str | None = None,
        action: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditEntry]:
        return self.backend.audit_entries(
            collection=collection, action=action, actor=actor, since=since, until=until, limit=limit
        )

    def verify_audit(self) -> VerifyReport:
        return self.backend.verify_audit()  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ service credentials

    def create_api_key(self, key: ApiKey, *, actor: str) -> ApiKey:
        actor = check_text(actor, "the actor")
        check_id(key.key_id, "key id")
        if not key.roles:
            raise InvalidArgumentError("a key needs at least one role")
        with self.backend.write() as tx:
            if tx.one(self.sql.api_key, (key.key_id,)) is not None:
                raise AlreadyExistsError(f"key {key.key_id!r} exists already")
            tx.run(
                self.sql.insert_api_key,
                (
                    key.key_id,
                    key.name,
                    key.secret_hash,
                    json.dumps([Role(r).value for r in key.roles]),
                    json.dumps(list(key.collections)) if key.collections is not None else None,
                    key.default_purpose,
                    key.rate_per_minute,
                    key.created_at,
                    actor,
                ),
            )
            details = key.to_dict()
            details.pop("created_at"), details.pop("revoked_at"), details.pop("revoked_by")
            tx.audit(AuditRecord(AuditAction.KEY_CREATE, actor, None, None, details))
            return api_key_of(tx.one(self.sql.api_key, (key.key_id,)))  # type: ignore[arg-type]

    def get_api_key(self, key_id: str) -> ApiKey:
        """The key, revoked or not; NotFoundError if there is none."""
        with self.backend.read() as tx:
            row = tx.one(self.sql.api_key, (key_id,))
        if row is None:
            raise NotFoundError(f"no key {key_id!r}")
        return api_key_of(row)

    def list_api_keys(self) -> list[ApiKey]:
        with self.backend.read() as tx:
            return [api_key_of(r) for r in tx.all(self.sql.api_keys)]

    def revoke_api_key(self, key_id: str, *, actor: str, reason: str) -> ApiKey:
        actor, reason = check_text(actor, "the actor"), check_text(reason, "a reason")
        with self.backend.write() as tx:
            row = tx.one(self.sql.api_key, (key_id,))
            if row is None:
                raise NotFoundError(f"no key {key_id!r}")
            if row["revoked_at"] is None:
                tx.run(self.sql.revoke_api_key, (_now(), actor, key_id))
                tx.audit(AuditRecord(AuditAction.KEY_REVOKE, actor, None, None, {"key_id": key_id, "reason": reason}))
            return api_key_of(tx.one(self.sql.api_key, (key_id,)))  # type: ignore[arg-type]
