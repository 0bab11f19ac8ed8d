"""Detector benchmark: recall, false detections and speed on hand-annotated photos, small and large.

    python bench/detection.py --data ../shared/data/dlib-faces [--sizes 24,40] [--repeat 3]

Photos: every JPEG of dlib's folder: the 9 photos annotated in its imglab files training.xml and
testing.xml (43 faces), its photo of dogs (no human face) and two photos with faces but no
annotations (Tom_Cruise_avp_2014_4.jpg, bald_guys.jpg: timed, their detections counted apart),
under three kinds of condition:
  - each photo at its own size;
  - each photo pasted, at its own size and at a seeded random position, onto a plain mid-grey
    canvas of N megapixels (3:2; --sizes, default 24 MP = 6000x4000 and 40 MP = 7746x5164), its
    annotated boxes shifted accordingly: the same faces in a photo the size a camera writes.

Detectors (rows):
  - Regard (recognition preset): `get_detector().detect(rgb)`, min_face 32, confidence 0.5;
  - Regard (redaction preset): `regard.redact.find_faces(rgb)`, min_face 13, confidence 0.3;
  - Regard before (640 px cap): recognition as it was before the detector examined photos of every
    size at one scale: the photo shrunk (PIL bilinear, never enlarged) so that its long side is at
    most 640 px and by at least the factor 20/32, one network pass at confidence 0.5, boxes mapped
    back;
  - face_recognition HOG (upsample 1): `face_recognition.face_locations(rgb, 1, "hog")`, the dlib
    HOG detector as face_recognition uses it by default. On the canvases it upsamples to 96/160 MP
    and takes minutes per photo, so it runs there only with --peer-on-canvas.
A second set of rows runs the recognition preset on the first canvas (--min-face, default 32,16):
a smaller min_face examines the photo at a larger scale, finding the same faces at a higher cost.

A detection counts when its box overlaps an unmatched annotated box with IoU >= 0.3 (CenterFace's
boxes cover the forehead and chin, dlib's the inner face, so their box conventions differ);
unmatched detections in annotated photos are false detections (on a canvas, detections on the grey
count too); detections in the dog photo (all false) and in the other photos without annotations
are counted apart.

Timing covers the detection call alone (the photo is decoded and the canvas built beforehand), 1
thread, --repeat timed runs per photo after one untimed warm-up (per photo at its own size, since
every size is new to ONNX Runtime; once per detector on a canvas, where every canvas has one size).
Reported: the median over photos of each photo's median milliseconds, of the same divided by the
photo's megapixels (the canvas's on a canvas), and the sum over photos of each photo's median
(seconds to run the set once). Prints a table and writes JSON (bench/results/detection.json).
"""

from __future__ import annotations

import datasets  # bench/datasets.py: the data, and a clear refusal without it

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "REGARD_THREADS"):
    os.environ[_var] = "1"  # before numpy, ONNX Runtime and dlib load their thread pools

if TYPE_CHECKING:
    import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "dlib-faces"
GREY = 128
NO_FACE = {"dogs.jpg"}
"""Photos without annotations that show no human face: every detection in them is false."""
NOT_RUN = "not run (slow: pass --peer-on-canvas)"

Box = tuple[float, float, float, float]
Detector = Callable[[Any], list[Box]]  # HxWx3 uint8 RGB -> boxes


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


def canvas_shape(megapixels: float) -> tuple[int, int]:
    """(height, width) of a 3:2 canvas of about this many megapixels: 24 -> 4000x6000, 40 -> 5164x7746."""
    height = round(math.sqrt(megapixels * 1e6 / 1.5))
    return height, round(height * 1.5)


def on_canvas(
    rgb: np.ndarray, boxes: list[Box], shape: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray, list[Box]]:
    """The photo pasted at a random position onto a mid-grey canvas, and its boxes shifted there."""
    import numpy as np

    height, width = shape
    h, w = rgb.shape[:2]
    if h > height or w > width:
        raise SystemExit(f"a {w}x{h} photo does not fit on a {width}x{height} canvas: choose larger --sizes")
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    canvas = np.full((height, width, 3), GREY, dtype=np.uint8)
    canvas[top : top + h, left : left + w] = rgb
    return canvas, [(b[0] + left, b[1] + top, b[2] + left, b[3] + top) for b in boxes]


def detectors(min_faces: list[float]) -> tuple[dict[str, Detector], dict[str, Detector], set[str]]:
    """(the main rows, the min_face rows of the recognition preset, the rows that are slow on canvases)."""
    import numpy as np
    from PIL import Image

    from regard.models import get_detector
    from regard.models.detector import RECOGNITION
    from regard.redact import find_faces

    centerface = get_detector()

    def before(rgb: np.ndarray) -> list[Box]:
        h, w = rgb.shape[:2]
        scale = min(1.0, 640 / max(h, w), 20 / 32)
        image = rgb
        if scale < 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            image = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        return [tuple(v / scale for v in d.box) for d in centerface.run(image, 0.5)]  # type: ignore[misc]

    main = {
        "Regard (recognition preset)": lambda rgb: [d.box for d in centerface.detect(rgb)],
        "Regard (redaction preset)": lambda rgb: [d.box for d in find_faces(rgb)],
        "Regard before (640 px cap)": before,
    }
    slow: set[str] = set()
    try:
        import face_recognition

        def hog(rgb: np.ndarray) -> list[Box]:
            # (top, right, bottom, left), right and bottom inclusive as dlib's rectangles are
            found = face_recognition.face_locations(rgb, number_of_times_to_upsample=1, model="hog")
            return [(left, top, right + 1, bottom + 1) for top, right, bottom, left in found]

        main["face_recognition HOG (upsample 1)"] = hog
        slow.add("face_recognition HOG (upsample 1)")
    except ImportError:
        print("face_recognition is not installed: measuring Regard alone", file=sys.stderr)

    by_min_face: dict[str, Detector] = {}
    for m in min_faces:
        name = f"recognition, min_face {m:g}"
        if m == RECOGNITION.min_face:
            by_min_face[name] = main["Regard (recognition preset)"]  # the same call: measured once
        else:
            by_min_face[name] = lambda rgb, m=m: [d.box for d in centerface.detect(rgb, min_face=m)]
    return main, by_min_face, slow


def timed(run: Detector, rgb: np.ndarray, repeat: int, warm_up: bool) -> tuple[list[Box], list[float]]:
    """The boxes of the last run and the milliseconds of each timed run."""
    if warm_up:
        run(rgb)
    times = []
    found: list[Box] = []
    for _ in range(repeat):
        start = time.perf_counter()
        found = run(rgb)
        times.append((time.perf_counter() - start) * 1000)
    return found, times


def summary(per_photo: list[dict[str, Any]], annotated: int) -> dict[str, Any]:
    import numpy as np

    ms = [p["median_ms"] for p in per_photo]
    return {
        "found": sum(p["found"] for p in per_photo),
        "annotated": annotated,
        "recall": sum(p["found"] for p in per_photo) / annotated,
        "false_detections": sum(p["false"] for p in per_photo if p["annotated"]),
        "detections_in_no_face_photos": sum(p["detections"] for p in per_photo if p["photo"] in NO_FACE),
        "detections_in_other_unannotated_photos": sum(
            p["detections"] for p in per_photo if not p["annotated"] and p["photo"] not in NO_FACE
        ),
        "median_ms": float(np.median(ms)),
        "median_ms_per_megapixel": float(np.median([p["median_ms"] / p["megapixels"] for p in per_photo])),
        "total_s": sum(ms) / 1000,
        "photos": per_photo,
    }


def cells(r: dict[str, Any] | None, width: int) -> str:
    if r is None:
        return f"{NOT_RUN:^{width}}"
    return (
        f"{r['found']:>3}/{r['annotated']:<3}{r['false_detections']:>6}{r['detections_in_no_face_photos']:>5}"
        f"{r['detections_in_other_unannotated_photos']:>6}"
        f"{r['median_ms']:>9.1f}{r['median_ms_per_megapixel']:>8.1f}{r['total_s']:>7.1f}"
    ).ljust(width)


def table(
    rows: list[str], conditions: dict[str, dict[str, Any]], results: dict[str, dict[str, Any]], first: str
) -> str:
    group = 46
    head1 = f"{first:<36}" + "".join(f" | {c['label']:^{group}}" for c in conditions.values())
    names = f"{'found':>7}{'false':>6}{'dogs':>5}{'other':>6}{'ms':>9}{'ms/MP':>8}{'s':>7}".ljust(group)
    head2 = f"{'':<36}" + f" | {names}" * len(conditions)
    lines = [head1, head2, "-" * len(head1)]
    for name in rows:
        lines.append(
            f"{name:<36}" + "".join(f" | {cells(results[name].get(key), group)}" for key in conditions)
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Detector recall and speed on annotated photos and canvases")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "detection.json")
    parser.add_argument("--sizes", default="24,40", help="canvas sizes in megapixels, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per photo")
    parser.add_argument("--seed", type=int, default=0, help="seeds the photos' positions on the canvases")
    parser.add_argument(
        "--min-face",
        default="32,16",
        help="comma-separated min_face values for the recognition preset on the first canvas ('' for none)",
    )
    parser.add_argument(
        "--peer-on-canvas",
        action="store_true",
        help="run face_recognition HOG on the canvases too (very slow)",
    )
    args = parser.parse_args()
    datasets.require(args.data, "dlib")
    sizes = [float(s) for s in args.sizes.split(",") if s.strip()]
    min_faces = [float(m) for m in args.min_face.split(",") if m.strip()]

    import numpy as np

    from regard.image import load_image

    truth = read_boxes(args.data)
    photos = sorted(args.data.glob("*.jpg"))
    images = {p.name: load_image(p) for p in photos}
    annotated = sum(len(v) for v in truth.values())
    main_rows, min_face_rows, slow = detectors(min_faces)

    conditions: dict[str, dict[str, Any]] = {"own": {"label": "own size", "shape": None}}
    for mp in sizes:
        shape = canvas_shape(mp)
        conditions[f"{mp:g}mp"] = {
            "label": f"on {mp:g} MP canvas ({shape[1]}x{shape[0]})",
            "shape": shape,
            "megapixels": mp,
        }
    min_face_key = next((k for k, c in conditions.items() if c["shape"]), None)

    per_photo: dict[str, dict[str, list[dict[str, Any]]]] = {}
    warm: set[tuple[str, str]] = set()
    started = time.perf_counter()
    for key, condition in conditions.items():
        for index, (photo, rgb) in enumerate(images.items()):
            boxes = truth.get(photo, [])
            if condition["shape"]:
                rng = np.random.default_rng([args.seed, round(1000 * condition["megapixels"]), index])
                image, boxes = on_canvas(rgb, boxes, condition["shape"], rng)
            else:
                image = rgb
            runs = dict(main_rows)
            if key == min_face_key:
                runs.update({n: d for n, d in min_face_rows.items() if d not in main_rows.values()})
            for name, run in runs.items():
                if condition["shape"] and name in slow and not args.peer_on_canvas:
                    continue
                warm_up = condition["shape"] is None or (name, key) not in warm
                warm.add((name, key))
                found, times = timed(run, image, args.repeat, warm_up)
                hits, false = score(found, boxes)
                per_photo.setdefault(name, {}).setdefault(key, []).append(
                    {
                        "photo": photo,
                        "annotated": photo in truth,
                        "faces": len(boxes),
                        "found": hits,
                        "false": false,
                        "detections": len(found),
                        "megapixels": image.shape[0] * image.shape[1] / 1e6,
                        "median_ms": float(np.median(times)),
                        "ms": times,
                    }
                )
            print(
                f"[{time.perf_counter() - started:7.1f} s] {condition['label']}: {photo} done",
                file=sys.stderr,
                flush=True,
            )
            del image

    results = {
        name: {key: summary(rows, annotated) for key, rows in by_condition.items()}
        for name, by_condition in per_photo.items()
    }
    for name, run in min_face_rows.items():  # the row measured as a main row is reported under both names
        for main_name, main_run in main_rows.items():
            if run is main_run and main_name in results:
                results[name] = results[main_name]
    conditions_out = {k: {"label": c["label"], "height_width": c["shape"]} for k, c in conditions.items()}
    main_table = table(list(main_rows), conditions, results, "detector")
    others = sorted(set(images) - set(truth) - NO_FACE)
    lines = [
        (
            f"{len(truth)} annotated photos ({annotated} faces) and {len(photos) - len(truth)} without"
            f" annotations in {args.data}; {args.repeat} timed runs per photo, 1 thread"
        ),
        "found = annotated faces found / annotated; false = unmatched detections in annotated photos;",
        (
            f"dogs = detections in {', '.join(sorted(NO_FACE))} (no human face); other = detections in the"
            f" photos with faces but no annotations ({', '.join(others)});"
        ),
        (
            f"ms = median over the {len(photos)} photos of ms per photo; ms/MP = the same per photo"
            " megapixel; s = seconds for the whole set (sum of medians)"
        ),
        "",
        main_table,
    ]
    if min_face_key:
        mf = {min_face_key: conditions[min_face_key]}
        lines += ["", table(list(min_face_rows), mf, results, "recognition preset, by min_face")]
    text = "\n".join(lines)
    print(text)
    report = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "versions": versions(),
        "data": str(args.data),
        "repeat": args.repeat,
        "seed": args.seed,
        "peer_on_canvas": args.peer_on_canvas,
        "conditions": conditions_out,
        "min_face_condition": min_face_key,
        "results": {name: results[name] for name in main_rows if name in results},
        "min_face": {name: results[name] for name in min_face_rows if name in results},
        "table": text,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"written to {args.out}")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("onnxruntime", "numpy", "pillow", "face_recognition", "dlib-bin", "dlib"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


if __name__ == "__main__":
    main()
