"""Exact nearest-neighbour search with numpy: every query is compared with every stored vector.

Squared distances come from one float32 matrix product, ||q||^2 - 2 q.x + ||x||^2 (the ||q||^2 term
is left out: it does not change the order); the few best candidates per query are then measured
again directly, ||q - x||, so the distances returned are exact to float32 even for near-identical
vectors, where the expanded form loses its precision. Fine up to about 50,000 vectors per
collection (see regard.index.APPROXIMATE_FROM and bench/search.py).

Thread safety: searches read an immutable snapshot (id array, vector array, norm array) and run
concurrently (numpy releases the GIL in the matrix product); additions and removals are serialised
by a lock and publish a new snapshot. New vectors are appended after the rows a snapshot covers, so
an addition copies nothing unless the buffer must grow; a removal or a replacement copies the live
rows into a new buffer, and the removed rows of the old buffer are overwritten with zeros as soon as
the last search still reading the old buffer is done (erasure from the process's memory too).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regard.index._common import (
    DIM,
    atomic_write,
    check_batch,
    check_dim,
    check_ids,
    check_k,
    check_vectors,
    empty_result,
)

_KIND = "regard.index.ExactIndex"
_VERSION = 1
_EXTRA_CANDIDATES = 8  # candidates re-measured beyond k, in case the expanded form misorders ties
_CHUNK_FLOATS = 4_000_000  # bound on the (queries x vectors) distance block: 16 MB


class _Buffer:
    """Row storage shared by the snapshots published on it; rows past the newest one's are free."""

    __slots__ = ("erase", "ids", "norms", "readers", "vectors")

    def __init__(self, capacity: int, dim: int) -> None:
        self.ids = np.zeros(capacity, np.int64)
        self.vectors = np.zeros((capacity, dim), np.float32)
        self.norms = np.zeros(capacity, np.float32)  # squared norms
        self.readers = 0  # searches reading it now
        self.erase: list[int] = []  # rows to zero once no search reads it

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class _Snapshot:
    buffer: _Buffer
    n: int

    @property
    def ids(self) -> np.ndarray:
        return self.buffer.ids[: self.n]

    @property
    def vectors(self) -> np.ndarray:
        return self.buffer.vectors[: self.n]

    @property
    def norms(self) -> np.ndarray:
        return self.buffer.norms[: self.n]


class ExactIndex:
    """Exact top-k Euclidean search over float32 vectors of `dim` numbers held in numpy arrays."""

    def __init__(self, dim: int = DIM) -> None:
        self._dim = check_dim(dim)
        self._lock = threading.Lock()  # serialises additions and removals
        self._readers_lock = threading.Lock()  # guards the buffers' reader counts
        self._snapshot = _Snapshot(_Buffer(0, self._dim), 0)
        self._rows: dict[int, int] = {}  # id -> row in the current buffer

    # ------------------------------------------------------------------ mutation

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under their ids; an id already present has its vector replaced."""
        ids, vectors = check_batch(ids, vectors, dim=self._dim)
        if not len(ids):
            return
        with self._lock:
            rows = [self._rows[i] for i in ids.tolist() if i in self._rows]
            if rows:  # replace: a new buffer without the old rows, plus the new ones
                self._rewrite_locked(rows, ids, vectors)
            else:
                self._append_locked(ids, vectors)

    def remove(self, ids: np.ndarray) -> None:
        """Remove the vectors of these ids; ids not in the index are ignored."""
        ids = check_ids(ids)
        with self._lock:
            rows = [self._rows[i] for i in ids.tolist() if i in self._rows]
            if rows:
                self._rewrite_locked(rows, ids[:0], np.zeros((0, self._dim), np.float32))

    def _append_locked(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        old = self._snapshot
        n, needed = old.n, old.n + len(ids)
        buffer = old.buffer
        if needed > len(buffer):
            buffer = _Buffer(max(needed, 2 * len(buffer), 1024), self._dim)
            buffer.ids[:n], buffer.vectors[:n], buffer.norms[:n] = old.ids, old.vectors, old.norms
        # Rows n.. are in no published snapshot: writing them disturbs no search.
        self._fill(buffer, n, ids, vectors)
        self._rows.update(zip(ids.tolist(), range(n, needed)))
        self._snapshot = _Snapshot(buffer, needed)

    def _rewrite_locked(self, removed_rows: list[int], ids: np.ndarray, vectors: np.ndarray) -> None:
        """Publish a new buffer holding the kept rows and the new ones; erase the removed rows."""
        old = self._snapshot
        keep = np.ones(old.n, bool)
        keep[removed_rows] = False
        live = int(keep.sum())
        needed = live + len(ids)
        buffer = _Buffer(max(1024, needed + needed // 2), self._dim)
        buffer.ids[:live] = old.ids[keep]
        buffer.vectors[:live] = old.vectors[keep]
        buffer.norms[:live] = old.norms[keep]
        self._fill(buffer, live, ids, vectors)
        self._rows = dict(zip(buffer.ids[:needed].tolist(), range(needed)))
        self._snapshot = _Snapshot(buffer, needed)
        with self._readers_lock:
            old.buffer.erase.extend(removed_rows)
            if old.buffer.readers == 0:
                self._erase(old.buffer)

    @staticmethod
    def _fill(buffer: _Buffer, start: int, ids: np.ndarray, vectors: np.ndarray) -> None:
        end = start + len(ids)
        buffer.ids[start:end] = ids
        buffer.vectors[start:end] = vectors
        buffer.norms[start:end] = np.einsum("ij,ij->i", vectors, vectors)

    @staticmethod
    def _erase(buffer: _Buffer) -> None:
        if buffer.erase:
            buffer.vectors[buffer.erase] = 0.0
            buffer.erase = []

    def _acquire(self) -> _Snapshot:
        with self._readers_lock:
            snapshot = self._snapshot
            snapshot.buffer.readers += 1
        return snapshot

    def _release(self, snapshot: _Snapshot) -> None:
        with self._readers_lock:
            snapshot.buffer.readers -= 1
            if snapshot.buffer.readers == 0 and snapshot.buffer is not self._snapshot.buffer:
                self._erase(snapshot.buffer)

    # ------------------------------------------------------------------ search

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest stored vectors of each query: (Q, k) int64 ids padded with -1, and
        (Q, k) float32 Euclidean distances, ascending, padded with +inf."""
        queries = check_vectors(queries, "queries", dim=self._dim)
        k = check_k(k)
        out_ids, out_distances = empty_result(len(queries), k)
        if k == 0 or len(queries) == 0:
            return out_ids, out_distances
        snapshot = self._acquire()  # the search sees one consistent state
        try:
            self._search(snapshot, queries, k, out_ids, out_distances)
        finally:
            self._release(snapshot)
        return out_ids, out_distances

    @staticmethod
    def _search(
        snapshot: _Snapshot, queries: np.ndarray, k: int, out_ids: np.ndarray, out_distances: np.ndarray
    ) -> None:
        n = snapshot.n
        if n == 0:
            return
        ids, vectors, norms = snapshot.ids, snapshot.vectors, snapshot.norms
        found = min(k, n)
        candidates = min(n, k + _EXTRA_CANDIDATES)
        chunk = max(1, min(_CHUNK_FLOATS // n, _CHUNK_FLOATS // (candidates * vectors.shape[1])))
        for start in range(0, len(queries), chunk):
            q = queries[start : start + chunk]
            if candidates < n:
                partial = norms[None, :] - 2.0 * (q @ vectors.T)
                rows = np.argpartition(partial, candidates - 1, axis=1)[:, :candidates]
            else:
                rows = np.broadcast_to(np.arange(n), (len(q), n))
            difference = vectors[rows] - q[:, None, :]
            distances = np.sqrt(np.einsum("qcd,qcd->qc", difference, difference))
            order = np.argsort(distances, axis=1, kind="stable")[:, :found]
            out_ids[start : start + len(q), :found] = ids[np.take_along_axis(rows, order, 1)]
            out_distances[start : start + len(q), :found] = np.take_along_axis(distances, order, 1)

    def __len__(self) -> int:
        return self._snapshot.n

    @property
    def dim(self) -> int:
        """The width of the vectors this index holds."""
        return self._dim

    def __contains__(self, id_: object) -> bool:
        return id_ in self._rows

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the stored ids (N,) and vectors (N, dim), in no particular order."""
        snapshot = self._acquire()
        try:
            return snapshot.ids.copy(), snapshot.vectors.copy()
        finally:
            self._release(snapshot)

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays (free rows of its buffer included)."""
        buffer = self._snapshot.buffer
        return buffer.ids.nbytes + buffer.vectors.nbytes + buffer.norms.nbytes

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        """Write the live ids and vectors to `path` (numpy .npz), atomically: temp file + rename.
        The vectors are saved as an (N, dim) array: their shape records the index's dim."""
        snapshot = self._acquire()
        try:

            def write(temporary: Path) -> None:
                with open(temporary, "wb") as f:
                    np.savez(
                        f,
                        kind=np.array(_KIND),
                        version=np.array(_VERSION),
                        ids=snapshot.ids,
                        vectors=snapshot.vectors,
                    )

            atomic_write(Path(path), write)
        finally:
            self._release(snapshot)

    @classmethod
    def load(cls, path: Path, *, dim: int | None = None) -> ExactIndex:
        """An index read from a file written by `save`, of the file's dim; `dim`: refuse (ValueError)
        a file of any other width."""
        try:
            data = np.load(Path(path), allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path} is not a saved ExactIndex: {e}") from e
        with data:
            if not hasattr(data, "files") or "kind" not in data.files or str(data["kind"]) != _KIND:
                raise ValueError(f"{path} is not a saved ExactIndex")
            if int(data["version"]) != _VERSION:
                raise ValueError(f"{path}: unsupported ExactIndex format version {int(data['version'])}")
            ids, vectors = data["ids"], data["vectors"]
        if vectors.ndim != 2 or vectors.shape[1] < 1:
            raise ValueError(f"{path} is not a saved ExactIndex: vectors of shape {vectors.shape}")
        if dim is not None and vectors.shape[1] != check_dim(dim):
            raise ValueError(f"{path} holds {vectors.shape[1]}-d vectors, not {dim}-d")
        index = cls(vectors.shape[1])
        index.add(ids, vectors)
        return index

    def __repr__(self) -> str:
        return f"ExactIndex({len(self)} vectors, dim={self._dim})"
