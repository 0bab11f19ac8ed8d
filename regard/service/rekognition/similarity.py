"""The Rekognition API's Similarity scale (0-100) and Regard's score: every Similarity a response
gives and every threshold a request names (FaceMatchThreshold, SimilarityThreshold,
UserMatchThreshold) goes through `similarity_of_score` / `score_of_similarity`."""

from __future__ import annotations

import numpy as np

from regard.match import ThresholdTable

SIMILARITY_ANCHORS = ((1e-3, 80.0), (1e-6, 99.0))
"""The Rekognition API's Similarity scale: 80 (the FaceMatchThreshold and SimilarityThreshold of
AWS's own examples, and Rekognition's default) is Regard's 1:1 default threshold, the score whose
measured false-match rate is 1e-3; 99 (what AWS advises for uses such as law enforcement) is the
score whose estimated false-match rate is 1e-6. Between and beyond, Similarity is linear in the
score (0 -> 0, 100 -> 100). The native API keeps Regard's own score."""


def _similarity_knots(table: ThresholdTable) -> tuple[list[float], list[float]]:
    scores = [0.0] + [table.threshold_for_estimate(fmr) for fmr, _ in SIMILARITY_ANCHORS] + [100.0]
    similarities = [0.0] + [sim for _, sim in SIMILARITY_ANCHORS] + [100.0]
    return scores, similarities


def similarity_of_score(table: ThresholdTable, score: float) -> float:
    """A Regard score (0-100) on the Rekognition API's Similarity scale (see SIMILARITY_ANCHORS)."""
    scores, similarities = _similarity_knots(table)
    return round(float(np.interp(score, scores, similarities)), 4)


def score_of_similarity(table: ThresholdTable, similarity: float) -> float:
    """The Regard score a Rekognition Similarity (or threshold) stands for: the inverse of
    `similarity_of_score`."""
    scores, similarities = _similarity_knots(table)
    return float(np.interp(similarity, similarities, scores))
