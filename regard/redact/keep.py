"""`--keep-collection`: leave visible only the faces of enrolled people who consented.

Every other face is redacted. A face stays visible only when all of these hold: it is good enough
to recognise (the collection's own enrollment quality gate, and at least 16 px between the eyes),
its best candidate in the collection scores at or above the collection's search threshold, and that
person's consent is valid now. Each call searches all its faces at once, which writes one audit
entry (who, why, the source, and what came back), like every other 1:N search.

A video cannot afford (nor should it audit) a search per frame, so `check` also returns the probe
embedding that matched, and `embed` + `same_person` let the video pipeline confirm, frame by frame
and without searching, that a kept track still shows the person the search matched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from regard import align, models
from regard.errors import NotFoundError
from regard.match import similarity
from regard.models.detector import Detection
from regard.quality import MIN_EYE_DISTANCE, assess
from regard.store.base import SearchQuery, check_text
from regard.store.core import Store

KEEP_PURPOSE = "redaction: keep consenting people visible"


@dataclass(frozen=True)
class KeepDecision:
    """The keep decision for one face, with the probe embedding it was made on.

    `embedding` is None when the face was not good enough to recognise (it was not searched);
    `kept` is then False.
    """

    kept: bool
    embedding: np.ndarray | None


class KeepConsenting:
    """Decides which detected faces of an image stay visible. One per collection and actor."""

    def __init__(self, store: Store, collection_id: str, *, actor: str, purpose: str = KEEP_PURPOSE) -> None:
        self.store = store
        self.collection = store.get_collection(collection_id)  # NotFoundError early if unknown
        self.actor = check_text(actor, "the actor")
        self.purpose = check_text(purpose, "a search's purpose")
        self.threshold = store.search_threshold(collection_id)
        self.searches = 0

    def decide(
        self,
        rgb: np.ndarray,
        detections: list[Detection],
        *,
        source: str,
        now: datetime | None = None,
        extra: dict[str, Any] | None = None,
    ) -> list[bool]:
        """For each detection, True if it shows a consenting person of the collection."""
        return [d.kept for d in self.check(rgb, detections, source=source, now=now, extra=extra)]

    def check(
        self,
        rgb: np.ndarray,
        detections: list[Detection],
        *,
        source: str,
        now: datetime | None = None,
        extra: dict[str, Any] | None = None,
    ) -> list[KeepDecision]:
        """For each detection, whether it shows a consenting person of the collection, and its probe
        embedding. The recognisable faces are searched together: one audited search per call, none
        when no face is recognisable."""
        vectors = self.embed(rgb, detections)
        usable = [i for i, v in enumerate(vectors) if v is not None]
        kept = [False] * len(detections)
        if usable:
            queries = [
                SearchQuery(vectors[i], {"box": [round(v, 1) for v in detections[i].box]})  # type: ignore[arg-type]
                for i in usable
            ]
            results = self.store.search(
                self.collection.id,
                queries,
                actor=self.actor,
                purpose=self.purpose,
                k=1,
                threshold=self.threshold,
                request={"operation": "redact", "source": source, **(extra or {})},
                model=self.collection.model,
            )
            self.searches += 1
            when = now or datetime.now(timezone.utc)
            for i, candidates in zip(usable, results):
                if candidates and candidates[0].score >= self.threshold and candidates[0].person_id:
                    kept[i] = self._consenting(candidates[0].person_id, when)
        return [KeepDecision(k, v) for k, v in zip(kept, vectors)]

    def embed(self, rgb: np.ndarray, detections: list[Detection]) -> list[np.ndarray | None]:
        """The embedding of each detected face that is good enough to recognise (the collection's
        quality gate and MIN_EYE_DISTANCE), None for the others. Searches nothing."""
        usable: list[int] = []
        chips: dict[int, np.ndarray] = {}
        for i, d in enumerate(detections):
            if float(np.linalg.norm(d.landmarks[1] - d.landmarks[0])) < MIN_EYE_DISTANCE:
                continue  # too small: skip the chip (a video asks again every frame)
            chips[i] = align.align(rgb, d.landmarks)
            quality = assess(d.landmarks, d.confidence, chips[i])
            if quality.eye_distance >= MIN_EYE_DISTANCE and quality.level.rank >= self.collection.min_quality.rank:
                usable.append(i)
        out: list[np.ndarray | None] = [None] * len(detections)
        if usable:
            embedder = models.get_embedder(self.collection.model)  # the collection's own model
            if not embedder.model.built_in:
                pre = embedder.model.preprocess
                chips = {i: align.align(rgb, detections[i].landmarks, pre.size, family=embedder.model.family) for i in usable}
            vectors = embedder.embed_chips(np.stack([chips[i] for i in usable]), flip=True)
            for i, vector in zip(usable, vectors):
                out[i] = vector
        return out

    def same_person(self, probe: np.ndarray, other: np.ndarray) -> bool:
        """Whether two embeddings score at or above the collection's search threshold: the bar a
        face had to clear to be kept is the bar it must keep clearing."""
        return similarity(probe, other, self.store.recognizer(self.collection.model).distance_at_zero) >= self.threshold

    def _consenting(self, person_id: str, when: datetime) -> bool:
        try:
            person = self.store.get_person(self.collection.id, person_id)
        except NotFoundError:  # forgotten since the search
            return False
        return person.consent is not None and person.consent.valid_at(when)
