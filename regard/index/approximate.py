"""Approximate nearest-neighbour search: an HNSW graph from USearch (Apache-2.0, unum-cloud).

Why USearch (numbers in bench/search.py and bench/results/search.json): among the candidates with
wheels for this platform it meets the 1M-face targets and is the one that can delete. faiss's HNSW
index cannot remove a vector at all (only hide it from results with a filter), and hnswlib ships no
wheels (its last release, 0.8.0 of December 2023, is a source package that needs a compiler).

Vectors are stored as float32 with the squared-L2 metric, so the distances are exact float32
Euclidean distances of the candidates found (the square root is taken here); only *which*
candidates are found is approximate. With the parameters below, recall@10 against exact search is
at least 0.99 at a million faces (see the benchmark).

Erasure. USearch removes a vector by marking its slot deleted: its bytes stay in memory and in a
saved file until a later addition reuses the slot, and freed slots are reused first in, first out.
So every removal here is followed by a scrub: as many zero "placeholder" vectors are added as there
are free slots, which overwrites each of them, and the placeholders are removed again. Placeholder
keys are >= 2**63, outside the ids the index accepts (int64 >= 0), and never outlive the lock. The
scrub costs one cheap insertion per free slot (inserted with a small search depth); when free slots
pass a quarter of the live vectors the graph is rebuilt from the live vectors instead (`compact`).

Thread safety: one lock serialises every call (the USearch binding itself allows one Python thread
per index at a time and serialises concurrent calls); a search on 1M vectors takes about a
millisecond, and the GIL is released while it runs.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from regard.index._common import (
    DIM,
    atomic_write,
    check_batch,
    check_ids,
    check_k,
    check_vectors,
    empty_result,
)

# HNSW parameters, chosen with bench/search.py: recall@10 >= 0.99 at 1M faces.
CONNECTIVITY = 32  # links per node ("M")
EXPANSION_ADD = 128  # search depth while inserting ("efConstruction")
EXPANSION_SEARCH = 384  # search depth while searching ("ef")
_PLACEHOLDER_EXPANSION = 4  # search depth for inserting scrub placeholders: their links do not matter
_PLACEHOLDER_BASE = np.uint64(1) << np.uint64(63)
_COMPACT_FRACTION = 0.25  # rebuild when free slots exceed this share of the live vectors...
_COMPACT_MIN = 1024  # ...and this many


def _usearch():
    try:
        from usearch.index import Index, MetricKind, ScalarKind
    except ImportError as e:  # pragma: no cover - usearch is a dependency
        raise ImportError("the approximate index needs the usearch package (pip install usearch)") from e
    return Index, MetricKind, ScalarKind


def _default_threads() -> int:
    try:
        return max(1, int(os.environ.get("REGARD_THREADS", "1")))
    except ValueError:
        return 1


class ApproximateIndex:
    """Approximate top-k Euclidean search (HNSW graph, USearch), with real removal."""

    def __init__(
        self,
        *,
        connectivity: int = CONNECTIVITY,
        expansion_add: int = EXPANSION_ADD,
        expansion_search: int = EXPANSION_SEARCH,
        threads: int | None = None,
    ) -> None:
        """`threads`: threads used to add a batch of vectors and to search a batch of queries
        (default: REGARD_THREADS, else 1); a single query always runs on one thread."""
        Index, _, _ = _usearch()
        self._lock = threading.Lock()
        self._threads = threads or _default_threads()
        self._params = (connectivity, expansion_add, expansion_search)
        self._index = Index(
            ndim=DIM,
            metric="l2sq",
            dtype="f32",
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
            multi=False,
        )
        self._free = 0  # deleted slots, all holding zero vectors outside a call

    # ------------------------------------------------------------------ mutation

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under their ids; an id already present has its vector replaced."""
        ids, vectors = check_batch(ids, vectors)
        if not len(ids):
            return
        keys = ids.astype(np.uint64)
        with self._lock:
            present = np.asarray(self._index.contains(keys), bool).reshape(-1)
            replaced = keys[present]
            if len(replaced):
                self._free += int(np.sum(self._index.remove(replaced)))
            self._index.add(keys, vectors, threads=self._threads)
            # Freed slots are reused first in, first out; the old vectors of replaced ids may sit
            # in slots that these additions did not reach.
            self._free = max(0, self._free - len(keys))
            if len(replaced) and self._free:
                self._scrub_locked()

    def remove(self, ids: np.ndarray) -> None:
        """Remove the vectors of these ids, erasing their bytes; unknown ids are ignored."""
        keys = check_ids(ids).astype(np.uint64)
        if not len(keys):
            return
        with self._lock:
            keys = keys[np.asarray(self._index.contains(keys), bool).reshape(-1)]
            keys = np.unique(keys)
            if not len(keys):
                return
            self._free += int(np.sum(self._index.remove(keys)))
            self._scrub_locked()
            if self._free > max(_COMPACT_MIN, _COMPACT_FRACTION * len(self._index)):
                self._compact_locked()

    def _scrub_locked(self) -> None:
        """Overwrite every free slot with a zero vector (see the module's docstring)."""
        count = self._free
        if not count:
            return
        placeholders = _PLACEHOLDER_BASE + np.arange(count, dtype=np.uint64)
        expansion = self._index.expansion_add
        self._index.expansion_add = _PLACEHOLDER_EXPANSION
        try:
            self._index.add(placeholders, np.zeros((count, DIM), np.float32), threads=self._threads)
        finally:
            self._index.expansion_add = expansion
            self._index.remove(placeholders)

    def compact(self) -> None:
        """Rebuild the graph from the live vectors: frees the deleted slots (and their memory)."""
        with self._lock:
            self._compact_locked()

    def _compact_locked(self) -> None:
        Index, _, _ = _usearch()
        keys, vectors = self._items_locked()
        old = self._index
        connectivity, expansion_add, _ = self._params
        fresh = Index(
            ndim=DIM,
            metric="l2sq",
            dtype="f32",
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=old.expansion_search,
            multi=False,
        )
        if len(keys):
            fresh.add(keys, vectors, threads=self._threads)
        self._index = fresh
        self._free = 0
        old.reset()

    # ------------------------------------------------------------------ search

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest stored vectors of each query: (Q, k) int64 ids padded with -1, and
        (Q, k) float32 Euclidean distances, ascending, padded with +inf."""
        queries = check_vectors(queries, "queries")
        k = check_k(k)
        out_ids, out_distances = empty_result(len(queries), k)
        if k == 0 or len(queries) == 0:
            return out_ids, out_distances
        with self._lock:
            if not len(self._index):
                return out_ids, out_distances
            threads = 1 if len(queries) == 1 else self._threads
            # Asked for as many as it holds: compare with all of them (a graph walk may miss some).
            exact = k >= len(self._index)
            matches = self._index.search(queries, k, threads=threads, exact=exact)
        keys = np.asarray(matches.keys).reshape(len(queries), -1)
        squared = np.asarray(matches.distances, np.float32).reshape(len(queries), -1)
        if hasattr(matches, "counts"):
            counts = np.asarray(matches.counts).reshape(-1)
        else:
            counts = np.array([len(matches.keys)])
        valid = np.arange(keys.shape[1])[None, :] < counts[:, None]
        distances = np.where(valid, np.sqrt(np.maximum(np.where(valid, squared, 0.0), 0.0)), np.inf)
        order = np.argsort(distances, axis=1, kind="stable")
        keys = np.take_along_axis(keys, order, 1)
        valid = np.take_along_axis(valid, order, 1)
        distances = np.take_along_axis(distances, order, 1)
        width = min(k, keys.shape[1])
        out_ids[:, :width] = np.where(valid[:, :width], keys[:, :width].astype(np.int64), -1)
        out_distances[:, :width] = distances[:, :width]
        return out_ids, out_distances

    @property
    def expansion_search(self) -> int:
        return int(self._index.expansion_search)

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        """The search depth ("ef"): higher finds more of the true neighbours, more slowly."""
        with self._lock:
            self._index.expansion_search = int(value)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, id_: object) -> bool:
        if not isinstance(id_, (int, np.integer)) or id_ < 0:
            return False
        with self._lock:
            return bool(self._index.contains(np.uint64(id_)))

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the stored ids (N,) and vectors (N, 128), in no particular order."""
        with self._lock:
            keys, vectors = self._items_locked()
        return keys.astype(np.int64), vectors

    def _items_locked(self) -> tuple[np.ndarray, np.ndarray]:
        keys = np.asarray(self._index.keys[:], np.uint64)
        if not len(keys):
            return keys, np.zeros((0, DIM), np.float32)
        return keys, np.vstack(self._index.get(keys)).astype(np.float32, copy=False)

    @property
    def nbytes(self) -> int:
        """Memory held by the graph and its vectors, as USearch counts it."""
        return int(self._index.memory_usage)

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        """Write the index (USearch's format) to `path` atomically: temp file + rename."""
        with self._lock:
            atomic_write(Path(path), lambda temporary: self._index.save(str(temporary)))

    @classmethod
    def load(
        cls, path: Path, *, expansion_search: int = EXPANSION_SEARCH, threads: int | None = None
    ) -> ApproximateIndex:
        """An index read from a file written by `save`."""
        Index, MetricKind, ScalarKind = _usearch()
        meta = Index.metadata(str(path)) if Path(path).is_file() else None
        if meta is None:
            raise ValueError(f"{path} is not a saved ApproximateIndex")
        if (
            meta["dimensions"] != DIM
            or meta["kind_metric"] != MetricKind.L2sq
            or meta["kind_scalar"] != ScalarKind.F32
        ):
            raise ValueError(
                f"{path} holds a {meta['dimensions']}-d {meta['kind_metric']} {meta['kind_scalar']} "
                f"index, not {DIM}-d L2sq f32"
            )
        loaded = Index.restore(str(path), view=False)
        if loaded is None:
            raise ValueError(f"{path} could not be read as a saved ApproximateIndex")
        loaded.expansion_add = EXPANSION_ADD
        loaded.expansion_search = expansion_search
        index = cls.__new__(cls)
        index._lock = threading.Lock()
        index._threads = threads or _default_threads()
        index._params = (int(loaded.connectivity), EXPANSION_ADD, expansion_search)
        index._index = loaded
        index._free = int(meta["count_deleted"])
        return index

    def __repr__(self) -> str:
        connectivity, expansion_add, _ = self._params
        return (
            f"ApproximateIndex({len(self)} vectors, M={connectivity}, "
            f"ef_add={expansion_add}, ef={self.expansion_search})"
        )
