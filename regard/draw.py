"""Drawing faces on a photo, for people to check what was found."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from regard.face import Face, QualityLevel

_COLOURS = {
    QualityLevel.HIGH: (46, 204, 64),
    QualityLevel.MEDIUM: (255, 190, 0),
    QualityLevel.LOW: (255, 65, 54),
}


def draw_faces(rgb: np.ndarray, faces: list[Face]) -> Image.Image:
    """The photo with each face's box (coloured by quality level), landmarks and number."""
    image = Image.fromarray(rgb).convert("RGB")
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 400))
    for i, face in enumerate(faces, 1):
        colour = _COLOURS[face.quality.level]
        b = face.box
        draw.rectangle([b.left, b.top, b.right, b.bottom], outline=colour, width=width)
        r = max(1.5, b.width / 40)
        for x, y in face.landmarks:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        label = f"{i} {face.quality.level.value} {face.confidence:.2f}"
        text_box = draw.textbbox((b.left, b.top), label)
        height = text_box[3] - text_box[1] + 2
        top = b.top - height - 1 if b.top - height - 1 >= 0 else b.bottom + 1
        draw.rectangle([b.left, top, b.left + text_box[2] - text_box[0] + 4, top + height], fill=colour)
        draw.text((b.left + 2, top), label, fill=(0, 0, 0))
    return image
