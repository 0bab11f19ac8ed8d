"""The records the pipeline returns: a face's box, landmarks, quality and embedding."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

LANDMARK_NAMES = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")
"""The 5 landmarks, in order. "Right" is the person's right, which is on the image's left."""


@dataclass(frozen=True)
class Box:
    """A face box in image pixels."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.left + self.right) / 2, (self.top + self.bottom) / 2)

    def to_dict(self) -> dict[str, float]:
        return {
            "left": round(self.left, 1),
            "top": round(self.top, 1),
            "width": round(self.width, 1),
            "height": round(self.height, 1),
        }


class QualityLevel(str, Enum):
    """Coarse quality levels, as in Rekognition's QualityFilter (LOW < MEDIUM < HIGH)."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"

    @property
    def rank(self) -> int:
        return ("LOW", "MEDIUM", "HIGH").index(self.value)


@dataclass(frozen=True)
class Quality:
    """How usable a face is for recognition, and why."""

    score: float  # 0..100
    level: QualityLevel
    eye_distance: float  # pixels between the eye centres in the photo
    sharpness: float  # 0..100, from the chip's Laplacian energy
    yaw: float  # degrees, estimated from landmarks (0 = frontal)
    pitch: float  # degrees, rough
    roll: float  # degrees, the tilt of the eye line
    confidence: float  # the detector's, 0..1

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 1),
            "level": self.level.value,
            "eye_distance": round(self.eye_distance, 1),
            "sharpness": round(self.sharpness, 1),
            "yaw": round(self.yaw, 1),
            "pitch": round(self.pitch, 1),
            "roll": round(self.roll, 1),
            "confidence": round(self.confidence, 4),
        }


@dataclass(frozen=True, eq=False)
class Face:
    """One face found in a photo."""

    box: Box
    landmarks: np.ndarray  # 5 x 2 float32 (x, y), in LANDMARK_NAMES order
    confidence: float
    quality: Quality
    embedding: np.ndarray | None = None  # 128 float32, when computed

    def to_dict(self, *, include_embedding: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "box": self.box.to_dict(),
            "confidence": round(self.confidence, 4),
            "landmarks": {
                name: [round(float(x), 1), round(float(y), 1)]
                for name, (x, y) in zip(LANDMARK_NAMES, self.landmarks)
            },
            "quality": self.quality.to_dict(),
        }
        if include_embedding and self.embedding is not None:
            out["embedding"] = [round(float(v), 6) for v in self.embedding]
        return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of `a` (N x 4) with every box of `b` (M x 4), boxes as
    (left, top, right, bottom)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def box_iou(a: tuple[float, float, float, float] | np.ndarray, b: tuple[float, float, float, float] | np.ndarray) -> float:
    """Intersection over union of two boxes (left, top, right, bottom)."""
    return float(iou_matrix(np.asarray(a, np.float64)[None], np.asarray(b, np.float64)[None])[0, 0])
