"""Scores, threshold tables and comparisons."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from regard.errors import RegardError
from regard.match import (
    DEFAULT_FMR,
    DEFAULT_FPIR,
    SEARCH_DESIGN_SHARE,
    calibrate,
    compare_embeddings,
    default_table,
    distance,
    expected_fnir,
    expected_fpir,
    fit_search_tail,
    pair_scores,
    score_from_distance,
    score_of_distance,
    search_threshold,
    similarity,
    unit,
)


def test_score_is_monotone_and_bounded():
    d = np.linspace(0, 3, 31)
    s = score_from_distance(d)
    assert s[0] == 100 and s[-1] == 0 and np.all(np.diff(s) <= 0)
    assert score_from_distance(0.4) == pytest.approx(50.0)


def test_the_score_depends_on_the_angle_not_the_length():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=128), rng.normal(size=128)
    assert similarity(a, 3.0 * a) == pytest.approx(100.0)
    assert similarity(a, b) == pytest.approx(similarity(0.5 * a, 2.0 * b))
    cosine = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert distance(a, b) == pytest.approx(np.sqrt(2 - 2 * cosine))
    assert np.allclose(np.linalg.norm(unit(np.stack([a, b])), axis=1), 1.0)
    with pytest.raises(RegardError, match="length 0"):
        similarity(a, np.zeros(128))


def test_one_distance_scores_exactly_as_the_vectorised_function():
    d = np.concatenate([np.linspace(0, 3, 3001), np.random.default_rng(1).uniform(0, 1.5, 1000)])
    assert [score_of_distance(float(x)) for x in d] == [float(s) for s in score_from_distance(d)]
    assert isinstance(score_of_distance(0.3), float)


def test_identical_embeddings_score_100():
    v = np.random.default_rng(0).normal(size=128).astype(np.float32)
    assert similarity(v, v) == 100.0


def test_calibration_counts_errors_at_each_threshold():
    genuine = np.array([90.0, 80.0, 70.0, 40.0])
    impostor = np.array([10.0, 20.0, 30.0, 45.0, 60.0])
    table = calibrate(genuine, impostor, source="hand-made")
    assert table.fmr_at(50.0) == pytest.approx(1 / 5)  # only 60 scores >= 50
    assert table.fnmr_at(50.0) == pytest.approx(1 / 4)  # only 40 falls below
    assert table.fmr_at(60.0) == pytest.approx(1 / 5) and table.fmr_at(60.1) == 0.0
    assert table.fmr_at(-5.0) == 1.0 and table.fnmr_at(100.5) == table.fnmr[-1]  # off the grid: its ends
    assert table.threshold_for(0.2) == pytest.approx(45.1)
    with pytest.raises(RegardError, match="below what the calibration can measure"):
        table.threshold_for(0.01)


def test_pair_scores_split_same_and_different_people():
    rng = np.random.default_rng(2)
    centre = rng.normal(size=(3, 128))
    vectors = np.repeat(centre, 2, axis=0) + 0.001 * rng.normal(size=(6, 128))
    genuine, impostor = pair_scores(vectors, ["a", "a", "b", "b", "c", "c"])
    assert genuine.size == 3 and impostor.size == 12
    assert genuine.min() > impostor.max()


def test_shipped_table_default_threshold_is_strict():
    table = default_table()
    threshold = table.threshold_for(DEFAULT_FMR)
    assert table.fmr_at(threshold) <= DEFAULT_FMR
    assert table.impostor_pairs >= 100_000, "FMR 1e-3 needs many impostor pairs to be measured"
    # Stricter targets give stricter thresholds.
    assert table.threshold_for(1e-4) > threshold > table.threshold_for(1e-2)
    assert "LFW" in table.source


def test_compare_embeddings_reports_the_fmr_of_its_threshold():
    rng = np.random.default_rng(3)
    a = rng.normal(size=128) * 0.05
    result = compare_embeddings(a, a + 0.0001)
    assert result.match and result.score > 99
    assert result.fmr_at_threshold <= DEFAULT_FMR
    far = compare_embeddings(a, a + 0.2)
    assert not far.match
    with pytest.raises(RegardError):
        compare_embeddings(a, a, threshold=50, fmr=1e-3)
    with pytest.raises(RegardError):
        compare_embeddings(a, a, threshold=150)


def test_search_threshold_grows_with_the_gallery_and_meets_its_fpir_target():
    table = default_table()
    assert table.search_tail is not None  # the shipped table carries the 1:N model
    one_to_one = table.threshold_for(DEFAULT_FMR)
    assert search_threshold(table, 1) == one_to_one
    sizes = [10, 100, 1_000, 10_000, 1_000_000]
    thresholds = [search_threshold(table, n) for n in sizes]
    assert thresholds == sorted(thresholds) and thresholds[-1] > thresholds[0]
    for n, t in zip(sizes, thresholds):
        # Set for 70 % of the 1 % target by the calibration's own model; 0.1 lower would be above it.
        assert expected_fpir(table, t, n) <= DEFAULT_FPIR * SEARCH_DESIGN_SHARE
        if t > one_to_one:
            assert expected_fpir(table, t - 0.1, n) > DEFAULT_FPIR * SEARCH_DESIGN_SHARE
    # More enrolled photos per person: fewer misses at the same threshold.
    misses = [expected_fnir(table, thresholds[2], g) for g in (1, 2, 3)]
    assert misses[0] > misses[1] >= misses[2] > 0


def test_the_1_to_n_model_predicts_the_fpir_of_people_it_was_not_fitted_on():
    rng = np.random.default_rng(8)
    common = unit(rng.normal(size=128)) * np.sqrt(0.84)  # as dlib's: cosine ~0.84 between people

    def people(count: int) -> tuple[np.ndarray, list[str]]:
        centres = common + rng.normal(0, np.sqrt(0.11 / 128), (count, 128))
        vectors = np.repeat(centres, 2, axis=0) + rng.normal(0, np.sqrt(0.05 / 128), (2 * count, 128))
        return vectors, [f"p{i // 2}" for i in range(2 * count)]

    vectors, labels = people(300)
    tail = fit_search_tail(vectors, labels, repeats=20)
    assert 0.5 < tail["alpha"] <= 1.1 and tail["beta"] < 0
    table = dataclasses.replace(calibrate(*pair_scores(vectors, labels), source="synthetic"), search_tail=tail)
    gallery, _ = people(200)
    probes, _ = people(400)
    best = np.asarray(score_from_distance(np.sqrt(np.clip(2 - 2 * unit(probes) @ unit(gallery).T, 0, None)))).max(axis=1)
    threshold = search_threshold(table, len(gallery))
    measured = float(np.mean(best >= threshold))
    assert 0.0005 <= measured <= 0.015, measured  # set for 0.7 %; 800 searches
    with pytest.raises(RegardError, match="at least 20 people"):
        fit_search_tail(vectors[:30], labels[:30])


def test_fmr_estimate_is_measured_where_data_suffice_and_conservative_beyond():
    table = default_table()
    t = table.threshold_for(1e-3)
    assert table.fmr_estimate(t) == table.fmr_at(t)
    deep = table.threshold_for_estimate(1e-6)
    assert deep > table.threshold_for(1e-4)
    assert table.fmr_estimate(deep) <= 1e-6 * 1.01
    # Beyond the data the estimate never claims fewer false matches than were measured.
    for score in (64.0, 66.0, 68.0):
        assert table.fmr_estimate(score) >= table.fmr_at(score)
    with pytest.raises(RegardError):
        table.threshold_for_estimate(0)
