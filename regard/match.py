"""Comparing faces: a 0-100 similarity score and thresholds calibrated to a false-match rate.

Embeddings are compared by the angle between them: `distance` is the Euclidean distance between
the two vectors scaled to unit length (sqrt(2 - 2 cos)), and the score maps it linearly,
`100 * (1 - d / 0.8)` clipped to 0..100 (unit distance 0.4, cosine 0.92, is a score of 50). Measured
on LFW fold 1 with thresholds chosen by 10-way cross-validation over people, the angle does better
than the raw Euclidean distance dlib's vectors were trained with (their lengths vary from 1.27 to
1.69 and carry no identity): TAR 80.3 % instead of 71.2 % at FMR 1e-4 and 58.2 % instead of 55.2 %
at 1e-5 (bench/identification.py measures the 1:N gain). The score itself promises nothing: what a threshold means is the
false-match rate (FMR) measured at it on labelled photos, which the threshold table holds. Every
comparison reports the FMR of the threshold it used; the default threshold is the lowest score whose
measured FMR is at most 1e-3 (one false match in a thousand comparisons of different people).
"""

from __future__ import annotations

import bisect
import json
import threading
from dataclasses import asdict, dataclass, field
from functools import cached_property
from importlib import resources
from typing import Any

import numpy as np

from regard.errors import RegardError

DISTANCE_AT_ZERO = 0.8
"""The unit-vector distance whose score is 0 (cosine 0.68: lower than any pair of LFW fold 1)."""
DEFAULT_FMR = 1e-3
DEFAULT_FPIR = 0.01
"""1:N search: the share of searches for someone not enrolled that may return any candidate."""
SEARCH_DESIGN_SHARE = 0.7
"""The default search threshold is set where the calibration expects 70 % of the FPIR target (0.7 %
for 1 %), so that on photos unlike the calibration's it still stays under the target: fitted on
half of LFW fold 1's people, the model's 1 % threshold gave 0.1 % to 2.5 % on the other half (mean
1.0 %, 10 splittings)."""
_TAIL_MIN_COUNT = 20
_GRID = np.round(np.arange(0.0, 100.0001, 0.1), 1)


def unit(vectors: np.ndarray) -> np.ndarray:
    """Embeddings (one, or N x 128) scaled to length 1, as float32. Stores index these, so that
    the Euclidean distance of their indexes is `distance`. A zero vector is an error."""
    array = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    if not np.all(norms > 0):
        raise RegardError("an embedding of length 0 cannot be compared")
    return (array / norms).astype(np.float32)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """The distance between two embeddings: Euclidean, between the vectors scaled to length 1."""
    ua, ub = (np.asarray(v, np.float64) for v in (a, b))
    na, nb = np.linalg.norm(ua), np.linalg.norm(ub)
    if not (na > 0 and nb > 0):
        raise RegardError("an embedding of length 0 cannot be compared")
    return float(np.linalg.norm(ua / na - ub / nb))


def score_from_distance(d: np.ndarray | float, scale: float = DISTANCE_AT_ZERO) -> np.ndarray | float:
    """The 0-100 similarity score for a distance between unit-length embeddings (vectorised).
    `scale` is the distance whose score is 0: DISTANCE_AT_ZERO for the built-in model, a model's
    own (`Recognizer.distance_at_zero`) for another."""
    return np.clip(100.0 * (1.0 - np.asarray(d) / scale), 0.0, 100.0)


def score_of_distance(d: float, scale: float = DISTANCE_AT_ZERO) -> float:
    """`score_from_distance` of one distance, as a Python float: the same arithmetic without numpy's
    per-call cost (a search scores every candidate it finds)."""
    return min(100.0, max(0.0, 100.0 * (1.0 - d / scale)))


def similarity(a: np.ndarray, b: np.ndarray, scale: float = DISTANCE_AT_ZERO) -> float:
    """The 0-100 similarity score of two embeddings."""
    return float(score_from_distance(distance(a, b), scale))


@dataclass(frozen=True)
class ThresholdTable:
    """Score thresholds and the error rates measured at each, on labelled photos."""

    source: str  # what the table was measured on
    genuine_pairs: int
    impostor_pairs: int
    scores: list[float] = field(repr=False)  # ascending grid of thresholds
    fmr: list[float] = field(repr=False)  # fraction of impostor pairs scoring >= threshold
    fnmr: list[float] = field(repr=False)  # fraction of genuine pairs scoring < threshold
    # The 1:N model (see `fit_search_tail`): {"alpha", "beta", "gamma", ...}; None in tables made
    # before Regard 0.2, whose searches fall back to N x FMR.
    search_tail: dict[str, Any] | None = field(default=None, repr=False)

    @cached_property
    def _grid(self) -> list[float]:
        """The score grid as Python floats, made once (every candidate of every search looks it up,
        and bisect on a list is several times quicker than numpy for one value)."""
        return [float(s) for s in self.scores]

    def fmr_at(self, threshold: float) -> float:
        """The measured FMR at a threshold (rounded down to the table's 0.1 grid: conservative)."""
        i = bisect.bisect_right(self._grid, threshold) - 1
        return float(self.fmr[max(0, i)])

    def fnmr_at(self, threshold: float) -> float:
        """The measured false non-match rate at a threshold (grid rounded up: conservative)."""
        i = bisect.bisect_left(self._grid, threshold)
        return float(self.fnmr[min(len(self.fnmr) - 1, i)])

    def threshold_for(self, fmr: float) -> float:
        """The lowest threshold whose measured FMR is at most `fmr`.

        An FMR below what the table can resolve (1 / impostor pairs) is refused rather than guessed.
        """
        if isinstance(fmr, bool) or not isinstance(fmr, (int, float)) or not 0 < fmr < 1:
            raise RegardError(f"a false-match rate is a number between 0 and 1 (exclusive), not {fmr!r}")
        floor = 1.0 / self.impostor_pairs
        if fmr < floor:
            raise RegardError(
                f"an FMR of {fmr:g} is below what the calibration can measure ({floor:.1g}, "
                f"from {self.impostor_pairs} impostor pairs of {self.source})"
            )
        ok = np.nonzero(np.asarray(self.fmr) <= fmr)[0]
        return float(self.scores[int(ok[0])])

    @cached_property
    def _tail(self) -> tuple[float, float]:
        """(slope, intercept) of log10(FMR) against score, fitted where the FMR is measured from
        at least `_TAIL_MIN_COUNT` false matches and is at most 1e-2."""
        scores, fmr = np.asarray(self.scores), np.asarray(self.fmr)
        usable = (fmr * self.impostor_pairs >= _TAIL_MIN_COUNT) & (fmr <= 1e-2) & (fmr > 0)
        if usable.sum() < 5:
            raise RegardError(f"the calibration ({self.source}) has too few false matches to model its tail")
        slope, intercept = np.polyfit(scores[usable], np.log10(fmr[usable]), 1)
        return float(slope), float(intercept)

    def fmr_estimate(self, threshold: float) -> float:
        """The FMR at a threshold: measured where at least 20 false matches support it; beyond that,
        the larger of the measured value and the fitted exponential tail (which over-states the
        measured FMR there, so thresholds chosen from it err on the strict side)."""
        measured = self.fmr_at(threshold)
        if measured * self.impostor_pairs >= _TAIL_MIN_COUNT:
            return measured
        slope, intercept = self._tail
        return float(max(measured, min(1.0, 10 ** (slope * threshold + intercept))))

    def threshold_for_estimate(self, fmr: float) -> float:
        """The lowest threshold whose estimated FMR (`fmr_estimate`) is at most `fmr`, any fmr > 0."""
        if isinstance(fmr, bool) or not isinstance(fmr, (int, float)) or not 0 < fmr < 1:
            raise RegardError(f"a false-match rate is a number between 0 and 1 (exclusive), not {fmr!r}")
        if fmr * self.impostor_pairs >= _TAIL_MIN_COUNT:
            return self.threshold_for(fmr)
        slope, intercept = self._tail
        threshold = float(min(100.0, np.ceil((np.log10(fmr) - intercept) / slope * 10) / 10))
        while threshold < 100.0 and self.fmr_estimate(threshold) > fmr:
            threshold = round(threshold + 0.1, 1)
        return threshold

    def summary(self, fmrs: tuple[float, ...] = (1e-2, 1e-3, 1e-4)) -> list[dict[str, float]]:
        """Rows of (target FMR, threshold, measured FMR, FNMR) for people to read."""
        rows = []
        for target in fmrs:
            if target < 1.0 / self.impostor_pairs:
                continue
            t = self.threshold_for(target)
            rows.append(
                {"target_fmr": target, "threshold": t, "fmr": self.fmr_at(t), "fnmr": self.fnmr_at(t)}
            )
        return rows

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThresholdTable:
        return cls(**data)


def calibrate(genuine_scores: np.ndarray, impostor_scores: np.ndarray, source: str) -> ThresholdTable:
    """A threshold table from the scores of same-person and different-person pairs."""
    genuine = np.sort(np.asarray(genuine_scores, dtype=np.float64))
    impostor = np.sort(np.asarray(impostor_scores, dtype=np.float64))
    if genuine.size == 0 or impostor.size == 0:
        raise RegardError("calibration needs both same-person and different-person pairs")
    fmr = (impostor.size - np.searchsorted(impostor, _GRID, side="left")) / impostor.size
    fnmr = np.searchsorted(genuine, _GRID, side="left") / genuine.size
    return ThresholdTable(
        source=source,
        genuine_pairs=int(genuine.size),
        impostor_pairs=int(impostor.size),
        scores=[float(s) for s in _GRID],
        fmr=[float(f) for f in fmr],
        fnmr=[float(f) for f in fnmr],
    )


def score_matrix(a: np.ndarray, b: np.ndarray, scale: float = DISTANCE_AT_ZERO) -> np.ndarray:
    """The 0-100 score of every embedding of `a` (N x 128) against every one of `b` (M x 128), N x M:
    `similarity` for whole sets at once."""
    ua, ub = unit(a).astype(np.float64), unit(b).astype(np.float64)
    return np.asarray(score_from_distance(np.sqrt(np.clip(2.0 - 2.0 * (ua @ ub.T), 0.0, None)), scale))


def pair_scores(embeddings: np.ndarray, labels: list[str], scale: float = DISTANCE_AT_ZERO) -> tuple[np.ndarray, np.ndarray]:
    """Scores of every same-label pair and every different-label pair among the embeddings."""
    scores = score_matrix(embeddings, embeddings, scale)
    ids = np.unique(np.asarray(labels), return_inverse=True)[1]
    upper = np.triu_indices(len(scores), k=1)
    same = ids[upper[0]] == ids[upper[1]]
    values = scores[upper]
    return values[same], values[~same]


def fit_search_tail(
    embeddings: np.ndarray,
    persons: list[str],
    *,
    seed: int = 0,
    repeats: int = 60,
    max_photos: int = 2000,
    scale: float = DISTANCE_AT_ZERO,
) -> dict[str, Any]:
    """The 1:N model: how likely a search for someone not enrolled is to return any candidate
    (FPIR), given the threshold and the number of enrolled faces, from labelled photos.

    Galleries of M faces (whole people, M from a 32nd to half of the photos) are drawn again and
    again; every photo of a person not in the gallery is searched, and its best score against the
    gallery is kept. The share of those best scores at or above t is the FPIR, and the model
    -ln(1 - FPIR) = exp(gamma + beta t) M^alpha (the best of M comparisons of an exponential tail,
    with alpha < 1 where the comparisons are not independent) is fitted by least squares where
    the FPIR is 0.2 % to 10 %. On LFW fold 1 the threshold it gives for 1 % met 1.0 % on average on
    people left out of the fit, also for galleries four times larger than those it was fitted on.
    """
    vectors = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(persons)
    rng = np.random.default_rng(seed)
    if len(vectors) > max_photos:
        keep = np.sort(rng.choice(len(vectors), max_photos, replace=False))
        vectors, labels = vectors[keep], labels[keep]
    ids = np.unique(labels, return_inverse=True)[1]
    people = np.unique(ids)
    if len(people) < 20 or len(vectors) < 64:
        raise RegardError("the 1:N model needs at least 20 people and 64 photos")
    scores = score_matrix(vectors, vectors, scale)  # on the model's own score scale
    members = [np.nonzero(ids == p)[0] for p in people]
    sizes = sorted({max(5, len(vectors) // d) for d in (32, 16, 8, 4, 2)})
    rows, targets = [], []
    for size in sizes:
        best = []
        for _ in range(repeats):
            gallery: list[int] = []
            enrolled = np.zeros(len(people), bool)
            for p in rng.permutation(len(people)):
                if len(gallery) + len(members[p]) <= size:
                    gallery.extend(members[p])
                    enrolled[p] = True
                if len(gallery) == size:
                    break
            probes = np.nonzero(~enrolled[ids])[0]
            best.append(scores[np.ix_(probes, np.asarray(gallery))].max(axis=1))
        pooled = np.concatenate(best)
        for t in np.arange(0.0, 100.0, 0.5):
            fpir = float(np.mean(pooled >= t))
            if 0.002 <= fpir <= 0.1:
                rows.append((np.log(size), t, 1.0))
                targets.append(np.log(-np.log(1.0 - fpir)))
    if len(rows) < 10:
        raise RegardError("too few searches reach an FPIR of 0.2 % to 10 % to fit the 1:N model")
    (alpha, beta, gamma), *_ = np.linalg.lstsq(np.asarray(rows), np.asarray(targets), rcond=None)
    if not beta < 0:
        raise RegardError("the 1:N model did not fit: the FPIR does not fall as the threshold rises")
    # The mated side: a search with a new photo of someone enrolled with g photos misses them when
    # their best enrolled face scores below t (one draw per person and repeat, so that people with
    # many photos do not weigh more).
    fnir: dict[str, list[float]] = {}
    for g in (1, 2, 3):
        best_mated = []
        for _ in range(repeats):
            for m in members:
                if len(m) > g:
                    drawn = rng.permutation(m)
                    best_mated.append(scores[drawn[0], drawn[1 : g + 1]].max())
        if best_mated:
            ordered = np.sort(best_mated)
            fnir[str(g)] = [round(float(v), 5) for v in np.searchsorted(ordered, _FNIR_GRID, side="left") / len(ordered)]
    return {
        "alpha": float(alpha),
        "beta": float(beta),
        "gamma": float(gamma),
        "gallery_sizes": sizes,
        "repeats": repeats,
        "photos": int(len(vectors)),
        "persons": int(len(people)),
        "fnir_grid": [float(v) for v in _FNIR_GRID],
        "fnir": fnir,
    }


_FNIR_GRID = np.arange(0.0, 100.0001, 0.5)


def expected_fnir(table: ThresholdTable, threshold: float, faces_per_person: int = 1) -> float | None:
    """The calibration's estimate of the share of searches with a new photo of an enrolled person
    that miss them at `threshold`, for people enrolled with 1, 2 or 3+ photos (None without a model)."""
    tail = table.search_tail
    if tail is None or not tail.get("fnir"):
        return None
    curve = tail["fnir"].get(str(min(3, max(1, faces_per_person))))
    if curve is None:
        return None
    i = bisect.bisect_left(tail["fnir_grid"], threshold)
    return float(curve[min(len(curve) - 1, i)])


def expected_fpir(table: ThresholdTable, threshold: float, gallery_size: int) -> float:
    """The calibration's estimate of the FPIR of a search at `threshold` in a gallery of
    `gallery_size` faces: the share of searches for someone not enrolled that return a candidate."""
    n = max(1, gallery_size)
    tail = table.search_tail
    if tail is None:
        return float(min(1.0, n * table.fmr_estimate(threshold)))
    rate = np.exp(tail["gamma"] + tail["beta"] * threshold) * n ** tail["alpha"]
    return float(-np.expm1(-rate))


def search_threshold(table: ThresholdTable, gallery_size: int, fpir: float = DEFAULT_FPIR) -> float:
    """The default score threshold for 1:N search in a gallery of `gallery_size` faces.

    The threshold where the calibration's 1:N model (`fit_search_tail`) expects an FPIR of
    SEARCH_DESIGN_SHARE x `fpir` (0.7 % for the 1 % target), rounded up to the table's 0.1 grid, and
    never below the 1:1 default (FMR 1e-3). A person with several faces is searched by their best
    face, so the gallery size is the number of faces. Tables without the model (made before Regard
    0.2) use FPIR ~ N x FMR.
    """
    if gallery_size < 0:
        raise RegardError("a gallery size cannot be negative")
    if not 0 < fpir < 1:
        raise RegardError(f"an FPIR is between 0 and 1, not {fpir}")
    one_to_one = table.threshold_for(DEFAULT_FMR)
    tail = table.search_tail
    if tail is None:
        per_comparison = fpir / max(1, gallery_size)
        if per_comparison >= DEFAULT_FMR:
            return one_to_one
        return max(one_to_one, table.threshold_for_estimate(per_comparison))
    design = fpir * SEARCH_DESIGN_SHARE
    n = max(1, gallery_size)
    exact = (np.log(-np.log1p(-design)) - tail["gamma"] - tail["alpha"] * np.log(n)) / tail["beta"]
    return float(min(100.0, max(one_to_one, np.ceil(round(exact * 10, 6)) / 10)))


_table: ThresholdTable | None = None
_table_lock = threading.Lock()


def default_table() -> ThresholdTable:
    """The threshold table shipped with Regard (regard/data/calibration.json)."""
    global _table
    with _table_lock:
        if _table is None:
            text = resources.files("regard").joinpath("data/calibration.json").read_text()
            _table = ThresholdTable.from_dict(json.loads(text))
        return _table


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing two faces."""

    score: float  # 0..100
    distance: float
    threshold: float
    fmr_at_threshold: float  # the measured FMR of the threshold used
    fnmr_at_threshold: float  # the measured false non-match rate of the threshold used
    match: bool  # score >= threshold: a candidate, to be reviewed by a person

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 2),
            "distance": round(self.distance, 4),
            "threshold": self.threshold,
            "fmr_at_threshold": self.fmr_at_threshold,
            "fnmr_at_threshold": self.fnmr_at_threshold,
            "match": self.match,
        }


def compare_embeddings(
    a: np.ndarray,
    b: np.ndarray,
    *,
    threshold: float | None = None,
    fmr: float | None = None,
    table: ThresholdTable | None = None,
    scale: float = DISTANCE_AT_ZERO,
) -> Comparison:
    """Compare two embeddings at a threshold given directly, or by target FMR (default 1e-3)."""
    if threshold is not None and fmr is not None:
        raise RegardError("give a threshold or a target FMR, not both")
    table = table or default_table()
    if threshold is None:
        threshold = table.threshold_for(DEFAULT_FMR if fmr is None else fmr)
    if not 0.0 <= threshold <= 100.0:  # NaN fails this too
        raise RegardError(f"a threshold is a score from 0 to 100, not {threshold}")
    d = distance(a, b)
    s = float(score_from_distance(d, scale))
    return Comparison(
        score=s,
        distance=d,
        threshold=float(threshold),
        fmr_at_threshold=table.fmr_at(threshold),
        fnmr_at_threshold=table.fnmr_at(threshold),
        match=s >= threshold,
    )
