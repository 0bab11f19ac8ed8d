"""Vector indexes for 1:N search: the k nearest stored embeddings of a query, by Euclidean distance.

    from regard.index import new_index, load_index
    index = new_index(size_hint=len(vectors), dim=512)  # ExactIndex below APPROXIMATE_FROM, else approximate
    index.add(ids, vectors)                         # int64 ids >= 0 (N,), float32 (N, dim)
    ids, distances = index.search(queries, k=10)    # (Q, k) int64, -1 padded; (Q, k) float32, ascending
    index.remove(ids)                               # really gone: from results, memory and saved files
    index.save(path); index = load_index(path)      # atomic write (temp file + rename)

Every index holds vectors of one width, its `dim` (default DIM, 128: dlib's embeddings; models
supplied by the operator give other widths, 512 for ArcFace's family). Vectors of another width are
refused with a ValueError naming the index's dim; a saved file records its dim, and
`load_index(path, dim=...)` refuses a file of another width.

ExactIndex is numpy; ApproximateIndex is faiss's HNSW graph (see regard/index/approximate.py for
why). Both kinds return exact float32 Euclidean distances (the embedder's native metric; scores are
`regard.match.score_from_distance(d)`); the approximate index may miss some of the true nearest
neighbours (recall@10 >= 0.99 of exact at a million faces, measured by bench/search.py), never
reports a wrong distance. Padding: id -1 with distance +inf, where the index holds fewer than k.

Searches are safe from many threads at once, also while another thread adds or removes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from regard.index._common import DIM
from regard.index.approximate import ApproximateIndex
from regard.index.exact import ExactIndex

# From this many faces on, a collection uses the approximate index. Chosen with bench/search.py
# (2 cores; p50 of one top-10 query on one thread): exact search costs about 0.023 ms per 1,000
# faces (1.1 ms at 50k, 2.3 ms at 100k, ~23 ms at 1M), is exact, needs no build and half the
# memory; the HNSW index answers in 1.0 ms at 50k, 1.4 ms at 100k and ~3 ms at 1M, but costs a
# build (5.6 s for 50k faces, 14 s for 100k, 6 min for 1M, on 2 threads). Up to 100k faces exact
# search stays under half the 5 ms latency target, so it is kept there; past it, it grows linearly.
APPROXIMATE_FROM = 100_000


@runtime_checkable
class VectorIndex(Protocol):
    """What the store needs of an index of face embeddings (`dim` numbers each)."""

    @property
    def dim(self) -> int:
        """The width of the vectors it holds."""
        ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add (N,) int64 ids >= 0 with (N, dim) float32 vectors; re-adding an id replaces it."""
        ...

    def remove(self, ids: np.ndarray) -> None:
        """Remove these ids (unknown ids are ignored); their vectors are erased, not just hidden."""
        ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) int64 ids (-1 padding) and (Q, k) float32 Euclidean distances, ascending."""
        ...

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of all stored ids and vectors (to move a collection to another kind of index)."""
        ...

    def __len__(self) -> int: ...

    def save(self, path: Path) -> None:
        """Write the index to `path` atomically (temp file + rename)."""
        ...

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        """An index read from a file written by `save`."""
        ...


def new_index(size_hint: int, dim: int = DIM) -> VectorIndex:
    """An empty index of `dim`-d vectors suited to a collection of about `size_hint` faces."""
    if size_hint >= APPROXIMATE_FROM:
        return ApproximateIndex(dim)
    return ExactIndex(dim)


def load_index(path: Path, dim: int | None = None) -> VectorIndex:
    """Read an index saved by either kind, whichever it is, of the file's dim; `dim`: refuse
    (ValueError) a file of any other width."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":  # numpy's .npz: an ExactIndex
        return ExactIndex.load(path, dim=dim)
    return ApproximateIndex.load(path, dim=dim)


__all__ = [
    "APPROXIMATE_FROM",
    "DIM",
    "ApproximateIndex",
    "ExactIndex",
    "VectorIndex",
    "load_index",
    "new_index",
]
