"""Alignment: the similarity transform and chip cutting."""

from __future__ import annotations

import math

import numpy as np

from regard.align import (
    CENTERFACE_TEMPLATE,
    align,
    dlib_chip_points,
    invert_affine,
    similarity_transform,
    warp_chip,
)
from regard.image import load_image
from regard.models import get_detector


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 200, size=(5, 2))
    angle, scale, shift = math.radians(17), 0.7, np.array([12.0, -30.0])
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    target = source @ rotation.T + shift
    matrix = similarity_transform(source, target)
    np.testing.assert_allclose(matrix[:, :2], rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
    np.testing.assert_allclose(invert_affine(matrix)[:, :2] @ rotation, np.eye(2), atol=1e-9)


def test_similarity_transform_never_mirrors():
    face = np.array([[40, 50], [80, 50], [60, 72], [45, 95], [75, 95]], dtype=float)
    mirrored = face * np.array([-1, 1])  # the mirror image, points in the same order
    matrix = similarity_transform(face, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0  # a rotation, never a reflection


def test_dlib_template_matches_dlib_geometry():
    points = dlib_chip_points()
    # dlib's 5-point template at padding 0.25 in a 150 px chip: the outer eye corners.
    np.testing.assert_allclose(points[0], [(0.25 + 0.8595674595992) / 1.5 * 150, (0.25 + 0.2134981538014) / 1.5 * 150])
    assert points[2][0] < points[3][0] < points[4][0] < points[1][0] < points[0][0]


def test_warp_chip_with_a_pure_shift_copies_pixels():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    to_chip = np.array([[1.0, 0.0, -37.0], [0.0, 1.0, -81.0]])  # chip (0,0) = image (37, 81)
    chip = warp_chip(image, to_chip, size=150)
    np.testing.assert_array_equal(chip, image[81:231, 37:187])


def test_warp_chip_outside_the_image_is_black():
    image = np.full((50, 50, 3), 200, np.uint8)
    chip = warp_chip(image, np.array([[1.0, 0.0, 500.0], [0.0, 1.0, 500.0]]), size=20)
    assert chip.shape == (20, 20, 3) and chip.max() == 0


def test_big_face_is_shrunk_without_aliasing():
    # A fine checkerboard shrunk 8x must come out mid-grey, not as moire.
    yy, xx = np.mgrid[0:1200, 0:1200]
    board = (((xx + yy) % 2) * 255).astype(np.uint8)
    image = np.dstack([board] * 3)
    chip = warp_chip(image, np.array([[1 / 8, 0, 0], [0, 1 / 8, 0]]), size=150)
    assert abs(float(chip[5:-5, 5:-5].mean()) - 127.5) < 3
    assert float(chip[5:-5, 5:-5].std()) < 6


def test_aligned_chip_puts_the_landmarks_on_the_template(fixtures):
    rgb = load_image(fixtures / "lfw" / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg")
    face = get_detector().detect(rgb)[0]
    chip = align(rgb, face.landmarks)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    mapped = np.c_[face.landmarks, np.ones(5)] @ similarity_transform(face.landmarks, CENTERFACE_TEMPLATE).T
    # 5 points, 4 degrees of freedom: the eyes land on the template; this face is turned a
    # little, so its nose sits off the template's.
    assert np.abs(mapped[:2] - CENTERFACE_TEMPLATE[:2]).max() < 6
    assert np.abs(mapped - CENTERFACE_TEMPLATE).mean() < 5
    # Running the detector on the chip finds the face where the template says it is.
    again = get_detector().detect(chip)
    assert again, "no face found in the aligned chip"
    assert np.abs(again[0].landmarks[:2] - CENTERFACE_TEMPLATE[:2]).max() < 8
