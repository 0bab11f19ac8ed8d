"""The model registry and the converted-embedder cache."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import regard.models
from regard.errors import ModelError
from regard.models import get_embedder
from regard.models.embedder import converted_model_path
from regard.models.registry import ALL_MODELS, CENTERFACE, sha256_of


def test_every_model_file_is_found_and_matches_its_sha256():
    for model in ALL_MODELS:
        path = model.verified_path()
        assert path.is_file() and sha256_of(path) == model.sha256
        assert model.license and model.card and model.input_size and model.source


def test_centerface_ships_inside_regard_with_its_licence_beside_it():
    path = CENTERFACE.verified_path()
    assert path.parent.parent == Path(regard.models.__file__).parent
    licence = path.parent.parent / CENTERFACE.license_file
    text = licence.read_text()
    assert "MIT License" in text and CENTERFACE.sha256 in text and "Star-Clouds" in text


def test_a_file_with_another_sha256_is_refused():
    wrong = dataclasses.replace(CENTERFACE, sha256="0" * 64)
    with pytest.raises(ModelError, match="sha256"):
        wrong.verified_path()


def test_a_missing_package_says_what_to_install():
    missing = dataclasses.replace(CENTERFACE, module="no_such_package_here", package="no-such-package")
    with pytest.raises(ModelError, match="pip install no-such-package"):
        missing.path()


def test_a_damaged_cache_is_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setenv("REGARD_CACHE_DIR", str(tmp_path))
    first = converted_model_path()
    digest = sha256_of(first)
    assert first.parent == tmp_path
    assert first.with_suffix(".onnx.sha256").read_text().strip() == digest
    first.write_bytes(first.read_bytes()[: 1000])  # a truncated cache file
    again = converted_model_path()
    assert again == first and sha256_of(again) == digest
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dlib-resnet-")]  # no temp files left


def test_embedder_rejects_wrong_chip_shapes_and_handles_empty_batches():
    embedder = get_embedder()
    assert embedder.embed_chips(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)
    with pytest.raises(ValueError):
        embedder.embed_chips(np.zeros((1, 112, 112, 3), np.uint8))


def test_flip_averaging_is_the_mean_of_the_chip_and_its_mirror():
    rng = np.random.default_rng(5)
    chip = rng.integers(0, 256, size=(1, 150, 150, 3), dtype=np.uint8)
    embedder = get_embedder()
    plain = embedder.embed_chips(chip, flip=False)
    mirrored = embedder.embed_chips(chip[:, :, ::-1], flip=False)
    np.testing.assert_allclose(embedder.embed_chips(chip, flip=True), (plain + mirrored) / 2, atol=1e-5)
