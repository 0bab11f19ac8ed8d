"""Checks and helpers shared by the exact and approximate indexes."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

DIM = 128  # dlib's ResNet embeddings: the default width of an index


def check_dim(dim: int) -> int:
    """An index's width as an int >= 1 (operator-supplied models give 2 to 4096 numbers a face)."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"an index's dim must be an integer >= 1, not {dim!r}")
    return int(dim)


def check_ids(ids: np.ndarray) -> np.ndarray:
    """Ids as a 1-D int64 array; ids must be integers >= 0 (-1 pads search results)."""
    array = np.asarray(ids)
    if array.ndim != 1:
        raise ValueError(f"ids must be a 1-D array, not shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"ids must be integers, not {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.size and array.min() < 0:
        raise ValueError("ids must be >= 0 (-1 marks an empty result slot)")
    return array


def check_vectors(vectors: np.ndarray, what: str = "vectors", *, dim: int = DIM) -> np.ndarray:
    """Vectors as a C-contiguous (N, dim) float32 array of finite values; a 1-D vector is one row."""
    array = np.asarray(vectors)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(
            f"{what} must have shape (N, {dim}) for this {dim}-d index, not {np.asarray(vectors).shape}"
        )
    if array.size and not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{what} must be numbers, not {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{what} must be finite (no NaN or infinity)")
    return array


def check_batch(ids: np.ndarray, vectors: np.ndarray, *, dim: int = DIM) -> tuple[np.ndarray, np.ndarray]:
    ids = check_ids(ids)
    vectors = check_vectors(vectors, dim=dim)
    if len(ids) != len(vectors):
        raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("the same id appears twice in one add")
    return ids, vectors


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be an integer >= 0, not {k!r}")
    return int(k)


def empty_result(n_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The result of a search that found nothing: ids -1 and distances +inf."""
    return np.full((n_queries, k), -1, np.int64), np.full((n_queries, k), np.inf, np.float32)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(temporary path)` in the target's folder, flush it to disk, then rename it over `path`.

    A crash leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        write(Path(temporary))
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ReadWriteLock:
    """Many readers at once, or one writer; a waiting writer holds new readers back."""

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._condition:
            while self._writing or self._writers_waiting:
                self._condition.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                if not self._readers:
                    self._condition.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._condition:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._condition.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()
