"""The response shapes the operations share: a detected face as a FaceDetail (`face_detail`:
geometry and quality only, never attributes), a stored face as a Face (`_face_shape`), boxes in
ratios of the image, landmark names and UnindexedFaces reasons in Rekognition's words."""

from __future__ import annotations

from typing import Any

import numpy as np

from regard.face import LANDMARK_NAMES, Face
from regard.store.base import FaceRecord

_LANDMARK_TYPES = dict(zip(LANDMARK_NAMES, ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight")))


_REASONS = {
    "TOO_SMALL": "SMALL_BOUNDING_BOX",
    "LOW_QUALITY": "LOW_FACE_QUALITY",
    "EXCEEDS_MAX_FACES": "EXCEEDS_MAX_FACES",
    "MULTIPLE_FACES": "MULTIPLE_FACES",  # Regard's own: several faces, none named (X-Regard-Face-Box)
    "EXTREME_POSE": "EXTREME_POSE",
    "LOW_SHARPNESS": "LOW_SHARPNESS",
    "LOW_CONFIDENCE": "LOW_CONFIDENCE",
}


def _ratio_box(left: float, top: float, width: float, height: float, size: tuple[int, int]) -> dict[str, float]:
    w, h = size
    return {"Width": width / w, "Height": height / h, "Left": left / w, "Top": top / h}


def _brightness(rgb: np.ndarray, face: Face) -> float:
    h, w = rgb.shape[:2]
    left, top = max(0, int(face.box.left)), max(0, int(face.box.top))
    right, bottom = min(w, int(np.ceil(face.box.right))), min(h, int(np.ceil(face.box.bottom)))
    region = rgb[top:bottom, left:right]
    if region.size == 0:
        return 0.0
    luma = region[..., 0] * 0.299 + region[..., 1] * 0.587 + region[..., 2] * 0.114
    return float(luma.mean() / 255.0 * 100.0)


def face_detail(rgb: np.ndarray, face: Face) -> dict[str, Any]:
    """A FaceDetail (also valid as a ComparedFace): geometry and quality only, never attributes."""
    size = (rgb.shape[1], rgb.shape[0])
    q = face.quality
    return {
        "BoundingBox": _ratio_box(face.box.left, face.box.top, face.box.width, face.box.height, size),
        "Landmarks": [
            {"Type": _LANDMARK_TYPES[name], "X": float(x) / size[0], "Y": float(y) / size[1]}
            for name, (x, y) in zip(LANDMARK_NAMES, face.landmarks)
        ],
        "Pose": {"Roll": q.roll, "Yaw": q.yaw, "Pitch": q.pitch},
        "Quality": {"Brightness": _brightness(rgb, face), "Sharpness": q.sharpness},
        "Confidence": face.confidence * 100.0,
    }


def _face_shape(record: FaceRecord, model: str) -> dict[str, Any]:
    """A stored face as Rekognition's Face (no geometry: Regard keeps none)."""
    out: dict[str, Any] = {"FaceId": record.face_id, "IndexFacesModelVersion": model}
    if record.external_image_id:
        out["ExternalImageId"] = record.external_image_id
    if record.person_id:
        out["UserId"] = record.person_id
    return out
