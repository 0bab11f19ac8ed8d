"""Accuracy metrics for an audit, with the definitions NIST uses, vectorised with numpy.

Verification (1:1): a pair of photos of the same person is *genuine* (mated), of different people an
*impostor* (non-mated) pair. At a score threshold t a pair is accepted when its score is >= t, the
same rule as `regard.match` (so these figures and a `ThresholdTable` agree):

- FMR(t), false-match rate: the share of impostor pairs scoring >= t;
- FNMR(t), false non-match rate: the share of genuine pairs scoring < t; TAR = 1 - FNMR;
- ROC: TAR against FMR over every distinct score taken as the threshold; DET: FNMR against FMR;
- EER: where FMR = FNMR, interpolated linearly between the two ROC points that straddle it;
- TAR at FMR x: the highest TAR over thresholds whose FMR is at most x, measurable only when the
  impostor pairs number at least 1 / x.

Identification (1:N), for a gallery with one photo per enrolled person: a *mated* search is a probe
photo of an enrolled person, a *non-mated* one a photo of someone not enrolled.

- rank-1 rate: the share of mated searches whose best candidate is the right person (no threshold;
  a tie with a wrong person counts as a miss);
- FPIR(t): the share of non-mated searches returning any candidate (best score >= t);
- FNIR(t): the share of mated searches where the mate is not returned (its score < t), whatever its
  rank (NIST's "threshold mode").

Error rates come with exact binomial (Clopper-Pearson) intervals, so a rate measured on few pairs
is not over-read. Those treat pairs as independent, which they are not (each photo and each person
takes part in many pairs, and a few look-alike people can make most false matches), so per-group
rates and their ratios also get intervals from a bootstrap over persons (`bootstrap_rates`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from regard.errors import RegardError

CONFIDENCE = 0.95


# ---------------------------------------------------------------- curves


@dataclass(frozen=True)
class Roc:
    """The ROC of a verification test: at `thresholds[i]` (descending, the first +inf), a share
    `fmr[i]` of the impostor pairs and `tar[i]` of the genuine pairs score at or above it."""

    thresholds: np.ndarray
    fmr: np.ndarray
    tar: np.ndarray
    genuine: int
    impostor: int

    @property
    def fnmr(self) -> np.ndarray:
        return 1.0 - self.tar


def roc(genuine: np.ndarray, impostor: np.ndarray) -> Roc:
    """The ROC over every distinct score as a threshold (plus +inf, where nothing is accepted)."""
    g = np.sort(np.asarray(genuine, dtype=np.float64))
    i = np.sort(np.asarray(impostor, dtype=np.float64))
    if g.size == 0 or i.size == 0:
        raise RegardError("an ROC needs both genuine (same-person) and impostor (different-person) pairs")
    thresholds = np.unique(np.concatenate([g, i]))[::-1]
    tar = (g.size - np.searchsorted(g, thresholds, side="left")) / g.size
    fmr = (i.size - np.searchsorted(i, thresholds, side="left")) / i.size
    return Roc(
        thresholds=np.concatenate([[np.inf], thresholds]),
        fmr=np.concatenate([[0.0], fmr]),
        tar=np.concatenate([[0.0], tar]),
        genuine=int(g.size),
        impostor=int(i.size),
    )


def auc(curve: Roc) -> float:
    """Area under the ROC (trapezoids): the chance that a genuine pair outscores an impostor pair."""
    return float(np.sum(np.diff(curve.fmr) * (curve.tar[1:] + curve.tar[:-1]) / 2.0))


@dataclass(frozen=True)
class Eer:
    rate: float
    threshold: float  # the score between the two straddling thresholds, interpolated alike


def eer(curve: Roc) -> Eer:
    """The equal error rate, where FMR = FNMR on the ROC (linear between the straddling points)."""
    gap = curve.fnmr - curve.fmr  # starts at 1 (threshold +inf), non-increasing
    i = int(np.argmax(gap <= 0))
    if gap[i] > 0:  # never crosses: impossible, the last point has fmr = 1
        raise RegardError("the ROC never reaches FMR = FNMR")
    w = gap[i - 1] / (gap[i - 1] - gap[i])
    rate = curve.fmr[i - 1] + w * (curve.fmr[i] - curve.fmr[i - 1])
    t0 = curve.thresholds[i - 1] if np.isfinite(curve.thresholds[i - 1]) else curve.thresholds[i]
    return Eer(rate=float(rate), threshold=float(t0 + w * (curve.thresholds[i] - t0)))


@dataclass(frozen=True)
class OperatingPoint:
    """The best accept rate at a target error rate, and the counts behind it."""

    target: float  # the error rate asked for (FMR or FPIR)
    threshold: float  # the lowest score threshold whose error rate is at most `target`
    accept_rate: float  # TAR (verification) or 1 - FNIR (identification) there
    error_rate: float  # the error rate actually measured there (<= target)
    errors: int  # false matches (or non-mated searches with a candidate) at that threshold
    trials: int  # impostor pairs (or non-mated searches)
    few_errors: bool  # fewer than 20 errors allowed at the target: a rough figure


MIN_ERRORS_FOR_A_STEADY_RATE = 20
"""An error rate measured from fewer errors is flagged (the same rule as match.py's tail fit)."""


def operating_point(curve: Roc, target: float) -> OperatingPoint | None:
    """TAR at FMR `target` (the best TAR at a threshold with FMR <= target); None when the impostor
    pairs are too few to measure that FMR (fewer than 1 / target)."""
    if not 0 < target < 1:
        raise RegardError(f"a target rate is between 0 and 1, not {target}")
    if curve.impostor * target < 1:
        return None
    i = int(np.nonzero(curve.fmr <= target)[0][-1])  # fmr rises as the threshold falls
    threshold = float(curve.thresholds[i]) if np.isfinite(curve.thresholds[i]) else float("inf")
    return OperatingPoint(
        target=target,
        threshold=threshold,
        accept_rate=float(curve.tar[i]),
        error_rate=float(curve.fmr[i]),
        errors=int(round(curve.fmr[i] * curve.impostor)),
        trials=curve.impostor,
        few_errors=curve.impostor * target < MIN_ERRORS_FOR_A_STEADY_RATE,
    )


def rates_at(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """(false matches, impostor pairs, false non-matches, genuine pairs) at a threshold."""
    g, i = np.asarray(genuine, dtype=np.float64), np.asarray(impostor, dtype=np.float64)
    return int(np.count_nonzero(i >= threshold)), int(i.size), int(np.count_nonzero(g < threshold)), int(g.size)


def grid_curve(genuine: np.ndarray, impostor: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FMR and FNMR at each threshold of a score grid (the table `regard.match.calibrate` makes)."""
    g = np.sort(np.asarray(genuine, dtype=np.float64))
    i = np.sort(np.asarray(impostor, dtype=np.float64))
    fmr = (i.size - np.searchsorted(i, grid, side="left")) / max(1, i.size)
    fnmr = np.searchsorted(g, grid, side="left") / max(1, g.size)
    return fmr, fnmr


# ---------------------------------------------------------------- identification


@dataclass(frozen=True)
class Identification:
    """1:N results for a gallery with one photo per enrolled person."""

    gallery: int  # enrolled persons (= gallery faces)
    mated: int  # searches by enrolled persons' other photos
    non_mated: int  # searches by photos of people not enrolled
    rank1: float  # share of mated searches whose best candidate is the mate
    mate_scores: np.ndarray  # per mated search, the mate's score
    non_mated_best: np.ndarray  # per non-mated search, the best score in the gallery

    def fpir_fnir(self, threshold: float) -> tuple[float, float]:
        fpir = float(np.mean(self.non_mated_best >= threshold)) if self.non_mated else float("nan")
        fnir = float(np.mean(self.mate_scores < threshold)) if self.mated else float("nan")
        return fpir, fnir

    def at_fpir(self, target: float) -> OperatingPoint | None:
        """FNIR at FPIR `target` (as 1 - accept_rate); None if the non-mated searches are too few."""
        if self.mated == 0 or self.non_mated == 0:
            return None
        return operating_point(roc(self.mate_scores, self.non_mated_best), target)


def identification(
    gallery: np.ndarray,
    gallery_person: np.ndarray,
    probes: np.ndarray,
    probe_person: np.ndarray,
    *,
    scale: float | None = None,
) -> Identification:
    """Search every probe embedding against the gallery embeddings (exhaustively, as the exact index
    does). A probe whose person is in the gallery is mated; the others are non-mated. `scale` is the
    model's score scale (`Recognizer.distance_at_zero`; None: the built-in model's)."""
    from regard.match import DISTANCE_AT_ZERO, score_from_distance, unit

    scale = DISTANCE_AT_ZERO if scale is None else scale
    gallery = unit(gallery).astype(np.float64) if len(gallery) else np.asarray(gallery, dtype=np.float64)
    gallery_person = np.asarray(gallery_person)
    probes = unit(probes).astype(np.float64) if len(probes) else np.asarray(probes, dtype=np.float64)
    probe_person = np.asarray(probe_person)
    if len(gallery) == 0:
        raise RegardError("identification needs a gallery: no person has two usable photos")
    g_sq = (gallery**2).sum(axis=1)
    chunk = max(1, (1 << 22) // max(1, len(gallery)))  # probes at a time: about 32 MB of scores
    index_of = {p: k for k, p in enumerate(gallery_person.tolist())}
    mate = np.array([index_of.get(p, -1) for p in probe_person.tolist()], dtype=np.int64)
    best = np.empty(len(probes))
    best_other = np.empty(len(probes))
    mate_score = np.full(len(probes), np.nan)
    for start in range(0, len(probes), chunk):
        p = probes[start : start + chunk]
        d2 = (p**2).sum(axis=1)[:, None] + g_sq[None, :] - 2.0 * p @ gallery.T
        scores = score_from_distance(np.sqrt(np.clip(d2, 0.0, None)), scale)
        m = mate[start : start + chunk]
        rows = np.arange(len(p))
        best[start : start + len(p)] = scores.max(axis=1)
        has = m >= 0
        mate_score[start : start + len(p)][has] = scores[rows[has], m[has]]
        scores[rows[has], m[has]] = -np.inf
        best_other[start : start + len(p)] = scores.max(axis=1) if scores.shape[1] else -np.inf
    mated = mate >= 0
    hits = mate_score[mated] > best_other[mated]
    return Identification(
        gallery=len(gallery),
        mated=int(mated.sum()),
        non_mated=int((~mated).sum()),
        rank1=float(hits.mean()) if mated.any() else float("nan"),
        mate_scores=mate_score[mated],
        non_mated_best=best[~mated],
    )


# ---------------------------------------------------------------- intervals


def clopper_pearson(errors: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval for a binomial rate of `errors` in `trials`.

    Its bounds are quantiles of Beta distributions, found here by bisection on the regularised
    incomplete beta function (no scipy needed at run time; the tests check against scipy)."""
    if trials <= 0:
        raise RegardError("an interval needs at least one trial")
    if not 0 <= errors <= trials:
        raise RegardError(f"{errors} errors cannot come from {trials} trials")
    alpha = 1.0 - confidence
    lower = 0.0 if errors == 0 else _beta_quantile(alpha / 2, errors, trials - errors + 1)
    upper = 1.0 if errors == trials else _beta_quantile(1 - alpha / 2, errors + 1, trials - errors)
    return lower, upper


def _beta_quantile(q: float, a: float, b: float) -> float:
    """x with I_x(a, b) = q, by bisection (I is increasing in x)."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if _reg_inc_beta(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return (lo + hi) / 2


def _reg_inc_beta(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta function I_x(a, b), by its continued fraction (Lentz's
    method), on the side of the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) where it converges fast."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _reg_inc_beta(1.0 - x, b, a)
    log_front = a * math.log(x) + b * math.log1p(-x) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    return math.exp(log_front) * _beta_fraction(x, a, b) / a


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 100000):
        # Even step: m (b - m) x / ((a + 2m - 1)(a + 2m)).
        num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        result *= d * c
        # Odd step: -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
        num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        result *= step
        if abs(step - 1.0) < 1e-16:
            break
    return result


# ---------------------------------------------------------------- bootstrap over persons

BOOTSTRAP_REPLICATES = 1000


def person_weights(groups_of_persons: list[np.ndarray], persons: int, replicates: int, seed: int) -> np.ndarray:
    """(replicates, persons) multiplicities: in each replicate every group's persons are drawn again,
    with replacement, as many as the group has (persons in no group keep weight 0)."""
    rng = np.random.default_rng(seed)
    weights = np.zeros((replicates, persons))
    rows = np.arange(replicates)[:, None]
    for members in groups_of_persons:
        if len(members) == 0:
            continue
        drawn = np.asarray(members)[rng.integers(0, len(members), size=(replicates, len(members)))]
        np.add.at(weights, (np.broadcast_to(rows, drawn.shape), drawn), 1.0)
    return weights


def bootstrap_rates(
    person_a: np.ndarray, person_b: np.ndarray, errors: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """The error rate of a set of pairs in each bootstrap replicate of the persons.

    A person drawn k times brings k copies of their photos, so a pair of photos of persons p != q
    counts w_p * w_q times, and a pair of two photos of one person p counts w_p times (the photo
    pairs across copies of a person are not new same-person pairs). NaN where a replicate has no
    pairs. Pairs are first summed per pair of persons, so the cost is replicates x person pairs."""
    a, b = np.minimum(person_a, person_b), np.maximum(person_a, person_b)
    persons = weights.shape[1]
    keys, inverse = np.unique(a.astype(np.int64) * persons + b, return_inverse=True)
    trials = np.bincount(inverse, minlength=keys.size).astype(np.float64)
    errs = np.bincount(inverse, weights=np.asarray(errors, dtype=np.float64), minlength=keys.size)
    ka, kb = keys // persons, keys % persons
    same = ka == kb
    out = np.empty(weights.shape[0])
    chunk = max(1, (1 << 22) // max(1, keys.size))  # replicates at a time: about 32 MB per array
    for start in range(0, weights.shape[0], chunk):
        w = weights[start : start + chunk]
        pair_w = np.where(same, w[:, ka], w[:, ka] * w[:, kb])
        num, den = pair_w @ errs, pair_w @ trials
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + chunk] = np.where(den > 0, num / den, np.nan)
    return out


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """The central `confidence` interval of bootstrap values (order statistics; NaNs dropped; an
    infinite bound as None)."""
    v = np.sort(np.asarray(values, dtype=np.float64)[~np.isnan(values)])
    if v.size == 0:
        return None, None
    alpha = (1 - confidence) / 2
    lo, hi = v[int(np.floor(alpha * (v.size - 1)))], v[int(np.ceil((1 - alpha) * (v.size - 1)))]
    return (float(lo) if np.isfinite(lo) else None), (float(hi) if np.isfinite(hi) else None)
