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
) -> list[Face]:
    """Every face in a photo, most confident first, with quality and (by default) embedding.

    `image` is a path, bytes, a binary file or an HxWx3 uint8 RGB array. Raises ImageError for
    input that is not a usable image; a photo without faces gives an empty list. Every face
    `min_face` pixels wide and up is looked for, in photos of any size up to `max_pixels` (large
    photos in tiles); a smaller `min_face` finds smaller faces, more slowly.
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
        embeddings = list(unit(models.get_embedder().embed_chips(chips, flip=flip)))
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
) -> np.ndarray:
    """The 128-d embedding of the photo's main face (see `primary_face`). Raises NoFaceError."""
    face = _main_face(image, flip=flip, max_pixels=max_pixels)
    assert face.embedding is not None
    return face.embedding


def _main_face(image: ImageSource | np.ndarray, *, flip: bool, max_pixels: int) -> Face:
    rgb = load_image(image, max_pixels=max_pixels)
    face = primary_face(detect(rgb, flip=flip), rgb.shape[1], rgb.shape[0])
    if face is None:
        name = image if isinstance(image, str) else "the image"
        raise NoFaceError(f"no face found in {name}")
    return face


def _embedding_of(item: FaceInput, flip: bool, max_pixels: int) -> np.ndarray:
    if isinstance(item, Face):
        if item.embedding is None:
            raise RegardError("this Face has no embedding: detect it with embed=True")
        return item.embedding
    if isinstance(item, np.ndarray) and item.ndim == 1:
        if item.shape != (128,):
            raise RegardError(f"an embedding has 128 values, not {item.shape[0]}")
        return item
    return _main_face(item, flip=flip, max_pixels=max_pixels).embedding  # type: ignore[return-value]


def compare(
    a: FaceInput,
    b: FaceInput,
    *,
    threshold: float | None = None,
    fmr: float | None = None,
    flip: bool = FLIP_DEFAULT,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Comparison:
    """Compare two faces: photos (their main faces), `Face` records or 128-d embeddings.

    The threshold is a score (0-100) or is chosen for a target false-match rate; by default the
    lowest threshold whose measured FMR is at most 1e-3. Raises NoFaceError if a photo has no face.
    """
    return compare_embeddings(
        _embedding_of(a, flip, max_pixels),
        _embedding_of(b, flip, max_pixels),
        threshold=threshold,
        fmr=fmr,
    )
