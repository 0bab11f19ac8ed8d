"""Regard: self-hosted face recognition with consent, purpose, audit and calibrated thresholds.

    import regard
    faces = regard.detect("group.jpg")          # list[Face]: box, landmarks, quality, embedding
    vector = regard.embed("portrait.jpg")       # the main face's 128-d embedding
    result = regard.compare("a.jpg", "b.jpg")   # score, threshold, the threshold's false-match rate

Models load on first use, once per process; nothing is downloaded.
"""

from regard.errors import ImageError, ModelError, NoFaceError, RegardError
from regard.face import Box, Face, Quality, QualityLevel
from regard.match import Comparison
from regard.pipeline import compare, detect, embed, primary_face

__version__ = "0.2.0"


def __getattr__(name: str) -> object:
    """`regard.redact_image` and `regard.redact_video`, imported on first use (they load PyAV)."""
    if name in ("redact_image", "redact_video"):
        from regard import redact

        return getattr(redact, name)
    raise AttributeError(f"module 'regard' has no attribute {name!r}")

__all__ = [
    "Box",
    "Comparison",
    "Face",
    "ImageError",
    "ModelError",
    "NoFaceError",
    "Quality",
    "QualityLevel",
    "RegardError",
    "compare",
    "detect",
    "embed",
    "primary_face",
    "redact_image",
    "redact_video",
]
