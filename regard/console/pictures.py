"""Photos as the console shows them: scaled to at most PREVIEW_SIDE pixels a side, with faces
outlined and numbered (as `regard detect` numbers them), as a JPEG for the page itself."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PREVIEW_SIDE = 1280
"""The longest side of a photo as drawn in the page, in pixels."""

Colour = tuple[int, int, int]


def numbered_faces(rgb: np.ndarray, faces: Sequence[tuple[int, dict[str, float], Colour]]) -> bytes:
    """The photo with each face's box (left, top, width, height in the photo's pixels) outlined in
    its colour, inside a white halo that keeps it visible on dark and light backgrounds, and its
    number on a label of that colour; a JPEG."""
    image = Image.fromarray(rgb).convert("RGB")
    scale = min(1.0, PREVIEW_SIDE / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
    draw = ImageDraw.Draw(image)
    line = max(2, round(max(image.size) / 300))
    halo = max(1, line // 2)
    font = ImageFont.load_default(size=max(16, round(max(image.size) / 35)))
    for number, box, colour in faces:
        left, top = box["left"] * scale, box["top"] * scale
        right, bottom = left + box["width"] * scale, top + box["height"] * scale
        draw.rectangle([left - halo, top - halo, right + halo, bottom + halo], outline=(255, 255, 255), width=halo)
        draw.rectangle([left, top, right, bottom], outline=colour, width=line)
        label = str(number)
        x0, y0, x1, y1 = draw.textbbox((0, 0), label, font=font)
        width, height = x1 - x0 + 10, y1 - y0 + 8
        label_top = top - height if top - height >= 0 else bottom
        draw.rectangle([left, label_top, left + width, label_top + height], fill=colour)
        draw.text((left + 5 - x0, label_top + 4 - y0), label, fill=(255, 255, 255), font=font)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()
