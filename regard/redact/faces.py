"""Finding faces to redact: recall first, small faces included, large photos in tiles.

Recognition asks the detector for confident faces of 32 px and up; redaction must miss as few
faces as possible, so it uses a lower confidence threshold and looks at the image at a scale where
its smallest face of interest (`min_face`) is at least `RELIABLE_FACE` pixels wide: at threshold
0.3 CenterFace found every one of the 43 annotated faces of dlib's photos when they were shrunk to
13 px (bench/redact.py measures it). A working image larger than `TILE` pixels on its long side is
cut into overlapping tiles, and a coarser level of the same image (a quarter of the scale) finds the
faces too large to lie whole inside a tile; the levels continue until one fits in a single tile.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from regard.models.detector import Detection, _nms

DEFAULT_MIN_CONFIDENCE = 0.3
"""Detector confidence for redaction (recognition uses 0.5). Chosen by bench/redact.py: the lowest
threshold that adds no false redaction on dlib's photos beyond a few, with recall 1.0."""

DEFAULT_MIN_FACE = 13
"""The smallest face width (pixels) redaction looks for by default: the image is examined at its
full resolution, where CenterFace finds faces of 13 px and up."""

RELIABLE_FACE = 13
"""The face width (pixels, at the detector's input) CenterFace finds reliably at threshold 0.3."""

MAX_UPSCALE = 2.0
"""A `min_face` below RELIABLE_FACE enlarges the image, by this factor at most."""

TILE = 2048
"""Working images longer than this (pixels) are examined in tiles of this size."""

_OVERLAP = 256
"""Tiles overlap by this many pixels, so every face up to this size lies whole in some tile."""

_LEVEL_RATIO = 4
"""Each coarser level is this many times smaller; a face too large for a tile's overlap at one
level (> _OVERLAP px) is > _OVERLAP / _LEVEL_RATIO = 64 px at the next, well within reach."""


def find_faces(
    rgb: np.ndarray,
    *,
    detector: object | None = None,
    min_face: float = DEFAULT_MIN_FACE,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> list[Detection]:
    """Every face to redact in an HxWx3 uint8 RGB image, in its pixel coordinates, most confident first."""
    if not min_face > 0:
        raise ValueError(f"min_face must be positive, got {min_face}")
    if not 0.0 < min_confidence < 1.0:
        raise ValueError(f"min_confidence must be between 0 and 1, got {min_confidence}")
    if detector is None:
        from regard.models import get_detector

        detector = get_detector()
    height, width = rgb.shape[:2]
    scale = min(MAX_UPSCALE, RELIABLE_FACE / min_face)
    found: list[Detection] = []
    while True:
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        level = _resized(rgb, w, h)
        found += _detect_level(detector, level, width / w, height / h, min_confidence)
        if max(w, h) <= TILE:
            break
        scale /= _LEVEL_RATIO
    return _merged(found)


def _resized(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if (width, height) == (rgb.shape[1], rgb.shape[0]):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))


def _starts(length: int) -> list[int]:
    """Tile origins along one side: tiles of TILE pixels overlapping by _OVERLAP, the last flush."""
    if length <= TILE:
        return [0]
    step = TILE - _OVERLAP
    count = math.ceil((length - _OVERLAP) / step)
    return [min(i * step, length - TILE) for i in range(count)]


def _detect_level(
    detector: object, image: np.ndarray, sx: float, sy: float, min_confidence: float
) -> list[Detection]:
    """Detections in one level of the image (tiled if needed), mapped to the original's pixels."""
    height, width = image.shape[:2]
    out: list[Detection] = []
    for top in _starts(height):
        for left in _starts(width):
            tile = np.ascontiguousarray(image[top : top + TILE, left : left + TILE])
            # max_side = the tile's own size and min_face = 20 (the detector's reliable size): the
            # detector then looks at the tile as it is, neither shrunk nor enlarged.
            found = detector.detect(  # type: ignore[attr-defined]
                tile, max_side=max(32, *tile.shape[:2]), min_face=20, min_confidence=min_confidence
            )
            for d in found:
                l, t, r, b = d.box
                marks = (d.landmarks + np.array([left, top], np.float32)) * np.array([sx, sy], np.float32)
                out.append(
                    Detection(
                        box=((l + left) * sx, (t + top) * sy, (r + left) * sx, (b + top) * sy),
                        landmarks=marks.astype(np.float32),
                        confidence=d.confidence,
                    )
                )
    return out


def _merged(found: list[Detection]) -> list[Detection]:
    """One detection per face where tiles and levels found the same face twice."""
    if len(found) <= 1:
        return found
    boxes = np.array([d.box for d in found], dtype=np.float64)
    scores = np.array([d.confidence for d in found], dtype=np.float64)
    return [found[i] for i in _nms(boxes, scores, 0.3)]
