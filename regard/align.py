"""Face alignment: a 5-point similarity transform onto the chip an embedder was trained on.

Each family of recognition network was trained on its own crop, so each has a template: where the
detector's five points go in its chip (`TEMPLATES`, by family). Regard's built-in embedder is
dlib's (150 x 150); an operator's ArcFace-family model takes InsightFace's 112 x 112 crop.

dlib's embedder was trained on chips cut by `get_face_chip(img, shape, 150, padding=0.25)` from
dlib's 5-point shape predictor (eye corners and the base of the nose). Regard's detector gives
other points (eye centres, nose tip, mouth corners), so Regard uses a template: where those five
points fall, on average, in dlib's chip. `tools/fit_alignment_template.py` measured it on real
photos (dlib's example photos, not the LFW fold that is benchmarked) by mapping CenterFace's points
through dlib's own chip transform; `docs/MODEL_CARD.md` records the check that accuracy holds.

Image coordinates are pixel indices with pixel centres at integers, as in dlib. Templates are in
dlib's template coordinates (0..150 across the padded face square); `template_to_chip` maps them
onto chip pixels the way dlib does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

CHIP_SIZE = 150
CHIP_PADDING = 0.25

# dlib's 5-point chip template (dlib/image_transforms/interpolation.h, get_face_chip_details) in
# units of the unpadded face square: left-of-image eye outer corner ... nose base, in the order of
# dlib's 5-point predictor (part 0..4).
_DLIB_FIVE_POINT_UNIT = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)

# Where CenterFace's points (right eye, left eye, nose tip, right mouth corner, left mouth corner,
# as seen in the image: "right" is the image's left) fall in dlib's 150 px chip, padding 0.25.
# Fitted by tools/fit_alignment_template.py on the 68 faces of dlib's example photos that both
# detectors found (median, made left-right symmetric; spread 1.5-3 px per coordinate).
CENTERFACE_TEMPLATE = np.array(
    [
        [46.28, 46.62],
        [102.72, 46.62],
        [74.50, 78.65],
        [50.17, 104.09],
        [98.83, 104.09],
    ]
)


def dlib_chip_points(size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """dlib's 5-point template in chip pixels, as `get_face_chip_details` places it."""
    return (padding + _DLIB_FIVE_POINT_UNIT) / (2 * padding + 1) * size


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2 x 3 least-squares similarity transform (rotation, uniform scale, shift) source -> target.

    Umeyama's closed form, without reflection.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    src_mean, dst_mean = source.mean(axis=0), target.mean(axis=0)
    src_c, dst_c = source - src_mean, target - dst_mean
    covariance = dst_c.T @ src_c / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    variance = (src_c**2).sum() / len(source)
    scale = (singular * sign).sum() / variance if variance > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2 x 3 affine transform."""
    linear = np.linalg.inv(matrix[:, :2])
    inverse = np.empty((2, 3))
    inverse[:, :2] = linear
    inverse[:, 2] = -linear @ matrix[:, 2]
    return inverse


def warp_chip(image: np.ndarray, to_chip: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Cut a size x size RGB chip: chip pixel p shows the image at `invert_affine(to_chip) @ p`.

    Bilinear sampling; where the face is much larger than the chip the image is first shrunk by an
    integer factor with a box filter (as dlib does with its image pyramid), so that sampling does
    not alias. Outside the image the chip is black, as in dlib.
    """
    to_image = invert_affine(to_chip)
    pixels_per_chip_pixel = float(np.sqrt(abs(np.linalg.det(to_image[:, :2]))))
    # Only the part of the image that the chip covers is converted to a PIL image.
    corners = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]])
    mapped = corners @ to_image.T
    height, width = image.shape[:2]
    x0 = int(np.clip(np.floor(mapped[:, 0].min()) - 2, 0, width))
    y0 = int(np.clip(np.floor(mapped[:, 1].min()) - 2, 0, height))
    x1 = int(np.clip(np.ceil(mapped[:, 0].max()) + 3, 0, width))
    y1 = int(np.clip(np.ceil(mapped[:, 1].max()) + 3, 0, height))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size, size, 3), dtype=np.uint8)
    region = Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1]))
    shift = np.array([x0, y0], dtype=np.float64)
    factor = int(pixels_per_chip_pixel // 1.5) if pixels_per_chip_pixel >= 3 else 1
    to_region = to_image.copy()
    to_region[:, 2] -= shift
    if factor > 1:
        region = region.reduce(factor)
        # A reduced pixel i covers source pixels [i*f, (i+1)*f): its centre is at i*f + (f-1)/2.
        to_region = to_region / factor
        to_region[:, 2] -= (factor - 1) / (2 * factor)
    # Pillow samples with pixel centres at +0.5; convert from integer-centred coordinates.
    linear = to_region[:, :2]
    offset = to_region[:, 2] + 0.5 - linear @ np.array([0.5, 0.5])
    coefficients = (linear[0, 0], linear[0, 1], offset[0], linear[1, 0], linear[1, 1], offset[1])
    chip = region.transform((size, size), Image.AFFINE, coefficients, resample=Image.BILINEAR)
    return np.asarray(chip)


def template_to_chip(size: int = CHIP_SIZE) -> np.ndarray:
    """dlib's pixel grid: template coordinates 0..size span chip pixel centres 0..size-1.

    dlib's chip_details maps the template's square (side `size`) onto the chip's first and last
    pixel centres, so a template point t lands on chip pixel (t - size/2) * size/(size-1) + (size-1)/2.
    Measured against dlib.get_face_chip this grid gives the same chip to within 0.7 grey levels on
    average (bilinear rounding), where a plain t -> t grid is off by about a pixel.
    """
    k = size / (size - 1)
    return np.array([[k, 0.0, (size - 1) / 2 - k * size / 2], [0.0, k, (size - 1) / 2 - k * size / 2]])


def to_chip_transform(landmarks: np.ndarray, template: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """The image -> chip transform that puts `landmarks` on `template` (template coordinates)."""
    fit = similarity_transform(landmarks, template)
    grid = template_to_chip(size)
    out = np.empty((2, 3))
    out[:, :2] = grid[:, :2] @ fit[:, :2]
    out[:, 2] = grid[:, :2] @ fit[:, 2] + grid[:, 2]
    return out


def align(image: np.ndarray, landmarks: np.ndarray, size: int = CHIP_SIZE, *, family: str = "dlib") -> np.ndarray:
    """The chip of a face for an embedder of `family`, given the detector's 5 landmarks (5 x 2,
    image pixels). For dlib's family `size` may differ from 150 (the template is scaled); the other
    families' chips are their template's size."""
    if family == "dlib":
        template = CENTERFACE_TEMPLATE * (size / CHIP_SIZE)
        return warp_chip(image, to_chip_transform(landmarks, template, size), size)
    chosen = template_of(family)
    return warp_chip(image, similarity_transform(landmarks, chosen.points), chosen.size)


# InsightFace's 112 x 112 ArcFace crop (`arcface_dst` in insightface/utils/face_align.py): the five
# points the ArcFace, MobileFaceNet, AdaFace, EdgeFace and AuraFace networks were trained with, in
# the same order as CenterFace's (the image's left eye first). Chip pixels, integer-centred (OpenCV's
# warpAffine convention, which InsightFace uses and warp_chip follows).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)


@dataclass(frozen=True)
class Template:
    """Where the detector's five points go in one family's chip (pixels of a size x size chip)."""

    family: str
    size: int
    points: np.ndarray
    source: str


TEMPLATES: dict[str, Template] = {
    "dlib": Template(
        "dlib", CHIP_SIZE, (np.c_[CENTERFACE_TEMPLATE, np.ones(5)] @ template_to_chip().T),
        "dlib's get_face_chip (size 150, padding 0.25), CenterFace's points fitted by tools/fit_alignment_template.py",
    ),
    "arcface": Template(
        "arcface", 112, ARCFACE_TEMPLATE,
        "InsightFace's arcface_dst (insightface/utils/face_align.py), the 112 x 112 crop of ArcFace and its successors",
    ),
    "facenet": Template(
        "facenet", 160, ARCFACE_TEMPLATE * (160 / 112),
        "ArcFace's template scaled to 160 x 160: FaceNet was trained on MTCNN box crops with no standard "
        "5-point template, so this is an approximation; calibrate before trusting its scores",
    ),
}  # fmt: skip
"""The alignment of each model family an operator may register (`regard models add --family`)."""


def template_of(family: str) -> Template:
    """The template of a family; ValueError naming the known ones otherwise."""
    try:
        return TEMPLATES[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(sorted(TEMPLATES))}") from None
