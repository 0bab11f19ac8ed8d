"""The operations on photos alone, with no collection: DetectFaces and CompareFaces; and the choice
of a photo's face that searches share with them (`_passes` the QualityFilter, `_largest`)."""

from __future__ import annotations

from typing import Any

from regard.errors import InvalidArgumentError
from regard.face import Face, QualityLevel
from regard.match import compare_embeddings
from regard.pipeline import detect
from regard.service import metrics
from regard.service.rekognition.call import Call
from regard.service.rekognition.shapes import face_detail
from regard.service.rekognition.similarity import similarity_of_score
from regard.store.base import Role


def _passes(face: Face, level: QualityLevel | None) -> bool:
    return level is None or face.quality.level.rank >= level.rank


def _largest(faces: list[Face]) -> Face | None:
    return max(faces, key=lambda f: f.box.width * f.box.height) if faces else None


def detect_faces(call: Call) -> dict[str, Any]:
    call.caller.require(Role.DETECT)
    attributes = call.strings("Attributes", default=[])
    known = {"DEFAULT", "ALL", "AGE_RANGE", "BEARD", "EMOTIONS", "EYE_DIRECTION", "EYEGLASSES", "EYES_OPEN",
             "GENDER", "MOUTH_OPEN", "MUSTACHE", "FACE_OCCLUDED", "SMILE", "SUNGLASSES"}
    if any(a not in known for a in attributes):
        raise InvalidArgumentError(f"Attributes are from {sorted(known)}")
    # Whatever Attributes asks for, Regard answers with geometry and quality only: it never infers
    # age, gender, emotion or appearance attributes (docs/SERVICE.md).
    rgb, _ = call.image()
    faces = detect(rgb, embed=False)
    metrics.faces_detected(len(faces))
    return {"FaceDetails": [face_detail(rgb, f) for f in faces]}


def compare_faces(call: Call) -> dict[str, Any]:
    call.caller.require(Role.DETECT)
    level = call.quality_filter("NONE")
    threshold = call.threshold("SimilarityThreshold", call.store.table.threshold_for(1e-3))
    source_rgb, _ = call.image("SourceImage")
    target_rgb, _ = call.image("TargetImage")
    source = _largest([f for f in detect(source_rgb) if _passes(f, level)])
    if source is None:
        raise InvalidArgumentError("There are no faces in the source image (that pass the QualityFilter)")
    matches, unmatched = [], []
    for face in detect(target_rgb):
        if not _passes(face, level):
            continue
        comparison = compare_embeddings(source.embedding, face.embedding, threshold=threshold)  # type: ignore[arg-type]
        compared = face_detail(target_rgb, face)
        if comparison.match:
            matches.append({"Similarity": similarity_of_score(call.store.table, comparison.score), "Face": compared})
        else:
            unmatched.append(compared)
    matches.sort(key=lambda m: -m["Similarity"])
    source_detail = face_detail(source_rgb, source)
    return {
        "SourceImageFace": {"BoundingBox": source_detail["BoundingBox"], "Confidence": source_detail["Confidence"]},
        "FaceMatches": matches,
        "UnmatchedFaces": unmatched,
    }
