"""Moving a collection to another recognition model (`regard collection reembed`).

Every enrolled face needs a vector of the new model. Two sources:

- the **thumbnails** the collection keeps (opt-in, `--thumbnails` at creation): each is the face's
  aligned built-in chip (150 x 150 JPEG), whose five points sit, by construction, on the built-in
  template; the new model's chip is cut from it with its own family's template. A chip of a chip
  loses some detail (JPEG, and the margin the built-in chip leaves): re-enrolment from the photos
  is better where they are kept;
- the **photos** (`--photos FOLDER`): a file belongs to a face when it is the photo the face came
  from, by its external image id (the photo's `sha256:` digest, Regard's default, or the id the
  caller gave, matched with the file's name or stem); the face is the one of the photo whose box
  overlaps the recorded box best (IoU at least 0.5).

Nothing moves unless every face has its new vector: the store replaces them all and pins the
collection to the new model in one transaction (`Store.move_collection`), audit-logged.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from regard import align, models
from regard.errors import InvalidArgumentError, RegardError
from regard.face import iou_matrix
from regard.gallery import decode_photo
from regard.image import photo_files
from regard.match import unit
from regard.pipeline import detect
from regard.store.base import Collection
from regard.store.core import Store

MIN_IOU = 0.5


@dataclass
class Plan:
    """The new vectors found so far, and the faces without one (face id -> why)."""

    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def _progress(items: list, what: str, progress: bool | None) -> Iterable:
    if not (sys.stderr.isatty() if progress is None else progress):
        return items
    from tqdm import tqdm

    return tqdm(items, desc=what, unit="face", file=sys.stderr)


def from_thumbnails(store: Store, collection_id: str, model: str, *, progress: bool | None = None) -> Plan:
    """New vectors of `model` from the collection's kept thumbnails."""
    embedder = models.get_embedder(model)
    chip_points = align.TEMPLATES["dlib"].points  # where the five points are in every thumbnail
    pre = embedder.model.preprocess
    plan = Plan()
    thumbnails = store.face_thumbnails(collection_id)
    for face_id in _progress(list(thumbnails), "re-embedding thumbnails", progress):
        data = thumbnails[face_id]
        if data is None:
            plan.missing[face_id] = "no thumbnail kept"
            continue
        chip = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        new_chip = align.align(chip, chip_points, pre.size, family=embedder.model.family)
        plan.vectors[face_id] = unit(embedder.embed_chips(new_chip[None])[0])
    return plan


def from_photos(store: Store, collection_id: str, model: str, folder: Path, *, progress: bool | None = None) -> Plan:
    """New vectors of `model` from the photos the faces were enrolled from (see the module)."""
    faces = store.list_faces(collection_id)
    wanted: dict[str, list] = {}
    for record in faces:
        wanted.setdefault(record.external_image_id or "", []).append(record)
    plan = Plan()
    seen: set[str] = set()
    for path in _progress(list(photo_files([str(folder)])), "re-embedding photos", progress):
        try:
            rgb, digest = decode_photo(str(path))
        except RegardError:
            continue  # not a photo we can read: its faces, if any, stay missing
        keys = [k for k in (f"sha256:{digest}", path.name, path.stem) if k in wanted and k not in seen]
        if not keys:
            continue
        seen.add(keys[0])
        found = detect(rgb, model=model)
        boxes = np.array([[f.box.left, f.box.top, f.box.right, f.box.bottom] for f in found]).reshape(-1, 4)
        for record in wanted[keys[0]]:
            left, top, width, height = record.box
            if not len(boxes):
                plan.missing[record.face_id] = f"no face found in {path.name}"
                continue
            overlap = iou_matrix(np.array([[left, top, left + width, top + height]]), boxes)[0]
            best = int(np.argmax(overlap))
            if overlap[best] < MIN_IOU:
                plan.missing[record.face_id] = f"no face of {path.name} where it was enrolled (best overlap {overlap[best]:.2f})"
            else:
                plan.vectors[record.face_id] = found[best].embedding  # type: ignore[assignment]
    for record in faces:
        if record.face_id not in plan.vectors and record.face_id not in plan.missing:
            plan.missing[record.face_id] = f"no photo in {folder} for {record.external_image_id or 'its photo'}"
    return plan


def reembed(
    store: Store,
    collection_id: str,
    model: str,
    *,
    actor: str,
    reason: str,
    photos: Path | None = None,
    progress: bool | None = None,
) -> tuple[Collection, Plan]:
    """Move the collection to `model` (from its thumbnails, or `photos`); InvalidArgumentError,
    changing nothing, if any face has no new vector. The moved collection and the plan."""
    current = store.get_collection(collection_id)
    target = models.get_recognizer(model)
    if current.model == target.id:
        raise InvalidArgumentError(f"collection {collection_id!r} uses the model {target.id} already")
    if photos is None and not current.store_thumbnails:
        raise InvalidArgumentError(
            f"collection {collection_id!r} keeps no thumbnails to re-embed from: give the enrolment photos (--photos FOLDER)"
        )
    plan = from_photos(store, collection_id, model, photos, progress=progress) if photos else from_thumbnails(
        store, collection_id, model, progress=progress
    )
    if plan.missing:
        sample = "; ".join(f"{face_id}: {why}" for face_id, why in list(plan.missing.items())[:5])
        raise InvalidArgumentError(
            f"{len(plan.missing)} of {len(plan.missing) + len(plan.vectors)} faces have no new vector, so nothing was "
            f"moved ({sample}{'; ...' if len(plan.missing) > 5 else ''}). Erase them or supply their photos first"
        )
    source = f"photos in {photos}" if photos else "the collection's thumbnails"
    moved = store.move_collection(collection_id, target.id, plan.vectors, actor=actor, reason=reason, source=source)
    return moved, plan
