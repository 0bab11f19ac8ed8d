"""`--keep-collection`: leave visible only the faces of enrolled people who consented.

Every other face is redacted. A face stays visible only when all of these hold: it is good enough
to recognise (the collection's own enrollment quality gate, and at least 16 px between the eyes),
its best candidate in the collection scores at or above the collection's search threshold, and that
person's consent is valid now. Each call searches all its faces at once, which writes one audit
entry (who, why, the source, and what came back), like every other 1:N search.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np

from regard import align, models
from regard.errors import NotFoundError
from regard.gallery import MIN_EYE_DISTANCE
from regard.models.detector import Detection
from regard.quality import assess
from regard.store.base import SearchQuery, Store, check_text

KEEP_PURPOSE = "redaction: keep consenting people visible"


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
        keep = [False] * len(detections)
        chips = [align.align(rgb, d.landmarks) for d in detections]
        usable = []
        for i, (d, chip) in enumerate(zip(detections, chips)):
            quality = assess(d.landmarks, d.confidence, chip)
            if quality.eye_distance >= MIN_EYE_DISTANCE and quality.level.rank >= self.collection.min_quality.rank:
                usable.append(i)
        if not usable:
            return keep
        vectors = models.get_embedder().embed_chips(np.stack([chips[i] for i in usable]), flip=True)
        queries = [
            SearchQuery(vector, {"box": [round(v, 1) for v in detections[i].box]})
            for i, vector in zip(usable, vectors)
        ]
        results = self.store.search(
            self.collection.id,
            queries,
            actor=self.actor,
            purpose=self.purpose,
            k=1,
            threshold=self.threshold,
            request={"operation": "redact", "source": source, **(extra or {})},
        )
        self.searches += 1
        when = now or datetime.now(timezone.utc)
        for i, candidates in zip(usable, results):
            if candidates and candidates[0].score >= self.threshold and candidates[0].person_id:
                keep[i] = self._consenting(candidates[0].person_id, when)
        return keep

    def _consenting(self, person_id: str, when: datetime) -> bool:
        try:
            person = self.store.get_person(self.collection.id, person_id)
        except NotFoundError:  # forgotten since the search
            return False
        return person.consent is not None and person.consent.valid_at(when)
