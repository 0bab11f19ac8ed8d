"""Finding faces to redact: the detector's one path (tiles and coarser levels for large photos)
with the redaction preset, recall first.

Recognition asks the detector for confident faces of 32 px and up; redaction must miss as few
faces as possible, so it uses a lower confidence threshold and looks at the image at a scale where
its smallest face of interest (`min_face`) is at least 13 pixels wide (see
`regard.models.detector.REDACTION` for the measurement behind it).
"""

from __future__ import annotations

import numpy as np

from regard.models.detector import REDACTION, Detection

DEFAULT_MIN_CONFIDENCE = REDACTION.min_confidence
"""Detector confidence for redaction (recognition uses 0.5). Chosen by bench/redact.py: the lowest
threshold that adds no false redaction on dlib's photos beyond a few, with recall 1.0."""

DEFAULT_MIN_FACE = REDACTION.min_face
"""The smallest face width (pixels) redaction looks for by default: the image is examined at its
full resolution, where CenterFace finds faces of 13 px and up."""


def find_faces(
    rgb: np.ndarray,
    *,
    detector: object | None = None,
    min_face: float = DEFAULT_MIN_FACE,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> list[Detection]:
    """Every face to redact in an HxWx3 uint8 RGB image, in its pixel coordinates, most confident first."""
    if detector is None:
        from regard.models import get_detector

        detector = get_detector()
    return detector.detect(rgb, preset=REDACTION, min_face=min_face, min_confidence=min_confidence)  # type: ignore[attr-defined]
