"""Read dlib's face recognition ResNet without dlib, and rebuild it as an ONNX graph.

One job in one file (over 600 lines): the reader, the architecture it checks the file against and
the graph it writes share the one layout described here, and are read together.

dlib saves a network (here `dlib_face_recognition_resnet_model_v1.dat`, the `anet_type` of dlib's
examples/dnn_face_recognition_ex.cpp) with its own serialisation, written by nested templates:

* every wrapper writes an int version and then its sub-network, and only afterwards its own
  details: `add_loss_layer` writes (version, loss details, sub-network); `add_layer` writes
  (version, sub-network, layer details, extra state); `add_tag_layer` and `add_skip_layer` write
  (version, sub-network) and nothing else. So the file starts with the loss layer, then one version
  number per wrapper from the outermost inwards, then the input layer, then the layer details from
  the innermost (first computed) layer outwards. Tags and skips leave no trace but their versions,
  so the topology cannot be recovered from the file alone: the reader walks the expected
  architecture (`_face_resnet_slots`) and checks every version, name and shape against it.
* integers: a control byte (bit 7 = negative, low 4 bits = number of bytes that follow) and then
  the absolute value, little endian. bool: the ASCII byte '0' or '1'. std::string: its length as an
  integer, then its bytes. float and double: a `float_details`, i.e. an int64 mantissa then an
  int16 exponent, both as integers, meaning mantissa * 2**exponent (exponents 32000, 32001 and
  32002 stand for +inf, -inf and NaN). serialize.h's comment says the exponent comes first, but
  its code, and the model file, have the mantissa first.
* resizable_tensor (version 2): the version, num_samples, k, nr, nc as integers, then
  n*k*nr*nc raw little-endian float32. alias_tensor (version 1): the version and the 4 sizes only.
* after its layer details, add_layer (version 2) writes three bools and the x_grad, cached_output
  and params_grad tensors (all empty in this file); the add_layer directly over the input layer
  (version 3 here) writes grad_final instead of params_grad, then its sample_expansion_factor.

This file holds loss_metric_2 (margin 0.04, distance threshold 0.6), input_rgb_image_sized<150>
with means R 122.782, G 117.001, B 104.298, con_4 convolutions and, for the batch norms, affine_
layers (the test-time network was saved, not the bn_con training one).

Layer semantics that the ONNX graph reproduces (checked against dlib/dnn/layers.h, input.h and
cpu_dlib.cpp):

* input_rgb_image_sized: channel planes R, G, B, each (pixel - mean) / 256.
* con_: cross-correlation (dlib's img2col does not flip the filters, like ONNX Conv), filters laid
  out [num_filters, k, nr, nc], then one bias per filter; output size 1 + (n + 2p - size) // stride.
  The padding defaults to 0 when the stride is not 1, else size // 2, and is stored in the file.
* affine_: per channel (CONV_MODE) y = gamma * x + beta, gamma and beta stored one after the other
  in `params`. A bn_con2 layer read where an affine_ is expected is turned into one the way dlib
  does: gamma / sqrt(running_variance + eps) and beta - gamma' * running_mean.
* max_pool_ / avg_pool_: window, stride, padding as for con_; a window of 0 means the whole input
  (avg_pool_everything).
* add_prev_<tag>: adds the output of the nearest tagged layer below. If the two shapes differ the
  output takes the larger size in every dimension and each input is zero-filled at the end (this
  happens in this network: 32 -> 64 channels, and at the 256-channel level a 3 x 3 block output
  meets a 4 x 4 pooled input).
* fc_ (fc_no_bias here): weights [num_inputs, num_outputs], output = flatten(x) @ W (+ bias).
* loss_metric_: outputs the fc output unchanged (no normalisation).

`build_onnx` folds every affine layer and the input normalisation into the neighbouring
convolution, so the graph holds only Conv, Relu, MaxPool, AveragePool, Pad, Add,
GlobalAveragePool, Flatten and MatMul.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from regard.errors import ModelError

__all__ = [
    "Affine",
    "AddPrev",
    "AvgPool",
    "Conv",
    "FullyConnected",
    "InputRGB",
    "LayerWeights",
    "MaxPool",
    "Relu",
    "Skip",
    "Tag",
    "build_onnx",
    "convert_dlib_resnet",
    "read_dlib_resnet",
]

INPUT_NAME = "image"
OUTPUT_NAME = "embedding"

# ------------------------------------------------------------------------------------------------
# The network as a list of layers in the order they are computed.


@dataclass(frozen=True, eq=False)
class InputRGB:
    """dlib's input_rgb_image_sized: R, G, B planes of (pixel - mean) / 256."""

    mean_rgb: tuple[float, float, float]
    rows: int
    cols: int


@dataclass(frozen=True, eq=False)
class Conv:
    """A convolution (cross-correlation): weight [out, in, rows, cols], bias [out] or None."""

    weight: np.ndarray
    bias: np.ndarray | None
    stride: tuple[int, int]  # (y, x)
    padding: tuple[int, int]  # (y, x), zeros on both sides


@dataclass(frozen=True, eq=False)
class Affine:
    """A per-channel affine map y = gamma * x + beta (dlib's affine_ in CONV_MODE)."""

    gamma: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True, eq=False)
class Relu:
    """max(x, 0)."""


@dataclass(frozen=True, eq=False)
class MaxPool:
    """Max pooling; a window of (0, 0) covers the whole input."""

    window: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True, eq=False)
class AvgPool:
    """Average pooling; a window of (0, 0) covers the whole input (avg_pool_everything)."""

    window: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True, eq=False)
class Tag:
    """Marks the current output as tag `id` (dlib's tagN)."""

    id: int


@dataclass(frozen=True, eq=False)
class Skip:
    """Replaces the current output with the output last tagged `id` (dlib's skipN)."""

    id: int


@dataclass(frozen=True, eq=False)
class AddPrev:
    """Adds the output last tagged `tag` to the current output, zero-filling shape differences."""

    tag: int


@dataclass(frozen=True, eq=False)
class FullyConnected:
    """flatten(x) @ weight (+ bias); weight is [num_inputs, num_outputs]."""

    weight: np.ndarray
    bias: np.ndarray | None


# One layer of the network, as `read_dlib_resnet` returns them and `build_onnx` takes them.
LayerWeights: TypeAlias = Union[
    InputRGB, Conv, Affine, Relu, MaxPool, AvgPool, Tag, Skip, AddPrev, FullyConnected
]

# ------------------------------------------------------------------------------------------------
# The expected architecture, outermost wrapper first, exactly as dlib nests its templates.


@dataclass(frozen=True)
class _Slot:
    """One wrapper in dlib's template nesting: a computational layer, a tag or a skip."""

    kind: str  # "con", "bn", "relu", "max_pool", "avg_pool", "add_prev", "fc", "tag", "skip"
    args: tuple[int, ...] = ()


def _con(filters: int, size: int, stride: int) -> _Slot:
    return _Slot("con", (filters, size, stride))


_BN = _Slot("bn")  # affine_ in the test-time network (bn_con while training)
_RELU = _Slot("relu")


def _block(filters: int, stride: int) -> list[_Slot]:
    # block<N,BN,stride,SUBNET> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>
    return [_BN, _con(filters, 3, 1), _RELU, _BN, _con(filters, 3, stride)]


def _ares(filters: int) -> list[_Slot]:
    # ares<N,S> = relu<add_prev1<block<N,affine,1,tag1<S>>>>
    return [_RELU, _Slot("add_prev", (1,)), *_block(filters, 1), _Slot("tag", (1,))]


def _ares_down(filters: int) -> list[_Slot]:
    # ares_down<N,S> = relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<S>>>>>>>
    return [
        _RELU,
        _Slot("add_prev", (2,)),
        _Slot("avg_pool", (2, 2)),
        _Slot("skip", (1,)),
        _Slot("tag", (2,)),
        *_block(filters, 2),
        _Slot("tag", (1,)),
    ]


def _face_resnet_slots() -> list[_Slot]:
    """anet_type of dnn_face_recognition_ex.cpp below its loss layer, outermost first."""
    return [
        _Slot("fc", (128,)),  # fc_no_bias<128, ...>
        _Slot("avg_pool", (0, 1)),  # avg_pool_everything
        *_ares_down(256),  # alevel0
        *_ares(256), *_ares(256), *_ares_down(256),  # alevel1
        *_ares(128), *_ares(128), *_ares_down(128),  # alevel2
        *_ares(64), *_ares(64), *_ares(64), *_ares_down(64),  # alevel3
        *_ares(32), *_ares(32), *_ares(32),  # alevel4
        _Slot("max_pool", (3, 2)),
        _RELU,
        _BN,
        _con(32, 7, 2),
    ]  # fmt: skip


def _default_padding(size: int, stride: int) -> int:
    """dlib's default padding for con_, max_pool_ and avg_pool_."""
    return 0 if stride != 1 else size // 2


# ------------------------------------------------------------------------------------------------
# dlib's serialisation primitives.

_FLOAT_INF, _FLOAT_NINF, _FLOAT_NAN = 32000, 32001, 32002
_MAX_STRING = 256  # every name in these files is short; a longer one means garbage
_MAX_DIM = 1 << 40


class _FormatError(Exception):
    """Raised inside the reader; turned into ModelError with the file name and byte offset."""


class _Reader:
    """Reads dlib's serialisation format from a byte string."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, count: int, what: str) -> bytes:
        end = self.pos + count
        if count < 0 or end > len(self.data):
            raise _FormatError(f"the file ends inside {what}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def integer(self, what: str, *, signed: bool = True) -> int:
        control = self._take(1, what)[0]
        size = control & 0x0F
        if control & 0x70 or size > 8:
            raise _FormatError(f"bad integer control byte 0x{control:02x} for {what}")
        negative = bool(control & 0x80)
        if negative and not signed:
            raise _FormatError(f"negative value for the unsigned {what}")
        value = int.from_bytes(self._take(size, what), "little")
        return -value if negative else value

    def version(self, what: str, allowed: Sequence[int]) -> int:
        value = self.integer(f"the version of {what}")
        if value not in allowed:
            raise _FormatError(f"{what} has version {value}, expected one of {list(allowed)}")
        return value

    def size(self, what: str) -> int:
        value = self.integer(what)
        if not 0 <= value < _MAX_DIM:
            raise _FormatError(f"{what} is {value}")
        return value

    def floating(self, what: str) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            # Old dlib wrote floats as text; no model in that format is expected here.
            raise _FormatError(f"{what} uses dlib's old text float format")
        mantissa = self.integer(f"the mantissa of {what}")
        exponent = self.integer(f"the exponent of {what}")
        if exponent == _FLOAT_INF:
            return math.inf
        if exponent == _FLOAT_NINF:
            return -math.inf
        if exponent == _FLOAT_NAN:
            return math.nan
        if not -(1 << 15) <= exponent < _FLOAT_INF:
            raise _FormatError(f"bad exponent {exponent} for {what}")
        try:
            return math.ldexp(mantissa, exponent)
        except OverflowError:
            return math.copysign(math.inf, mantissa)

    def boolean(self, what: str) -> bool:
        byte = self._take(1, what)
        if byte not in (b"0", b"1"):
            raise _FormatError(f"bad bool {byte!r} for {what}")
        return byte == b"1"

    def string(self, what: str) -> str:
        length = self.integer(f"the length of {what}", signed=False)
        if length > _MAX_STRING:
            raise _FormatError(f"{what} is {length} bytes long")
        raw = self._take(length, what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise _FormatError(f"{what} is not text: {raw[:32]!r}") from None

    def name(self, what: str, allowed: Sequence[str]) -> str:
        value = self.string(f"the name of {what}")
        if value not in allowed:
            raise _FormatError(f"found {value!r} where {what} ({' or '.join(allowed)}) was expected")
        return value

    def tensor(self, what: str) -> np.ndarray:
        """A resizable_tensor as a float32 array [n, k, nr, nc]."""
        self.version(what, (2,))
        shape = tuple(self.size(f"a dimension of {what}") for _ in range(4))
        count = math.prod(shape)
        raw = self._take(4 * count, what)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self, what: str) -> tuple[int, int, int, int]:
        """An alias_tensor: only its shape (n, k, nr, nc)."""
        self.version(what, (1,))
        n, k, nr, nc = (self.size(f"a dimension of {what}") for _ in range(4))
        return n, k, nr, nc


# ------------------------------------------------------------------------------------------------
# Layer details.


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise _FormatError(message)


def _read_con(r: _Reader, filters: int, size: int, stride: int) -> list[LayerWeights]:
    what = f"con<{filters},{size},{size},{stride},{stride}>"
    version = r.name(what, ("con_4", "con_5", "con_6"))
    params = r.tensor(f"{what} params")
    num_filters = r.integer(f"{what} num_filters")
    nr, nc = r.integer(f"{what} nr"), r.integer(f"{what} nc")
    stride_y, stride_x = r.integer(f"{what} stride_y"), r.integer(f"{what} stride_x")
    pad_y, pad_x = r.integer(f"{what} padding_y"), r.integer(f"{what} padding_x")
    filter_shape = r.alias(f"{what} filters")
    bias_shape = r.alias(f"{what} biases")
    for field in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
        r.floating(f"{what} {field} multiplier")
    use_bias = r.boolean(f"{what} use_bias") if version in ("con_5", "con_6") else True
    use_relu = r.boolean(f"{what} use_relu") if version == "con_6" else False

    pad = _default_padding(size, stride)
    found = (num_filters, nr, nc, stride_y, stride_x, pad_y, pad_x)
    _expect(
        found == (filters, size, size, stride, stride, pad, pad),
        f"{what}: the file has {num_filters} filters of {nr}x{nc}, stride {stride_y}x{stride_x}, "
        f"padding {pad_y}x{pad_x}",
    )
    out, k, fr, fc = filter_shape
    _expect(out == filters and (fr, fc) == (size, size) and k > 0, f"{what}: filter shape {filter_shape}")
    weight_count = out * k * fr * fc
    bias_count = filters if use_bias else 0
    _expect(params.size == weight_count + bias_count, f"{what}: {params.size} parameters for {filter_shape}")
    if use_bias:
        _expect(math.prod(bias_shape) == filters, f"{what}: bias shape {bias_shape}")
    flat = params.reshape(-1)
    weight = flat[:weight_count].reshape(out, k, fr, fc)
    bias = flat[weight_count:].copy() if use_bias else None
    layers: list[LayerWeights] = [Conv(weight, bias, (stride, stride), (pad, pad))]
    if use_relu:
        layers.append(Relu())
    return layers


def _read_bn(r: _Reader) -> Affine:
    """affine_ (test time), or bn_con2 (training time) turned into the affine_ dlib would make."""
    what = "affine"
    version = r.name(what, ("affine_", "affine_2", "bn_con2"))
    if version == "bn_con2":
        params = r.tensor("bn_con params")
        gamma_shape = r.alias("bn_con gamma")
        r.alias("bn_con beta")
        r.tensor("bn_con means")
        r.tensor("bn_con invstds")
        running_means = r.tensor("bn_con running_means").reshape(-1)
        running_variances = r.tensor("bn_con running_variances").reshape(-1)
        r.integer("bn_con num_updates", signed=False)
        r.integer("bn_con running_stats_window_size", signed=False)
        for field in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
            r.floating(f"bn_con {field} multiplier")
        eps = r.floating("bn_con eps")
        channels = math.prod(gamma_shape)
        _expect(
            gamma_shape == (1, channels, 1, 1)
            and params.size == 2 * channels
            and running_means.size == channels == running_variances.size,
            f"bn_con: gamma {gamma_shape}, {params.size} parameters, {running_means.size} running means",
        )
        gamma = params.reshape(-1)[:channels].astype(np.float64)
        beta = params.reshape(-1)[channels:].astype(np.float64)
        scale = gamma / np.sqrt(running_variances.astype(np.float64) + eps)
        shift = beta - scale * running_means
        return Affine(scale.astype(np.float32), shift.astype(np.float32))

    params = r.tensor(f"{what} params")
    gamma_shape = r.alias(f"{what} gamma")
    beta_shape = r.alias(f"{what} beta")
    mode = r.integer(f"{what} mode")
    disabled = r.boolean(f"{what} disabled") if version == "affine_2" else False
    _expect(not disabled, "a disabled affine layer")
    _expect(mode == 0, f"affine layer in mode {mode}, expected CONV_MODE (0)")
    channels = math.prod(gamma_shape)
    _expect(
        gamma_shape == beta_shape and gamma_shape == (1, channels, 1, 1) and params.size == 2 * channels,
        f"affine: gamma {gamma_shape}, beta {beta_shape}, {params.size} parameters",
    )
    flat = params.reshape(-1)
    return Affine(flat[:channels].copy(), flat[channels:].copy())


def _read_pool(r: _Reader, kind: str, window: int, stride: int) -> MaxPool | AvgPool:
    what = f"{kind}<{window},{window},{stride},{stride}>"
    r.name(what, (f"{kind}_2",))
    nr, nc = r.integer(f"{what} nr"), r.integer(f"{what} nc")
    stride_y, stride_x = r.integer(f"{what} stride_y"), r.integer(f"{what} stride_x")
    pad_y, pad_x = r.integer(f"{what} padding_y"), r.integer(f"{what} padding_x")
    pad = _default_padding(window, stride)
    _expect(
        (nr, nc, stride_y, stride_x, pad_y, pad_x) == (window, window, stride, stride, pad, pad),
        f"{what}: the file has window {nr}x{nc}, stride {stride_y}x{stride_x}, padding {pad_y}x{pad_x}",
    )
    cls = MaxPool if kind == "max_pool" else AvgPool
    return cls((window, window), (stride, stride), (pad, pad))


def _read_fc(r: _Reader, outputs: int) -> FullyConnected:
    what = f"fc_no_bias<{outputs}>"
    r.name(what, ("fc_2",))
    num_outputs = r.integer(f"{what} num_outputs", signed=False)
    num_inputs = r.integer(f"{what} num_inputs", signed=False)
    params = r.tensor(f"{what} params")
    weight_shape = r.alias(f"{what} weights")
    r.alias(f"{what} biases")
    bias_mode = r.integer(f"{what} bias_mode")
    for field in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
        r.floating(f"{what} {field} multiplier")
    _expect(num_outputs == outputs, f"{what}: the file has {num_outputs} outputs")
    _expect(bias_mode in (0, 1), f"{what}: bias mode {bias_mode}")
    has_bias = bias_mode == 0
    _expect(weight_shape == (num_inputs, num_outputs, 1, 1), f"{what}: weights {weight_shape}")
    weight_count = num_inputs * num_outputs
    _expect(
        params.size == weight_count + (num_outputs if has_bias else 0),
        f"{what}: {params.size} parameters for {num_inputs} x {num_outputs}",
    )
    flat = params.reshape(-1)
    weight = flat[:weight_count].reshape(num_inputs, num_outputs)
    bias = flat[weight_count:].copy() if has_bias else None
    return FullyConnected(weight, bias)


def _read_details(r: _Reader, slot: _Slot) -> list[LayerWeights]:
    if slot.kind == "con":
        return _read_con(r, *slot.args)
    if slot.kind == "bn":
        return [_read_bn(r)]
    if slot.kind == "relu":
        r.name("relu", ("relu_",))
        return [Relu()]
    if slot.kind in ("max_pool", "avg_pool"):
        window, stride = slot.args
        return [_read_pool(r, slot.kind, window, stride)]
    if slot.kind == "add_prev":
        r.name(f"add_prev{slot.args[0]}", ("add_prev_",))
        return [AddPrev(slot.args[0])]
    if slot.kind == "fc":
        return [_read_fc(r, slot.args[0])]
    raise AssertionError(slot)


def _read_input(r: _Reader) -> InputRGB:
    r.name("the input layer", ("input_rgb_image_sized",))
    mean = tuple(float(np.float32(r.floating(f"the input's mean {c}"))) for c in ("red", "green", "blue"))
    rows = r.integer("the input's rows", signed=False)
    cols = r.integer("the input's columns", signed=False)
    _expect(rows > 0 and cols > 0, f"input size {rows} x {cols}")
    return InputRGB((mean[0], mean[1], mean[2]), rows, cols)


def _parse(r: _Reader) -> list[LayerWeights]:
    """The layers of the network that `r` holds, first computed first."""
    # add_loss_layer: version, loss details, then the network below it.
    r.version("the loss layer", (1,))
    loss = r.name("the loss layer", ("loss_metric_", "loss_metric_2"))
    if loss == "loss_metric_2":
        r.floating("the loss margin")
        r.floating("the loss distance threshold")

    slots = _face_resnet_slots()
    versions: list[int] = []
    for depth, slot in enumerate(slots):
        what = f"wrapper {depth} ({slot.kind})"
        if slot.kind in ("tag", "skip"):
            versions.append(r.version(what, (1,)))
        elif depth == len(slots) - 1:
            versions.append(r.version(what, (2, 3)))  # add_layer over the input layer
        else:
            versions.append(r.version(what, (1, 2)))
    first = _read_input(r)

    # The details, innermost (first computed) layer first.
    layers: list[LayerWeights] = [first]
    for depth in range(len(slots) - 1, -1, -1):
        slot, version = slots[depth], versions[depth]
        if slot.kind == "tag":
            layers.append(Tag(slot.args[0]))
            continue
        if slot.kind == "skip":
            layers.append(Skip(slot.args[0]))
            continue
        layers.extend(_read_details(r, slot))
        # add_layer's own state after the details: three bools and cached tensors, unused here.
        for field in ("this_layer_setup_called", "gradient_input_is_stale", "output_disabled"):
            r.boolean(field)
        r.tensor("x_grad")
        r.tensor("cached_output")
        if depth == len(slots) - 1:
            r.tensor("grad_final")
            if version >= 3:
                r.integer("sample_expansion_factor", signed=False)
        elif version >= 2:
            r.tensor("params_grad")
    if r.pos != len(r.data):
        raise _FormatError(f"{len(r.data) - r.pos} unexpected bytes after the network")
    return layers


def read_dlib_resnet(dat_path: Path) -> list[LayerWeights]:
    """The layers of dlib's face recognition ResNet, in the order they are computed.

    The first item is the `InputRGB` layer; `Tag`, `Skip` and `AddPrev` items carry the residual
    connections as dlib expresses them. Raises ModelError if the file cannot be read or is not
    the expected network.
    """
    path = Path(dat_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read dlib's network {path}: {exc}") from exc
    reader = _Reader(data)
    try:
        return _parse(reader)
    except _FormatError as exc:
        raise ModelError(
            f"{path.name} is not dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1): "
            f"{exc} (at byte {reader.pos} of {len(data)})"
        ) from None


# ------------------------------------------------------------------------------------------------
# ONNX graph.

_Shape = tuple[int, int, int]  # channels, rows, cols of one sample


class _GraphBuilder:
    """Emits ONNX nodes for dlib's layers while tracking the shape of the current value.

    Two things are held back rather than emitted at once, so that they can be folded away:
    a convolution, until it is known whether an affine layer follows (folded into its weights),
    and a per-channel affine map with no convolution before it (the input normalisation), until
    the next convolution, which absorbs it when it pads nothing. At most one of them is pending.
    """

    def __init__(self, first: InputRGB) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.counts: dict[str, int] = {}
        self.current = INPUT_NAME
        self.shape: _Shape = (3, first.rows, first.cols)
        self.flat_size: int | None = None  # set once the value is 2-D (after the fc layer)
        self.tags: dict[int, tuple[str, _Shape]] = {}
        mean = np.asarray(first.mean_rgb, dtype=np.float64)
        # Pending per-channel map of `current`: value = scale * current + shift (float64).
        self.pending_affine: tuple[np.ndarray, np.ndarray] | None = (np.full(3, 1 / 256), -mean / 256)
        # Pending convolution of `current`: weight, bias (float64), stride, padding.
        self.pending_conv: tuple[np.ndarray, np.ndarray, tuple[int, int], tuple[int, int]] | None = None

    # -- emitting --------------------------------------------------------------------------------

    def _name(self, kind: str) -> str:
        index = self.counts.get(kind, 0)
        self.counts[kind] = index + 1
        return f"{kind}_{index}"

    def _constant(self, kind: str, value: np.ndarray) -> str:
        name = self._name(kind)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def _node(self, op: str, inputs: list[str], **attributes: object) -> str:
        output = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def _emit_conv(
        self,
        weight: np.ndarray,
        bias: np.ndarray,
        stride: tuple[int, int],
        padding: tuple[int, int],
        group: int = 1,
    ) -> None:
        out, _, rows, cols = weight.shape
        w = self._constant("conv_weight", weight.astype(np.float32))
        b = self._constant("conv_bias", bias.astype(np.float32))
        self.current = self._node(
            "Conv",
            [self.current, w, b],
            kernel_shape=[rows, cols],
            strides=list(stride),
            pads=[padding[0], padding[1], padding[0], padding[1]],
            group=group,
        )
        _, height, width = self.shape
        self.shape = (
            out,
            1 + (height + 2 * padding[0] - rows) // stride[0],
            1 + (width + 2 * padding[1] - cols) // stride[1],
        )

    def _flush_conv(self) -> None:
        if self.pending_conv is not None:
            weight, bias, stride, padding = self.pending_conv
            self.pending_conv = None
            self._emit_conv(weight, bias, stride, padding)

    def _flush_affine(self) -> None:
        if self.pending_affine is not None:
            scale, shift = self.pending_affine
            self.pending_affine = None
            channels = scale.size
            # A per-channel affine map is a 1 x 1 depthwise convolution.
            self._emit_conv(scale.reshape(channels, 1, 1, 1), shift, (1, 1), (0, 0), group=channels)

    def materialize(self) -> None:
        """Emits whatever is held back, so that `current` holds the real output so far."""
        self._flush_conv()
        self._flush_affine()

    # -- layers ----------------------------------------------------------------------------------

    def conv(self, layer: Conv) -> None:
        self._flush_conv()
        out, k, rows, cols = layer.weight.shape
        channels, height, width = self.shape
        (py, px), (sy, sx) = layer.padding, layer.stride
        if k != channels:
            raise ModelError(f"a convolution takes {k} channels, the layer below gives {channels}")
        if height + 2 * py < rows or width + 2 * px < cols or min(sy, sx, rows, cols) < 1:
            raise ModelError(f"a {rows}x{cols} convolution does not fit its {height}x{width} input")
        weight = layer.weight.astype(np.float64)
        bias = np.zeros(out) if layer.bias is None else layer.bias.astype(np.float64)
        if self.pending_affine is not None and (py, px) == (0, 0):
            # conv(W, s*x + t) + b == conv(W*s, x) + b + sum(W*t), exact when nothing is padded.
            scale, shift = self.pending_affine
            self.pending_affine = None
            bias = bias + np.einsum("okrc,k->o", weight, shift)
            weight = weight * scale[None, :, None, None]
        else:
            self._flush_affine()
        self.pending_conv = (weight, bias, layer.stride, layer.padding)

    def affine(self, layer: Affine) -> None:
        gamma = layer.gamma.astype(np.float64).reshape(-1)
        beta = layer.beta.astype(np.float64).reshape(-1)
        channels = self.pending_conv[0].shape[0] if self.pending_conv is not None else self.shape[0]
        if gamma.size != channels or beta.size != channels:
            raise ModelError(f"an affine layer of {gamma.size} channels follows one of {channels}")
        if self.pending_conv is not None:
            # gamma * (conv(W, x) + b) + beta == conv(gamma*W, x) + gamma*b + beta
            weight, bias, stride, padding = self.pending_conv
            self.pending_conv = (weight * gamma[:, None, None, None], bias * gamma + beta, stride, padding)
        elif self.pending_affine is not None:
            scale, shift = self.pending_affine
            self.pending_affine = (scale * gamma, shift * gamma + beta)
        else:
            self.pending_affine = (gamma, beta)

    def relu(self) -> None:
        self.materialize()
        self.current = self._node("Relu", [self.current])

    def pool(self, layer: MaxPool | AvgPool) -> None:
        self.materialize()
        channels, height, width = self.shape
        is_max = isinstance(layer, MaxPool)
        if layer.window == (0, 0):
            self.current = self._node("GlobalMaxPool" if is_max else "GlobalAveragePool", [self.current])
            self.shape = (channels, 1, 1)
            return
        (rows, cols), (sy, sx), (py, px) = layer.window, layer.stride, layer.padding
        if not is_max and (py, px) != (0, 0):
            raise ModelError("average pooling with padding is not supported")  # not needed, not checked
        if height + 2 * py < rows or width + 2 * px < cols or min(sy, sx, rows, cols) < 1:
            raise ModelError(f"a {rows}x{cols} pooling does not fit its {height}x{width} input")
        self.current = self._node(
            "MaxPool" if is_max else "AveragePool",
            [self.current],
            kernel_shape=[rows, cols],
            strides=[sy, sx],
            pads=[py, px, py, px],
        )
        self.shape = (channels, 1 + (height + 2 * py - rows) // sy, 1 + (width + 2 * px - cols) // sx)

    def tag(self, layer: Tag) -> None:
        self.materialize()
        self.tags[layer.id] = (self.current, self.shape)

    def skip(self, layer: Skip) -> None:
        if layer.id not in self.tags:
            raise ModelError(f"skip{layer.id} has no tag{layer.id} below it")
        self.materialize()
        self.current, self.shape = self.tags[layer.id]

    def _zero_fill(self, value: str, shape: _Shape, target: _Shape) -> str:
        """`value` with zeros appended to each dimension up to `target`, as dlib's add does."""
        if shape == target:
            return value
        ends = [t - s for s, t in zip(shape, target)]
        pads = np.array([0, 0, 0, 0, 0, *ends], dtype=np.int64)  # N, C, H, W begins, then ends
        return self._node("Pad", [value, self._constant("pads", pads)], mode="constant")

    def add_prev(self, layer: AddPrev) -> None:
        if layer.tag not in self.tags:
            raise ModelError(f"add_prev{layer.tag} has no tag{layer.tag} below it")
        self.materialize()
        other, other_shape = self.tags[layer.tag]
        c, h, w = (max(a, b) for a, b in zip(self.shape, other_shape))
        target = (c, h, w)
        mine = self._zero_fill(self.current, self.shape, target)
        theirs = self._zero_fill(other, other_shape, target)
        self.current = self._node("Add", [mine, theirs])
        self.shape = target

    def fully_connected(self, layer: FullyConnected) -> None:
        self.materialize()
        inputs = math.prod(self.shape)
        num_inputs, num_outputs = layer.weight.shape
        if num_inputs != inputs:
            raise ModelError(f"the fc layer takes {num_inputs} inputs, the layer below gives {inputs}")
        # dlib flattens each sample in (k, r, c) order, as ONNX Flatten does for NCHW.
        flat = self._node("Flatten", [self.current], axis=1)
        weight = self._constant("fc_weight", layer.weight.astype(np.float32))
        self.current = self._node("MatMul", [flat, weight])
        if layer.bias is not None:
            bias = self._constant("fc_bias", layer.bias.astype(np.float32))
            self.current = self._node("Add", [self.current, bias])
        self.flat_size = num_outputs

    def finish(self) -> int:
        """Flattens the output if still 4-D (as loss_metric_ reads it); returns its size."""
        self.materialize()
        if self.flat_size is None:
            self.current = self._node("Flatten", [self.current], axis=1)
            self.flat_size = math.prod(self.shape)
        return self.flat_size


def build_onnx(layers: Sequence[LayerWeights], opset: int = 17) -> onnx.ModelProto:
    """The ONNX model computing `layers` (as `read_dlib_resnet` returns them).

    Input "image": float32 [N, 3, rows, cols], RGB planes of raw pixel values 0..255. Output
    "embedding": float32 [N, 128], exactly what dlib's network outputs. Affine layers and the input
    normalisation are folded into the convolutions.
    """
    if opset < 11:
        raise ValueError("opset 11 or newer is needed (Pad takes its pads as an input from 11 on)")
    if not layers or not isinstance(layers[0], InputRGB):
        raise ModelError("the network must start with its input layer")
    first = layers[0]
    g = _GraphBuilder(first)
    for index, layer in enumerate(layers[1:], start=1):
        if g.flat_size is not None:
            raise ModelError(f"layer {index} ({type(layer).__name__}) follows the fully connected layer")
        if isinstance(layer, Conv):
            g.conv(layer)
        elif isinstance(layer, Affine):
            g.affine(layer)
        elif isinstance(layer, Relu):
            g.relu()
        elif isinstance(layer, (MaxPool, AvgPool)):
            g.pool(layer)
        elif isinstance(layer, Tag):
            g.tag(layer)
        elif isinstance(layer, Skip):
            g.skip(layer)
        elif isinstance(layer, AddPrev):
            g.add_prev(layer)
        elif isinstance(layer, FullyConnected):
            g.fully_connected(layer)
        else:
            raise ModelError(f"layer {index} is of an unknown type {type(layer).__name__}")
    outputs = g.finish()
    g.nodes[-1].output[0] = OUTPUT_NAME  # the last node computes the result; name it

    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, first.rows, first.cols])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", outputs])],
        initializer=g.initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="regard.models.dlib_convert",
        doc_string=(
            "dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1 by Davis King, CC0), "
            "converted without dlib. Input: RGB pixel values 0..255, N x 3 x rows x cols."
        ),
    )


def convert_dlib_resnet(dat_path: Path, out_path: Path) -> str:
    """Converts dlib's .dat network into an ONNX file at `out_path`; returns the file's sha256 (hex).

    The same input gives the same bytes. Raises ModelError if the .dat file is not the expected
    network; errors writing `out_path` propagate as OSError.
    """
    model = build_onnx(read_dlib_resnet(dat_path))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:  # a bug in this module, not a bad input file
        raise ModelError(f"the converted network is not valid ONNX: {exc}") from exc
    data = model.SerializeToString()
    Path(out_path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()
