"""1:N search benchmark: exact numpy search against the ANN libraries, on galleries of real-like faces.

    python bench/search.py --data ../shared/data/lfw-fold1              # 10k, 100k and 1M faces
    python bench/search.py --sizes 10000,100000                          # a quicker run

Data. Every photo of the LFW fold (807 photos of 435 people) is embedded with `regard.embed`. The
galleries hold those real embeddings (but for one held-out photo of each person with several) plus
synthetic faces drawn to match their distribution:

- identity centres ~ N(mu, B): mu is the mean of the per-person mean embeddings; B is the covariance
  of the per-person means minus the part that within-person noise adds to a mean of n photos
  (mean of 1/n_i times W), clipped to be positive semi-definite;
- photos of a person = centre + N(0, W), W being the pooled within-person covariance of the 163
  people with two photos or more (residuals from their own means, n_i - 1 degrees of freedom);
- each synthetic person gets as many photos as a person drawn at random from the fold has.

On the fold, same-person distances of these synthetic faces are 0.36 / 0.43 / 0.50 (5th / 50th /
95th percentile) against 0.31 / 0.42 / 0.55 for the real photos, and different-person distances
0.66 / 0.81 / 1.00 (5 / 50 / 95 %) against 0.66 / 0.81 / 0.96: the real neighbourhood structure, so
approximate search is as hard here as on real faces. Embedding norms are ~1.43 (not ~1: Regard
averages each face with its mirror image, and dlib's vectors are not normalised).

Queries (1,000 per size): the held-out real photos (mated: their person is in the gallery), new
synthetic photos of synthetic gallery people (mated), and synthetic people not in the gallery
(non-mated), half mated and half not.

Measured, per gallery size and index, each index in a fresh process (so memory is its own):

- build: seconds to add the whole gallery in one batch (with --build-threads threads, default 2);
- memory: growth of the process's resident memory over the build (RSS after minus before), its
  peak over the build, and the size the index reports itself;
- p50 / p99 latency of one top-10 search of one query, on one thread (numpy's BLAS limited to one
  thread, OpenMP to one thread, USearch's threads=1), over the queries one by one;
- recall@1 (the exact nearest face is the first result) and recall@10 (share of the exact top 10
  found in the top 10), against the exact index.

The candidates are the exact index (regard.index.ExactIndex), faiss's IndexHNSWFlat through
regard.index.ApproximateIndex (what Regard ships: the faiss row includes its id mapping and
removal bitmap), USearch and hnswlib, all HNSW graphs with the same M (links per node) and
efConstruction; every search depth (ef) in --ef is measured on one build. A library that is not
installed is reported as such (hnswlib publishes no wheels: 0.8.0, its last release, of December
2023, is a source package that needs a compiler). Builds of 1M faces take minutes: about 6 for
faiss and 12 to 14 for USearch on 2 cores; `--indexes exact,faiss` leaves USearch out. The identification section uses LFW fold 1
alone: see `identification()`.

Stores side by side (`--store postgresql://...`): the same galleries loaded into Regard's two
store backends, a SQLite file (in a temporary folder) and the PostgreSQL database given, through
the Store interface (`add_faces` in batches of --batch faces, one person per batch, as bulk
enrollment writes them; each batch one transaction with its audit entry), then searched through
`Store.search` (one query at a time, k=10, threshold 0 so all 10 come back; each search is a
transaction with its audit entry, as in production):

- load: faces/s written (bulk enrollment rate of the store, without the face pipeline);
- index: SQLite builds its faiss index in the process at the first search; PostgreSQL builds the
  HNSW index in the database (the index is dropped before the load and built once after it,
  with a progress bar, maintenance_work_mem --pg-build-mem); the seconds each took; then the
  database is settled as after any bulk load (VACUUM, CHECKPOINT) and the index and table are
  read into shared_buffers with pg_prewarm where it is available (see `prewarm`);
- p50 / p99 milliseconds of one top-10 search, and recall@10 against exact search; for PostgreSQL
  at each hnsw.ef_search in --pg-ef (one build), SQLite with its shipped faiss settings. Both
  stores are loaded first and then searched side by side: in blocks of 50 queries, the stores in
  turn (alternating which goes first), one round per --pg-ef value. These machines speed up and slow
  down by 10 to 20 % within minutes; interleaved, a slow spell slows both stores alike, so the
  ratio to SQLite in the same round is the figure that carries from one run to the next.

    python bench/search.py --store "$(bench/postgres_server.sh start)" --store-sizes 1000000 --indexes none
    python bench/search.py --store postgresql://... --store-sizes 10000 --indexes none --bulk-photos

`--bulk-photos` also runs bulk enrollment (`regard enroll FOLDER --people-from-folders`: the face
pipeline on --bulk-workers processes and batched writes) on the fold's photos into both stores.

Use a database of its own: the run drops and rebuilds the faces table's vector index, and deletes
its collections (bench-<size>) at the end. `--indexes none` skips the in-process index section.

Output: a table on stdout, and JSON in bench/results/search.json (or --out).
"""

from __future__ import annotations

import datasets  # bench/datasets.py: the data, and a clear refusal without it

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "lfw-fold1"
DEFAULT_OUT = HERE / "results" / "search.json"
CANDIDATES = ("exact", "usearch", "faiss", "hnswlib")
K = 10
EXACT_TIMED_QUERIES = 200  # exact search at 1M takes ~40 ms a query: time fewer of them


# ---------------------------------------------------------------- data


def embed_fold(data: Path) -> tuple[Any, list[str], list[Path]]:
    """The embeddings of every photo in the fold (sorted by person, then photo), their people."""
    from tqdm import tqdm

    import regard

    photos = sorted((data / "lfw").glob("*/*.jpg")) or sorted(data.glob("**/*.jpg"))
    if not photos:
        raise SystemExit(f"no photos under {data}")
    vectors = []
    for path in tqdm(photos, desc="embedding", unit="photo", disable=not sys.stderr.isatty()):
        vectors.append(regard.embed(path))
    return np.stack(vectors).astype(np.float32), [p.parent.name for p in photos], photos


class FaceModel:
    """Gaussian identity centres and within-person noise fitted to real embeddings (see the top)."""

    def __init__(self, vectors: Any, names: list[str]) -> None:
        people, person, counts = np.unique(names, return_inverse=True, return_counts=True)
        x = vectors.astype(np.float64)
        means = np.stack([x[person == i].mean(0) for i in range(len(people))])
        several = [i for i in range(len(people)) if counts[i] >= 2]
        residuals = np.concatenate([x[person == i] - means[i] for i in several])
        within = residuals.T @ residuals / sum(int(counts[i]) - 1 for i in several)
        between = np.cov(means.T) - np.mean(1.0 / counts) * within
        values, axes = np.linalg.eigh(between)
        self.mu = means.mean(0)
        self.between = axes * np.sqrt(np.clip(values, 0.0, None))  # B = between @ between.T
        values, axes = np.linalg.eigh(within)
        self.within = axes * np.sqrt(np.clip(values, 0.0, None))
        self.counts = counts
        self.summary = {
            "photos": int(len(x)),
            "people": int(len(people)),
            "people_with_several_photos": len(several),
            "norm_median": float(np.median(np.linalg.norm(x, axis=1))),
            "between_person_variance": float(np.trace(self.between @ self.between.T)),
            "within_person_variance": float(np.trace(within)),
        }

    def centres(self, n: int, rng: Any) -> Any:
        return self.mu + rng.standard_normal((n, len(self.mu))) @ self.between.T

    def photos(self, centres: Any, rng: Any) -> Any:
        noise = rng.standard_normal(centres.shape) @ self.within.T
        return (centres + noise).astype(np.float32)


def make_gallery(
    model: FaceModel, real: Any, names: list[str], size: int, n_queries: int, seed: int
) -> tuple[Any, Any, dict[str, int]]:
    """A gallery of `size` faces (real ones first) and the queries (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    names_array = np.asarray(names)
    # Hold out the last photo of each person with several: real mated queries.
    last = {name: i for i, name in enumerate(names)}
    counts = {name: int((names_array == name).sum()) for name in last}
    held_out = np.array(sorted(i for name, i in last.items() if counts[name] >= 2))
    enrolled = np.setdiff1d(np.arange(len(real)), held_out)
    real_gallery = real[enrolled][:size]

    synthetic = size - len(real_gallery)
    per_person = rng.choice(model.counts, size=max(1, synthetic))
    people = int(np.searchsorted(np.cumsum(per_person), synthetic)) + 1
    per_person = per_person[:people]
    centres = model.centres(people, rng)
    parts = [real_gallery]
    made = 0
    chunk = 100_000
    owner = np.repeat(np.arange(people), per_person)[:synthetic]
    while made < synthetic:
        rows = owner[made : made + chunk]
        parts.append(model.photos(centres[rows], rng))
        made += len(rows)
    gallery = np.concatenate(parts)[:size]

    n_real = min(len(held_out), n_queries // 2) if len(real_gallery) == len(enrolled) else 0
    n_mated = n_queries // 2 - n_real
    mated_people = rng.choice(np.unique(owner), n_mated) if synthetic else np.zeros(0, int)
    n_mated = len(mated_people)
    queries = np.concatenate(
        [
            real[held_out[:n_real]],
            model.photos(centres[mated_people], rng),
            model.photos(model.centres(n_queries - n_real - n_mated, rng), rng),
        ]
    ).astype(np.float32)
    return gallery, queries, {
        "real_in_gallery": int(len(real_gallery)),
        "synthetic_in_gallery": int(size - len(real_gallery)),
        "queries_real_mated": int(n_real),
        "queries_synthetic_mated": int(n_mated),
        "queries_non_mated": int(n_queries - n_real - n_mated),
    }


# ---------------------------------------------------------------- the candidates (worker side)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset the kernel's record of peak resident memory (Linux 4.0+); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak() -> int:
    """Peak resident memory since the last reset (VmHWM), else since the process started."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Candidate:
    """One index under test: build it, then search one query at a time."""

    name = ""

    def build(self, ids: Any, vectors: Any, threads: int) -> None: ...

    def set_ef(self, ef: int) -> None: ...

    def search(self, query: Any, k: int) -> Any:
        """Ids of the k nearest, nearest first."""

    def size_bytes(self) -> int | None:
        return None


class Exact(Candidate):
    name = "exact numpy"

    def build(self, ids, vectors, threads):  # type: ignore[no-untyped-def]
        from regard.index import ExactIndex

        self.index = ExactIndex()
        self.index.add(ids, vectors)

    def search(self, query, k):  # type: ignore[no-untyped-def]
        return self.index.search(query[None, :], k)[0][0]

    def size_bytes(self):  # type: ignore[no-untyped-def]
        return self.index.nbytes


class USearch(Candidate):
    name = "usearch"

    def __init__(self, m: int, ef_construction: int) -> None:
        import usearch

        self.version = usearch.__version__
        self.m, self.ef_construction = m, ef_construction

    def build(self, ids, vectors, threads):  # type: ignore[no-untyped-def]
        from usearch.index import Index

        self.index = Index(
            ndim=vectors.shape[1],
            metric="l2sq",
            dtype="f32",
            connectivity=self.m,
            expansion_add=self.ef_construction,
        )
        self.index.add(ids.astype(np.uint64), vectors, threads=threads)

    def set_ef(self, ef):  # type: ignore[no-untyped-def]
        self.index.expansion_search = ef

    def search(self, query, k):  # type: ignore[no-untyped-def]
        matches = self.index.search(query, k, threads=1)
        np.sqrt(np.maximum(matches.distances, 0))  # Euclidean, as Regard would report it
        return matches.keys.astype(np.int64)

    def size_bytes(self):  # type: ignore[no-untyped-def]
        return self.index.memory_usage


class Faiss(Candidate):
    """faiss's IndexHNSWFlat through regard.index.ApproximateIndex: what Regard ships."""

    name = "faiss HNSW"

    def __init__(self, m: int, ef_construction: int) -> None:
        import faiss

        self.version = faiss.__version__
        self.m, self.ef_construction = m, ef_construction

    def build(self, ids, vectors, threads):  # type: ignore[no-untyped-def]
        from regard.index import ApproximateIndex

        self.index = ApproximateIndex(
            connectivity=self.m, expansion_add=self.ef_construction, threads=threads
        )
        self.index.add(ids, vectors)

    def set_ef(self, ef):  # type: ignore[no-untyped-def]
        self.index.expansion_search = ef

    def search(self, query, k):  # type: ignore[no-untyped-def]
        return self.index.search(query[None, :], k)[0][0]

    def size_bytes(self):  # type: ignore[no-untyped-def]
        return self.index.nbytes


class Hnswlib(Candidate):
    name = "hnswlib"

    def __init__(self, m: int, ef_construction: int) -> None:
        import hnswlib

        self.hnswlib = hnswlib
        self.version = getattr(hnswlib, "__version__", "?")
        self.m, self.ef_construction = m, ef_construction

    def build(self, ids, vectors, threads):  # type: ignore[no-untyped-def]
        self.index = self.hnswlib.Index(space="l2", dim=vectors.shape[1])  # squared L2
        self.index.init_index(max_elements=len(vectors), ef_construction=self.ef_construction, M=self.m)
        self.index.set_num_threads(threads)
        self.index.add_items(vectors, ids)
        self.index.set_num_threads(1)

    def set_ef(self, ef):  # type: ignore[no-untyped-def]
        self.index.set_ef(ef)

    def search(self, query, k):  # type: ignore[no-untyped-def]
        labels, _ = self.index.knn_query(query[None, :], k=k)
        return labels[0]


def make_candidate(name: str, m: int, ef_construction: int) -> Candidate:
    if name == "exact":
        return Exact()
    return {"usearch": USearch, "faiss": Faiss, "hnswlib": Hnswlib}[name](m, ef_construction)


def worker(args: argparse.Namespace) -> None:
    """Build one candidate on the saved gallery, measure it, print one JSON line."""

    folder = Path(args.worker_dir)
    gallery = np.load(folder / "gallery.npy")
    queries = np.load(folder / "queries.npy")
    truth = np.load(folder / "truth.npy")
    ids = np.arange(len(gallery), dtype=np.int64)
    try:
        candidate = make_candidate(args.worker, args.m, args.ef_construction)
    except ImportError as e:
        print(json.dumps({"index": args.worker, "error": f"not installed ({e})"}))
        return
    gc.collect()
    _reset_peak()
    rss_before, t0 = _rss(), time.perf_counter()
    candidate.build(ids, gallery, args.build_threads)
    build_s = time.perf_counter() - t0
    gc.collect()
    result: dict[str, Any] = {
        "index": args.worker,
        "name": candidate.name,
        "version": getattr(candidate, "version", None),
        "build_s": build_s,
        "build_threads": args.build_threads,
        "rss_mb": (_rss() - rss_before) / 2**20,
        "peak_mb": max(0, _peak() - rss_before) / 2**20,
        "index_mb": (candidate.size_bytes() or 0) / 2**20 or None,
        "runs": [],
    }
    if args.worker != "exact":
        result["params"] = {"M": args.m, "ef_construction": args.ef_construction}
    timed = len(queries)
    if args.worker == "exact" and len(gallery) >= 500_000:
        timed = min(timed, EXACT_TIMED_QUERIES)
    for ef in [None] if args.worker == "exact" else args.ef:
        if ef is not None:
            candidate.set_ef(ef)
        for q in queries[:20]:  # warm up
            candidate.search(q, K)
        found = np.full((len(queries), K), -1, np.int64)
        latencies = []
        for i, q in enumerate(queries):
            t = time.perf_counter()
            row = candidate.search(q, K)
            if i < timed:
                latencies.append(time.perf_counter() - t)
            found[i, : len(row)] = row
        recall_10 = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))
        result["runs"].append(
            {
                "ef": ef,
                "p50_ms": float(np.percentile(latencies, 50) * 1e3),
                "p99_ms": float(np.percentile(latencies, 99) * 1e3),
                "timed_queries": len(latencies),
                "recall_at_1": float(np.mean(found[:, 0] == truth[:, 0])),
                "recall_at_10": recall_10,
            }
        )
    print(json.dumps(result))


# ---------------------------------------------------------------- identification on LFW fold 1


def identification(vectors: Any, names: list[str]) -> dict[str, Any]:
    """Open-set identification on LFW fold 1 alone.

    Gallery: the first photo of every person with 2 or more photos. Mated probes: their other
    photos. Non-mated probes: the photos of the people with exactly 1 photo (never enrolled).
    Candidates: the top 10 of an exact search whose score (regard.match.score_from_distance) is at
    or above the threshold regard.match.search_threshold(default_table(), gallery size).

    - rank-1 identification rate: mated probes whose nearest gallery face is their mate (no threshold);
    - FNIR: mated probes whose mate is not among the candidates (missing or below threshold);
    - FPIR: non-mated probes with at least one candidate.
    """
    from regard import match
    from regard.index import ExactIndex

    order: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        order.setdefault(name, []).append(i)
    enrolled = {name: rows[0] for name, rows in order.items() if len(rows) >= 2}
    gallery_names = sorted(enrolled)
    gallery = vectors[[enrolled[n] for n in gallery_names]]
    mated = [(i, gallery_names.index(n)) for n, rows in order.items() if len(rows) >= 2 for i in rows[1:]]
    non_mated = [rows[0] for rows in order.values() if len(rows) == 1]

    index = ExactIndex()
    index.add(np.arange(len(gallery)), gallery)
    threshold = float(match.search_threshold(match.default_table(), len(gallery)))
    ids, distances = index.search(vectors[[i for i, _ in mated]], K)
    scores = match.score_from_distance(distances)
    mates = np.array([m for _, m in mated])
    rank1 = float(np.mean(ids[:, 0] == mates))
    hit = ((ids == mates[:, None]) & (scores >= threshold)).any(axis=1)
    ids_n, distances_n = index.search(vectors[non_mated], K)
    false_alarm = (match.score_from_distance(distances_n) >= threshold).any(axis=1)
    return {
        "gallery_size": len(gallery),
        "mated_probes": len(mated),
        "non_mated_probes": len(non_mated),
        "threshold": threshold,
        "rank1_identification_rate": rank1,
        "fnir": float(1.0 - hit.mean()),
        "fpir": float(false_alarm.mean()),
        "fnir_count": int((~hit).sum()),
        "fpir_count": int(false_alarm.sum()),
    }


# ---------------------------------------------------------------- stores side by side (--store)


@dataclass
class LoadedStore:
    """A store of the side-by-side section with one benchmark collection loaded and indexed."""

    store: Any
    backend: str
    collection: str
    row_of: dict[str, int]  # face_id -> row of the gallery
    result: dict[str, Any]


def load_store(url: str, size: int, gallery: Any, queries: Any, args: argparse.Namespace) -> LoadedStore:
    """Load `gallery` into a fresh collection of the store at `url` and build its index."""
    from tqdm import tqdm

    from regard.face import QualityLevel
    from regard.store import ConsentBasis, NewFace, SearchQuery, open_store

    interactive = sys.stderr.isatty()
    store = open_store(url)
    backend = "postgresql" if url.startswith("postgres") else "sqlite"
    collection = f"bench-{size}"
    store.create_collection(collection, purpose="search benchmark", actor="bench")
    result: dict[str, Any] = {"store": backend, "size": size}
    if backend == "postgresql":
        store.drop_vector_index()  # type: ignore[attr-defined]
    row_of: dict[str, int] = {}
    t0 = time.perf_counter()
    with tqdm(total=size, desc=f"{backend}: loading", unit="face", disable=not interactive) as bar:
        for start in range(0, size, args.batch):
            person = f"p{start // args.batch:06d}"
            store.add_person(collection, person, actor="bench")
            store.record_consent(collection, person, basis=ConsentBasis.CONSENT, actor="bench")
            faces = [
                NewFace(embedding=v, box=(0.0, 0.0, 100.0, 100.0), quality_score=80.0, quality_level=QualityLevel.HIGH)
                for v in gallery[start : start + args.batch]
            ]
            for i, record in enumerate(store.add_faces(collection, person, faces, actor="bench")):
                row_of[record.face_id] = start + i
            bar.update(len(faces))
    load_s = time.perf_counter() - t0
    result["load_s"] = load_s
    result["load_faces_per_s"] = size / load_s
    t0 = time.perf_counter()
    if backend == "postgresql":
        from regard.store import postgres

        with tqdm(desc="postgresql: building HNSW", unit="tuple", disable=not interactive) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total or bar.total
                bar.update(done - bar.n)

            store.build_vector_index(maintenance_work_mem=args.pg_build_mem, progress=progress)  # type: ignore[attr-defined]
        result["prewarmed"] = prewarm(url)
        result["params"] = {"exact_below": postgres.EXACT_BELOW, "ef_search_shipped": postgres.EF_SEARCH,
                            "index": postgres.HNSW_DEFINITION.split("USING hnsw", 1)[1].strip()}  # fmt: skip
    else:
        store.search(collection, [SearchQuery(queries[0])], actor="bench", purpose="build the index", k=K)
    result["index_s"] = time.perf_counter() - t0
    return LoadedStore(store, backend, collection, row_of, result)


SIDE_BY_SIDE_BLOCK = 50
"""Queries a store runs before the other takes its turn. Not 1: alternating query by query, each
store's searches evict the other's graph from the processor's caches (measured at 1M faces: SQLite
9.0 ms a search instead of 4.5, PostgreSQL 23.3 instead of 18.8-22.5), which times neither as it runs."""


def search_stores(loaded: list[LoadedStore], queries: Any, truth: Any, efs: list[int]) -> None:
    """Time top-10 searches of every loaded store, interleaved in blocks of SIDE_BY_SIDE_BLOCK
    queries (the order of the stores alternating), once per PostgreSQL search depth in `efs`: a
    machine that slows down or speeds up during the run slows each store alike, so the ratio of
    a round is side by side.
    Each store's result gets "runs" (one per round: ef, p50/p99 ms, recall@10) and, over all its
    rounds, p50/p99 and recall."""
    from tqdm import tqdm

    from regard.store import SearchQuery

    interactive = sys.stderr.isatty()
    pooled: list[list[float]] = [[] for _ in loaded]  # latencies over all rounds, a list per store
    for s in loaded:
        s.result["runs"] = []
    for ef in efs:
        for s in loaded:
            if s.backend == "postgresql":
                s.store.ef_search = ef
            for q in queries[:20]:  # warm up
                s.store.search(s.collection, [SearchQuery(q)], actor="bench", purpose="warm up", k=K, threshold=0)
        latencies: list[list[float]] = [[] for _ in loaded]
        recalls: list[list[float]] = [[] for _ in loaded]
        rows = list(zip(queries, truth))
        blocks = range(0, len(rows), SIDE_BY_SIDE_BLOCK)
        order = list(range(len(loaded)))
        for b, first in enumerate(tqdm(blocks, desc=f"searching (PostgreSQL ef {ef})", unit="block", disable=not interactive)):
            for i in order if b % 2 == 0 else order[::-1]:
                s = loaded[i]
                for q, t in rows[first : first + SIDE_BY_SIDE_BLOCK]:
                    started = time.perf_counter()
                    found = s.store.search(s.collection, [SearchQuery(q)], actor="bench", purpose="benchmark", k=K, threshold=0)[0]
                    latencies[i].append(time.perf_counter() - started)
                    recalls[i].append(len({s.row_of[c.face_id] for c in found} & set(int(x) for x in t)) / K)
        for i, s in enumerate(loaded):
            lat = latencies[i]
            pooled[i] += lat
            s.result["runs"].append(
                {
                    "ef": ef if s.backend == "postgresql" else None,
                    "p50_ms": float(np.percentile(lat, 50) * 1e3),
                    "p99_ms": float(np.percentile(lat, 99) * 1e3),
                    "recall_at_10": float(np.mean(recalls[i])),
                    "searches": len(lat),
                }
            )
    for s, lat in zip(loaded, pooled):
        s.result.update(
            p50_ms=float(np.percentile(lat, 50) * 1e3),
            p99_ms=float(np.percentile(lat, 99) * 1e3),
            recall_at_10=float(np.mean([run["recall_at_10"] for run in s.result["runs"]])),
        )


def finish_store(s: LoadedStore) -> dict[str, Any]:
    """Verify the audit chain (up to 100k faces: longer chains take minutes), delete the
    benchmark collection, close the store; the store's result."""
    s.result["audit_ok"] = bool(s.store.verify_audit().ok) if s.result["size"] <= 100_000 else None
    t0 = time.perf_counter()
    s.store.delete_collection(s.collection, actor="bench", reason="benchmark done")
    s.result["delete_s"] = time.perf_counter() - t0
    s.store.close()
    return s.result


def prewarm(url: str) -> bool:
    """Settle the database after the bulk load, as an operator does (docs/STORAGE.md), so that the
    searches are not timed against autovacuum and a checkpoint catching up with it: VACUUM
    (hint bits, visibility map, statistics; indexes left alone: an insert-only load has nothing to
    remove from them), CHECKPOINT, then the table and its HNSW index read into shared_buffers
    (pg_prewarm, where it is available)."""
    import psycopg

    from regard.store import postgres

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE, INDEX_CLEANUP OFF)")
        conn.execute("CHECKPOINT")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            for relation in (postgres.HNSW_INDEX, "faces"):
                conn.execute("SELECT pg_prewarm(%s)", (relation,))
        return True
    except psycopg.Error as e:
        print(f"not prewarmed (pg_prewarm: {e})", file=sys.stderr)
        return False


def run_stores(model: FaceModel, vectors: Any, names: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every size in --store-sizes on SQLite and on each --store URL, in this process."""
    from regard.index import ExactIndex
    from regard.store import postgres

    efs = [int(x) for x in args.pg_ef.split(",") if x] if args.pg_ef else [postgres.EF_SEARCH]
    entries = []
    for size in [int(s) for s in args.store_sizes.split(",") if s]:
        gallery, queries, composition = make_gallery(model, vectors, names, size, args.queries, args.seed)
        exact = ExactIndex()
        exact.add(np.arange(len(gallery)), gallery)
        truth, _ = exact.search(queries, K)
        del exact
        with tempfile.TemporaryDirectory(prefix="regard-store-bench-") as tmp:
            loaded = []
            for url in [f"sqlite:///{Path(tmp) / 'bench.db'}", *args.store]:
                print(f"{size:,} faces: loading store {url.split(':', 1)[0]} ...", file=sys.stderr)
                loaded.append(load_store(url, size, gallery, queries, args))
            print(f"{size:,} faces: searching the stores side by side ...", file=sys.stderr)
            search_stores(loaded, queries, truth, efs)
            results = [finish_store(s) for s in loaded]
        entries.append({"size": size, "composition": composition, "results": results})
    return entries


def bench_bulk_photos(url: str, data: Path, workers: int) -> dict[str, Any]:
    """`regard enroll --people-from-folders` on the fold's photos (a folder per person): the whole
    pipeline on a process pool plus batched writes, into a fresh collection of the store at `url`."""
    from regard.bulk import ConsentRow, bulk_enroll, people_from_folders
    from regard.store import ConsentBasis, open_store

    folder = data / "lfw" if (data / "lfw").is_dir() else data
    store = open_store(url)
    collection = "bench-bulk-photos"
    store.create_collection(collection, purpose="bulk enrollment benchmark", actor="bench")
    consents = [ConsentRow(p, ConsentBasis.CONSENT, "bench", None, None) for p in people_from_folders(folder)]
    report = bulk_enroll(store, collection, folder, actor="bench", workers=workers, consents=consents)
    store.delete_collection(collection, actor="bench", reason="benchmark done")
    store.close()
    return {
        "store": "postgresql" if url.startswith("postgres") else "sqlite",
        "workers": workers,
        "photos": report.photos,
        "enrolled": report.enrolled,
        "rejected": len(report.rejected),
        "seconds": report.seconds,
        "photos_per_s": report.photos / report.seconds,
        "faces_per_s": report.enrolled / report.seconds,
    }


def print_stores(entries: list[dict[str, Any]]) -> None:
    header = (
        f"{'faces':>9}  {'store':<11} {'ef':>4}  {'load faces/s':>12}  {'index s':>8}  {'p50 ms':>7}  {'p99 ms':>7}  "
        f"{'R@10':>6}  {'p50 vs SQLite':>13}"
    )
    print(header)
    print("-" * len(header))
    for entry in entries:
        sqlite = entry["results"][0]  # the peer: each ratio is against SQLite's searches of the same round
        for r in entry["results"]:
            rows = [(r, None)] if r is sqlite else [(run, sqlite["runs"][i]) for i, run in enumerate(r["runs"])]
            for i, (run, base) in enumerate(rows):
                ratio = run["p50_ms"] / base["p50_ms"] if base is not None and base["p50_ms"] else 1.0
                load = f"{r['load_faces_per_s']:12,.0f}  {r['index_s']:8.1f}" if i == 0 else " " * 22
                ef = str(run["ef"]) if run.get("ef") is not None else "-"
                print(
                    f"{entry['size']:>9,}  {r['store'] if i == 0 else '':<11} {ef:>4}  {load}  "
                    f"{run['p50_ms']:7.2f}  {run['p99_ms']:7.2f}  {run['recall_at_10']:6.3f}  {ratio:12.2f}x"
                )
        print()


# ---------------------------------------------------------------- driver


def run_candidate(name: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"  # searches on one thread (builds ask their library for --build-threads)
    env["REGARD_THREADS"] = "1"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker", name,
        "--worker-dir", str(folder),
        "--build-threads", str(args.build_threads),
        "--m", str(args.m),
        "--ef-construction", str(args.ef_construction),
        "--ef", ",".join(map(str, args.ef)),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"index": name, "error": f"worker failed ({done.returncode}): {done.stderr[-2000:]}"}
    return json.loads(lines[-1])


def print_table(sizes: list[dict[str, Any]]) -> None:
    header = (
        f"{'faces':>9}  {'index':<15} {'ef':>4}  {'build s':>8}  {'RSS MB':>7}  {'peak MB':>7}  "
        f"{'index MB':>8}  {'p50 ms':>7}  {'p99 ms':>7}  {'R@1':>6}  {'R@10':>6}"
    )
    print(header)
    print("-" * len(header))
    for entry in sizes:
        for result in entry["results"]:
            if "error" in result:
                print(f"{entry['size']:>9,}  {result['index']:<15} {result['error'][:70]}")
                continue
            for i, run in enumerate(result["runs"]):
                first = i == 0
                build = f"{result['build_s']:8.1f}" if first else " " * 8
                rss = f"{result['rss_mb']:7.0f}" if first else " " * 7
                peak = f"{result['peak_mb']:7.0f}" if first else " " * 7
                own = result["index_mb"]
                own_text = (f"{own:8.0f}" if own else f"{'-':>8}") if first else " " * 8
                ef = "-" if run["ef"] is None else str(run["ef"])
                print(
                    f"{entry['size']:>9,}  {result['name'] if first else '':<15} {ef:>4}  {build}  "
                    f"{rss}  {peak}  {own_text}  {run['p50_ms']:7.3f}  {run['p99_ms']:7.3f}  "
                    f"{run['recall_at_1']:6.3f}  {run['recall_at_10']:6.3f}"
                )
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an LFW fold (folder with lfw/)")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="gallery sizes, comma separated")
    parser.add_argument("--indexes", default=",".join(CANDIDATES), help="candidates to run")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--m", type=int, default=None, help="HNSW links per node (default: Regard's)")
    parser.add_argument("--ef-construction", type=int, default=None, help="HNSW efConstruction")
    parser.add_argument("--ef", default="128,256,384,512", help="HNSW search depths to measure")
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--store", action="append", default=[], metavar="URL",
        help="also load and search the galleries in this PostgreSQL store, beside a SQLite one (repeatable)",
    )
    parser.add_argument("--store-sizes", help="gallery sizes for --store (default: --sizes)")
    parser.add_argument("--batch", type=int, default=1000, help="faces per add_faces call with --store")
    parser.add_argument("--pg-build-mem", default="3GB", help="maintenance_work_mem for the HNSW build")
    parser.add_argument("--pg-ef", help="PostgreSQL hnsw.ef_search values to measure, e.g. 200,300,400 (default: Regard's)")
    parser.add_argument("--bulk-photos", action="store_true", help="with --store: also bulk-enroll the fold's photos")
    parser.add_argument("--bulk-workers", type=int, default=os.cpu_count() or 1, help="worker processes for it")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.worker:  # a worker gets its gallery from --worker-dir
        datasets.require(args.data, "lfw")
    args.ef = [int(x) for x in str(args.ef).split(",") if x]
    if args.m is None or args.ef_construction is None:
        from regard.index import approximate

        args.m = args.m or approximate.CONNECTIVITY
        args.ef_construction = args.ef_construction or approximate.EXPANSION_ADD
    if args.worker:
        worker(args)
        return

    from regard.index import APPROXIMATE_FROM, ExactIndex
    from regard.index.approximate import EXPANSION_SEARCH

    started = time.perf_counter()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    names_wanted = [n for n in args.indexes.split(",") if n and n != "none"]
    args.store_sizes = args.store_sizes or args.sizes
    print(f"Embedding the photos of {args.data} ...", file=sys.stderr)
    t = time.perf_counter()
    vectors, names, _ = embed_fold(args.data)
    embed_s = time.perf_counter() - t
    model = FaceModel(vectors, names)

    ident = identification(vectors, names)
    results: dict[str, Any] = {
        "data": str(args.data),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "embedding_s": embed_s,
        "fold": model.summary,
        "k": K,
        "queries": args.queries,
        "hnsw": {"M": args.m, "ef_construction": args.ef_construction, "ef": args.ef},
        "regard": {"APPROXIMATE_FROM": APPROXIMATE_FROM, "EXPANSION_SEARCH": EXPANSION_SEARCH},
        "identification": ident,
        "sizes": [],
    }
    with tempfile.TemporaryDirectory(prefix="regard-search-bench-") as tmp:
        folder = Path(tmp)
        for size in sizes if names_wanted else []:
            print(f"{size:,} faces: drawing the gallery, exact top-{K} ...", file=sys.stderr)
            gallery, queries, composition = make_gallery(model, vectors, names, size, args.queries, args.seed)
            exact = ExactIndex()
            exact.add(np.arange(len(gallery)), gallery)
            truth, _ = exact.search(queries, K)
            del exact
            np.save(folder / "gallery.npy", gallery)
            np.save(folder / "queries.npy", queries)
            np.save(folder / "truth.npy", truth)
            del gallery
            gc.collect()
            entry: dict[str, Any] = {"size": size, "composition": composition, "results": []}
            for name in names_wanted:
                print(f"{size:,} faces: {name} ...", file=sys.stderr)
                entry["results"].append(run_candidate(name, folder, args))
            results["sizes"].append(entry)
    if args.store:
        results["stores"] = run_stores(model, vectors, names, args)
        if args.bulk_photos:
            with tempfile.TemporaryDirectory(prefix="regard-bulk-bench-") as tmp:
                results["bulk_photos"] = [
                    bench_bulk_photos(url, args.data, args.bulk_workers)
                    for url in [f"sqlite:///{Path(tmp) / 'bulk.db'}", *args.store]
                ]
    results["total_s"] = time.perf_counter() - started

    print()
    if results["sizes"]:
        print(
            f"Top-{K} search, {args.queries} queries one at a time on 1 thread; builds on "
            f"{args.build_threads} threads; HNSW M={args.m}, efConstruction={args.ef_construction}; "
            f"recall against exact search."
        )
        print()
        print_table(results["sizes"])
    if args.store:
        print(
            f"Stores side by side: top-{K} search through Store.search (one query, audit entry included), "
            f"{args.queries} queries; load through add_faces in batches of {args.batch}; recall against exact.\n"
            f"The stores' searches interleaved in blocks of {SIDE_BY_SIDE_BLOCK} queries, one round per PostgreSQL ef; SQLite's row: all its "
            "rounds; each ratio: against SQLite's searches in the same round."
        )
        print()
        print_stores(results["stores"])
        for b in results.get("bulk_photos", []):
            print(
                f"Bulk enrollment of the fold's photos into {b['store']}: {b['photos']} photos, {b['enrolled']} enrolled, "
                f"{b['rejected']} not, in {b['seconds']:.1f} s with {b['workers']} workers: "
                f"{b['photos_per_s']:.1f} photos/s, {b['faces_per_s']:.1f} faces/s"
            )
        if results.get("bulk_photos"):
            print()
    i = ident
    print(
        f"Identification on LFW fold 1: gallery {i['gallery_size']} people (first photo), "
        f"{i['mated_probes']} mated probes, {i['non_mated_probes']} non-mated probes"
    )
    print(f"  threshold (search_threshold for {i['gallery_size']} faces): score {i['threshold']:.1f}")
    print(f"  rank-1 identification rate: {i['rank1_identification_rate']:.3f}")
    print(f"  FNIR: {i['fnir']:.3f} ({i['fnir_count']} of {i['mated_probes']} mated probes)")
    print(f"  FPIR: {i['fpir']:.3f} ({i['fpir_count']} of {i['non_mated_probes']} non-mated probes)")
    print(f"\nTotal {results['total_s'] / 60:.1f} min (embedding {embed_s:.0f} s).")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"Written to {args.out}")


if __name__ == "__main__":
    main()
