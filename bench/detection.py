"""Detector benchmark: recall and false detections on hand-annotated photos, and speed.

    python bench/detection.py --data ../shared/data/dlib-faces

Scores Regard's CenterFace detector (at several input sizes) and, when dlib is installed, dlib's HOG
detector as face_recognition uses it (upsampled once), on the boxes of dlib's imglab XML files
(training.xml, testing.xml). A detection counts when its box overlaps an unmatched annotated box with
IoU >= 0.3 (CenterFace's boxes cover the forehead and chin, dlib's the inner face, so their box
conventions differ); unmatched detections in annotated photos are false detections. Photos in the
folder without annotations are reported separately (the dog photo has no human face at all).
Median milliseconds per photo, 1 thread. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "REGARD_THREADS"):
    os.environ[_var] = "1"

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "dlib-faces"

Box = tuple[float, float, float, float]


def read_boxes(data: Path) -> dict[str, list[Box]]:
    boxes: dict[str, list[Box]] = {}
    for name in ("training.xml", "testing.xml"):
        path = data / name
        if not path.is_file():
            continue
        for image in ET.parse(path).getroot().iter("image"):
            found = boxes.setdefault(image.get("file", ""), [])
            for b in image.iter("box"):
                if b.get("ignore") == "1":
                    continue
                left, top = float(b.get("left", 0)), float(b.get("top", 0))
                found.append((left, top, left + float(b.get("width", 0)), top + float(b.get("height", 0))))
    return boxes


def iou(a: Box, b: Box) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def score(found: list[Box], truth: list[Box]) -> tuple[int, int]:
    """(true detections, false detections), each annotated box matched at most once."""
    used: set[int] = set()
    hits = 0
    for box in found:
        candidates = [(iou(box, t), i) for i, t in enumerate(truth) if i not in used]
        best = max(candidates, default=(0.0, -1))
        if best[0] >= 0.3:
            used.add(best[1])
            hits += 1
    return hits, len(found) - hits


def main() -> None:
    parser = argparse.ArgumentParser(description="Detector recall and speed on annotated photos")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "detection.json")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per photo")
    args = parser.parse_args()

    import numpy as np

    from regard.image import load_image
    from regard.models import get_detector

    truth = read_boxes(args.data)
    photos = sorted(args.data.glob("*.jpg"))
    images = {p.name: load_image(p) for p in photos}
    centerface = get_detector()
    detectors = {
        "CenterFace (defaults)": lambda rgb: [d.box for d in centerface.detect(rgb)],
        "CenterFace min_face=20": lambda rgb: [d.box for d in centerface.detect(rgb, min_face=20)],
        "CenterFace max_side=320": lambda rgb: [d.box for d in centerface.detect(rgb, max_side=320)],
    }
    try:
        import dlib

        hog = dlib.get_frontal_face_detector()
        detectors["dlib HOG (upsample 1)"] = lambda rgb: [
            (r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in hog(rgb, 1)
        ]
    except ImportError:
        print("dlib is not installed: measuring CenterFace alone", file=sys.stderr)

    report = {}
    for name, run in detectors.items():
        hits = false = others = 0
        times = []
        for photo, rgb in images.items():
            run(rgb)  # warm-up
            for _ in range(args.repeat):
                start = time.perf_counter()
                found = run(rgb)
                times.append((time.perf_counter() - start) * 1000)
            if photo in truth:
                h, f = score(found, truth[photo])
                hits, false = hits + h, false + f
            else:
                others += len(found)
        total = sum(len(v) for v in truth.values())
        report[name] = {
            "recall": hits / total,
            "found": hits,
            "annotated": total,
            "false_detections": false,
            "faces_in_unannotated_photos": others,
            "median_ms": float(np.median(times)),
        }
    header = f"{'detector':<24}{'recall':>14}{'false':>7}{'in other photos':>17}{'median ms':>11}"
    lines = [header, "-" * len(header)]
    for name, r in report.items():
        lines.append(
            f"{name:<24}{r['found']:>6}/{r['annotated']:<3} {100 * r['recall']:>3.0f}%{r['false_detections']:>7}"
            f"{r['faces_in_unannotated_photos']:>17}{r['median_ms']:>11.1f}"
        )
    table = "\n".join(lines)
    print(f"{len(truth)} annotated photos in {args.data}, {len(photos)} photos in all")
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": str(args.data), "results": report, "table": table}, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
