"""The face pipeline: image -> detect -> align -> embed -> Face records, and comparison.

Pure: bytes or arrays in, `Face` records out; the only state is the lazily loaded models.
"""

from __future__ import annotations

from typing import Union

import numpy as np

from regard import align as _align
from regard import models
from regard.errors import NoFaceError, RegardError
from regard.face import Box, Face
from regard.image import DEFAULT_MAX_PIXELS, ImageSource, load_image
from regard.match import Comparison, compare_embeddings, unit
from regard.models.detector import DEFAULT_MIN_CONFIDENCE, DEFAULT_MIN_FACE
from regard.quality import assess

FLIP_DEFAULT = True
"""Average each face's embedding with its mirror image's (see docs/MODEL_CARD.md for the gain)."""

FaceInput = Union[ImageSource, np.ndarray, Face]


def detect(
    image: ImageSource | np.ndarray,
    *,
    embed: bool = True,
    flip: bool = FLIP_DEFAULT,
    min_face: float = DEFAULT_MIN_FACE,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    model: str | None = None,
) -> list[Face]:
    """Every face in a photo, most confident first, with quality and (by default) embedding.

    `image` is a path, bytes, a binary file or an HxWx3 uint8 RGB array. Raises ImageError for
    input that is not a usable image; a photo without faces gives an empty list. Every face
    `min_face` pixels wide and up is looked for, in photos of any size up to `max_pixels` (large
    photos in tiles); a smaller `min_face` finds smaller faces, more slowly. `model` names the
    recognition model that embeds them (name or id; None: the built-in one), each face aligned with
    its family's template; quality is always judged on the built-in chip, as it was calibrated.
    """
    rgb = load_image(image, max_pixels=max_pixels)
    detections = models.get_detector().detect(
        rgb, min_face=min_face, min_confidence=min_confidence
    )
    if not detections:
        return []
    chips = np.stack([_align.align(rgb, d.landmarks) for d in detections])
    embeddings: list[np.ndarray | None] = [None] * len(detections)
    if embed:
        embedder = models.get_embedder(model)
        if embedder.model.built_in:
            model_chips = chips
        else:
            size, family = embedder.model.preprocess.size, embedder.model.family
            model_chips = np.stack([_align.align(rgb, d.landmarks, size, family=family) for d in detections])
        embeddings = list(unit(embedder.embed_chips(model_chips, flip=flip)))
    return [
        Face(
            box=Box(*d.box),
            landmarks=d.landmarks,
            confidence=d.confidence,
            quality=assess(d.landmarks, d.confidence, chip),
            embedding=vector,
        )
        for d, chip, vector in zip(detections, chips, embeddings)
    ]


def primary_face(faces: list[Face], width: int, height: int) -> Face | None:
    """The photo's main subject: among faces at least half as wide as the widest, the one nearest
    the centre of the photo. This is how a portrait's subject is told from people behind them."""
    if not faces:
        return None
    widest = max(f.box.width for f in faces)
    candidates = [f for f in faces if f.box.width >= widest / 2]
    cx, cy = width / 2, height / 2
    return min(candidates, key=lambda f: (f.box.centre[0] - cx) ** 2 + (f.box.centre[1] - cy) ** 2)


def embed(
    image: ImageSource | np.ndarray,
    *,
    flip: bool = FLIP_DEFAULT,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    model: str | None = None,
) -> np.ndarray:
    """The embedding of the photo's main face (see `primary_face`; 128 numbers with the built-in
    model, the model's width with another). Raises NoFaceError."""
    face = _main_face(image, flip=flip, max_pixels=max_pixels, model=model)
    assert face.embedding is not None
    return face.embedding


def _main_face(image: ImageSource | np.ndarray, *, flip: bool, max_pixels: int, model: str | None = None) -> Face:
    rgb = load_image(image, max_pixels=max_pixels)
    face = primary_face(detect(rgb, flip=flip, model=model), rgb.shape[1], rgb.shape[0])
    if face is None:
        name = image if isinstance(image, str) else "the image"
        raise NoFaceError(f"no face found in {name}")
    return face


def _embedding_of(item: FaceInput, flip: bool, max_pixels: int, model: str | None, width: int) -> np.ndarray:
    if isinstance(item, Face):
        if item.embedding is None:
            raise RegardError("this Face has no embedding: detect it with embed=True")
        vector = item.embedding
    elif isinstance(item, np.ndarray) and item.ndim == 1:
        vector = item
    else:
        return _main_face(item, flip=flip, max_pixels=max_pixels, model=model).embedding  # type: ignore[return-value]
    if vector.shape != (width,):
        raise RegardError(f"an embedding of this model has {width} values, not {vector.shape[0]}")
    return vector


def compare(
    a: FaceInput,
    b: FaceInput,
    *,
    threshold: float | None = None,
    fmr: float | None = None,
    flip: bool = FLIP_DEFAULT,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    model: str | None = None,
) -> Comparison:
    """Compare two faces: photos (their main faces), `Face` records or embeddings (of `model`).

    The threshold is a score (0-100) or is chosen for a target false-match rate; by default the
    lowest threshold whose measured FMR is at most 1e-3, from the model's calibration: a model
    without one may not compare (ModelError). Raises NoFaceError if a photo has no face.
    """
    recognizer = models.get_recognizer(model)
    table = recognizer.table()  # before any work: an uncalibrated model is refused at once
    return compare_embeddings(
        _embedding_of(a, flip, max_pixels, model, recognizer.width),
        _embedding_of(b, flip, max_pixels, model, recognizer.width),
        threshold=threshold,
        fmr=fmr,
        table=table,
        scale=recognizer.distance_at_zero,
    )
