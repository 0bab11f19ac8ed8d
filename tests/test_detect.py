"""The CenterFace detector on real photos with hand-drawn boxes (dlib's example photos)."""

from __future__ import annotations

import numpy as np
import pytest

from regard.image import load_image
from regard.models import get_detector
from regard.models.detector import nms as _nms

# Hand-drawn boxes from dlib's examples/faces/testing.xml (left, top, width, height).
GROUND_TRUTH = {
    "2008_002470.jpg": [
        (274, 181, 52, 53), (55, 156, 44, 44), (146, 166, 37, 37),
        (329, 55, 44, 44), (233, 74, 44, 44), (178, 86, 37, 37),
    ],
}


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_group_photo_finds_every_annotated_face_and_nothing_else(fixtures):
    rgb = load_image(fixtures / "2008_002470.jpg")
    found = get_detector().detect(rgb)
    truth = [(l, t, l + w, t + h) for l, t, w, h in GROUND_TRUTH["2008_002470.jpg"]]
    assert len(found) == len(truth)
    for box in truth:
        best = max(_iou(box, d.box) for d in found)
        assert best > 0.4, f"annotated face {box} not found (best IoU {best:.2f})"


def test_landmarks_lie_inside_their_box_in_anatomical_order(fixtures):
    for d in get_detector().detect(load_image(fixtures / "2008_007676.jpg")):
        left, top, right, bottom = d.box
        xs, ys = d.landmarks[:, 0], d.landmarks[:, 1]
        assert (xs >= left - 2).all() and (xs <= right + 2).all()
        assert (ys >= top - 2).all() and (ys <= bottom + 2).all()
        right_eye, left_eye, nose, mouth_r, mouth_l = d.landmarks
        assert right_eye[0] < left_eye[0] and mouth_r[0] < mouth_l[0]
        assert max(right_eye[1], left_eye[1]) < nose[1] < min(mouth_r[1], mouth_l[1])
        assert 0.5 < d.confidence <= 1.0


def test_dogs_have_no_human_face(fixtures):
    assert get_detector().detect(load_image(fixtures / "dogs.jpg")) == []


def test_large_photo_is_shrunk_and_boxes_come_back_in_its_coordinates(fixtures):
    rgb = load_image(fixtures / "2008_002470.jpg")
    doubled = np.repeat(np.repeat(rgb, 3, axis=0), 3, axis=1)  # 1500 x 996: shrunk to 640
    small = sorted(d.box for d in get_detector().detect(rgb))
    large = sorted(d.box for d in get_detector().detect(doubled))
    assert len(small) == len(large)
    for a, b in zip(small, large):
        assert _iou(tuple(x * 3 for x in a), b) > 0.7


def test_tiny_and_odd_sized_images_do_not_break_detection():
    for shape in [(1, 1, 3), (7, 300, 3), (33, 65, 3)]:
        assert get_detector().detect(np.full(shape, 128, np.uint8)) == []


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    scores = np.array([0.6, 0.9, 0.7], dtype=np.float32)
    assert _nms(boxes, scores, 0.3) == [1, 2]


@pytest.mark.parametrize("confidence", [0.5, 0.9])
def test_min_confidence_filters(fixtures, confidence):
    found = get_detector().detect(load_image(fixtures / "2008_007676.jpg"), min_confidence=confidence)
    assert all(d.confidence > confidence for d in found)
