"""The vector indexes (regard.index): exact search against brute force, approximate recall, removal
that really erases, persistence, padding, bad input and concurrent use."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from regard.index import (
    APPROXIMATE_FROM,
    DIM,
    ApproximateIndex,
    ExactIndex,
    VectorIndex,
    approximate,
    load_index,
    new_index,
)

# Real-like embeddings: the statistics of Regard's embeddings of LFW fold 1 (807 photos, 435
# people): mean vector of norm 1.31, identity centres spread with total variance 0.31 around it,
# photos of one person spread with total variance 0.093 around their centre; vector norms ~1.43.
# Same-person distances are then ~0.43 and different-person distances ~0.81 (median), as in LFW.
_MEAN = np.random.default_rng(1234).standard_normal(128)
_MEAN *= 1.31 / np.linalg.norm(_MEAN)
_BETWEEN = np.sqrt(0.314 / 128)
_WITHIN = np.sqrt(0.0926 / 128)


def people(n: int, rng: np.random.Generator) -> np.ndarray:
    """Identity centres."""
    return _MEAN + _BETWEEN * rng.standard_normal((n, 128))


def photos(centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One embedding per centre: a new photo of each person."""
    return (centres + _WITHIN * rng.standard_normal(centres.shape)).astype(np.float32)


def brute_force(gallery: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(Q, N) Euclidean distances in float64."""
    g, q = gallery.astype(np.float64), queries.astype(np.float64)
    return np.sqrt(((q[:, None, :] - g[None, :, :]) ** 2).sum(-1))


INDEXES = [ExactIndex, ApproximateIndex]


@pytest.fixture(params=INDEXES, ids=lambda c: c.__name__)
def kind(request: pytest.FixtureRequest) -> type:
    return request.param


def small_gallery(n: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ids (spread out, not 0..n-1), gallery photos, and the people's centres."""
    rng = np.random.default_rng(seed)
    centres = people(n, rng)
    ids = rng.choice(10**12, size=n, replace=False).astype(np.int64)
    return ids, photos(centres, rng), centres


# ---------------------------------------------------------------- exact search


def test_exact_index_equals_brute_force() -> None:
    rng = np.random.default_rng(1)
    centres = people(1500, rng)
    gallery = np.concatenate([photos(centres, rng), photos(centres[:500], rng)])  # 2 photos of some
    ids = np.arange(len(gallery), dtype=np.int64) * 3 + 5
    queries = np.concatenate(
        [photos(centres[:150], rng), photos(people(100, rng), rng), gallery[:10]]
    )  # mated, non-mated, and stored vectors themselves
    index = ExactIndex()
    index.add(ids[:1000], gallery[:1000])  # in two batches: the buffer grows
    index.add(ids[1000:], gallery[1000:])
    found, distances = index.search(queries, 10)

    truth = brute_force(gallery, queries)
    order = np.argsort(truth, axis=1)[:, :10]
    assert found.shape == distances.shape == (len(queries), 10)
    assert found.dtype == np.int64 and distances.dtype == np.float32
    np.testing.assert_allclose(distances, np.take_along_axis(truth, order, 1), atol=2e-6)
    assert (found == ids[order]).mean() > 0.999  # only exact ties may swap
    assert np.all(np.diff(distances, axis=1) >= 0)
    np.testing.assert_array_equal(found[-10:, 0], ids[:10])
    assert np.all(distances[-10:, 0] == 0.0)  # exact, where ||q||^2 - 2q.x + ||x||^2 is not


def test_exact_distances_of_near_duplicates_are_precise() -> None:
    rng = np.random.default_rng(2)
    base = photos(people(50, rng), rng)
    nudged = base + np.float32(1e-4) * rng.standard_normal(base.shape).astype(np.float32)
    index = ExactIndex()
    index.add(np.arange(50), base)
    found, distances = index.search(nudged, 1)
    np.testing.assert_array_equal(found[:, 0], np.arange(50))
    true = np.linalg.norm(nudged.astype(np.float64) - base, axis=1)
    np.testing.assert_allclose(distances[:, 0], true, rtol=1e-3)  # ~1.1e-3, not ~sqrt(1e-7)


# ---------------------------------------------------------------- approximate search


@pytest.fixture(scope="module")
def twenty_thousand() -> tuple[np.ndarray, np.ndarray, np.ndarray, ApproximateIndex]:
    """20,000 real-like faces (about 2 photos per person), 300 queries, and the index of them."""
    rng = np.random.default_rng(3)
    centres = people(10_000, rng)
    gallery = np.concatenate([photos(centres, rng), photos(centres, rng)])
    ids = rng.permutation(len(gallery)).astype(np.int64) * 11
    queries = np.concatenate([photos(centres[:200], rng), photos(people(100, rng), rng)])
    index = ApproximateIndex(threads=2)
    index.add(ids, gallery)
    return ids, gallery, queries, index


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def test_approximate_recall_at_10_against_exact(twenty_thousand) -> None:  # type: ignore[no-untyped-def]
    ids, gallery, queries, index = twenty_thousand
    exact = ExactIndex()
    exact.add(ids, gallery)
    truth, truth_distances = exact.search(queries, 10)
    found, distances = index.search(queries, 10)
    assert recall_at(found, truth) >= 0.99
    assert np.mean(found[:, 0] == truth[:, 0]) >= 0.99
    # Distances are exact Euclidean distances of what was found, ascending.
    where = {int(i): row for row, i in enumerate(ids)}
    for q, row, d in zip(queries[:50], found[:50], distances[:50]):
        true = np.linalg.norm(gallery[[where[int(i)] for i in row]] - q, axis=1)
        np.testing.assert_allclose(d, true, rtol=1e-5)
    assert np.all(np.diff(distances, axis=1) >= 0)
    # One query at a time gives what a batch gives.
    single = index.search(queries[0], 10)
    np.testing.assert_array_equal(single[0][0], found[0])


def test_approximate_recall_holds_after_removals() -> None:
    rng = np.random.default_rng(4)
    gallery = photos(people(6000, rng), rng)
    ids = np.arange(6000, dtype=np.int64)
    index = ApproximateIndex(threads=2)
    index.add(ids, gallery)
    gone = rng.permutation(ids)
    # First 1,000 removed rows stay in the graph, filtered out; then 2,500 trigger a rebuild.
    for removed in (gone[:1000], gone[:2500]):
        index.remove(removed)
        assert len(index) == 6000 - len(removed)
        kept = np.setdiff1d(ids, removed)
        exact = ExactIndex()
        exact.add(kept, gallery[kept])
        queries = np.concatenate([gallery[removed[:100]], photos(people(100, rng), rng)])
        truth, _ = exact.search(queries, 10)
        found, _ = index.search(queries, 10)
        assert recall_at(found, truth) >= 0.99
        assert not np.isin(found, removed).any()


# ---------------------------------------------------------------- behaviour common to both


def test_remove_and_re_add(kind: type) -> None:
    ids, gallery, _ = small_gallery()
    index = kind()
    index.add(ids, gallery)
    assert len(index) == 500

    index.remove(np.concatenate([ids[:50], [123, 456]]))  # unknown ids are ignored
    assert len(index) == 450
    found, distances = index.search(gallery[:50], 10)  # the removed faces themselves
    assert not np.isin(found, ids[:50]).any()
    assert np.all(distances[:, 0] > 0)
    index.remove(ids[:50])  # removing again changes nothing
    assert len(index) == 450

    # Re-adding an id replaces its vector: found at the new one, not at the old.
    replacement = photos(people(1, np.random.default_rng(9)), np.random.default_rng(10))
    index.add(ids[60:61], replacement)
    assert len(index) == 450
    found, distances = index.search(replacement, 1)
    assert found[0, 0] == ids[60] and distances[0, 0] == 0.0
    found, _ = index.search(gallery[60], 1)
    assert found[0, 0] != ids[60]

    index.add(ids[:50], gallery[:50])  # back again
    assert len(index) == 500
    found, distances = index.search(gallery[:50], 1)
    np.testing.assert_array_equal(found[:, 0], ids[:50])
    assert np.all(distances[:, 0] == 0.0)


def test_removed_vectors_are_not_in_the_saved_file(kind: type, tmp_path: Path) -> None:
    ids, gallery, _ = small_gallery()
    index = kind()
    index.add(ids, gallery)
    index.remove(ids[:20])
    index.remove(ids[20:25])  # a second removal, with free slots already there
    index.add(ids[30:40], photos(people(10, np.random.default_rng(5)), np.random.default_rng(6)))
    index.save(tmp_path / "index")
    data = (tmp_path / "index").read_bytes()
    for vector in np.concatenate([gallery[:25], gallery[30:40]]):  # removed, or replaced
        assert vector.tobytes() not in data
    kept = np.concatenate([gallery[25:30], gallery[40:]])
    assert all(vector.tobytes() in data for vector in kept)


def test_save_and_load_give_identical_results(kind: type, tmp_path: Path) -> None:
    ids, gallery, centres = small_gallery(800)
    index = kind()
    index.add(ids, gallery)
    index.remove(ids[:100])
    queries = photos(centres, np.random.default_rng(7))
    before = index.search(queries, 10)

    path = tmp_path / "collection.index"
    path.write_bytes(b"an older file")
    index.save(path)  # replaces it
    assert [p.name for p in tmp_path.iterdir()] == ["collection.index"]  # no temp file left
    for loaded in (kind.load(path), load_index(path)):
        assert type(loaded) is kind
        assert len(loaded) == 700
        after = loaded.search(queries, 10)
        np.testing.assert_array_equal(after[0], before[0])
        np.testing.assert_array_equal(after[1], before[1])
    # What it holds is the same, and it keeps working.
    got_ids, got_vectors = loaded.items()
    order = np.argsort(got_ids)
    np.testing.assert_array_equal(got_ids[order], np.sort(ids[100:]))
    np.testing.assert_array_equal(got_vectors[order], gallery[100:][np.argsort(ids[100:])])
    loaded.remove(ids[100:110])
    assert len(loaded) == 690


def test_loading_something_else_fails(kind: type, tmp_path: Path) -> None:
    path = tmp_path / "not-an-index"
    path.write_bytes(b"hello" * 100)
    with pytest.raises(ValueError):
        kind.load(path)
    other = ApproximateIndex if kind is ExactIndex else ExactIndex
    other().save(tmp_path / "other")
    with pytest.raises(ValueError):
        kind.load(tmp_path / "other")


def test_empty_index_returns_padding(kind: type) -> None:
    index = kind()
    assert len(index) == 0
    found, distances = index.search(np.zeros((3, 128), np.float32), 5)
    assert found.shape == distances.shape == (3, 5)
    assert np.all(found == -1) and np.all(np.isinf(distances))
    assert found.dtype == np.int64 and distances.dtype == np.float32
    found, distances = index.search(np.zeros((2, 128), np.float32), 0)
    assert found.shape == (2, 0)
    index.add(np.array([1]), np.ones((1, 128), np.float32))
    index.remove(np.array([1]))
    found, _ = index.search(np.ones(128, np.float32), 3)
    assert np.all(found == -1)


def test_k_larger_than_the_index(kind: type) -> None:
    ids, gallery, _ = small_gallery(30)
    index = kind()
    index.add(ids, gallery)
    index.remove(ids[:5])
    found, distances = index.search(gallery[5:8], 40)
    assert found.shape == (3, 40)
    for row, d in zip(found, distances):
        assert sorted(row[:25]) == sorted(ids[5:])
        assert np.all(row[25:] == -1) and np.all(np.isinf(d[25:]))
        assert np.all(np.diff(d[:25]) >= 0)


def test_bad_input_raises_value_error(kind: type) -> None:
    index = kind()
    good = np.zeros((2, 128), np.float32)
    with pytest.raises(ValueError):
        index.add(np.array([1, 2]), np.zeros((2, 127), np.float32))
    with pytest.raises(ValueError):
        index.add(np.array([1, 2, 3]), good)  # 3 ids, 2 vectors
    with pytest.raises(ValueError):
        index.add(np.array([1, -2]), good)  # -1 and below mean "no result"
    with pytest.raises(ValueError):
        index.add(np.array([1, 1]), good)  # one id twice
    with pytest.raises(ValueError):
        index.add(np.array([1.5, 2.0]), good)
    with pytest.raises(ValueError):
        index.add(np.array([1, 2]), np.full((2, 128), np.nan, np.float32))
    index.add(np.array([1, 2]), good)
    with pytest.raises(ValueError):
        index.search(np.zeros((1, 129), np.float32), 1)
    with pytest.raises(ValueError):
        index.search(np.zeros((2, 3, 128), np.float32), 1)
    with pytest.raises(ValueError):
        index.search(good, -1)
    with pytest.raises(ValueError):
        index.remove(np.array([[1, 2]]))
    assert len(index) == 2


def test_searches_from_many_threads_while_the_index_changes(kind: type) -> None:
    ids, gallery, _ = small_gallery(1000)
    stable, churn = ids[:600], ids[600:]
    index = kind()
    index.add(stable, gallery[:600])
    where = {int(i): row for row, i in enumerate(ids)}
    errors: list[BaseException] = []
    stop = threading.Event()

    def search() -> None:
        rng = np.random.default_rng()
        try:
            while not stop.is_set():
                rows = rng.integers(0, 600, 4)
                found, distances = index.search(gallery[rows], 3)
                assert np.array_equal(found[:, 0], stable[rows])  # stable faces always found
                for q, row, d in zip(gallery[rows], found, distances):
                    ok = row >= 0
                    true = np.linalg.norm(gallery[[where[int(i)] for i in row[ok]]] - q, axis=1)
                    np.testing.assert_allclose(d[ok], true, rtol=1e-5, atol=1e-6)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=search) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for round_ in range(20):
            part = slice(round_ * 20, round_ * 20 + 20)
            index.add(churn[part], gallery[600:][part])
            index.remove(churn[part][::2])
            index.add(stable[:5], gallery[:5])  # replacing with the same vectors
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert len(index) == 600 + 200


def test_new_index_picks_by_size() -> None:
    assert isinstance(new_index(0), ExactIndex)
    assert isinstance(new_index(APPROXIMATE_FROM - 1), ExactIndex)
    assert isinstance(new_index(APPROXIMATE_FROM), ApproximateIndex)
    for index in (ExactIndex(), ApproximateIndex()):
        assert isinstance(index, VectorIndex)


# ---------------------------------------------------------------- other widths (operator-supplied models)


def unit_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Random vectors on the unit sphere, as recognition models other than dlib's give."""
    v = rng.standard_normal((n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def one_thread(kind: type, dim: int) -> VectorIndex:
    """An empty index of `dim`-d vectors; an approximate one built on one thread (the same graph
    every run)."""
    return kind(dim, threads=1) if kind is ApproximateIndex else kind(dim)


@pytest.mark.parametrize("dim", [8, 512])
def test_other_widths_find_the_brute_force_neighbours(kind: type, dim: int) -> None:
    rng = np.random.default_rng(dim)
    gallery, queries = unit_vectors(1000, dim, rng), unit_vectors(100, dim, rng)
    ids = np.arange(1000, dtype=np.int64) * 7 + 3
    index = one_thread(kind, dim)
    assert index.dim == dim
    index.add(ids[:600], gallery[:600])
    index.add(ids[600:], gallery[600:])
    found, distances = index.search(queries, 10)

    truth = brute_force(gallery, queries)
    order = np.argsort(truth, axis=1)[:, :10]
    np.testing.assert_array_equal(found, ids[order])
    np.testing.assert_allclose(distances, np.take_along_axis(truth, order, 1), rtol=1e-5, atol=1e-6)
    found, distances = index.search(gallery[:5], 1)  # stored vectors find themselves, at 0
    np.testing.assert_array_equal(found[:, 0], ids[:5])
    np.testing.assert_allclose(distances[:, 0], 0.0, atol=1e-3)
    got_ids, got_vectors = index.items()
    assert got_vectors.shape == (1000, dim)
    np.testing.assert_array_equal(got_vectors[np.argsort(got_ids)], gallery)


@pytest.mark.parametrize("dim", [8, 512])
def test_other_widths_remove(kind: type, dim: int) -> None:
    rng = np.random.default_rng(dim + 1)
    gallery = unit_vectors(300, dim, rng)
    ids = np.arange(300, dtype=np.int64)
    index = one_thread(kind, dim)
    index.add(ids, gallery)
    index.remove(ids[:100])
    assert len(index) == 200
    found, _ = index.search(gallery[:100], 5)
    assert not np.isin(found, ids[:100]).any()
    found, _ = index.search(gallery[100:110], 1)
    np.testing.assert_array_equal(found[:, 0], ids[100:110])


def test_wrong_widths_are_refused_naming_the_index_dim(kind: type) -> None:
    index = kind(512)
    with pytest.raises(ValueError, match=r"\(N, 512\).*512-d index"):
        index.add(np.array([1, 2]), np.zeros((2, 128), np.float32))
    with pytest.raises(ValueError, match=r"\(N, 512\)"):
        index.add(np.array([1]), np.zeros(511, np.float32))
    index.add(np.array([1, 2]), np.ones((2, 512), np.float32))
    with pytest.raises(ValueError, match=r"queries must have shape \(N, 512\)"):
        index.search(np.zeros((1, 128), np.float32), 1)
    assert len(index) == 2
    with pytest.raises(ValueError, match=r"\(N, 128\).*128-d index"):  # the default width
        kind().add(np.array([1]), np.zeros((1, 512), np.float32))
    for bad in (0, -5, 1.5, True, "512"):
        with pytest.raises(ValueError, match="dim"):
            kind(bad)


def test_a_saved_width_loads_back_and_is_refused_as_another(kind: type, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    gallery, queries = unit_vectors(400, 512, rng), unit_vectors(20, 512, rng)
    ids = np.arange(400, dtype=np.int64) * 3
    index = one_thread(kind, 512)
    index.add(ids, gallery)
    index.remove(ids[:10])
    before = index.search(queries, 10)
    path = tmp_path / "wide.index"
    index.save(path)
    for loaded in (kind.load(path), kind.load(path, dim=512), load_index(path), load_index(path, 512)):
        assert type(loaded) is kind and loaded.dim == 512 and len(loaded) == 390
        after = loaded.search(queries, 10)
        np.testing.assert_array_equal(after[0], before[0])
        np.testing.assert_array_equal(after[1], before[1])
    with pytest.raises(ValueError, match="512-d vectors, not 128-d"):
        kind.load(path, dim=128)
    with pytest.raises(ValueError, match="512-d vectors, not 128-d"):
        load_index(path, 128)
    # A 128-d file is refused as 512.
    small = kind()
    small.add(np.array([1]), np.ones((1, 128), np.float32))
    small.save(tmp_path / "narrow.index")
    assert load_index(tmp_path / "narrow.index").dim == 128
    with pytest.raises(ValueError, match="128-d vectors, not 512-d"):
        load_index(tmp_path / "narrow.index", 512)


def test_approximate_files_written_before_widths_still_load(tmp_path: Path) -> None:
    """Files saved before the index had a dim record none in their header: they hold 128-d graphs."""
    ids, gallery, centres = small_gallery(200)
    index = ApproximateIndex(threads=1)
    index.add(ids, gallery)
    index.remove(ids[:5])
    new = tmp_path / "new.index"
    index.save(new)
    data = new.read_bytes()
    start = len(approximate._MAGIC)
    version, length = struct.unpack("<II", data[start : start + 8])
    header = json.loads(data[start + 8 : start + 8 + length])
    assert header.pop("dim") == 128
    old_header = json.dumps(header).encode()  # the header as the writer before widths wrote it
    old = tmp_path / "old.index"
    old.write_bytes(
        approximate._MAGIC + struct.pack("<II", version, len(old_header)) + old_header + data[start + 8 + length :]
    )

    queries = photos(centres, np.random.default_rng(12))
    for loaded in (ApproximateIndex.load(old), load_index(old), load_index(old, 128)):
        assert loaded.dim == 128 and len(loaded) == 195
        np.testing.assert_array_equal(loaded.search(queries, 5)[0], index.search(queries, 5)[0])
    with pytest.raises(ValueError, match="128-d vectors, not 512-d"):
        ApproximateIndex.load(old, dim=512)

    # A header whose dim disagrees with its graph is refused.
    header["dim"] = 512
    lying = json.dumps(header).encode()
    (tmp_path / "lying.index").write_bytes(
        approximate._MAGIC + struct.pack("<II", version, len(lying)) + lying + data[start + 8 + length :]
    )
    with pytest.raises(ValueError, match="512-d HNSW graph"):
        ApproximateIndex.load(tmp_path / "lying.index")


def test_new_index_takes_a_width() -> None:
    for size, kind in ((0, ExactIndex), (APPROXIMATE_FROM, ApproximateIndex)):
        index = new_index(size, 512)  # positionally, as the store calls it
        assert isinstance(index, kind) and isinstance(index, VectorIndex) and index.dim == 512
        assert new_index(size).dim == DIM == 128
        index.add(np.array([7]), unit_vectors(1, 512, np.random.default_rng(13)))
        assert index.search(index.items()[1], 1)[0][0, 0] == 7
