"""Approximate nearest-neighbour search: faiss's HNSW graph (IndexHNSWFlat), with real removal.

Why faiss (bench/search.py, results in bench/results/search.json): at a million real-like faces,
with the same graph (M=32, efConstruction=128) on 2 cores, faiss built in about 6 minutes and
answered a top-10 query in about 3 ms (p50, one thread) at recall@10 >= 0.99 of exact search, in
about 0.8 GB. USearch needed twice the build time and, at the same recall, twice the latency (over
the 5 ms target); hnswlib ships no wheels (0.8.0, December 2023, is a source package only).

Vectors are stored as float32 and compared by squared L2; the square root is taken here, so the
distances returned are exact float32 Euclidean distances of what was found. Only *which* faces are
found is approximate.

Removal. faiss's HNSW graph cannot delete a node, so a removed face's row is overwritten with zeros
in the index's own storage (gone from memory and from any file saved afterwards: real erasure) and
excluded from every search by a bitmap of live rows; the node itself stays in the graph as an
empty waypoint far from every face. Re-adding an id removes the old row that way and appends a new
one. When removed rows pass a quarter of the live ones (and 1,024), the graph is rebuilt from the
live vectors (`compact`; minutes at a million faces).

Thread safety: searches share a read lock and run in parallel (faiss releases the GIL); additions,
removals and saving take the write lock.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from regard.index._common import (
    DIM,
    ReadWriteLock,
    atomic_write,
    check_batch,
    check_dim,
    check_ids,
    check_k,
    check_vectors,
    empty_result,
)

# HNSW parameters, chosen with bench/search.py: recall@10 >= 0.99 of exact at 1M faces.
CONNECTIVITY = 32  # links per node ("M")
EXPANSION_ADD = 128  # search depth while inserting ("efConstruction")
EXPANSION_SEARCH = 512  # search depth while searching ("efSearch")
_COMPACT_FRACTION = 0.25  # rebuild when removed rows exceed this share of the live ones...
_COMPACT_MIN = 1024  # ...and this many
_MAGIC = b"REGARD-HNSW\n"
_VERSION = 1


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError("the approximate index needs faiss (pip install faiss-cpu)") from e
    return faiss


def _default_threads() -> int:
    from regard import config

    return config.current().threads


class _IdMap:
    """id -> row, as two arrays sorted by id (16 bytes a face, against ~100 for a dict)."""

    def __init__(self, ids: np.ndarray | None = None, rows: np.ndarray | None = None) -> None:
        ids = np.zeros(0, np.int64) if ids is None else ids
        rows = np.arange(len(ids), dtype=np.int64) if rows is None else rows
        order = np.argsort(ids, kind="stable")
        self.ids, self.rows = ids[order].astype(np.int64), rows[order].astype(np.int64)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """The rows of these ids, -1 for ids not present."""
        if not len(self.ids):
            return np.full(len(ids), -1, np.int64)
        at = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return np.where(self.ids[at] == ids, self.rows[at], -1)

    def delete(self, ids: np.ndarray) -> None:
        """Forget ids (all present)."""
        if len(ids):
            keep = np.ones(len(self.ids), bool)
            keep[np.searchsorted(self.ids, ids)] = False
            self.ids, self.rows = self.ids[keep], self.rows[keep]

    def insert(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Add ids (none present) at rows."""
        order = np.argsort(ids, kind="stable")
        at = np.searchsorted(self.ids, ids[order])
        self.ids = np.insert(self.ids, at, ids[order])
        self.rows = np.insert(self.rows, at, rows[order])


class ApproximateIndex:
    """Approximate top-k Euclidean search (faiss HNSW), with real removal."""

    def __init__(
        self,
        dim: int = DIM,
        *,
        connectivity: int = CONNECTIVITY,
        expansion_add: int = EXPANSION_ADD,
        expansion_search: int = EXPANSION_SEARCH,
        threads: int | None = None,
    ) -> None:
        """`dim`: the width of the vectors it holds. `threads`: threads used to add vectors (default:
        REGARD_THREADS, else 1). A search of one query runs on the calling thread; a batch of
        queries uses faiss's OpenMP threads."""
        self._dim = check_dim(dim)
        self._lock = ReadWriteLock()
        self._threads = threads or _default_threads()
        self._connectivity, self._expansion_add = int(connectivity), int(expansion_add)
        self._expansion_search = int(expansion_search)
        self._index = self._new_graph()
        self._row_ids = np.zeros(0, np.int64)  # row -> id; -1 for a removed row
        self._map = _IdMap()
        self._removed = 0
        self._bitmap: np.ndarray | None = None  # live rows, bit i of byte i // 8; None: all live

    def _new_graph(self) -> Any:
        index = _faiss().IndexHNSWFlat(self._dim, self._connectivity)  # METRIC_L2: squared distances
        index.hnsw.efConstruction = self._expansion_add
        index.hnsw.efSearch = self._expansion_search
        return index

    # ------------------------------------------------------------------ mutation

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under their ids; an id already present has its vector replaced."""
        ids, vectors = check_batch(ids, vectors, dim=self._dim)
        if not len(ids):
            return
        with self._lock.writing():
            rows = self._map.lookup(ids)
            replaced = rows >= 0
            if replaced.any():
                self._erase_rows_locked(rows[replaced])
                self._map.delete(ids[replaced])
            start = self._index.ntotal
            self._add_to_graph(self._index, vectors)
            self._row_ids = np.concatenate([self._row_ids, ids])
            self._map.insert(ids, np.arange(start, start + len(ids), dtype=np.int64))
            self._after_change_locked()

    def remove(self, ids: np.ndarray) -> None:
        """Remove the vectors of these ids, erasing them; unknown ids are ignored."""
        ids = np.unique(check_ids(ids))
        if not len(ids):
            return
        with self._lock.writing():
            rows = self._map.lookup(ids)
            present = rows >= 0
            if not present.any():
                return
            self._erase_rows_locked(rows[present])
            self._map.delete(ids[present])
            self._after_change_locked()

    def _add_to_graph(self, index: Any, vectors: np.ndarray) -> None:
        faiss = _faiss()
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self._threads)
        try:
            index.add(vectors)
        finally:
            faiss.omp_set_num_threads(before)

    def _storage_locked(self) -> np.ndarray:
        """The graph's vectors, (rows, dim) float32, as a writable view of faiss's own memory."""
        faiss = _faiss()
        n, dim = self._index.ntotal, self._dim
        if not n:
            return np.zeros((0, dim), np.float32)
        flat = faiss.downcast_index(self._index.storage)
        return faiss.rev_swig_ptr(flat.get_xb(), n * dim).reshape(n, dim)

    def _erase_rows_locked(self, rows: np.ndarray) -> None:
        self._storage_locked()[rows] = 0.0  # the vectors themselves are gone
        self._row_ids[rows] = -1
        self._removed += len(rows)

    def _after_change_locked(self) -> None:
        if self._removed > max(_COMPACT_MIN, _COMPACT_FRACTION * len(self._map.ids)):
            self._compact_locked()
        self._bitmap = np.packbits(self._row_ids >= 0, bitorder="little") if self._removed else None

    def compact(self) -> None:
        """Rebuild the graph from the live vectors, dropping the removed rows' nodes."""
        with self._lock.writing():
            self._compact_locked()
            self._bitmap = None

    def _compact_locked(self) -> None:
        live = np.nonzero(self._row_ids >= 0)[0]
        vectors = np.ascontiguousarray(self._storage_locked()[live])
        ids = self._row_ids[live]
        old_storage = self._storage_locked()
        graph = self._new_graph()
        if len(vectors):
            self._add_to_graph(graph, vectors)
        old_storage[:] = 0.0  # the old graph's memory goes back to the allocator blank
        self._index = graph
        self._row_ids = ids
        self._map = _IdMap(ids)
        self._removed = 0

    # ------------------------------------------------------------------ search

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest stored vectors of each query: (Q, k) int64 ids padded with -1, and
        (Q, k) float32 Euclidean distances, ascending, padded with +inf."""
        faiss = _faiss()
        queries = check_vectors(queries, "queries", dim=self._dim)
        k = check_k(k)
        out_ids, out_distances = empty_result(len(queries), k)
        if k == 0 or len(queries) == 0:
            return out_ids, out_distances
        with self._lock.reading():
            live = len(self._map.ids)
            if not live:
                return out_ids, out_distances
            if k >= live:  # asked for everything: compare with all (a graph walk may miss some)
                rows = self._map.rows
                difference = self._storage_locked()[rows][None, :, :] - queries[:, None, :]
                squared = np.einsum("qnd,qnd->qn", difference, difference)
                order = np.argsort(squared, axis=1, kind="stable")
                found_rows = rows[order]
                squared = np.take_along_axis(squared, order, 1)
            else:
                selector = None
                bitmap = self._bitmap
                if bitmap is not None:
                    selector = faiss.IDSelectorBitmap(self._index.ntotal, faiss.swig_ptr(bitmap))
                params = faiss.SearchParametersHNSW(
                    efSearch=max(self._expansion_search, k), sel=selector
                )
                squared, found_rows = self._index.search(queries, k, params=params)
                del params, selector  # (the bitmap they point into stays alive until here)
            width = found_rows.shape[1]
            valid = found_rows >= 0
            out_ids[:, :width] = np.where(valid, self._row_ids[np.where(valid, found_rows, 0)], -1)
        out_distances[:, :width] = np.where(valid, np.sqrt(np.maximum(squared, 0.0)), np.inf)
        return out_ids, out_distances

    @property
    def expansion_search(self) -> int:
        """The search depth ("efSearch"): higher finds more of the true neighbours, more slowly."""
        return self._expansion_search

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        with self._lock.writing():
            self._expansion_search = int(value)
            self._index.hnsw.efSearch = int(value)

    def __len__(self) -> int:
        return len(self._map.ids)

    @property
    def dim(self) -> int:
        """The width of the vectors this index holds."""
        return self._dim

    def __contains__(self, id_: object) -> bool:
        if not isinstance(id_, (int, np.integer)):
            return False
        with self._lock.reading():
            return bool(self._map.lookup(np.array([id_], np.int64))[0] >= 0)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the stored ids (N,) and vectors (N, dim), in no particular order."""
        with self._lock.reading():
            live = np.nonzero(self._row_ids >= 0)[0]
            return self._row_ids[live].copy(), self._storage_locked()[live].copy()

    @property
    def nbytes(self) -> int:
        """Bytes held by the vectors, the graph's links and the id arrays."""
        with self._lock.reading():
            hnsw = self._index.hnsw
            graph = hnsw.neighbors.size() * 4 + hnsw.offsets.size() * 8 + hnsw.levels.size() * 4
            ids = self._row_ids.nbytes + self._map.ids.nbytes + self._map.rows.nbytes
            return self._index.ntotal * self._dim * 4 + graph + ids

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path) -> None:
        """Write the index to `path` atomically (temp file + rename). Removed faces' vectors are
        zeros in it: they are not in the file."""
        faiss = _faiss()
        with self._lock.writing():  # (exclusive: faiss's writer reads the graph as it writes)
            header = json.dumps(
                {
                    "dim": self._dim,
                    "rows": int(self._index.ntotal),
                    "removed": int(self._removed),
                    "connectivity": self._connectivity,
                    "expansion_add": self._expansion_add,
                    "expansion_search": self._expansion_search,
                }
            ).encode()

            def write(temporary: Path) -> None:
                with open(temporary, "wb") as f:
                    f.write(_MAGIC + struct.pack("<II", _VERSION, len(header)) + header)
                    f.write(self._row_ids.astype("<i8").tobytes())
                    faiss.write_index(self._index, faiss.PyCallbackIOWriter(f.write))

            atomic_write(Path(path), write)

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        dim: int | None = None,
        expansion_search: int | None = None,
        threads: int | None = None,
    ) -> ApproximateIndex:
        """An index read from a file written by `save`, of the file's dim; `dim`: refuse (ValueError)
        a file of any other width. (Files written before indexes had a dim record none in their
        header: theirs is the graph's, 128.)"""
        faiss = _faiss()
        with open(path, "rb") as f:
            if f.read(len(_MAGIC)) != _MAGIC:
                raise ValueError(f"{path} is not a saved ApproximateIndex")
            version, length = struct.unpack("<II", f.read(8))
            if version != _VERSION:
                raise ValueError(f"{path}: unsupported ApproximateIndex format version {version}")
            header = json.loads(f.read(length))
            row_ids = np.frombuffer(f.read(8 * header["rows"]), "<i8").astype(np.int64)
            try:
                graph = faiss.read_index(faiss.PyCallbackIOReader(f.read))
            except RuntimeError as e:
                raise ValueError(f"{path}: the graph could not be read ({e})") from e
        # (faiss.read_index already returns the concrete class; faiss.downcast_index would
        # return a wrapper that does not own the index, freed with the original wrapper.)
        saved_dim = header.get("dim", graph.d)  # (none recorded before indexes had a dim)
        if isinstance(saved_dim, bool) or not isinstance(saved_dim, int):
            raise ValueError(f"{path}: the header's dim is not an integer ({saved_dim!r})")
        if not isinstance(graph, faiss.IndexHNSWFlat) or graph.d != saved_dim or graph.ntotal != len(row_ids):
            raise ValueError(f"{path} does not hold a {saved_dim}-d HNSW graph of {len(row_ids)} rows")
        if dim is not None and saved_dim != check_dim(dim):
            raise ValueError(f"{path} holds {saved_dim}-d vectors, not {dim}-d")
        index = cls(
            saved_dim,
            connectivity=header["connectivity"],
            expansion_add=header["expansion_add"],
            expansion_search=expansion_search or header["expansion_search"],
            threads=threads,
        )
        graph.hnsw.efConstruction = index._expansion_add
        graph.hnsw.efSearch = index._expansion_search
        live = np.nonzero(row_ids >= 0)[0]
        index._index = graph
        index._row_ids = row_ids
        index._map = _IdMap(row_ids[live], live)
        index._removed = int(len(row_ids) - len(live))
        index._bitmap = np.packbits(row_ids >= 0, bitorder="little") if index._removed else None
        return index

    def __repr__(self) -> str:
        return (
            f"ApproximateIndex({len(self)} vectors, dim={self._dim}, M={self._connectivity}, "
            f"efConstruction={self._expansion_add}, efSearch={self._expansion_search})"
        )
