"""Quality levels on real faces, and what lowers them."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

import regard
from regard.face import QualityLevel
from regard.quality import pose_from_landmarks, sharpness_of
from tests.conftest import lfw


def test_clear_portraits_are_not_low_quality():
    for name, index in [("Abel_Pacheco", 1), ("Akhmed_Zakayev", 1), ("Amber_Tamblyn", 1)]:
        faces = regard.detect(lfw(name, index), embed=False)
        assert faces[0].quality.level in (QualityLevel.MEDIUM, QualityLevel.HIGH), faces[0].quality


def test_blur_and_size_lower_quality():
    image = Image.open(lfw("Amber_Tamblyn", 1)).convert("RGB")
    sharp = regard.detect(np.asarray(image), embed=False)[0].quality
    blurred = regard.detect(np.asarray(image.filter(ImageFilter.GaussianBlur(4))), embed=False)[0].quality
    assert blurred.sharpness < sharp.sharpness and blurred.score < sharp.score
    # The same face shrunk to a thumbnail: 4 times fewer pixels between the eyes.
    small = Image.new("RGB", (250, 250), (128, 128, 128))
    small.paste(image.resize((62, 62), Image.BILINEAR), (94, 94))
    tiny = regard.detect(np.asarray(small), embed=False)
    if tiny:  # if found at all, it must not pass as a good face
        assert tiny[0].quality.score < sharp.score
        assert tiny[0].quality.level != QualityLevel.HIGH


def test_pose_from_landmarks():
    frontal = np.array([[40, 50], [80, 50], [60, 72], [45, 95], [75, 95]], dtype=float)
    yaw, pitch, roll = pose_from_landmarks(frontal)
    assert abs(yaw) < 1 and abs(roll) < 1 and abs(pitch) < 15
    turned = frontal.copy()
    turned[2, 0] = 75  # the nose near one eye: a head turned well to one side
    assert abs(pose_from_landmarks(turned)[0]) > 25
    angle = np.radians(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert abs(pose_from_landmarks(frontal @ rot.T)[2] - 20) < 0.5


def test_sharpness_of_flat_chip_is_zero():
    assert sharpness_of(np.full((150, 150, 3), 90, np.uint8)) == 0.0
