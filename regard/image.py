"""Image input: decode a path, bytes, a binary file or an array to an HxWx3 uint8 RGB array.

Everything that reaches the detector goes through `load_image`, so this is where untrusted input is
checked. The rules:

* Only JPEG (and MPO, the multi-picture JPEG many cameras write), PNG, WebP, GIF, BMP, TIFF and,
  where Pillow was built with it, AVIF are decoded; other formats Pillow knows (EPS, which runs
  Ghostscript, PSD, ICO, ...) are refused. Multi-frame files give their first frame.
* The size in the header is checked against `max_pixels` before any pixel data is decoded, so a
  small file that declares huge dimensions (a decompression bomb) costs nothing. Pillow's own
  global limit (`PIL.Image.MAX_IMAGE_PIXELS`) is neither read nor changed here; its hard error
  (at twice that limit, about 179 million pixels by default) still applies and is reported as an
  ImageError, and its warning is silenced for the call so that `max_pixels` alone decides.
* Truncated or corrupt data raises, rather than coming back half grey: LOAD_TRUNCATED_IMAGES is
  left off.
* The EXIF orientation (all 8 values, also from PNG, WebP and TIFF tags and from XMP) is applied.
* Every pixel mode becomes 8-bit RGB: 16-bit and 32-bit integer images are scaled (not clipped),
  float images are mapped from 0..1 (or 0..255), CMYK, YCbCr, LAB and palettes are converted, and
  transparency is composited onto white.

Every problem with the input raises `regard.errors.ImageError` (a ValueError) with a message that
says what was wrong and, for a path, which file.
"""

from __future__ import annotations

import functools
import importlib
import io
import os
import re
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from regard.config import SERVICE_MAX_PIXELS  # re-exported: the service's limit
from regard.errors import ImageError, ImageTooLargeError

DEFAULT_MAX_PIXELS: int = 50_000_000
"""Images with more pixels than this (width x height, before decoding) are refused."""

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO
"""What `load_image` reads: a file path, the encoded bytes, or a binary file object."""

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
"""The file names taken as photos when a folder is given (detect, enroll, audit, redaction)."""


def photo_files(paths: list[str] | list[Path]) -> list[Path]:
    """The photos named, and those inside the folders named (at any depth, sorted). Broken
    symbolic links are kept, so that reading them fails and says so instead of skipping them."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES and (p.is_file() or p.is_symlink())
            )
        else:
            found.append(path)
    return found


__all__ = ["DEFAULT_MAX_PIXELS", "PHOTO_SUFFIXES", "SERVICE_MAX_PIXELS", "photo_files", "ImageSource", "image_size", "load_image"]

_SUPPORTED = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
_SUPPORTED_TEXT = "JPEG, PNG, WebP, BMP, TIFF or GIF"
_FORMAT_NAMES = {"WEBP": "WebP", "MPO": "JPEG"}

# Plugins outside Pillow's preinit() set (BMP, GIF, JPEG, PPM, PNG) that we need.
_PLUGINS = ("TiffImagePlugin", "WebPImagePlugin", "MpoImagePlugin", "AvifImagePlugin")

# Orientation tag value -> the transpose that turns the stored pixels upright (EXIF 2.3, 4.6.4).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_TAG = 0x0112

# Leading bytes -> format, to word the message when Pillow cannot identify the data.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"BM", "BMP"),
)
_UNSUPPORTED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "PDF"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"8BPS", "Photoshop (PSD)"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
)
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")

# Warnings filters are process-wide; serialise our short use of them (Image.open only parses the
# header) so that two of our own calls cannot interleave their save/restore.
_OPEN_LOCK = threading.Lock()


def load_image(
    source: ImageSource | np.ndarray, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode to a C-contiguous HxWx3 uint8 RGB array, EXIF orientation applied.

    `source` is a file path (str or os.PathLike), the encoded image as bytes, bytearray or
    memoryview, a binary file object (read from its start, left open), or an already decoded
    numpy uint8 array: HxWx3 RGB is returned as is (copied only if not C-contiguous), HxW or HxWx1
    grayscale is repeated to RGB and HxWx4 RGBA is composited onto white.

    `max_pixels` bounds width x height; it is checked from the header before pixel data is decoded.
    It applies to encoded input only: an array is already in memory.

    Raises ImageError for a missing or unreadable file, data that is empty, truncated, corrupt or
    not in a supported format, an image over `max_pixels` or with no pixels, an array of the wrong
    dtype or shape, and a source of the wrong type. Raises ValueError for a bad `max_pixels`.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source)
    limit = _check_limit(max_pixels)
    with _opened(source, limit) as (image, where):
        _check_size(image.size, limit, where)
        try:
            image.load()
        except MemoryError:
            raise
        except Image.DecompressionBombError as error:  # e.g. a GIF frame larger than its screen
            raise ImageTooLargeError(f"{where.prefix}{_pillow_bomb_message(error, limit)}") from error
        except Exception as error:
            raise ImageError(
                f"{where.prefix}the {where.noun} is truncated or corrupt ({_format_name(image)})"
            ) from error
        if image.size[0] * image.size[1] > limit:  # a decoder that grew the canvas while loading
            _check_size(image.size, limit, where)
        orientation = _orientation(image)
        try:
            rgb = _to_rgb(image)
        except MemoryError:
            raise
        except Exception as error:
            raise ImageError(
                f"{where.prefix}cannot convert the {_format_name(image)} image's pixel mode "
                f"{image.mode!r} to RGB"
            ) from error
    if orientation in _ORIENTATION:
        rgb = _transpose(rgb, orientation)
    if not (rgb.flags.c_contiguous and rgb.flags.writeable):
        rgb = np.array(rgb, dtype=np.uint8, order="C")
    return rgb


def image_size(
    source: ImageSource | np.ndarray, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[int, int]:
    """(width, height) of the image `load_image` would return, read without decoding the pixels.

    The EXIF orientation is taken into account (orientations 5 to 8 swap width and height). For
    PNG, whose EXIF may follow the pixel data, reading the orientation can mean decoding the image;
    that is why `max_pixels` is checked here too. Raises ImageError like `load_image`.
    """
    if isinstance(source, np.ndarray):
        _check_array(source)
        return int(source.shape[1]), int(source.shape[0])
    limit = _check_limit(max_pixels)
    with _opened(source, limit) as (image, where):
        _check_size(image.size, limit, where)
        width, height = image.size
        orientation = _orientation(image)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return int(width), int(height)


# --------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class _Where:
    """How to name the input in messages: 'photo.jpg: the file ...' or 'the image data ...'."""

    name: str | None
    noun: str

    @property
    def prefix(self) -> str:
        return f"{self.name}: " if self.name else ""


def _check_limit(max_pixels: int) -> int:
    if isinstance(max_pixels, bool) or not hasattr(max_pixels, "__index__"):
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")
    limit = int(max_pixels.__index__())
    if limit <= 0:
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")
    return limit


def _display_path(path: str | bytes) -> str:
    text = os.fsdecode(path)
    return text if len(text) <= 200 else text[:150] + "..." + text[-40:]


@contextmanager
def _opened(source: object, limit: int) -> Iterator[tuple[Image.Image, _Where]]:
    """Open `source` lazily with Pillow (header only); closes what it opened on exit."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        where = _Where(None, "image data")
        data = source.tobytes() if isinstance(source, memoryview) else source
        if len(data) == 0:
            raise ImageError("the image data is empty (0 bytes)")
        with _open_pillow(io.BytesIO(data), where, limit) as image:
            yield image, where
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        where = _Where(_display_path(path), "file")
        with _open_path(path, where) as file, _open_pillow(file, where, limit) as image:
            yield image, where
    elif isinstance(source, io.TextIOBase):
        raise ImageError(
            "the file object is open in text mode; open the image with open(path, 'rb')"
        )
    elif callable(getattr(source, "read", None)):
        name = getattr(source, "name", None)
        where = _Where(_display_path(name) if isinstance(name, (str, bytes)) else None, "file")
        file = _seekable(source, where, limit)  # type: ignore[arg-type]
        with _open_pillow(file, where, limit) as image:
            yield image, where
    else:
        hint = ""
        if isinstance(source, Image.Image):
            hint = "; for a Pillow image pass np.asarray(image.convert('RGB'))"
        raise ImageError(
            "expected a file path, image bytes, a binary file object or a numpy uint8 array, "
            f"got {type(source).__name__}{hint}"
        )


@contextmanager
def _open_path(path: str | bytes, where: _Where) -> Iterator[BinaryIO]:
    if not path:
        raise ImageError("the file path is empty")
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise ImageError(f"{where.prefix}is a directory, not an image file")
        if not stat.S_ISREG(info.st_mode):  # a FIFO or device could block or never end
            raise ImageError(f"{where.prefix}is not a regular file")
        if info.st_size == 0:
            raise ImageError(f"{where.prefix}the file is empty (0 bytes)")
        file = open(path, "rb")  # noqa: SIM115 - closed below
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{where.prefix}no such file") from None
    except NotADirectoryError:
        raise ImageError(f"{where.prefix}no such file (a parent is not a directory)") from None
    except PermissionError:
        raise ImageError(f"{where.prefix}permission denied, cannot read the file") from None
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        reason = getattr(error, "strerror", None) or str(error)
        raise ImageError(f"{where.prefix}cannot open the file ({reason})") from None
    with file:
        yield file


def _seekable(file: BinaryIO, where: _Where, limit: int) -> BinaryIO:
    """The file itself if it can seek; otherwise its contents, read up to a bound."""
    try:
        seekable = bool(file.seekable())
    except Exception:
        seekable = False
    if seekable:
        return file
    # A pipe or socket: read it (Pillow would read it all, unbounded). Uncompressed 16-bit RGBA is
    # 8 bytes a pixel, so more than that for the largest image we would accept is not an image.
    cap = 8 * limit + (1 << 20)
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = file.read(min(1 << 20, cap + 1 - size))
        except Exception as error:
            raise ImageError(f"{where.prefix}cannot read the file object ({error})") from error
        if not chunk:
            break
        if not isinstance(chunk, (bytes, bytearray)):
            raise ImageError(
                f"{where.prefix}the file object gave {type(chunk).__name__}, not bytes; "
                "open the image in binary mode ('rb')"
            )
        chunks.append(bytes(chunk))
        size += len(chunk)
        if size > cap:
            raise ImageTooLargeError(f"{where.prefix}the stream is larger than {cap:,} bytes")
    return io.BytesIO(b"".join(chunks))


@functools.cache
def _formats() -> tuple[str, ...]:
    """The formats we let Pillow try, limited to those this Pillow build has."""
    Image.preinit()
    for plugin in _PLUGINS:
        try:
            importlib.import_module(f"PIL.{plugin}")
        except ImportError:  # AVIF before Pillow 11.2, or a build without a codec
            pass
    return tuple(name for name in _SUPPORTED if name in Image.OPEN)


@contextmanager
def _open_pillow(file: BinaryIO, where: _Where, limit: int) -> Iterator[Image.Image]:
    formats = _formats()
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            # Pillow warns past MAX_IMAGE_PIXELS; our own check below decides instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(file, formats=formats)
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(f"{where.prefix}{_pillow_bomb_message(error, limit)}") from error
    except Image.UnidentifiedImageError as error:
        raise ImageError(_unidentified_message(file, where)) from error
    except MemoryError:
        raise
    except Exception as error:
        # Pillow recognised the format but choked on the header.
        known = _sniff(_head(file) or b"")
        fmt = f" ({known[0]})" if known else ""
        raise ImageError(f"{where.prefix}the {where.noun} is truncated or corrupt{fmt}") from error
    with image:
        yield image


def _pillow_bomb_message(error: Exception, limit: int) -> str:
    """Word Pillow's own refusal (raised while it reads the header, before our size check)."""
    match = re.search(r"\((\d+) pixels\).*limit of (\d+)", str(error))
    if match:
        pixels, pillow_limit = (int(group) for group in match.groups())
        if pixels > limit:
            return (
                f"the image has {pixels:,} pixels, more than the limit of {limit:,} pixels "
                "(max_pixels); refusing to decode it"
            )
        return (
            f"the image has {pixels:,} pixels, more than Pillow's limit of {pillow_limit:,} pixels "
            "(2 x PIL.Image.MAX_IMAGE_PIXELS); refusing to decode it"
        )
    return f"the image is too large to decode ({error})"


def _head(file: BinaryIO) -> bytes | None:
    """The first bytes of `file`, or None when it cannot be re-read."""
    try:
        file.seek(0)
        head = file.read(64)
    except Exception:
        return None
    return head if isinstance(head, bytes) else None


def _unidentified_message(file: BinaryIO, where: _Where) -> str:
    head = _head(file)
    if head == b"":
        return f"{where.prefix}the {where.noun} is empty (0 bytes)"
    if isinstance(head, bytes):
        known = _sniff(head)
        if known is not None:
            fmt, supported = known
            if supported:
                return f"{where.prefix}the {where.noun} is truncated or corrupt ({fmt})"
            return (
                f"{where.prefix}{fmt} is not a supported image format; "
                f"convert it to {_SUPPORTED_TEXT}"
            )
        if _looks_like_text(head):
            return (
                f"{where.prefix}the {where.noun} is text, not an image "
                f"(supported formats: {_SUPPORTED_TEXT})"
            )
    return (
        f"{where.prefix}the {where.noun} is not an image in a supported format "
        f"({_SUPPORTED_TEXT})"
    )


def _sniff(head: bytes) -> tuple[str, bool] | None:
    """(format name, whether we decode it) from the leading bytes, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP", True
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF", "AVIF" in _formats()
        if brand in _HEIF_BRANDS:
            return "HEIC/HEIF", False
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name, True
    for signature, name in _UNSUPPORTED_SIGNATURES:
        if head.startswith(signature):
            return name, False
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<svg", b"<?xml")):
        return "SVG/XML", False
    return None


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:  # not just a character cut at the end of `head`
            return False
        text = head[: error.start].decode("utf-8")
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def _format_name(image: Image.Image) -> str:
    fmt = image.format or "image"
    return _FORMAT_NAMES.get(fmt, fmt)


# --------------------------------------------------------------------------------------------
# Checks and conversion


def _check_size(size: tuple[int, int], limit: int, where: _Where) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"{where.prefix}the image has no pixels ({width}x{height})")
    pixels = width * height
    if pixels > limit:
        raise ImageTooLargeError(
            f"{where.prefix}the image is {width}x{height} = {pixels:,} pixels, more than the "
            f"limit of {limit:,} pixels (max_pixels); refusing to decode it"
        )


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1..8), 1 when absent, invalid or unreadable."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
        value = int(value)
    except Exception:  # corrupt EXIF: the pixels are still fine, keep them as stored
        return 1
    return value if 1 <= value <= 8 else 1


def _transpose(rgb: np.ndarray, orientation: int) -> np.ndarray:
    method = _ORIENTATION[orientation]
    turned = Image.fromarray(rgb).transpose(method)
    return np.asarray(turned)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """The loaded `image` as an HxWx3 uint8 array, whatever its mode."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image)
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _gray_to_rgb(_scale_to_8bit(np.asarray(image), mode))
    if image.has_transparency_data:
        return _composite_on_white(image.convert("RGBA"))
    return np.asarray(image.convert("RGB"))


def _scale_to_8bit(values: np.ndarray, mode: str) -> np.ndarray:
    """One channel of 16-bit, 32-bit integer or float samples as uint8, scaled, not clipped.

    16-bit: v / 257, rounded (65535 -> 255). 32-bit integer ("I"): as is when within 0..255, as
    16-bit when within 0..65535, otherwise its min..max stretched to 0..255. Float ("F"): x 255 when
    within 0..1, as is when within 0..255, otherwise stretched; NaN and infinities become 0.
    """
    if values.size == 0:
        return np.zeros(values.shape, np.uint8)
    if values.dtype.kind == "f":
        floats = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(floats.min()), float(floats.max())
        if low >= 0.0 and high <= 1.0:
            floats = floats * 255.0
        elif not (low >= 0.0 and high <= 255.0):
            floats = (floats - low) * (255.0 / max(high - low, 1e-12))
        return np.clip(np.rint(floats), 0, 255).astype(np.uint8)
    ints = values.astype(np.int64)
    low, high = int(ints.min()), int(ints.max())
    if mode == "I" and low >= 0 and high <= 255:
        return ints.astype(np.uint8)
    if low >= 0 and high <= 65535:
        return ((ints + 128) // 257).astype(np.uint8)
    return ((ints - low) * 255 // max(high - low, 1)).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, np.newaxis], 3, axis=2)


def _composite_on_white(rgba: Image.Image) -> np.ndarray:
    """Blend straight-alpha RGBA onto a white background (as a browser on a white page)."""
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba.convert("RGB"), (0, 0), rgba.getchannel("A"))
    return np.asarray(background)


def _composite_array_on_white(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[:, :, :3].astype(np.uint16)
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    # rgb*a + 255*(255-a) <= 65025, so uint16 holds it; +127 rounds the division.
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def _check_array(array: np.ndarray) -> None:
    """Raise ImageError unless `array` is a uint8 HxW, HxWx1, HxWx3 or HxWx4 image with pixels."""
    if array.dtype != np.uint8:
        hint = ""
        if array.dtype.kind in "fiub":
            hint = " (scale it to 0..255 and convert with .astype(np.uint8))"
        raise ImageError(f"an image array must have dtype uint8, got {array.dtype}{hint}")
    shape = array.shape
    if array.ndim not in (2, 3) or (array.ndim == 3 and shape[2] not in (1, 3, 4)):
        raise ImageError(
            "an image array must be HxWx3 RGB (or HxW gray, HxWx4 RGBA), got shape "
            f"{tuple(shape)}"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise ImageError(f"the image array has no pixels (shape {tuple(shape)})")


def _from_array(array: np.ndarray) -> np.ndarray:
    """Validate a decoded array; convert HxW, HxWx1 and HxWx4 to HxWx3."""
    _check_array(array)
    shape = array.shape
    if array.ndim == 2:
        return _gray_to_rgb(array)
    if shape[2] == 1:
        return _gray_to_rgb(array[:, :, 0])
    if shape[2] == 4:
        return _composite_array_on_white(array)
    return np.ascontiguousarray(array)
