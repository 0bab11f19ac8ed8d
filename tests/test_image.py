"""regard.image: the inputs are derived at test time from one real photo (fixtures/SOURCES.md)."""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from regard.errors import ImageError
from regard.image import DEFAULT_MAX_PIXELS, image_size, load_image

PHOTO = Path(__file__).parent / "fixtures" / "2008_002506.jpg"  # 500x375 RGB


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    with Image.open(PHOTO) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def reference(photo: Image.Image) -> np.ndarray:
    return np.asarray(photo)


@pytest.fixture(scope="module")
def gray(photo: Image.Image) -> np.ndarray:
    return np.asarray(photo.convert("L"))


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of_zeros(width: int, height: int, *, rows: int | None = None) -> bytes:
    """A real 1-bit grayscale PNG, all black, built without holding its pixels in memory.

    With `rows`, the compressed data holds only that many rows (a truncated stream).
    """
    row = 1 + (width + 7) // 8  # filter byte + packed bits; all zero
    remaining = row * (height if rows is None else rows)
    compressor = zlib.compressobj(9)
    block = bytes(1 << 20)
    parts = []
    while remaining:
        n = min(len(block), remaining)
        parts.append(compressor.compress(block[:n]))
        remaining -= n
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(parts))
        + png_chunk(b"IEND", b"")
    )


def check_rgb(array: np.ndarray, height: int, width: int) -> None:
    assert isinstance(array, np.ndarray)
    assert array.dtype == np.uint8
    assert array.shape == (height, width, 3)
    assert array.flags.c_contiguous


# ---------------------------------------------------------------------------------------------
# Sources and formats


def test_reads_a_path_str_bytes_and_file_objects(reference, tmp_path):
    data = PHOTO.read_bytes()
    results = [
        load_image(PHOTO),
        load_image(str(PHOTO)),
        load_image(data),
        load_image(bytearray(data)),
        load_image(memoryview(data)),
        load_image(io.BytesIO(data)),
    ]
    with open(PHOTO, "rb") as file:
        results.append(load_image(file))
        assert not file.closed  # the caller's file stays the caller's
    for array in results:
        check_rgb(array, 375, 500)
        assert array.flags.writeable
        assert np.array_equal(array, reference)


def test_reads_a_stream_that_cannot_seek(reference):
    class Pipe:
        def __init__(self, data: bytes) -> None:
            self._buffer = io.BytesIO(data)

        def read(self, size: int = -1) -> bytes:
            return self._buffer.read(min(size, 4096) if size and size > 0 else 4096)

        def seekable(self) -> bool:
            return False

    assert np.array_equal(load_image(Pipe(PHOTO.read_bytes())), reference)


@pytest.mark.parametrize(
    ("fmt", "options", "tolerance"),
    [
        ("PNG", {}, 0.0),
        ("BMP", {}, 0.0),
        ("TIFF", {}, 0.0),
        ("TIFF", {"compression": "tiff_lzw"}, 0.0),
        ("WEBP", {"lossless": True}, 0.0),
        ("WEBP", {"quality": 90}, 4.0),
        ("JPEG", {"quality": 90}, 3.0),
        ("JPEG", {"quality": 90, "progressive": True}, 3.0),
        ("GIF", {}, 12.0),  # 256-colour palette
    ],
)
def test_decodes_every_format(photo, reference, tmp_path, fmt, options, tolerance):
    path = tmp_path / f"photo.{fmt.lower()}"
    photo.save(path, fmt, **options)
    array = load_image(path)
    check_rgb(array, 375, 500)
    assert mean_abs_diff(array, reference) <= tolerance


def test_multi_page_tiff_and_animated_gif_give_the_first_frame(photo, reference, tmp_path):
    black = Image.new("RGB", photo.size)
    white = Image.new("RGB", photo.size, (255, 255, 255))
    tiff = tmp_path / "pages.tif"
    photo.save(tiff, "TIFF", save_all=True, append_images=[black, white])
    assert np.array_equal(load_image(tiff), reference)

    gif = tmp_path / "anim.gif"
    photo.save(gif, "GIF", save_all=True, append_images=[black, white], duration=100, loop=0)
    with Image.open(gif) as check:
        assert check.n_frames == 3
    assert mean_abs_diff(load_image(gif), reference) < 12
    # ... and the same from the first frame of the reverse order, to be sure it is not a blend.
    black.save(gif, "GIF", save_all=True, append_images=[photo], duration=100)
    assert load_image(gif).max() == 0


# ---------------------------------------------------------------------------------------------
# EXIF orientation


def upright(stored: np.ndarray, orientation: int) -> np.ndarray:
    """How a viewer shows `stored` pixels tagged with `orientation` (EXIF 2.32, tag 0x0112)."""
    flipped = stored[:, ::-1]  # mirror left-right
    return {
        1: stored,
        2: flipped,
        3: stored[::-1, ::-1],  # rotate 180
        4: stored[::-1, :],  # mirror top-bottom
        5: np.rot90(flipped, 1),  # mirror, then rotate 90 counter-clockwise (= swap axes)
        6: np.rot90(stored, -1),  # rotate 90 clockwise
        7: np.rot90(flipped, -1),  # mirror, then rotate 90 clockwise
        8: np.rot90(stored, 1),  # rotate 90 counter-clockwise
    }[orientation]


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_applies_every_exif_orientation(reference, tmp_path, orientation):
    stored = np.ascontiguousarray(reference[:150, :200])  # non-square, no symmetry
    expected = upright(stored, orientation)
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(stored).save(path, exif=exif_with_orientation(orientation))
    array = load_image(path)
    check_rgb(array, *expected.shape[:2])
    assert np.array_equal(array, expected)
    assert image_size(path) == (expected.shape[1], expected.shape[0])


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "TIFF"])
def test_orientation_is_read_from_jpeg_webp_and_tiff(reference, fmt):
    # A phone photo taken in portrait: pixels stored landscape, tagged "rotate 90 CW to display".
    stored = np.ascontiguousarray(reference[:150, :200])
    options = {"quality": 95} if fmt != "TIFF" else {}
    data = encode(Image.fromarray(stored), fmt, exif=exif_with_orientation(6), **options)
    array = load_image(data)
    expected = upright(stored, 6)
    check_rgb(array, 200, 150)
    assert mean_abs_diff(array, expected) < 3
    # Far from the other seven readings of the same pixels.
    for other in (2, 3, 4, 5, 7, 8):
        candidate = upright(stored, other)
        if candidate.shape == expected.shape:
            assert mean_abs_diff(array, candidate) > 20


def test_invalid_orientation_value_is_ignored(reference):
    stored = np.ascontiguousarray(reference[:150, :200])
    data = encode(Image.fromarray(stored), "PNG", exif=exif_with_orientation(9))
    assert np.array_equal(load_image(data), stored)


# ---------------------------------------------------------------------------------------------
# Pixel modes


def test_grayscale_and_one_bit(photo, gray):
    array = load_image(encode(photo.convert("L"), "PNG"))
    check_rgb(array, 375, 500)
    for channel in range(3):
        assert np.array_equal(array[:, :, channel], gray)

    bits = load_image(encode(photo.convert("1"), "PNG"))
    assert set(np.unique(bits)) <= {0, 255}
    assert np.array_equal(bits[:, :, 0], bits[:, :, 2])
    assert abs(bits.mean() - gray.mean()) < 12  # dithered, so the mean is kept


@pytest.mark.parametrize(("fmt", "dtype"), [("PNG", "<u2"), ("TIFF", "<u2"), ("TIFF", ">u2")])
def test_sixteen_bit_is_scaled_not_clipped(gray, fmt, dtype):
    sixteen = gray.astype(np.uint16) * 257  # 0..255 -> 0..65535
    mode = "I;16B" if dtype == ">u2" else "I;16"
    image = Image.frombytes(mode, (500, 375), sixteen.astype(dtype).tobytes())
    data = encode(image, fmt)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode.startswith("I;16")
    array = load_image(data)
    check_rgb(array, 375, 500)
    assert abs(array.mean() - gray.mean()) < 0.5
    assert np.array_equal(array[:, :, 1], gray)


def test_sixteen_bit_rgb_png(reference):
    # 16 bits a channel, as scanners and raw converters write; Pillow reads it as 8-bit RGB.
    samples = reference.astype(">u2") * 257
    rows = b"".join(b"\x00" + samples[y].tobytes() for y in range(samples.shape[0]))
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 500, 375, 16, 2, 0, 0, 0))
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )
    assert np.array_equal(load_image(data), reference)


def test_32_bit_integer_and_float(gray):
    as_int = Image.fromarray(gray.astype(np.int32) * 257)  # mode I holding 16-bit samples
    assert as_int.mode == "I"
    array = load_image(encode(as_int, "TIFF"))
    assert np.array_equal(array[:, :, 0], gray)

    as_float = Image.fromarray(gray.astype(np.float32) / 255.0)  # mode F, 0..1
    assert as_float.mode == "F"
    array = load_image(encode(as_float, "TIFF"))
    check_rgb(array, 375, 500)
    assert np.abs(array[:, :, 0].astype(int) - gray).max() <= 1


def test_cmyk_jpeg_and_tiff(photo, reference):
    cmyk = photo.convert("CMYK")
    jpeg = encode(cmyk, "JPEG", quality=95)
    with Image.open(io.BytesIO(jpeg)) as check:
        assert check.mode == "CMYK"
    assert mean_abs_diff(load_image(jpeg), reference) < 3
    assert mean_abs_diff(load_image(encode(cmyk, "TIFF")), reference) < 1


def test_ycbcr_and_lab(photo, reference):
    assert mean_abs_diff(load_image(encode(photo.convert("YCbCr"), "TIFF")), reference) < 2
    lab = encode(photo.convert("LAB"), "TIFF")
    with Image.open(io.BytesIO(lab)) as check:
        assert check.mode == "LAB"
    assert mean_abs_diff(load_image(lab), reference) < 3


@pytest.fixture(scope="module")
def rgba(reference: np.ndarray) -> np.ndarray:
    """The photo with a transparent top-left block and a half-transparent bottom-right block."""
    out = np.dstack([reference, np.full(reference.shape[:2], 255, np.uint8)])
    out[:100, :100, 3] = 0
    out[-100:, -100:, 3] = 128
    return out


def test_transparency_is_composited_onto_white(reference, rgba):
    for fmt, options in (("PNG", {}), ("WEBP", {"lossless": True}), ("TIFF", {})):
        array = load_image(encode(Image.fromarray(rgba), fmt, **options))
        check_rgb(array, 375, 500)
        assert (array[:100, :100] == 255).all(), fmt  # transparent -> white, not black
        assert np.array_equal(array[150:250, 150:350], reference[150:250, 150:350]), fmt
        half = array[-100:, -100:].astype(int)
        expected = (reference[-100:, -100:].astype(int) * 128 + 255 * 127) / 255
        assert np.abs(half - expected).max() <= 1, fmt


def test_gray_with_alpha(gray, rgba):
    la = Image.fromarray(np.dstack([gray, rgba[:, :, 3]]), "LA")
    array = load_image(encode(la, "PNG"))
    assert (array[:100, :100] == 255).all()
    assert np.array_equal(array[150:250, 150:350, 0], gray[150:250, 150:350])


def test_palette_with_transparency(reference, rgba):
    solid = rgba.copy()
    solid[:, :, 3] = np.where(solid[:, :, 3] == 0, 0, 255)  # palettes carry on/off transparency
    image = Image.fromarray(solid)
    png = image.quantize(255, method=Image.Quantize.FASTOCTREE)
    data = encode(png, "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode in ("P", "PA") and check.has_transparency_data
    array = load_image(data)
    assert (array[:100, :100] == 255).all()
    assert mean_abs_diff(array[150:, 150:], reference[150:, 150:]) < 12

    gif = encode(image, "GIF")
    with Image.open(io.BytesIO(gif)) as check:
        assert check.mode == "P" and "transparency" in check.info
    array = load_image(gif)
    assert (array[:100, :100] == 255).all()
    assert mean_abs_diff(array[150:, 150:], reference[150:, 150:]) < 12


# ---------------------------------------------------------------------------------------------
# Arrays


def test_arrays(reference, gray, rgba):
    assert load_image(reference) is reference  # already right: returned as is
    view = reference[:, ::2]
    array = load_image(view)
    assert array.flags.c_contiguous and np.array_equal(array, view)

    for gray_input in (gray, gray[:, :, np.newaxis]):
        array = load_image(gray_input)
        check_rgb(array, 375, 500)
        assert np.array_equal(array[:, :, 2], gray)

    array = load_image(rgba)
    check_rgb(array, 375, 500)
    assert (array[:100, :100] == 255).all()
    assert np.array_equal(array[150:250, 150:350], reference[150:250, 150:350])
    assert np.array_equal(array, load_image(encode(Image.fromarray(rgba), "PNG")))


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((10, 10, 3), np.uint16), "uint8"),
        (np.zeros((10, 10, 3), bool), "uint8"),
        (np.zeros((10, 10, 2), np.uint8), "shape"),
        (np.zeros((10, 10, 3, 1), np.uint8), "shape"),
        (np.zeros(30, np.uint8), "shape"),
        (np.zeros((0, 10, 3), np.uint8), "no pixels"),
        (np.zeros((10, 0), np.uint8), "no pixels"),
    ],
)
def test_bad_arrays(array, words):
    with pytest.raises(ImageError, match=words):
        load_image(array)


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_raises_with_the_path(photo, tmp_path, fmt):
    data = encode(photo, fmt)
    path = tmp_path / f"photo.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as raised:
        load_image(path)
    message = str(raised.value)
    assert message.startswith(str(path) + ": ")
    assert "truncated or corrupt" in message and f"({fmt})" in message
    with pytest.raises(ImageError, match=r"^the image data is truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_jpeg_missing_only_its_last_bytes_raises():
    data = PHOTO.read_bytes()
    for cut in (2, 100, 1000):
        with pytest.raises(ImageError, match="truncated"):
            load_image(data[:-cut])


def test_header_only_jpeg_raises():
    with pytest.raises(ImageError, match=r"truncated or corrupt \(JPEG\)"):
        load_image(PHOTO.read_bytes()[:200])


def test_garbage_empty_and_unsupported(tmp_path):
    with pytest.raises(ImageError, match="not an image"):
        load_image(bytes(range(256)) * 4)
    with pytest.raises(ImageError, match="text, not an image"):
        load_image(b"<html><body>404 Not Found</body></html>")
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(io.BytesIO())
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg: the file is empty"):
        load_image(empty)
    # Formats Pillow could open but this module does not accept.
    ico = tmp_path / "icon.ico"
    Image.new("RGB", (32, 32)).save(ico)
    with pytest.raises(ImageError, match="ICO is not a supported image format"):
        load_image(ico)
    with pytest.raises(ImageError, match="HEIC"):
        load_image(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))


def test_missing_file_and_directory(tmp_path):
    missing = tmp_path / "photo.jpg"
    with pytest.raises(ImageError, match=r"photo\.jpg: no such file"):
        load_image(missing)
    with pytest.raises(ImageError, match="no such file"):
        load_image(str(missing))
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="path is empty"):
        load_image("")


@pytest.mark.parametrize("value", [42, None, [1, 2, 3], 3.5, object(), {"path": "x.jpg"}])
def test_wrong_types(value):
    with pytest.raises(ImageError, match="expected a file path"):
        load_image(value)  # type: ignore[arg-type]


def test_pillow_image_and_text_file_get_a_hint(photo):
    with pytest.raises(ImageError, match="np.asarray"):
        load_image(photo)  # type: ignore[arg-type]
    with pytest.raises(ImageError, match="text mode"):
        load_image(io.StringIO("not bytes"))  # type: ignore[arg-type]


def test_image_errors_are_value_errors():
    with pytest.raises(ValueError):
        load_image(b"nope")


# ---------------------------------------------------------------------------------------------
# Size limits


def test_decompression_bomb_is_refused_before_decoding():
    bomb = png_of_zeros(20_000, 20_000)  # 400 million pixels in a small file
    assert len(bomb) < 200_000
    start = time.perf_counter()
    with pytest.raises(ImageError) as raised:
        load_image(bomb)
    assert time.perf_counter() - start < 0.5
    message = str(raised.value)
    assert "400,000,000 pixels" in message
    assert f"limit of {DEFAULT_MAX_PIXELS:,} pixels (max_pixels)" in message
    with pytest.raises(ImageError, match="max_pixels"):
        image_size(bomb)
    # Under Pillow's own limits, our check reads the size from the header.
    bomb = png_of_zeros(8_000, 8_000)
    with pytest.raises(ImageError) as raised:
        load_image(bomb)
    assert "8000x8000 = 64,000,000 pixels" in str(raised.value)
    assert f"limit of {DEFAULT_MAX_PIXELS:,} pixels" in str(raised.value)


def test_pillows_own_bomb_limits_become_image_errors_not_warnings():
    bomb = png_of_zeros(20_000, 20_000)
    # Over twice Pillow's MAX_IMAGE_PIXELS, Pillow refuses on its own even with a high max_pixels.
    max_pillow = Image.MAX_IMAGE_PIXELS
    assert max_pillow is not None and 20_000 * 20_000 > 2 * max_pillow
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageError, match=r"pixels.*limit") as raised:
            load_image(bomb, max_pixels=10**10)
        assert f"{2 * max_pillow:,}" in str(raised.value)

        # Between Pillow's warning and error thresholds: no warning escapes; max_pixels decides.
        side = 9_500
        assert max_pillow < side * side < 2 * max_pillow
        big = png_of_zeros(side, side, rows=10)[:-20]  # cut inside its data: fails fast if allowed
        with pytest.raises(ImageError, match=r"9500x9500 = 90,250,000 pixels.*max_pixels"):
            load_image(big)
        with pytest.raises(ImageError, match=r"truncated or corrupt \(PNG\)"):
            load_image(big, max_pixels=10**8)


def test_max_pixels_both_ways(reference):
    data = PHOTO.read_bytes()
    pixels = 500 * 375
    assert np.array_equal(load_image(data, max_pixels=pixels), reference)
    with pytest.raises(ImageError, match=r"500x375 = 187,500 pixels.*limit of 187,499"):
        load_image(data, max_pixels=pixels - 1)
    with pytest.raises(ImageError, match=r"100,000 pixels"):
        load_image(PHOTO, max_pixels=100_000)
    assert load_image(data, max_pixels=1_000_000).shape == (375, 500, 3)
    # Arrays are already decoded: the limit is not theirs to enforce.
    assert load_image(reference, max_pixels=10) is reference
    for bad in (0, -1, 2.5, True, "1000"):
        with pytest.raises(ValueError, match="max_pixels"):
            load_image(data, max_pixels=bad)  # type: ignore[arg-type]


def test_zero_size_image_raises():
    header = struct.pack(">IIBBBBB", 0, 10, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 10))
        + png_chunk(b"IEND", b"")
    )
    with pytest.raises(ImageError):
        load_image(data)


def test_image_size(tmp_path):
    assert image_size(PHOTO) == (500, 375)
    assert image_size(PHOTO.read_bytes()) == (500, 375)
    assert image_size(np.zeros((4, 6), np.uint8)) == (6, 4)
    with pytest.raises(ImageError, match="no such file"):
        image_size(tmp_path / "missing.png")
