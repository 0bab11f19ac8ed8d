"""Redaction benchmark: Regard against deface 1.5.0, side by side, on the same photos and video.

    python bench/redact.py --data ../shared/data/dlib-faces

Photos: dlib's annotated photos (43 hand-drawn face boxes) and its photo of dogs (no human face).
A face counts as covered when at least 90 % of its annotated box lies in the redacted area. The
redacted area is taken from each tool's own geometry: Regard's `region_mask` (what it blurs), and
for deface its own `anonymize_frame` run on two random-noise canvases with the boxes its detector
returned (a pixel is redacted when deface changed it in either). A false redaction is a redacted
region that contains no annotated face's centre (in the annotated photos, or any region in the
dog photo). Timing is the whole job, file to file (decode, detect, blur, encode, write).

Video: a pan across 2008_007676.jpg (enlarged 2.4x), 960x540, 25 fps, with a sine-tone AAC track,
generated here with PyAV. Each tool redacts it to MP4 with its audio; every frame's faces (wholly
inside the frame) are scored as for photos; frames/s is frames over wall time, file to file.
deface runs its own pipeline (imageio-ffmpeg's ffmpeg reads and writes, in their own processes);
Regard its own (PyAV, reader and writer threads). Both detectors use ONNX Runtime with the same
number of threads (--threads, default 1: ORT's intra-op pool, set on deface's session, which
otherwise takes every core), and the encoders get the same thread count; deface's encoder is
libx264 preset medium, crf 25 (its default); Regard's default is preset veryfast, crf 20, and a
second row runs Regard with deface's encoder settings. Runs alternate (deface, Regard, ...) and the
medians of --repeat runs are reported, with ratios: the machine may be shared.
"""

from __future__ import annotations

import datasets  # bench/datasets.py: the data, and a clear refusal without it

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

_THREADS = "1"
for _i, _arg in enumerate(sys.argv):
    if _arg == "--threads" and _i + 1 < len(sys.argv):
        _THREADS = sys.argv[_i + 1]
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["REGARD_THREADS"] = _THREADS

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "dlib-faces"
VIDEO_PHOTO = "2008_007676.jpg"
Box = tuple[float, float, float, float]


def read_boxes(data: Path) -> dict[str, list[Box]]:
    boxes: dict[str, list[Box]] = {}
    for name in ("training.xml", "testing.xml"):
        for image in ET.parse(data / name).getroot().iter("image"):
            found = boxes.setdefault(image.get("file", ""), [])
            for b in image.iter("box"):
                left, top = float(b.get("left", 0)), float(b.get("top", 0))
                found.append((left, top, left + float(b.get("width", 0)), top + float(b.get("height", 0))))
    return boxes


def coverage(mask: np.ndarray, box: Box) -> float:
    l, t, r, b = (int(round(v)) for v in box)
    part = mask[max(t, 0) : b, max(l, 0) : r]
    return float(part.mean()) if part.size else 0.0


def false_regions(regions: list[Box], truth: list[Box]) -> int:
    """Regions that contain no annotated face's centre."""
    centres = [((l + r) / 2, (t + b) / 2) for l, t, r, b in truth]
    return sum(not any(l <= x <= r and t <= y <= b for x, y in centres) for l, t, r, b in regions)


# ------------------------------------------------------------------------------------ deface


class Recorder:
    """deface's CenterFace, with its session on a fixed thread count, recording what it finds."""

    def __init__(self, threads: int) -> None:
        import onnx
        import onnxruntime as ort
        from deface.centerface import CenterFace, default_onnx_path

        self.net = CenterFace(backend="onnxrt")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        model = CenterFace.dynamicize_shapes(onnx.load(default_onnx_path))
        self.net.sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.found: list[np.ndarray] = []

    def __call__(self, img: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        dets, marks = self.net(img, threshold=threshold)
        self.found.append(dets.copy())
        return dets, marks


def deface_mask(dets: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The pixels deface's default blur changes for these detections (its own drawing code)."""
    from deface.deface import anonymize_frame

    rng = np.random.default_rng(0)
    changed = np.zeros(shape[:2], bool)
    for _ in range(2):
        canvas = rng.integers(0, 256, size=shape, dtype=np.uint8)
        frame = canvas.copy()
        anonymize_frame(dets, frame, mask_scale=1.3, replacewith="blur", ellipse=True, draw_scores=False,
                        replaceimg=None, mosaicsize=20)
        changed |= np.any(frame != canvas, axis=2)
    return changed


def deface_regions(dets: np.ndarray) -> list[Box]:
    from deface.deface import scale_bb

    return [tuple(float(v) for v in scale_bb(*d[:4].astype(int), 1.3)) for d in dets]  # type: ignore[misc]


# ------------------------------------------------------------------------------------ video


def make_video(photo: Path, path: Path, truth: list[Box], size: tuple[int, int], seconds: float, zoom: float) -> list[list[Box]]:
    import av

    image = Image.open(photo).convert("RGB")
    src = np.asarray(image.resize((round(image.width * zoom), round(image.height * zoom)), Image.Resampling.LANCZOS))
    width, height = size
    frames, fps = int(seconds * 25), 25
    top, span = (src.shape[0] - height) // 2, src.shape[1] - width
    boxes = [(l * zoom, t * zoom, r * zoom, b * zoom) for l, t, r, b in truth]
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=fps)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.options = {"preset": "fast", "crf": "18"}
    audio = out.add_stream("aac", rate=48000)
    audio.layout = "mono"
    per_frame: list[list[Box]] = []
    for i in range(frames):
        left = round(span * i / (frames - 1))
        per_frame.append([(l - left, t - top, r - left, b - top) for l, t, r, b in boxes
                          if l >= left and r <= left + width and t >= top and b <= top + height])
        frame = np.ascontiguousarray(src[top : top + height, left : left + width])
        out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    out.mux(video.encode(None))
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(48000 * seconds)) / 48000)).astype(np.float32)[None]
    for start in range(0, tone.shape[1], 1024):
        chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start : start + 1024]), format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 48000, start
        out.mux(audio.encode(chunk))
    out.mux(audio.encode(None))
    out.close()
    return per_frame


def video_recall(masks: list[np.ndarray], truth: list[list[Box]]) -> tuple[int, int]:
    hits = total = 0
    for mask, boxes in zip(masks, truth):
        for box in boxes:
            total += 1
            hits += coverage(mask, box) >= 0.9
    return hits, total


# ------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description="Redaction recall and speed, Regard against deface")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "redact.json")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each tool (photos: per photo)")
    parser.add_argument("--threads", type=int, default=1, help="detector and encoder threads, both tools")
    parser.add_argument("--video-size", default="960x540")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    datasets.require(args.data, "dlib")

    import cv2
    from deface import deface as deface_cli
    from tqdm import tqdm

    from regard.image import load_image
    from regard.redact import DEFAULT_MIN_CONFIDENCE, Mode, redact_image, redact_video, region_mask
    from regard.redact.faces import find_faces
    from regard.redact.masks import head_region

    cv2.setNumThreads(args.threads)
    truth = read_boxes(args.data)
    photos = sorted(truth) + ["dogs.jpg"]
    recorder = Recorder(args.threads)
    work = Path(tempfile.mkdtemp(prefix="regard-bench-redact-"))
    quiet = not sys.stderr.isatty()

    # Photos ----------------------------------------------------------------------------------
    tools = ("deface 1.5.0", "regard")
    stats: dict[str, dict[str, Any]] = {t: {"covered": 0, "faces": 0, "false": 0, "dog_false": 0, "ms": []} for t in tools}
    for name in tqdm(photos, desc="photos", disable=quiet):
        path = args.data / name
        rgb = load_image(path)
        boxes = truth.get(name, [])
        for _ in range(args.repeat):
            recorder.found.clear()
            start = time.perf_counter()
            deface_cli.image_detect(str(path), str(work / f"deface-{name}"), recorder, threshold=0.2, replacewith="blur",
                                    mask_scale=1.3, ellipse=True, draw_scores=False, enable_preview=False, keep_metadata=False)
            stats[tools[0]]["ms"].append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            result = redact_image(str(path), work / f"regard-{name}")
            stats[tools[1]]["ms"].append((time.perf_counter() - start) * 1000)
        masks = {
            tools[0]: (deface_mask(recorder.found[-1], rgb.shape), deface_regions(recorder.found[-1])),
            tools[1]: (region_mask([f.region for f in result.faces], rgb.shape, Mode.BLUR),
                       [f.region.as_tuple() for f in result.faces]),
        }
        for tool, (mask, regions) in masks.items():
            s = stats[tool]
            s["faces"] += len(boxes)
            s["covered"] += sum(coverage(mask, b) >= 0.9 for b in boxes)
            if name == "dogs.jpg":
                s["dog_false"] += len(regions)
            else:
                s["false"] += false_regions(regions, boxes)

    # Regard's threshold, chosen here: recall first, then the fewest false redactions.
    sweep = []
    for threshold in (0.2, 0.3, 0.4, 0.5):
        hit = total = false = dog = 0
        for name in photos:
            rgb = load_image(args.data / name)
            regions = [head_region(d.box) for d in find_faces(rgb, min_confidence=threshold)]
            mask = region_mask(regions, rgb.shape)
            boxes = truth.get(name, [])
            total += len(boxes)
            hit += sum(coverage(mask, b) >= 0.9 for b in boxes)
            if name == "dogs.jpg":
                dog += len(regions)
            else:
                false += false_regions([r.as_tuple() for r in regions], boxes)
        sweep.append({"threshold": threshold, "recall": hit / total, "false": false, "dog_false": dog})

    # Video -----------------------------------------------------------------------------------
    width, height = (int(v) for v in args.video_size.split("x"))
    video = work / "pan.mp4"
    frame_truth = make_video(args.data / VIDEO_PHOTO, video, truth[VIDEO_PHOTO], (width, height), args.seconds, zoom=2.4)
    runs: dict[str, list[float]] = {"deface 1.5.0": [], "regard": [], "regard, deface's x264 settings": []}
    video_masks: dict[str, list[np.ndarray]] = {}
    threads = str(args.threads)
    for rep in tqdm(range(args.repeat), desc="video runs", disable=quiet):
        recorder.found.clear()
        start = time.perf_counter()
        deface_cli.video_detect(
            ipath=str(video), opath=str(work / "deface.mp4"), centerface=recorder, threshold=0.2, enable_preview=False,
            cam=False, nested=False, replacewith="blur", mask_scale=1.3, ellipse=True, draw_scores=False,
            ffmpeg_config={"codec": "libx264", "ffmpeg_params": ["-threads", threads]}, keep_audio=True,
        )
        runs["deface 1.5.0"].append(time.perf_counter() - start)
        if rep == 0:
            video_masks["deface 1.5.0"] = [deface_mask(d, (height, width, 3)) for d in recorder.found]
        start = time.perf_counter()
        result = redact_video(video, work / "regard.mp4", encoder_threads=args.threads)
        runs["regard"].append(time.perf_counter() - start)
        if rep == 0:
            video_masks["regard"] = [region_mask(r, (height, width, 3)) for r in result.frame_regions]
        start = time.perf_counter()
        result = redact_video(video, work / "regard-medium.mp4", encoder_threads=args.threads,
                              encoder_options={"preset": "medium", "crf": "25"})
        runs["regard, deface's x264 settings"].append(time.perf_counter() - start)
        if rep == 0:
            video_masks["regard, deface's x264 settings"] = [region_mask(r, (height, width, 3)) for r in result.frame_regions]
    frames = len(frame_truth)

    # Report ----------------------------------------------------------------------------------
    report: dict[str, Any] = {"data": str(args.data), "threads": args.threads, "repeat": args.repeat, "photos": {}, "video": {},
                              "regard_threshold_sweep": sweep, "regard_threshold": DEFAULT_MIN_CONFIDENCE}
    header = f"{'tool':<32}{'photo recall':>14}{'false (photos/dogs)':>21}{'ms/photo':>10}{'video recall':>16}{'video fps':>11}"
    lines = [header, "-" * len(header)]
    for tool in runs:
        v_hits, v_total = video_recall(video_masks[tool], frame_truth)
        fps = frames / statistics.median(runs[tool])
        report["video"][tool] = {"recall": v_hits / v_total, "covered": v_hits, "faces": v_total, "fps": fps,
                                 "seconds": runs[tool], "frames": frames}
        photo_tool = tool if tool in stats else None
        if photo_tool:
            s = stats[photo_tool]
            ms = statistics.median(s["ms"])
            report["photos"][tool] = {"recall": s["covered"] / s["faces"], "covered": s["covered"], "faces": s["faces"],
                                      "false": s["false"], "dog_false": s["dog_false"], "median_ms": ms}
            photo_cols = f"{s['covered']:>6}/{s['faces']:<3}{s['covered'] / s['faces']:>5.3f}{s['false']:>14}/{s['dog_false']:<6}{ms:>10.1f}"
        else:
            photo_cols = f"{'':>14}{'':>21}{'':>10}"
        lines.append(f"{tool:<32}{photo_cols}{v_hits:>6}/{v_total:<4}{v_hits / v_total:>5.3f}{fps:>11.2f}")
    d_ms, r_ms = report["photos"]["deface 1.5.0"]["median_ms"], report["photos"]["regard"]["median_ms"]
    d_fps = report["video"]["deface 1.5.0"]["fps"]
    same_x264 = report["video"]["regard, deface's x264 settings"]["fps"]
    lines.append(
        f"speed-up against deface: photos {d_ms / r_ms:.1f}x; video {report['video']['regard']['fps'] / d_fps:.1f}x "
        f"({same_x264 / d_fps:.1f}x with deface's x264 settings)"
    )
    lines.append(f"{args.threads} thread(s) each; {width}x{height} video, {frames} frames; medians of {args.repeat} alternating runs")
    lines.append("regard threshold sweep (photos): " + ", ".join(
        f"{s['threshold']}: recall {s['recall']:.3f}, false {s['false']}/{s['dog_false']}" for s in sweep))
    table = "\n".join(lines)
    report["table"] = table
    print(f"{len(truth)} annotated photos ({sum(len(v) for v in truth.values())} faces) and dogs.jpg in {args.data}")
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
