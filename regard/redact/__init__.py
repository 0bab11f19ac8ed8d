"""Face redaction for photos and videos: recall first, no frame leaks, no identifying metadata.

    from regard.redact import redact_image, redact_video
    redact_image("crowd.jpg", "crowd.redacted.jpg")                  # blur every face
    redact_video("march.mp4", "march.redacted.mp4", mode="pixelate") # every frame, audio kept

`masks.py` says what a redaction covers and how it destroys the face, `faces.py` how faces are
found (a lower threshold than recognition, tiles for large images), `tracker.py` how video frames
are kept leak-free, `keep.py` the optional consenting-people exception (audited).
"""

from regard.redact.faces import DEFAULT_MIN_CONFIDENCE, DEFAULT_MIN_FACE, find_faces
from regard.redact.image import ImageRedaction, RedactedFace, redact_image
from regard.redact.keep import KEEP_PURPOSE, KeepConsenting
from regard.redact.masks import DEFAULT_SCALE, Mode, Region, head_region, region_mask
from regard.redact.tracker import DEFAULT_PERSISTENCE
from regard.redact.video import VideoError, VideoRedaction, redact_video

__all__ = [
    "DEFAULT_MIN_CONFIDENCE",
    "DEFAULT_MIN_FACE",
    "DEFAULT_PERSISTENCE",
    "DEFAULT_SCALE",
    "KEEP_PURPOSE",
    "ImageRedaction",
    "KeepConsenting",
    "Mode",
    "RedactedFace",
    "Region",
    "VideoError",
    "VideoRedaction",
    "find_faces",
    "head_region",
    "redact_image",
    "redact_video",
    "region_mask",
]
