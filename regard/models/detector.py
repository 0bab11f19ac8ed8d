"""Face detection with CenterFace run through ONNX Runtime.

CenterFace predicts, on a grid of stride 4, a face-centre heatmap, the box size (log scale), a
sub-cell offset and 5 landmarks relative to the box. The shipped graph has a fixed 32x32 input and
lists its weights as graph inputs; `_dynamic_graph` gives it a free input size and drops the weights
from the inputs so that ONNX Runtime can fold constants, which roughly halves its run time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from regard.models.registry import CENTERFACE
from regard.models.runtime import new_session

_INPUT = "input.1"
_OUTPUTS = ("537", "538", "539", "540")  # heatmap, log box size, centre offset, landmarks
_STRIDE = 4
_ALIGN = 32  # the graph's spatial dimensions must be multiples of 32
_NMS_IOU = 0.3

TILE = 2048
"""A working image longer than this (pixels) is examined in overlapping tiles of this size."""

_OVERLAP = 256
"""Tiles overlap by this many pixels, so every face up to this size lies whole in some tile."""

_LEVEL_RATIO = 4
"""Each coarser level is this many times smaller: a face too large for a tile's overlap at one level
(> _OVERLAP px) is > _OVERLAP / _LEVEL_RATIO = 64 px at the next, well within reach."""


@dataclass(frozen=True)
class DetectionPreset:
    """How hard to look for faces: the smallest face wanted, the confidence a face needs, and the
    face width (pixels, at the detector's input) CenterFace finds reliably at that confidence.

    A photo is examined at the scale where a `min_face` face becomes `reliable_face` pixels wide
    (shrunk when faces may be larger, enlarged at most `max_upscale` times when they may be
    smaller); a working image larger than TILE is cut into overlapping tiles, and coarser levels (a
    quarter of the scale each) find the faces too large to lie whole in a tile, until one level
    fits in a single tile. Photos of every size take this one path."""

    name: str
    min_face: float
    min_confidence: float
    reliable_face: float
    max_upscale: float = 2.0


RECOGNITION = DetectionPreset("recognition", min_face=32, min_confidence=0.5, reliable_face=20)
"""For detect, enroll, search and compare: confident faces of 32 px and up (smaller faces rate LOW
quality and are too small to recognise). At confidence 0.5 CenterFace found all 43 annotated faces
of dlib's photos shrunk step by step down to 22 px, 42 of 43 at 18.5 px (bench/detection.py)."""

REDACTION = DetectionPreset("redaction", min_face=13, min_confidence=0.3, reliable_face=13)
"""For redaction, recall first: at confidence 0.3 CenterFace found every one of the 43 annotated
faces of dlib's photos shrunk to 13 px, and the photo is examined at full resolution by default
(bench/redact.py measures it)."""

DEFAULT_MIN_CONFIDENCE = RECOGNITION.min_confidence
DEFAULT_MIN_FACE = int(RECOGNITION.min_face)
"""The smallest face (box width in pixels of the photo) recognition looks for by default. A
smaller value finds smaller faces by looking at the photo at a larger scale, more slowly."""


@dataclass(frozen=True)
class Detection:
    """One face as the detector sees it, in the pixel coordinates of the input image."""

    box: tuple[float, float, float, float]  # left, top, right, bottom
    landmarks: np.ndarray  # 5 x 2 (x, y): right eye, left eye, nose tip, mouth right, mouth left
    confidence: float


def _dynamic_graph(path: str) -> bytes:
    """The CenterFace graph with a free input size and its weights no longer listed as inputs."""
    import onnx

    model = onnx.load(path)
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    real_inputs = [inp for inp in graph.input if inp.name not in initializers]
    del graph.input[:]
    graph.input.extend(real_inputs)
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        names = ("N", "C", "H", "W") if value.name == _INPUT else ("N", "", "h", "w")
        for dim, name in zip(dims, names):
            if name:
                dim.dim_param = name  # clears dim_value: the dimension becomes symbolic
    for value in list(graph.value_info):
        value.type.tensor_type.ClearField("shape")
    return model.SerializeToString()


class CenterFace:
    """The CenterFace detector. Create once and reuse; `regard.models.get_detector()` does that."""

    def __init__(self, num_threads: int = 1) -> None:
        path = CENTERFACE.verified_path()
        self._session = new_session(_dynamic_graph(str(path)), num_threads)

    def detect(
        self,
        rgb: np.ndarray,
        *,
        preset: DetectionPreset = RECOGNITION,
        min_face: float | None = None,
        min_confidence: float | None = None,
    ) -> list[Detection]:
        """Faces in an HxWx3 uint8 RGB image of any size, in its pixel coordinates, most confident
        first: every face `min_face` pixels wide and up (the preset's unless given) whose
        confidence is at least `min_confidence`. See `DetectionPreset` for how it looks."""
        min_face = preset.min_face if min_face is None else min_face
        min_confidence = preset.min_confidence if min_confidence is None else min_confidence
        if not min_face > 0:
            raise ValueError(f"min_face must be positive, got {min_face}")
        if not 0.0 < min_confidence < 1.0:
            raise ValueError(f"min_confidence must be between 0 and 1, got {min_confidence}")
        height, width = rgb.shape[:2]
        scale = min(preset.max_upscale, preset.reliable_face / min_face)
        found: list[Detection] = []
        while True:
            w, h = max(1, round(width * scale)), max(1, round(height * scale))
            level = _resized(rgb, w, h)
            found += self._detect_level(level, width / w, height / h, min_confidence)
            if max(w, h) <= TILE:
                break
            scale /= _LEVEL_RATIO
        return _merged(found)

    def run(self, rgb: np.ndarray, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> list[Detection]:
        """One pass of the network over the image as it is (padded to multiples of 32): faces of
        about 20 to 300 pixels. `detect` calls it on each tile and level."""
        height, width = rgb.shape[:2]
        pad_h, pad_w = -(-height // _ALIGN) * _ALIGN, -(-width // _ALIGN) * _ALIGN
        blob = np.zeros((1, 3, pad_h, pad_w), dtype=np.float32)
        blob[0, :, :height, :width] = rgb.transpose(2, 0, 1)
        heatmap, size, offset, marks = self._session.run(list(_OUTPUTS), {_INPUT: blob})
        return _decode(heatmap[0, 0], size[0], offset[0], marks[0], min_confidence)

    def _detect_level(self, image: np.ndarray, sx: float, sy: float, min_confidence: float) -> list[Detection]:
        """Detections in one level of the image (tiled if needed), mapped to the original's pixels."""
        height, width = image.shape[:2]
        out: list[Detection] = []
        for top, bottom in _spans(height):
            for left, right in _spans(width):
                tile = np.ascontiguousarray(image[top:bottom, left:right])
                for d in self.run(tile, min_confidence):
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


def _resized(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if (width, height) == (rgb.shape[1], rgb.shape[0]):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR))


def _spans(length: int) -> list[tuple[int, int]]:
    """(start, end) of the tiles along one side: as few as cover it with tiles of at most TILE
    pixels overlapping by at least _OVERLAP, all of one size (no tile examines more than it must)."""
    if length <= TILE:
        return [(0, length)]
    count = math.ceil((length - _OVERLAP) / (TILE - _OVERLAP))
    size = math.ceil((length + (count - 1) * _OVERLAP) / count)
    step = (length - size) / (count - 1)
    return [(round(i * step), round(i * step) + size) for i in range(count)]


def _merged(found: list[Detection]) -> list[Detection]:
    """One detection per face where tiles and levels found the same face twice, most confident first."""
    if len(found) <= 1:
        return found
    boxes = np.array([d.box for d in found], dtype=np.float64)
    scores = np.array([d.confidence for d in found], dtype=np.float64)
    return [found[i] for i in nms(boxes, scores, _NMS_IOU)]


def _decode(
    heatmap: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
    marks: np.ndarray,
    min_confidence: float,
) -> list[Detection]:
    """Detections in the network's outputs for one image, in its pixels."""
    rows, cols = np.nonzero(heatmap > min_confidence)
    if rows.size == 0:
        return []
    scores = heatmap[rows, cols]
    box_h = np.exp(size[0, rows, cols]) * _STRIDE
    box_w = np.exp(size[1, rows, cols]) * _STRIDE
    centre_y = (rows + offset[0, rows, cols] + 0.5) * _STRIDE
    centre_x = (cols + offset[1, rows, cols] + 0.5) * _STRIDE
    left, top = centre_x - box_w / 2, centre_y - box_h / 2
    boxes = np.stack([left, top, left + box_w, top + box_h], axis=1)
    # Landmarks are stored as (y, x) pairs relative to the box's top-left corner, in box units.
    lm_y = marks[0::2, rows, cols].T * box_h[:, None] + top[:, None]
    lm_x = marks[1::2, rows, cols].T * box_w[:, None] + left[:, None]
    keep = nms(boxes, scores, _NMS_IOU)
    detections = []
    for i in keep:
        box = boxes[i]
        landmarks = np.stack([lm_x[i], lm_y[i]], axis=1).astype(np.float32)
        detections.append(
            Detection(
                box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                landmarks=landmarks,
                confidence=float(scores[i]),
            )
        )
    return detections


def nms(boxes: np.ndarray, scores: np.ndarray, iou_limit: float) -> list[int]:
    """Greedy non-maximum suppression; indices of the boxes kept, best first."""
    order = np.argsort(-scores)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        inter_w = np.clip(
            np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]),
            0,
            None,
        )
        inter_h = np.clip(
            np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]),
            0,
            None,
        )
        inter = inter_w * inter_h
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou < iou_limit]
    return keep
