"""Redacting photos: find every face, destroy it, write the photo without identifying metadata."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from regard.errors import ImageError
from regard.face import Box
from regard.image import DEFAULT_MAX_PIXELS, ImageSource, load_image
from regard.models.detector import Detection
from regard.redact.faces import DEFAULT_MIN_CONFIDENCE, DEFAULT_MIN_FACE, find_faces
from regard.redact.files import atomic_output, check_output
from regard.redact.keep import KeepConsenting
from regard.redact.masks import DEFAULT_SCALE, Mode, Region, head_region, redact_regions

_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".gif": "GIF",
}
_REDACTED_COLOUR = (255, 65, 54)
_KEPT_COLOUR = (46, 204, 64)
_PREVIEW_MAX_WIDTH = 2400


@dataclass(frozen=True)
class RedactedFace:
    """One face found: its detector box, the region redacted over it, and whether it was kept."""

    box: Box
    region: Region
    confidence: float
    kept: bool = False  # left visible by keep_collection: an enrolled, consenting person

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": self.box.to_dict(),
            "region": [round(v, 1) for v in self.region.as_tuple()],
            "confidence": round(self.confidence, 4),
            "kept": self.kept,
        }


@dataclass(frozen=True)
class ImageRedaction:
    """What `redact_image` did. `image` is the redacted photo (HxWx3 uint8 RGB)."""

    source: str | None
    output: Path | None
    image: np.ndarray = field(repr=False)
    faces: list[RedactedFace]

    @property
    def redacted(self) -> int:
        return sum(not f.kept for f in self.faces)

    @property
    def kept(self) -> int:
        return sum(f.kept for f in self.faces)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.source,
            "output": str(self.output) if self.output else None,
            "width": int(self.image.shape[1]),
            "height": int(self.image.shape[0]),
            "redacted": self.redacted,
            "kept": self.kept,
            "faces": [f.to_dict() for f in self.faces],
        }


def face_records(
    detections: list[Detection], kept: list[bool], scale: float
) -> list[RedactedFace]:
    return [
        RedactedFace(Box(*d.box), head_region(d.box, scale), d.confidence, k) for d, k in zip(detections, kept)
    ]


def redact_image(
    source: ImageSource | np.ndarray,
    output: str | os.PathLike[str] | None = None,
    *,
    mode: Mode | str = Mode.BLUR,
    scale: float = DEFAULT_SCALE,
    min_face: float = DEFAULT_MIN_FACE,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    keep: KeepConsenting | None = None,
    keep_metadata: bool = False,
    preview: str | os.PathLike[str] | None = None,
    in_place: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageRedaction:
    """Redact every face of a photo; write it to `output` (if given) and return what was done.

    `source` is a path, bytes, a binary file or an RGB array (see `regard.image.load_image`). The
    output's format follows its extension; it carries no EXIF, XMP or comments (so no GPS position,
    camera serial or capture time) unless `keep_metadata`, and the pixels are stored upright (the
    EXIF orientation is applied). Only the ICC colour profile is kept, so colours stay right.

    `keep` (a `KeepConsenting`) leaves visible the faces of consenting people of one collection.
    `preview` writes a side-by-side before/after PNG with each face's region drawn (red: redacted,
    green: kept), for a person to check. Raises ImageError for unreadable input; then nothing is
    written. The output never replaces the input unless `in_place` is true.
    """
    mode = Mode(mode)
    rgb = load_image(source, max_pixels=max_pixels)
    _refuse_animation(source)
    name = str(source) if isinstance(source, (str, os.PathLike)) else None
    source_path = Path(source) if isinstance(source, (str, os.PathLike)) else None
    out_path = Path(output) if output is not None else None
    if out_path is not None:
        check_output(source_path, out_path, in_place)
        if out_path.suffix.lower() not in _FORMATS:
            raise ImageError(f"{out_path}: cannot write {out_path.suffix or 'a file without extension'}; use one of {', '.join(sorted(_FORMATS))}")
    detections = find_faces(rgb, min_face=min_face, min_confidence=min_confidence)
    kept = [False] * len(detections)
    if keep is not None and detections:
        kept = keep.decide(rgb, detections, source=name or "an image")
    faces = face_records(detections, kept, scale)
    original = rgb.copy() if preview is not None else None
    if isinstance(source, np.ndarray) and np.shares_memory(rgb, source):
        rgb = rgb.copy()  # never redact the caller's array in place
    redacted = redact_regions(rgb, [f.region for f in faces if not f.kept], mode)
    if out_path is not None:
        metadata = _metadata(source, keep_metadata)
        with atomic_output(out_path) as temporary:
            _save(redacted, temporary, _FORMATS[out_path.suffix.lower()], metadata)
    if original is not None and preview is not None:
        preview_path = Path(preview)
        with atomic_output(preview_path) as temporary:
            side_by_side(original, redacted, faces).save(temporary, "PNG")
    return ImageRedaction(name, out_path, redacted, faces)


def _reopen(source: ImageSource | np.ndarray) -> Image.Image | None:
    """The source opened again with Pillow (lazily: headers only), for what load_image does not
    return (frames, metadata); None for an array or anything Pillow cannot open."""
    if isinstance(source, np.ndarray):
        return None
    try:
        if isinstance(source, (str, os.PathLike)):
            return Image.open(source)
        if isinstance(source, (bytes, bytearray, memoryview)):
            return Image.open(io.BytesIO(bytes(source)))
        source.seek(0)
        return Image.open(source)
    except Exception:  # load_image read it already; what is asked of it here is best effort
        return None


def _refuse_animation(source: ImageSource | np.ndarray) -> None:
    """ImageError for an animated image (GIF, WebP, PNG) or a multi-page TIFF: writing its first
    frame alone would silently drop the rest, and redacting only one frame would leak the others."""
    opened = _reopen(source)
    if opened is None:
        return
    with opened:
        frames = getattr(opened, "n_frames", 1)
    if frames > 1:
        raise ImageError(
            f"{source if isinstance(source, (str, os.PathLike)) else 'the image'} has {frames} frames: redacting a "
            "still would drop all but the first. Convert it to a video (e.g. ffmpeg -i in.gif out.mp4) and redact that"
        )


def _metadata(source: ImageSource | np.ndarray, keep_all: bool) -> dict[str, Any]:
    """What to write with the output: the ICC profile, and EXIF (orientation reset) if asked."""
    opened = _reopen(source)
    if opened is None:  # an array, or (load_image read it already) metadata is best effort
        return {}
    with opened:
        out: dict[str, Any] = {}
        if opened.info.get("icc_profile"):
            out["icc_profile"] = opened.info["icc_profile"]
        if keep_all:
            exif = opened.getexif()
            if exif:
                exif[0x0112] = 1  # the pixels are written upright
                out["exif"] = exif.tobytes()
            if isinstance(opened.info.get("xmp"), (bytes, str)):
                out["xmp"] = opened.info["xmp"]
        return out


def _save(rgb: np.ndarray, path: Path, image_format: str, metadata: dict[str, Any]) -> None:
    image = Image.fromarray(rgb)
    options: dict[str, Any] = dict(metadata)
    if image_format == "JPEG":
        options.update(quality=95)
    elif image_format == "WEBP":
        options.update(quality=95)
    elif image_format == "GIF":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
        options.pop("icc_profile", None)
    elif image_format == "BMP":
        options = {}
    image.save(path, image_format, **options)


def side_by_side(before: np.ndarray, after: np.ndarray, faces: list[RedactedFace]) -> Image.Image:
    """Before (with each face's region outlined) and after, next to each other."""
    height, width = before.shape[:2]
    gap = max(4, width // 100)
    canvas = Image.new("RGB", (2 * width + gap, height), (255, 255, 255))
    left = Image.fromarray(before)
    draw = ImageDraw.Draw(left)
    line = max(2, round(max(width, height) / 400))
    for face in faces:
        colour = _KEPT_COLOUR if face.kept else _REDACTED_COLOUR
        r = face.region
        draw.ellipse([r.left, r.top, r.right, r.bottom], outline=colour, width=line)
        b = face.box
        draw.rectangle([b.left, b.top, b.right, b.bottom], outline=colour, width=max(1, line // 2))
    canvas.paste(left, (0, 0))
    canvas.paste(Image.fromarray(after), (width + gap, 0))
    if canvas.width > _PREVIEW_MAX_WIDTH:
        ratio = _PREVIEW_MAX_WIDTH / canvas.width
        canvas = canvas.resize((_PREVIEW_MAX_WIDTH, max(1, round(canvas.height * ratio))), Image.Resampling.LANCZOS)
    return canvas
