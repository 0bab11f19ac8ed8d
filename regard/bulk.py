"""Bulk enrollment: a folder of people, one sub-folder per person, on every core.

    FOLDER/amber/*.jpg, FOLDER/akhmed/*.jpg, ...       # the sub-folder's name is the person id
    report = bulk_enroll(store, "volunteers", FOLDER, actor="ops", workers=os.cpu_count())

- Consent first: a person is enrolled only if the collection holds them with a valid consent
  record. Their consent may come with the folder as a CSV file (`read_consent_csv`: one row per
  person, basis and reference, optional expiry and display name), which adds missing persons and
  records consent for those who have none, each audit-logged as `regard consent record` would. The
  photos of anyone still without valid consent are not even decoded; the report lists them.
- The face pipeline (decode, detect, embed) runs in a pool of worker processes; the store is
  written only by this process, in batches (one `add_faces` call, one transaction and one audit
  entry per batch of a person's faces).
- Resumable: a photo whose sha256 is already an image id of the collection is skipped, so running
  the same command after an interruption goes on where it stopped.
- The report counts enrolled, skipped and rejected photos and says why each rejected one was
  (no face, TOO_SMALL, LOW_SHARPNESS, ..., unreadable file, no consent).
"""

from __future__ import annotations

import csv
import hashlib
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from regard.errors import ConsentError, ImageError, InvalidArgumentError, NotFoundError
from regard.image import DEFAULT_MAX_PIXELS, photo_files
from regard.store.base import ConsentBasis, NewFace, check_id
from regard.store.core import Store

NO_FACE = "NO_FACE"
NO_CONSENT = "NO_CONSENT"
UNREADABLE = "UNREADABLE"


@dataclass(frozen=True)
class ConsentRow:
    """One person's consent as the CSV file records it."""

    person_id: str
    basis: ConsentBasis
    reference: str | None
    expires_at: datetime | None
    display_name: str | None


def read_consent_csv(path: Path) -> list[ConsentRow]:
    """Rows of a consent file with the header `person_id,basis,reference[,expires_at][,display_name]`.

    `basis` is one of ConsentBasis's values; `expires_at` an ISO 8601 time with its zone, or empty.
    A row that cannot be read stops everything (InvalidArgumentError naming the line): a consent
    file is not something to half-apply.
    """
    rows: list[ConsentRow] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"person_id", "basis"} - set(reader.fieldnames or [])
        if missing:
            raise InvalidArgumentError(f"{path}: the header needs the columns person_id and basis (missing {sorted(missing)})")
        for line, row in enumerate(reader, start=2):
            try:
                expires = (row.get("expires_at") or "").strip()
                rows.append(
                    ConsentRow(
                        person_id=check_id((row["person_id"] or "").strip(), "person id"),
                        basis=ConsentBasis((row["basis"] or "").strip()),
                        reference=(row.get("reference") or "").strip() or None,
                        expires_at=datetime.fromisoformat(expires) if expires else None,
                        display_name=(row.get("display_name") or "").strip() or None,
                    )
                )
            except (ValueError, InvalidArgumentError) as exc:
                raise InvalidArgumentError(f"{path}, line {line}: {exc}") from None
    return rows


def apply_consents(store: Store, collection_id: str, rows: list[ConsentRow], *, actor: str) -> int:
    """Add the persons a consent file names and record consent for those without a valid one.
    Returns how many consents were recorded (each with its own audit entry)."""
    recorded = 0
    now = datetime.now().astimezone()
    for row in rows:
        try:
            person = store.get_person(collection_id, row.person_id)
        except NotFoundError:
            store.get_collection(collection_id)  # an unknown collection is an error, not a person to add
            person = store.add_person(collection_id, row.person_id, actor=actor, display_name=row.display_name)
        if person.consent is None or not person.consent.valid_at(now):
            store.record_consent(
                collection_id, row.person_id, basis=row.basis, actor=actor, expires_at=row.expires_at, reference=row.reference
            )
            recorded += 1
    return recorded


def people_from_folders(folder: Path) -> dict[str, list[Path]]:
    """Photos per person: each sub-folder of `folder` is a person (its name the id), with the
    photos inside it at any depth, in sorted order."""
    if not folder.is_dir():
        raise InvalidArgumentError(f"{folder} is not a folder")
    people: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        check_id(sub.name, f"person id (folder {sub})")
        photos = photo_files([sub])  # broken links kept: enrolling them fails with UNREADABLE, naming them
        if photos:
            people[sub.name] = photos
    return people


@dataclass(frozen=True)
class PhotoOutcome:
    """What the worker found in one photo (picklable: no image, only the chosen face's record)."""

    path: str
    person_id: str
    face: NewFace | None
    reasons: tuple[str, ...]  # why no face was chosen, or why other faces were left out
    error: str | None = None
    # MULTIPLE_FACES: the faces that pass the gate, for the main process to match against the
    # person's enrolled faces (exactly one matching is enrolled; otherwise none)
    candidates: tuple[NewFace, ...] = ()


def analyse_photo(path: str, person_id: str, image_id: str, gate: int, thumbnails: bool, max_pixels: int) -> PhotoOutcome:
    """Decode, detect and embed one photo in a worker, and choose the face to enroll."""
    from regard.gallery import Reason, choose_face, decode_photo, new_face
    from regard.pipeline import detect

    try:
        rgb, _ = decode_photo(path, max_pixels)
    except ImageError as exc:
        return PhotoOutcome(path, person_id, None, (UNREADABLE,), str(exc))
    chosen, others = choose_face(detect(rgb), gate)
    reasons = tuple(sorted({r.value for n in others for r in n.reasons}))
    if chosen is None:
        candidates = tuple(
            new_face(rgb, n.face, image_id, with_thumbnail=thumbnails)
            for n in others
            if n.reasons == [Reason.MULTIPLE_FACES]
        )
        return PhotoOutcome(path, person_id, None, reasons or (NO_FACE,), candidates=candidates)
    return PhotoOutcome(path, person_id, new_face(rgb, chosen, image_id, with_thumbnail=thumbnails), reasons)


def _analyse(task: tuple[str, str, str, int, bool, int]) -> PhotoOutcome:
    return analyse_photo(*task)


def _init_worker(threads: int) -> None:
    """A pool process's start: its model sessions get `threads` threads each (the pool has one
    process per core, so the settings' default, one thread, is what scales)."""
    from regard.models.runtime import set_threads

    set_threads(threads)


@dataclass
class BulkReport:
    photos: int = 0
    enrolled: int = 0
    skipped: int = 0  # enrolled in this collection before (resume)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"photo", "person_id", "reasons", "error"?}
    persons_without_consent: list[str] = field(default_factory=list)
    consents_recorded: int = 0
    batches: int = 0
    seconds: float = 0.0

    @property
    def reasons(self) -> Counter[str]:
        return Counter(r for item in self.rejected for r in item["reasons"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "photos": self.photos,
            "enrolled": self.enrolled,
            "skipped_already_enrolled": self.skipped,
            "rejected": len(self.rejected),
            "rejected_by_reason": dict(sorted(self.reasons.items())),
            "rejected_photos": self.rejected,
            "persons_without_consent": self.persons_without_consent,
            "consents_recorded": self.consents_recorded,
            "database_batches": self.batches,
            "seconds": round(self.seconds, 2),
            "photos_per_second": round(self.photos / self.seconds, 2) if self.seconds else None,
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bulk_enroll(
    store: Store,
    collection_id: str,
    folder: Path,
    *,
    actor: str,
    workers: int | None = None,
    batch_size: int = 64,
    consents: list[ConsentRow] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Callable[[int], None] | None = None,
) -> BulkReport:
    """Enroll a folder of people (see the module's docstring). `progress(n)` is called as each
    photo is dealt with (enrolled, skipped or rejected)."""
    started = time.perf_counter()
    collection = store.get_collection(collection_id)
    people = people_from_folders(Path(folder))
    report = BulkReport(photos=sum(len(v) for v in people.values()))
    if consents:
        report.consents_recorded = apply_consents(store, collection_id, consents, actor=actor)
    now = datetime.now().astimezone()
    # Resume per person: the same photo may hold another person's face, enrolled for them.
    known = {(f.person_id, f.external_image_id) for f in store.list_faces(collection_id) if f.external_image_id}
    tasks: list[tuple[str, str, str, int, bool, int]] = []
    for person_id, photos in people.items():
        try:
            person = store.get_person(collection_id, person_id)
            consented = person.consent is not None and person.consent.valid_at(now)
        except NotFoundError:
            consented = False
        if not consented:
            report.persons_without_consent.append(person_id)
            for photo in photos:
                report.rejected.append({"photo": str(photo), "person_id": person_id, "reasons": [NO_CONSENT]})
            if progress:
                progress(len(photos))
            continue
        for photo in photos:
            try:
                image_id = f"sha256:{_sha256(photo)}"
            except OSError as exc:  # a broken link, a file gone or unreadable: named, not skipped
                report.rejected.append({"photo": str(photo), "person_id": person_id, "reasons": [UNREADABLE], "error": exc.strerror or str(exc)})
                if progress:
                    progress(1)
                continue
            if (person_id, image_id) in known:
                report.skipped += 1
                if progress:
                    progress(1)
                continue
            known.add((person_id, image_id))  # the same photo twice in a person's folder: enrolled once
            tasks.append((str(photo), person_id, image_id, collection.min_quality.rank, collection.store_thumbnails, max_pixels))

    pending: list[PhotoOutcome] = []
    undecided: list[PhotoOutcome] = []  # photos of several people, decided once the person's others are in

    def flush() -> None:
        if not pending:
            return
        person_id = pending[0].person_id
        faces = [o.face for o in pending if o.face is not None]
        try:
            store.add_faces(collection_id, person_id, faces, actor=actor)
            report.enrolled += len(faces)
        except ConsentError as exc:  # revoked or expired while the pool was working
            for o in pending:
                report.rejected.append({"photo": o.path, "person_id": person_id, "reasons": [NO_CONSENT], "error": str(exc)})
        report.batches += 1
        if progress:
            progress(len(pending))
        pending.clear()

    def decide() -> None:
        """Enroll each photo of several people whose faces include exactly one that matches the
        person's enrolled faces (those of this run included); list the others, with every face's box."""
        flush()
        for o in undecided:
            matches = _matching(store, collection_id, o.person_id, o.candidates)
            if len(matches) == 1:
                pending.append(PhotoOutcome(o.path, o.person_id, matches[0], ("EXCEEDS_MAX_FACES",)))
                flush()
                continue
            boxes = [dict(zip(("left", "top", "width", "height"), (round(v, 1) for v in c.box))) for c in o.candidates]
            report.rejected.append({"photo": o.path, "person_id": o.person_id, "reasons": list(o.reasons), "faces": boxes})
            if progress:
                progress(1)
        undecided.clear()

    for outcome in _outcomes(tasks, workers):
        if undecided and undecided[0].person_id != outcome.person_id:
            decide()
        if outcome.face is None:
            if outcome.candidates:
                undecided.append(outcome)
                continue
            item: dict[str, Any] = {"photo": outcome.path, "person_id": outcome.person_id, "reasons": list(outcome.reasons)}
            if outcome.error:
                item["error"] = outcome.error
            report.rejected.append(item)
            if progress:
                progress(1)
            continue
        if pending and (pending[0].person_id != outcome.person_id or len(pending) >= batch_size):
            flush()
        pending.append(outcome)
    decide()
    report.seconds = time.perf_counter() - started
    return report


def _matching(store: Store, collection_id: str, person_id: str, candidates: tuple[NewFace, ...]) -> list[NewFace]:
    """The candidates that match the person's enrolled faces at the 1:1 default threshold."""
    from regard.gallery import faces_matching_person

    ok = faces_matching_person(store, collection_id, person_id, [c.embedding for c in candidates])
    return [c for c, match in zip(candidates, ok) if match]


def _outcomes(tasks: list[tuple[str, str, str, int, bool, int]], workers: int | None) -> Iterator[PhotoOutcome]:
    """The tasks' outcomes in task order: in this process for one worker, else in a process pool."""
    workers = max(1, workers or os.cpu_count() or 1)
    if workers == 1 or len(tasks) < 2:
        yield from map(_analyse, tasks)
        return
    from regard import config

    # spawn, not fork: model sessions and database connections are not to be shared with children.
    context = multiprocessing.get_context("spawn")
    threads = config.current().threads  # $REGARD_THREADS, else 1: handed to each worker, not inherited
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
        yield from pool.map(_analyse, tasks, chunksize=4)
