"""dlib's face recognition network, read and converted to ONNX without dlib, against dlib itself.

The tests that need dlib (pip package dlib-bin) are skipped where it is not installed; the others
check the conversion itself: it is deterministic, it refuses files that are not the network, and
the ONNX graph computes what the layer list read from the file says (checked with plain numpy).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import onnx
import pytest

from regard.errors import ModelError
from regard.models.dlib_convert import (
    AddPrev,
    Affine,
    AvgPool,
    Conv,
    FullyConnected,
    InputRGB,
    LayerWeights,
    MaxPool,
    Relu,
    Skip,
    Tag,
    _Reader,
    build_onnx,
    convert_dlib_resnet,
    read_dlib_resnet,
)
from regard.models.registry import DLIB_RESNET
from regard.models.runtime import new_session

FIXTURES = Path(__file__).parent / "fixtures"
# Six different people from Labeled Faces in the Wild (tests/fixtures/SOURCES.md).
PEOPLE = (
    "Abel_Pacheco",
    "Akhmed_Zakayev",
    "Alanis_Morissette",
    "Alonzo_Mourning",
    "Amber_Tamblyn",
    "Angela_Bassett",
)
TOLERANCE = 1e-3  # max abs difference allowed against dlib, per embedding component
CHIP = 150
GRAPH_OPS = {"Conv", "Relu", "MaxPool", "AveragePool", "Add", "Pad", "GlobalAveragePool", "Flatten", "MatMul"}


@pytest.fixture(scope="module")
def dat_path() -> Path:
    try:
        path = DLIB_RESNET.path()
    except ModelError:
        path = Path("/nonexistent")
    if not path.is_file():
        pytest.skip(f"dlib's network is not installed ({DLIB_RESNET.package})")
    return path


@pytest.fixture(scope="module")
def converted(dat_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("dlib-onnx") / "dlib_resnet.onnx"
    return out, convert_dlib_resnet(dat_path, out)


def _embed(session: object, chips: np.ndarray) -> np.ndarray:
    """Embeddings of N x 150 x 150 x 3 uint8 RGB chips through the converted graph."""
    batch = np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32)
    (vectors,) = session.run(["embedding"], {"image": batch})  # type: ignore[attr-defined]
    return vectors


# ------------------------------------------------------------------------------------------------
# Without dlib.


def test_conversion_is_deterministic(dat_path: Path, converted: tuple[Path, str], tmp_path: Path) -> None:
    first_path, first_digest = converted
    again = tmp_path / "again.onnx"
    assert convert_dlib_resnet(dat_path, again) == first_digest
    assert hashlib.sha256(first_path.read_bytes()).hexdigest() == first_digest
    assert again.read_bytes() == first_path.read_bytes()


def test_graph_interface_and_ops(converted: tuple[Path, str]) -> None:
    model = onnx.load(str(converted[0]))
    onnx.checker.check_model(model)
    (image,) = model.graph.input
    (embedding,) = model.graph.output
    assert image.name == "image" and embedding.name == "embedding"
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert dims == ["N", 3, CHIP, CHIP]
    assert [d.dim_param or d.dim_value for d in embedding.type.tensor_type.shape.dim] == ["N", 128]
    assert {node.op_type for node in model.graph.node} <= GRAPH_OPS
    # Every affine layer is folded away: one Conv per convolution of dlib's network.
    assert sum(node.op_type == "Conv" for node in model.graph.node) == 29


def test_file_structure(dat_path: Path) -> None:
    layers = read_dlib_resnet(dat_path)
    first = layers[0]
    assert isinstance(first, InputRGB)
    assert (first.rows, first.cols) == (CHIP, CHIP)
    np.testing.assert_allclose(first.mean_rgb, (122.782, 117.001, 104.298), atol=1e-4)
    convs = [layer for layer in layers if isinstance(layer, Conv)]
    assert len(convs) == 29 and sum(isinstance(layer, Affine) for layer in layers) == 29
    assert convs[0].weight.shape == (32, 3, 7, 7) and convs[0].stride == (2, 2) and convs[0].padding == (0, 0)
    assert convs[-1].weight.shape == (256, 256, 3, 3) and convs[-1].padding == (1, 1)
    assert isinstance(layers[-1], FullyConnected) and layers[-1].weight.shape == (256, 128)
    assert layers[-1].bias is None  # fc_no_bias


def _corrupt_cases(dat_path: Path) -> dict[str, bytes]:
    data = dat_path.read_bytes()
    rng = np.random.default_rng(7)
    return {
        "empty": b"",
        "header only": data[:300],
        "truncated in the weights": data[: len(data) // 2],
        "one byte short": data[:-1],
        "one byte too many": data + b"\x00",
        "garbage": rng.integers(0, 256, size=100_000, dtype=np.uint8).tobytes(),
        "garbage after a good start": data[:400] + rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "text": b"this is not a dlib network\n" * 100,
        "other dlib file": (dat_path.parent / "shape_predictor_5_face_landmarks.dat").read_bytes()[:200_000],
    }


def test_bad_files_raise_model_error(dat_path: Path, tmp_path: Path) -> None:
    for case, payload in _corrupt_cases(dat_path).items():
        bad = tmp_path / "bad.dat"
        bad.write_bytes(payload)
        out = tmp_path / "bad.onnx"
        with pytest.raises(ModelError, match="bad.dat"):
            convert_dlib_resnet(bad, out)
        assert not out.exists(), case
    with pytest.raises(ModelError, match="cannot read"):
        read_dlib_resnet(tmp_path / "missing.dat")


def _dlib_int(value: int) -> bytes:
    """dlib's integer encoding: a control byte (sign, byte count), then the magnitude, little endian."""
    magnitude = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "little")
    return bytes([len(magnitude) | (0x80 if value < 0 else 0)]) + magnitude


def _dlib_float(value: float) -> bytes:
    """dlib's float encoding: an integer mantissa, then an integer exponent."""
    mantissa, exponent = math.frexp(value)
    return _dlib_int(int(mantissa * (1 << 53))) + _dlib_int(exponent - 53)


def _dlib_tensor(values: np.ndarray) -> bytes:
    """A resizable_tensor (version 2) of shape (1, k, 1, 1)."""
    header = b"".join(_dlib_int(v) for v in (2, 1, values.size, 1, 1))
    return header + values.astype("<f4").tobytes()


def test_bn_con_is_read_as_the_affine_dlib_makes_of_it(dat_path: Path, tmp_path: Path) -> None:
    """A bn_con2 layer where an affine_ is expected becomes gamma/sqrt(var+eps), beta - that*mean."""
    data = dat_path.read_bytes()
    start = data.index(b"\x01\x07affine_")  # the first affine_ written: the first one computed
    original = read_dlib_resnet(dat_path)[2]
    assert isinstance(original, Affine)
    # Where the affine_ block ends: its params tensor, two alias tensors and the mode.
    reader = _Reader(data)
    reader.pos = start
    reader.string("name")
    reader.tensor("params")
    reader.alias("gamma")
    reader.alias("beta")
    reader.integer("mode")
    end = reader.pos

    rng = np.random.default_rng(11)
    channels, eps = original.gamma.size, 1e-5
    mean = rng.normal(size=channels)
    variance = rng.uniform(0.5, 2.0, size=channels)
    gamma = original.gamma * np.sqrt(variance + eps)
    beta = original.beta + original.gamma * mean
    alias = b"".join(_dlib_int(v) for v in (1, 1, channels, 1, 1))
    empty = b"".join(_dlib_int(v) for v in (2, 0, 0, 0, 0))
    bn_con = (
        _dlib_int(7) + b"bn_con2"
        + _dlib_tensor(np.concatenate([gamma, beta]))
        + alias + alias  # gamma, beta
        + empty + empty  # means, invstds (training state)
        + _dlib_tensor(mean) + _dlib_tensor(variance)
        + _dlib_int(100) + _dlib_int(100)  # num_updates, running_stats_window_size
        + b"".join(_dlib_float(v) for v in (1.0, 0.0, 1.0, 1.0, eps))  # multipliers, eps
    )  # fmt: skip
    changed = tmp_path / "bn_con.dat"
    changed.write_bytes(data[:start] + bn_con + data[end:])
    converted = read_dlib_resnet(changed)[2]
    assert isinstance(converted, Affine)
    np.testing.assert_allclose(converted.gamma, original.gamma, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(converted.beta, original.beta, rtol=1e-5, atol=1e-5)


def _conv_reference(x: np.ndarray, layer: Conv) -> np.ndarray:
    """dlib's convolution of one sample x [k, rows, cols], written out with numpy (float64)."""
    (py, px), (sy, sx) = layer.padding, layer.stride
    out, k, fr, fc = layer.weight.shape
    padded = np.pad(x, ((0, 0), (py, py), (px, px)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (fr, fc), axis=(1, 2))[:, ::sy, ::sx]
    y = np.einsum("krcij,okij->orc", windows, layer.weight.astype(np.float64), optimize=True)
    if layer.bias is not None:
        y += layer.bias[:, None, None]
    return y


def _pool_reference(x: np.ndarray, layer: MaxPool | AvgPool) -> np.ndarray:
    reduce = np.max if isinstance(layer, MaxPool) else np.mean
    if layer.window == (0, 0):
        return reduce(x, axis=(1, 2), keepdims=True)
    assert layer.padding == (0, 0)
    (wr, wc), (sy, sx) = layer.window, layer.stride
    windows = np.lib.stride_tricks.sliding_window_view(x, (wr, wc), axis=(1, 2))[:, ::sy, ::sx]
    return reduce(windows, axis=(3, 4))


def _reference_forward(layers: list[LayerWeights], image: np.ndarray) -> np.ndarray:
    """dlib's forward pass of one chip [3, rows, cols], layer by layer and unfused, in float64."""
    first = layers[0]
    assert isinstance(first, InputRGB)
    x = (image.astype(np.float64) - np.array(first.mean_rgb)[:, None, None]) / 256
    tags: dict[int, np.ndarray] = {}
    for layer in layers[1:]:
        if isinstance(layer, Conv):
            x = _conv_reference(x, layer)
        elif isinstance(layer, Affine):
            x = x * layer.gamma[:, None, None] + layer.beta[:, None, None]
        elif isinstance(layer, Relu):
            x = np.maximum(x, 0)
        elif isinstance(layer, (MaxPool, AvgPool)):
            x = _pool_reference(x, layer)
        elif isinstance(layer, Tag):
            tags[layer.id] = x
        elif isinstance(layer, Skip):
            x = tags[layer.id]
        elif isinstance(layer, AddPrev):
            other = tags[layer.tag]
            total = np.zeros([max(a, b) for a, b in zip(x.shape, other.shape)])
            total[: x.shape[0], : x.shape[1], : x.shape[2]] += x
            total[: other.shape[0], : other.shape[1], : other.shape[2]] += other
            x = total
        elif isinstance(layer, FullyConnected):
            x = x.reshape(-1) @ layer.weight.astype(np.float64)
            if layer.bias is not None:
                x = x + layer.bias
        else:
            raise AssertionError(layer)
    return x


def test_graph_computes_the_layers_read(dat_path: Path, converted: tuple[Path, str]) -> None:
    """The folded ONNX graph against a plain evaluation of the layer list (no dlib needed)."""
    layers = read_dlib_resnet(dat_path)
    rng = np.random.default_rng(3)
    chips = rng.integers(0, 256, size=(2, CHIP, CHIP, 3), dtype=np.uint8)
    ours = _embed(new_session(str(converted[0]), 1), chips)
    for chip, vector in zip(chips, ours):
        expected = _reference_forward(layers, chip.transpose(2, 0, 1))
        assert np.abs(vector - expected).max() < 1e-4


def test_zero_filled_add_and_unfolded_affine() -> None:
    """add_prev of different shapes zero-fills at the end of each dimension, as dlib's add does;
    an affine layer that cannot be folded (the next convolution pads) is still exact."""
    rng = np.random.default_rng(5)

    def f32(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype(np.float32)

    layers: list[LayerWeights] = [
        InputRGB((100.0, 110.0, 120.0), 9, 9),
        Affine(f32(3), f32(3)),  # composed with the input normalisation, then a depthwise conv
        Tag(1),
        Conv(f32(4, 3, 3, 3), None, (2, 2), (0, 0)),  # 4 channels of 4 x 4
        Tag(2),
        Skip(1),
        Conv(f32(2, 3, 3, 3), f32(2), (1, 1), (1, 1)),  # 2 channels of 9 x 9
        AddPrev(2),  # 4 channels of 9 x 9, each input zero-filled
        Relu(),
        AvgPool((0, 0), (1, 1), (0, 0)),
        FullyConnected(f32(4, 5), f32(5)),
    ]
    model = build_onnx(layers)
    onnx.checker.check_model(model)
    assert sum(node.op_type == "Pad" for node in model.graph.node) == 2
    image = rng.integers(0, 256, size=(3, 9, 9)).astype(np.float32)
    (got,) = new_session(model.SerializeToString(), 1).run(["embedding"], {"image": image[None]})
    np.testing.assert_allclose(got[0], _reference_forward(layers, image), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Against dlib.


@pytest.fixture(scope="module")
def dlib_chips(dat_path: Path) -> np.ndarray:
    """150 x 150 face chips cut by dlib itself from six LFW photos, N x 150 x 150 x 3 uint8 RGB."""
    dlib = pytest.importorskip("dlib")
    models = dat_path.parent
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    chips = []
    for name in PEOPLE:
        image = dlib.load_rgb_image(str(FIXTURES / "lfw" / name / f"{name}_0001.jpg"))
        faces = detector(image, 1)
        assert len(faces) == 1, name
        shape = predictor(image, faces[0])
        chips.append(dlib.get_face_chip(image, shape, size=CHIP, padding=0.25))
    return np.stack(chips)


def test_embeddings_equal_dlib(dat_path: Path, converted: tuple[Path, str], dlib_chips: np.ndarray) -> None:
    import dlib

    model = dlib.face_recognition_model_v1(str(dat_path))
    session = new_session(str(converted[0]), 1)
    one_by_one = np.concatenate([_embed(session, chip[None]) for chip in dlib_chips])
    batched = _embed(session, dlib_chips)
    worst = 0.0
    for name, chip, ours, ours_batched in zip(PEOPLE, dlib_chips, one_by_one, batched):
        reference = np.array(model.compute_face_descriptor(chip), dtype=np.float64)
        diff = float(np.abs(ours - reference).max())
        diff_batched = float(np.abs(ours_batched - reference).max())
        print(f"{name}: max |ours - dlib| = {diff:.3g} (batch of {len(dlib_chips)}: {diff_batched:.3g})")
        assert diff <= TOLERANCE and diff_batched <= TOLERANCE, name
        worst = max(worst, diff, diff_batched)
    print(f"max abs difference over {len(PEOPLE)} faces: {worst:.3g}")
    # Different people stay apart and the same chip embeds the same: dlib's own 0.6 threshold.
    distances = np.linalg.norm(one_by_one[:, None] - one_by_one[None], axis=-1)
    assert (distances[~np.eye(len(PEOPLE), dtype=bool)] > 0.6).all()
