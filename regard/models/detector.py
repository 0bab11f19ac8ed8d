"""Face detection with CenterFace run through ONNX Runtime.

CenterFace predicts, on a grid of stride 4, a face-centre heatmap, the box size (log scale), a
sub-cell offset and 5 landmarks relative to the box. The shipped graph has a fixed 32x32 input and
lists its weights as graph inputs; `_dynamic_graph` gives it a free input size and drops the weights
from the inputs so that ONNX Runtime can fold constants, which roughly halves its run time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from regard.models.registry import CENTERFACE
from regard.models.runtime import new_session

_INPUT = "input.1"
_OUTPUTS = ("537", "538", "539", "540")  # heatmap, log box size, centre offset, landmarks
_STRIDE = 4
_ALIGN = 32  # the graph's spatial dimensions must be multiples of 32

DEFAULT_MAX_SIDE = 640
DEFAULT_MIN_CONFIDENCE = 0.5
DEFAULT_MIN_FACE = 32
"""The smallest face (box width in pixels of the photo) the detector is asked to find by default.

Smaller faces are too small to recognise (they rate LOW quality), and the default lets a photo be
shrunk before detection, which costs less: detection time grows with the pixels it looks at.
"""
_RELIABLE_FACE = 20
"""CenterFace finds faces of this width and up reliably: on dlib's annotated photos, shrunk step by
step, it found all 43 faces down to 22 px (dlib's box widths), 42 of 43 at 18.5 px, and fewer below
(bench/detection.py has the photos)."""
_NMS_IOU = 0.3


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
        max_side: int = DEFAULT_MAX_SIDE,
        min_face: int = DEFAULT_MIN_FACE,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    ) -> list[Detection]:
        """Faces in an HxWx3 uint8 RGB image, most confident first.

        The image is shrunk (never enlarged) as far as finding faces of `min_face` pixels and up
        allows, and so that its long side is at most `max_side` pixels, then padded to multiples
        of 32 without changing its aspect ratio.
        """
        if min_face < 1 or max_side < _ALIGN:
            raise ValueError(f"min_face must be >= 1 and max_side >= {_ALIGN}")
        height, width = rgb.shape[:2]
        scale = min(1.0, max_side / max(height, width), _RELIABLE_FACE / min_face)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        if (new_w, new_h) != (width, height):
            resized = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BILINEAR))
        else:
            resized = rgb
        pad_h, pad_w = -(-new_h // _ALIGN) * _ALIGN, -(-new_w // _ALIGN) * _ALIGN
        blob = np.zeros((1, 3, pad_h, pad_w), dtype=np.float32)
        blob[0, :, :new_h, :new_w] = resized.transpose(2, 0, 1)
        heatmap, size, offset, marks = self._session.run(list(_OUTPUTS), {_INPUT: blob})
        # Map from the resized image back to the original one (x and y scale separately
        # because of rounding).
        sx, sy = width / new_w, height / new_h
        return _decode(heatmap[0, 0], size[0], offset[0], marks[0], min_confidence, sx, sy)


def _decode(
    heatmap: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
    marks: np.ndarray,
    min_confidence: float,
    sx: float,
    sy: float,
) -> list[Detection]:
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
    keep = _nms(boxes, scores, _NMS_IOU)
    detections = []
    for i in keep:
        box = boxes[i] * np.array([sx, sy, sx, sy])
        landmarks = np.stack([lm_x[i] * sx, lm_y[i] * sy], axis=1).astype(np.float32)
        detections.append(
            Detection(
                box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                landmarks=landmarks,
                confidence=float(scores[i]),
            )
        )
    return detections


def _nms(boxes: np.ndarray, scores: np.ndarray, iou_limit: float) -> list[int]:
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
