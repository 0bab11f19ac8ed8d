"""Image decoding under attack: mutated real photos and decompression bombs. Every input gives an
RGB array or an ImageError (never another exception), and a bomb is refused before it is decoded,
with a bounded peak of memory (measured in a subprocess of its own)."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from regard.errors import ImageError
from regard.image import load_image
from tests.conftest import FIXTURES

FORMATS = ("JPEG", "PNG", "GIF", "TIFF", "WEBP", "BMP")


def _seeds() -> dict[str, bytes]:
    photo = Image.open(FIXTURES / "2008_002470.jpg").convert("RGB").resize((160, 106))
    out = {}
    for fmt in FORMATS:
        buffer = io.BytesIO()
        photo.save(buffer, fmt)
        out[fmt] = buffer.getvalue()
    return out


def _mutants(data: bytes, rng: np.random.Generator, count: int) -> list[bytes]:
    mutants = []
    for _ in range(count):
        kind = rng.integers(5)
        b = bytearray(data)
        if kind == 0:  # truncated
            b = b[: int(rng.integers(1, len(b)))]
        elif kind == 1:  # bit flips
            for _ in range(int(rng.integers(1, 20))):
                i = int(rng.integers(len(b)))
                b[i] ^= 1 << int(rng.integers(8))
        elif kind == 2:  # header bytes (sizes, offsets, chunk lengths) overwritten
            for _ in range(int(rng.integers(1, 6))):
                i = int(rng.integers(min(64, len(b))))
                b[i] = int(rng.integers(256))
        elif kind == 3:  # a block repeated (bad chunks)
            i, j = sorted(int(v) for v in rng.integers(len(b), size=2))
            b = b[:j] + b[i:j] + b[j:]
        else:  # a run of 0xFF
            i = int(rng.integers(len(b)))
            b[i : i + int(rng.integers(1, 64))] = b"\xff" * min(64, len(b) - i)
        mutants.append(bytes(b))
    return mutants


@pytest.mark.parametrize("fmt", FORMATS)
def test_mutated_photos_decode_or_raise_image_error(fmt: str) -> None:
    rng = np.random.default_rng(FORMATS.index(fmt))
    decoded = refused = 0
    for data in _mutants(_seeds()[fmt], rng, 120):
        try:
            rgb = load_image(data)
        except ImageError:
            refused += 1
            continue
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        decoded += 1
    assert decoded + refused == 120 and refused > 0


BOMB = textwrap.dedent(
    """
    import io, resource, struct, sys, zlib
    from PIL import Image
    from regard.errors import ImageTooLargeError
    from regard.image import load_image

    def png(width, height):
        def chunk(kind, body):
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        rows = zlib.compress(b"\\0" * (width * 3 + 1) * 1, 9)  # one row's worth; the header claims the rest
        return b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")

    def pil(fmt, width, height, **options):
        buffer = io.BytesIO()
        Image.new("L", (width, height)).save(buffer, fmt, **options)
        return buffer.getvalue()

    kind = sys.argv[1]
    data = {
        "png": lambda: png(30000, 30000),
        "gif": lambda: pil("GIF", 9000, 9000),
        "tiff": lambda: pil("TIFF", 9000, 9000, compression="tiff_deflate"),
        "webp": lambda: pil("WEBP", 9000, 9000, lossless=True),
    }[kind]()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        load_image(data)
        print("decoded")
    except ImageTooLargeError:
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(f"refused {len(data)} {grown:.0f}")
    """
)


@pytest.mark.parametrize("kind", ["png", "gif", "tiff", "webp"])
def test_decompression_bombs_are_refused_before_decoding_with_bounded_memory(kind: str) -> None:
    result = subprocess.run([sys.executable, "-c", BOMB, kind], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    verdict, size, grown = result.stdout.split()
    assert verdict == "refused"
    assert float(grown) < 100, f"{kind}: {size} bytes made the process grow {grown} MB while refusing them"
