"""What a redaction covers and how the pixels under it are destroyed.

A face to redact is the detector's box turned into a head region: CenterFace's box runs from the
forehead to the chin and, for a face in profile, covers only its visible half, so the box is first
widened to at least 0.9 x its height (about a head's proportions), then grown by `scale - 1` of its
size on every side (deface's `--mask-scale` convention: 1.3 makes it 1.6 x as wide and as tall).
Blur, pixelate and mask fill the ellipse inscribed in that region, which follows the head; solid
fills the whole rectangle.

The filters are built to be irreversible: they keep no more than about 8 samples across a face, so
no sharpening or deconvolution can bring the face back. Blur averages the region down to blocks
of 1/8 of the face, smooths them back up, then blurs with a Gaussian whose radius grows with the
face; pixelate shows the blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np
from PIL import Image, ImageFilter

DEFAULT_SCALE = 1.3
"""Grow the head region by (scale - 1) x its size on every side (1.3: 1.6 x as wide and tall)."""

HEAD_ASPECT = 0.9
"""The head region is at least this many times as wide as it is tall (profiles have narrow boxes)."""

SAMPLES_PER_FACE = 8
"""Blur and pixelate keep at most this many samples (blocks) across the face's width."""

SOLID_COLOUR = (0, 0, 0)


class Mode(str, Enum):
    """How a face is redacted."""

    BLUR = "blur"  # heavy, irreversible blur inside an ellipse over the head
    PIXELATE = "pixelate"  # blocks of at least 1/8 of the face, inside the ellipse
    SOLID = "solid"  # a black rectangle over the head
    MASK = "mask"  # the output is the redaction mask itself: white where redacted, black elsewhere


@dataclass(frozen=True)
class Region:
    """A face to redact, as a head rectangle in image pixels (floats; may reach past the image)."""

    left: float
    top: float
    right: float
    bottom: float
    face_width: float  # the (widened) detector box's width, which sets the filter's strength

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.left, self.top, self.right, self.bottom)


def head_region(box: tuple[float, float, float, float], scale: float = DEFAULT_SCALE) -> Region:
    """The region to redact for a detector box (left, top, right, bottom)."""
    if not scale >= 1.0:
        raise ValueError(f"scale must be at least 1.0, got {scale}")
    left, top, right, bottom = box
    cx, cy = (left + right) / 2, (top + bottom) / 2
    height = max(bottom - top, 1.0)
    width = max(right - left, HEAD_ASPECT * height, 1.0)
    grow = 1.0 + 2.0 * (scale - 1.0)
    half_w, half_h = width * grow / 2, height * grow / 2
    return Region(cx - half_w, cy - half_h, cx + half_w, cy + half_h, face_width=width)


def _pixel_bounds(region: Region, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """The region's rectangle in whole pixels, clipped to the image; None if it lies outside."""
    height, width = shape[:2]
    x0, y0 = max(0, math.floor(region.left)), max(0, math.floor(region.top))
    x1, y1 = min(width, math.ceil(region.right)), min(height, math.ceil(region.bottom))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def _ellipse(region: Region, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Boolean mask of the pixels of [y0:y1, x0:x1] whose centres lie in the region's ellipse."""
    cx, cy = (region.left + region.right) / 2, (region.top + region.bottom) / 2
    ax, ay = max(region.width / 2, 0.5), max(region.height / 2, 0.5)
    xs = ((np.arange(x0, x1, dtype=np.float32) + 0.5 - cx) / ax) ** 2
    ys = ((np.arange(y0, y1, dtype=np.float32) + 0.5 - cy) / ay) ** 2
    return (ys[:, None] + xs[None, :]) <= 1.0


def region_mask(regions: list[Region], shape: tuple[int, ...], mode: Mode = Mode.BLUR) -> np.ndarray:
    """HxW boolean mask of the pixels `redact_regions` changes for these regions in this mode."""
    mask = np.zeros(shape[:2], dtype=bool)
    for region in regions:
        bounds = _pixel_bounds(region, shape)
        if bounds is None:
            continue
        x0, y0, x1, y1 = bounds
        if mode is Mode.SOLID:
            mask[y0:y1, x0:x1] = True
        else:
            mask[y0:y1, x0:x1] |= _ellipse(region, x0, y0, x1, y1)
    return mask


def _block(region: Region) -> int:
    """Side in pixels of the blocks a face is reduced to: at least 1/8 of the face's width."""
    return max(2, math.ceil(region.face_width / SAMPLES_PER_FACE))


def _destroyed(patch: np.ndarray, region: Region, mode: Mode) -> np.ndarray:
    """The patch with its detail destroyed: block averages, shown as blocks or smoothed and blurred."""
    height, width = patch.shape[:2]
    block = _block(region)
    small = Image.fromarray(patch).resize(
        (max(1, math.ceil(width / block)), max(1, math.ceil(height / block))), Image.Resampling.BOX
    )
    if mode is Mode.PIXELATE:
        up = small.resize((small.width * block, small.height * block), Image.Resampling.NEAREST)
        return np.asarray(up)[:height, :width]
    smooth = small.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(smooth.filter(ImageFilter.GaussianBlur(radius=block / 2)))


def redact_regions(rgb: np.ndarray, regions: list[Region], mode: Mode = Mode.BLUR) -> np.ndarray:
    """Redact `regions` of an HxWx3 uint8 image in place and return it.

    In MASK mode the image becomes the mask: white inside the regions' ellipses, black elsewhere.
    """
    if mode is Mode.MASK:
        mask = region_mask(regions, rgb.shape, mode)
        rgb[...] = 0
        rgb[mask] = 255
        return rgb
    for region in regions:
        bounds = _pixel_bounds(region, rgb.shape)
        if bounds is None:
            continue
        x0, y0, x1, y1 = bounds
        if mode is Mode.SOLID:
            rgb[y0:y1, x0:x1] = SOLID_COLOUR
            continue
        patch = rgb[y0:y1, x0:x1]
        inside = _ellipse(region, x0, y0, x1, y1)
        np.copyto(patch, _destroyed(np.ascontiguousarray(patch), region, mode), where=inside[:, :, None])
    return rgb
