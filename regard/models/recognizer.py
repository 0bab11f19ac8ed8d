"""What turns an aligned face into a vector: a recognition model's description.

A `Recognizer` says everything the pipeline and the store need to use a recognition network: its
file and sha256, its family (which alignment template, `regard.align.TEMPLATES`), its input (chip
size, channel order, layout, mean and std), the width of its vectors, its licence and source, and
its calibration (the score -> false-match-rate table that thresholds come from). Regard's built-in
model is dlib's ResNet (`BUILT_IN`); an operator registers others (`regard.models.operator`).

A model without a calibration may embed faces (enrolment stores them) but may not compare or
search: thresholds come only from a calibration measured on labelled photos (`regard audit
--model NAME --calibrate`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from regard.errors import ModelError
from regard.match import DISTANCE_AT_ZERO, ThresholdTable, default_table
from regard.models.registry import DLIB_RESNET, EMBEDDER_ID, EMBEDDING_SIZE

CHANNEL_ORDERS = ("RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC")
OPERATOR_DISTANCE_AT_ZERO = 2**0.5
"""An operator's model scores orthogonal vectors (cosine 0) 0 and identical ones 100: the built-in
model's scale (0.8, cosine 0.68) would give ArcFace-class models, whose different people sit near
cosine 0 and the same person near 0.3-0.8, a score of 0 for most pairs of either kind."""


@dataclass(frozen=True)
class Preprocess:
    """How a chip (size x size x 3 uint8 RGB) becomes the network's input: channel order, layout,
    and (pixel - mean) / std per channel (in the network's channel order)."""

    size: int
    channels: str = "RGB"
    layout: str = "NCHW"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.channels not in CHANNEL_ORDERS:
            raise ValueError(f"channel order is one of {', '.join(CHANNEL_ORDERS)}, not {self.channels!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout is one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        if self.size < 16 or self.size > 1024:
            raise ValueError(f"a chip is 16 to 1024 pixels wide, not {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3 or not all(s > 0 for s in self.std):
            raise ValueError("mean and std are three numbers each, std above 0")


FAMILY_PREPROCESS: dict[str, Preprocess] = {
    # The graph dlib_convert writes takes raw 0-255 RGB, NCHW (dlib's own normalisation is inside).
    "dlib": Preprocess(150),
    # InsightFace's ArcFaceONNX: RGB, (x - 127.5) / 127.5, NCHW, 112 x 112.
    "arcface": Preprocess(112, mean=(127.5,) * 3, std=(127.5,) * 3),
    # facenet-pytorch's fixed_image_standardization: (x - 127.5) / 128, 160 x 160.
    "facenet": Preprocess(160, mean=(127.5,) * 3, std=(128.0,) * 3),
}
"""Each family's usual input, used where `regard models add` is not told otherwise."""


@dataclass(frozen=True)
class Recognizer:
    """One recognition model: what it is, where its file is, how to feed it, and its calibration."""

    name: str
    family: str
    sha256: str
    width: int
    preprocess: Preprocess
    input_name: str
    output_name: str
    license: str
    source: str = ""
    path: str | None = None  # the operator's ONNX file; None for the built-in model
    calibration: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    added_at: str = ""
    added_by: str = ""
    distance_at_zero: float = OPERATOR_DISTANCE_AT_ZERO
    """The distance between unit vectors whose score is 0 (`regard.match.score_from_distance`)."""

    @property
    def id(self) -> str:
        """The model a collection's vectors come from, as collections record it: name:sha256[:16]."""
        return f"{self.name}:{self.sha256[:16]}"

    @property
    def built_in(self) -> bool:
        return self.path is None

    @property
    def calibrated(self) -> bool:
        return self.built_in or self.calibration is not None

    def table(self) -> ThresholdTable:
        """The model's threshold table; ModelError if it has none yet (no uncalibrated model may
        compare or search)."""
        if self.built_in:
            return default_table()
        if self.calibration is None:
            raise ModelError(
                f"model {self.name!r} is not calibrated, so it has no thresholds and may not compare or search; "
                f"measure them on labelled photos of your own: regard audit PHOTOS --out DIR --model {self.name} --calibrate"
            )
        return ThresholdTable.from_dict(self.calibration)

    def with_calibration(self, table: ThresholdTable) -> Recognizer:
        import json

        return replace(self, calibration=json.loads(table.to_json()))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["preprocess"] = {**asdict(self.preprocess), "mean": list(self.preprocess.mean), "std": list(self.preprocess.std)}
        out["id"] = self.id
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recognizer:
        fields = {k: v for k, v in data.items() if k != "id"}
        pre = dict(fields.pop("preprocess"))
        pre["mean"], pre["std"] = tuple(pre["mean"]), tuple(pre["std"])
        return cls(preprocess=Preprocess(**pre), **fields)


BUILT_IN = Recognizer(
    name=DLIB_RESNET.name,
    family="dlib",
    sha256=DLIB_RESNET.sha256,
    width=EMBEDDING_SIZE,
    preprocess=FAMILY_PREPROCESS["dlib"],
    input_name="image",
    output_name="embedding",
    license=DLIB_RESNET.license,
    source=DLIB_RESNET.source,
    distance_at_zero=DISTANCE_AT_ZERO,
)
"""dlib's ResNet, converted to ONNX on first use; calibrated by the table Regard ships."""

assert BUILT_IN.id == EMBEDDER_ID
