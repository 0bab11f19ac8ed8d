"""1:N identification benchmark: open-set search on real photos, Regard beside face_recognition 1.3.0.

    python bench/identification.py --data ../shared/data/lfw-fold1 [--splits 20] [--seed 0]

`--data` is an LFW fold (a folder holding lfw/<person>/*.jpg) or any folder of person folders.
Every photo is embedded once per pipeline, end to end (decode -> detection -> embedding of the main
face: among faces at least half as wide as the widest, the one nearest the centre). Regard uses
`regard.detect` and `regard.pipeline.primary_face`; face_recognition its defaults as users call it
(`face_locations`, HOG with one upsample, then `face_encodings`). The embeddings are cached in an
.npz beside --out, keyed by the data folder, the photo list, the model files and the code of Regard's
pipeline (--no-cache embeds again).

Protocol, repeated over --splits seeded random splits of the persons, for gallery depth g = 1, 2, 3:
a person is eligible if they have at least g + 1 photos; half of the eligible persons, drawn at
random, are enrolled with g random photos each, and one other random photo of each is their mated
probe; every photo of every person not enrolled (most of them have a single photo) is a non-mated
probe. The gallery holds the enrolled persons only. The splits are drawn from the photo list alone,
so both pipelines see the same splits; a gallery photo where a pipeline finds no face is not
enrolled, a probe where it finds none answers nothing (a miss if mated, never a false positive).

A person's score against a probe is the best similarity over their enrolled faces ("best"), or for
g >= 2 the mean of their two best ("mean2"). Scores: "euclidean" (minus the distance between raw
vectors: for Regard, the embedder's output for the main face's chip before the pipeline scales it to
length 1), "cosine" (of Regard's embeddings, `Face.embedding`, scaled to length 1), and "similarity":
Regard's 0-100 score, `regard.match.similarity`, called pair by pair whatever its definition is
today. Per row, pooled over the splits:

- rank-1: the share of mated probes whose own person scores strictly above every other person;
- FNIR at FPIR 1 %: in each split the threshold is the lowest at which at most 1 % of the non-mated
  probes have a person scoring at or above it; a mated probe is a miss unless its own person is rank 1
  and scores at or above it (misses and probes summed over the splits; the threshold's mean shown:
  a distance for euclidean, a cosine, a 0-100 score);
- at the shipped defaults, FPIR (non-mated probes with any person at or above the threshold) and FNIR
  (the same rank-1 miss rule): Regard's `search_threshold(default_table(), gallery faces)` on the
  similarity score; face_recognition's `compare_faces(known, probe, tolerance=0.6)`, the answer being
  the person of the nearest matching face (`face_distance`).

The galleries are small (tens of persons on LFW fold 1) and the splits share most of their photos,
so pooling over splits narrows the noise less than the probe counts suggest: the JSON has each row's
spread of FNIR over the splits, and the same splits serve every row, so rows are compared pairwise.
face_recognition needs the `bench` extra; without it (or with --no-peer) only Regard runs.
"""

from __future__ import annotations

import datasets  # bench/datasets.py: the data, and a clear refusal without it

import argparse
import hashlib
import json
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "lfw-fold1"
DEFAULT_OUT = HERE / "results" / "identification.json"
DEPTHS = (1, 2, 3)
TARGET_FPIR = 0.01
TOLERANCE = 0.6  # face_recognition's default
PIPELINE_CODE = ("pipeline.py", "align.py", "image.py", "face.py")  # with models/: what embeddings depend on
SUFFIXES = {".jpg", ".jpeg", ".png"}
ROWS = [  # (pipeline, vectors, score, fusion); vectors: the cached arrays (regard_raw: before unit())
    ("regard", "regard_raw", "euclidean", "best"),
    ("regard", "regard_raw", "euclidean", "mean2"),
    ("regard", "regard", "cosine", "best"),
    ("regard", "regard", "cosine", "mean2"),
    ("regard", "regard", "similarity", "best"),
    ("face_recognition", "face_recognition", "euclidean", "best"),
    ("face_recognition", "face_recognition", "euclidean", "mean2"),
]
DEFAULTS = {("regard", "similarity"): "search_threshold", ("face_recognition", "euclidean"): "compare_faces"}
SOURCES = {"regard": ("regard", "regard_raw"), "face_recognition": ("face_recognition",)}
T = TypeVar("T")
Embedder = Callable[[Path], "dict[str, np.ndarray] | None"]  # a photo -> {vectors name: 128-d}, None: no face


def progress(items: Iterable[T], total: int, desc: str) -> Iterator[T]:
    """`items`, with a progress bar on a terminal only."""
    if not sys.stderr.isatty():
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=desc, file=sys.stderr)


def find_photos(data: Path) -> tuple[Path, list[str]]:
    """The folder of person folders (data/lfw for an LFW fold) and its photos, `person/file`, sorted."""
    root = data / "lfw" if (data / "lfw").is_dir() else data
    photos = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*") if p.suffix.lower() in SUFFIXES)
    if not photos:
        raise SystemExit(f"no photos in person folders under {root}")
    return root, photos


# ---------------------------------------------------------------- the two pipelines


def regard_embedder() -> Embedder:
    """Regard's embedding of the main face, and the embedder's raw output for the same chip (the
    pipeline scales it to length 1, so a Euclidean distance between its embeddings is the angle's)."""
    import regard
    from regard.align import align
    from regard.image import load_image

    def run(path: Path) -> dict[str, np.ndarray] | None:
        rgb = load_image(path)
        face = regard.pipeline.primary_face(regard.detect(rgb), rgb.shape[1], rgb.shape[0])
        if face is None or face.embedding is None:
            return None
        chip = align(rgb, face.landmarks)[None]
        raw = regard.models.get_embedder().embed_chips(chip, flip=regard.pipeline.FLIP_DEFAULT)[0]
        return {"regard": np.asarray(face.embedding, np.float32), "regard_raw": np.asarray(raw, np.float32)}

    return run


def face_recognition_embedder() -> Embedder | None:
    try:
        import face_recognition
    except ImportError:
        return None

    def run(path: Path) -> dict[str, np.ndarray] | None:
        image = face_recognition.load_image_file(str(path))
        boxes = face_recognition.face_locations(image)  # (top, right, bottom, left); HOG, upsample 1
        if not boxes:
            return None
        h, w = image.shape[:2]
        widest = max(r - left for _, r, _, left in boxes)
        candidates = [b for b in boxes if b[1] - b[3] >= widest / 2]  # as regard.pipeline.primary_face
        box = min(candidates, key=lambda b: ((b[1] + b[3]) / 2 - w / 2) ** 2 + ((b[0] + b[2]) / 2 - h / 2) ** 2)
        return {"face_recognition": np.asarray(face_recognition.face_encodings(image, [box])[0], np.float64)}

    return run


def cache_key(root: Path, photos: list[str], pipelines: list[str]) -> str:
    """What the cached embeddings depend on: the photos, the model files and the code of Regard's
    pipeline (not the rest of the package, so that edits elsewhere keep the cache)."""
    from importlib.metadata import version

    import regard
    from regard.models import ALL_MODELS

    code = hashlib.sha256()
    package = Path(regard.__file__).parent
    for source in [*(package / f for f in PIPELINE_CODE), *sorted((package / "models").glob("*.py"))]:
        code.update(source.read_bytes())
    key: dict[str, Any] = {
        "data": str(root.resolve()),
        "photos": hashlib.sha256("\n".join(photos).encode()).hexdigest(),
        "pipelines": pipelines,
        "regard_models": sorted(m.sha256 for m in ALL_MODELS),
        "regard_code": code.hexdigest(),
    }
    if "face_recognition" in pipelines:
        key["face_recognition"] = version("face_recognition")
    return json.dumps(key, sort_keys=True)


def embed_all(root: Path, photos: list[str], embedders: dict[str, Embedder], cache: Path | None) -> dict[str, Any]:
    """{vectors name: N x 128 array, NaN rows where no face was found}, from the cache if it matches."""
    key = cache_key(root, photos, list(embedders))
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as stored:
            if str(stored["key"]) == key:
                print(f"embeddings from {cache}", file=sys.stderr)
                return {name: stored[name] for p in embedders for name in SOURCES[p]}
    names = [name for p in embedders for name in SOURCES[p]]
    dtype = {n: np.float64 if n == "face_recognition" else np.float32 for n in names}  # as each pipeline gives them
    arrays = {n: np.full((len(photos), 128), np.nan, dtype[n]) for n in names}
    for i, rel in enumerate(progress(photos, len(photos), "embedding")):
        for run in embedders.values():
            for name, vector in (run(root / rel) or {}).items():
                arrays[name][i] = vector
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, key=np.array(key), **arrays)
    return arrays


# ---------------------------------------------------------------- scores and splits


def score_matrix(vectors: np.ndarray, kind: str) -> np.ndarray:
    """N x N similarities (higher is more alike); -inf for any photo without a face."""
    found = ~np.isnan(vectors).any(axis=1)
    x = np.where(found[:, None], vectors, 0.0).astype(np.float64)
    if kind == "euclidean":
        squared = (x**2).sum(axis=1)
        scores = -np.sqrt(np.clip(squared[:, None] + squared[None, :] - 2 * x @ x.T, 0.0, None))
    elif kind == "cosine":
        u = x / np.where(found, np.linalg.norm(x, axis=1), 1.0)[:, None]
        scores = u @ u.T
    elif kind == "similarity":
        from regard import match

        scores = np.full((len(x), len(x)), -np.inf)
        rows = np.flatnonzero(found)
        for n, i in enumerate(progress(rows, len(rows), "regard.match.similarity")):
            for j in rows[n:]:
                scores[i, j] = scores[j, i] = match.similarity(vectors[i], vectors[j])
    else:
        raise ValueError(kind)
    scores[~found, :] = -np.inf
    scores[:, ~found] = -np.inf
    return scores


@dataclass
class Split:
    gallery: np.ndarray  # persons x g photo indices
    mated: np.ndarray  # one probe per enrolled person, in the same order
    non_mated: np.ndarray  # every photo of every person not enrolled


def make_splits(people: list[str], g: int, count: int, seed: int) -> tuple[list[Split], int]:
    """`count` random splits at gallery depth g, and how many persons were eligible."""
    by_person: dict[str, list[int]] = {}
    for i, person in enumerate(people):
        by_person.setdefault(person, []).append(i)
    eligible = sorted(p for p, rows in by_person.items() if len(rows) >= g + 1)
    rng = np.random.default_rng([seed, g])
    splits = []
    for _ in range(count):
        enrolled = [eligible[i] for i in sorted(rng.permutation(len(eligible))[: len(eligible) // 2])]
        picks = np.array([rng.permutation(by_person[p])[: g + 1] for p in enrolled])
        chosen = set(enrolled)
        others = [i for p, rows in by_person.items() if p not in chosen for i in rows]
        splits.append(Split(picks[:, :g], picks[:, g], np.array(others)))
    return splits, len(eligible)


def person_scores(scores: np.ndarray, probes: np.ndarray, gallery: np.ndarray, fusion: str) -> np.ndarray:
    """probes x persons: each person's best face score, or the mean of their two best (one if one)."""
    faces = scores[np.ix_(probes, gallery.ravel())].reshape(len(probes), *gallery.shape)
    if fusion == "best":
        return faces.max(axis=-1)
    top = -np.sort(-faces, axis=-1)
    return np.where(np.isfinite(top[..., 1]), (top[..., 0] + top[..., 1]) / 2, top[..., 0])


def threshold_at_fpir(non_mated_best: np.ndarray, fpir: float) -> float:
    """The lowest threshold t at which at most `fpir` of the non-mated probes score >= t."""
    allowed = int(np.floor(fpir * len(non_mated_best) + 1e-9))
    ranked = np.sort(non_mated_best)[::-1]
    return -np.inf if allowed >= len(ranked) else float(np.nextafter(ranked[allowed], np.inf))


def compare_faces_split(vectors: np.ndarray, split: Split) -> tuple[int, int]:
    """face_recognition as its users search: (mated probes answered with their own person,
    non-mated probes with any match) at tolerance 0.6."""
    import face_recognition

    flat = split.gallery.ravel()
    keep = ~np.isnan(vectors[flat]).any(axis=1)
    known = vectors[flat[keep]]
    owner = np.repeat(np.arange(len(split.gallery)), split.gallery.shape[1])[keep]

    def answer(probe: int) -> int | None:
        if np.isnan(vectors[probe]).any() or not len(known):
            return None
        matches = np.array(face_recognition.compare_faces(known, vectors[probe], tolerance=TOLERANCE))
        if not matches.any():
            return None
        distances = face_recognition.face_distance(known, vectors[probe])
        return int(owner[np.flatnonzero(matches)[np.argmin(distances[matches])]])

    hits = sum(answer(p) == person for person, p in enumerate(split.mated))
    false_positives = sum(answer(p) is not None for p in split.non_mated)
    return hits, false_positives


def evaluate(
    scores: np.ndarray, vectors: np.ndarray, splits: list[Split], fusion: str, default: str | None
) -> list[dict[str, Any]]:
    """One record per split: counts, rank-1 and threshold hits, and the default's where it has one."""
    from regard import match

    records = []
    for split in splits:
        mated = person_scores(scores, split.mated, split.gallery, fusion)
        own = np.diag(mated).copy()
        np.fill_diagonal(mated, -np.inf)
        rank1 = own > mated.max(axis=1, initial=-np.inf)
        non_mated = person_scores(scores, split.non_mated, split.gallery, fusion).max(axis=1, initial=-np.inf)
        t = threshold_at_fpir(non_mated, TARGET_FPIR)
        faces = int((~np.isnan(vectors[split.gallery.ravel()]).any(axis=1)).sum())
        record: dict[str, Any] = {
            "persons": len(split.mated),
            "faces": faces,
            "mated": len(split.mated),
            "non_mated": len(split.non_mated),
            "mated_without_face": int(np.isnan(vectors[split.mated]).any(axis=1).sum()),
            "rank1": int(rank1.sum()),
            "threshold": t,
            "hits": int((rank1 & (own >= t)).sum()),
            "false_positives": int((non_mated >= t).sum()),
        }
        if default == "search_threshold":
            t_default = float(match.search_threshold(match.default_table(), faces))
            record["default_threshold"] = t_default
            record["default_hits"] = int((rank1 & (own >= t_default)).sum())
            record["default_false_positives"] = int((non_mated >= t_default).sum())
        elif default == "compare_faces":
            record["default_threshold"] = -TOLERANCE
            record["default_hits"], record["default_false_positives"] = compare_faces_split(vectors, split)
        records.append(record)
    return records


def summarise(pipeline: str, kind: str, fusion: str, g: int, records: list[dict[str, Any]]) -> dict[str, Any]:
    total = {k: sum(r[k] for r in records) for k in ("mated", "non_mated", "rank1", "hits", "false_positives")}
    sign = -1.0 if kind == "euclidean" else 1.0  # euclidean thresholds shown as distances
    per_split_fnir = [1 - r["hits"] / r["mated"] for r in records]
    row: dict[str, Any] = {
        "pipeline": pipeline,
        "score": kind,
        "fusion": fusion,
        "g": g,
        "splits": len(records),
        "persons_per_split": float(np.mean([r["persons"] for r in records])),
        "faces_per_split": float(np.mean([r["faces"] for r in records])),
        "mated_per_split": total["mated"] / len(records),
        "non_mated_per_split": total["non_mated"] / len(records),
        "mated_probes_pooled": total["mated"],
        "non_mated_probes_pooled": total["non_mated"],
        "mated_probes_without_face": sum(r["mated_without_face"] for r in records),
        "rank1": total["rank1"] / total["mated"],
        "fnir_at_fpir_1pct": 1 - total["hits"] / total["mated"],
        "fnir_at_fpir_1pct_std_over_splits": float(np.std(per_split_fnir)),
        "fpir_reached": total["false_positives"] / total["non_mated"],
        "threshold_at_fpir_1pct_mean": sign * float(np.mean([r["threshold"] for r in records])),
        "threshold_unit": {"euclidean": "distance", "cosine": "cosine", "similarity": "score 0-100"}[kind],
    }
    if "default_threshold" in records[0]:
        row["default"] = "compare_faces(tolerance=0.6)" if pipeline == "face_recognition" else "search_threshold"
        row["default_threshold_mean"] = sign * float(np.mean([r["default_threshold"] for r in records]))
        row["fpir_at_default"] = sum(r["default_false_positives"] for r in records) / total["non_mated"]
        row["fnir_at_default"] = 1 - sum(r["default_hits"] for r in records) / total["mated"]
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'pipeline':<17}{'score':<11}{'fusion':<7}{'g':>2}{'persons':>8}{'faces':>7}{'mated':>7}{'non-mated':>10}"
        f"{'rank-1':>8}{'FNIR@FPIR1%':>12}{'t@FPIR1%':>10}{'default t':>10}{'FPIR@def':>9}{'FNIR@def':>9}"
    )
    lines = [header, "-" * len(header)]
    for i, r in enumerate(rows):
        if i and r["g"] != rows[i - 1]["g"]:
            lines.append("")
        default = (
            f"{r['default_threshold_mean']:>10.3g}{r['fpir_at_default']:>9.3f}{r['fnir_at_default']:>9.3f}"
            if "default" in r
            else f"{'-':>10}{'-':>9}{'-':>9}"
        )
        lines.append(
            f"{r['pipeline']:<17}{r['score']:<11}{r['fusion']:<7}{r['g']:>2}{r['persons_per_split']:>8.0f}"
            f"{r['faces_per_split']:>7.1f}{r['mated_per_split']:>7.0f}{r['non_mated_per_split']:>10.1f}"
            f"{r['rank1']:>8.3f}{r['fnir_at_fpir_1pct']:>12.3f}{r['threshold_at_fpir_1pct_mean']:>10.3g}{default}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an LFW fold (with lfw/) or person folders")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output")
    parser.add_argument("--splits", type=int, default=20, help="random splits of the persons")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-cache", action="store_true", help="embed again, ignoring the cached embeddings")
    parser.add_argument("--no-peer", action="store_true", help="do not run face_recognition")
    args = parser.parse_args()
    datasets.require(args.data, "lfw")
    if args.splits < 1:
        parser.error("--splits must be at least 1")

    started = time.perf_counter()
    root, photos = find_photos(args.data)
    people = [rel.split("/")[0] for rel in photos]
    embedders: dict[str, Embedder] = {"regard": regard_embedder()}
    peer = None if args.no_peer else face_recognition_embedder()
    if peer is not None:
        embedders["face_recognition"] = peer
    elif not args.no_peer:
        print("face_recognition is not installed (pip install -e '.[bench]'): running Regard alone", file=sys.stderr)
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    cache = None if args.no_cache else args.out.with_name(f"{args.out.stem}-embeddings-{digest}.npz")
    vectors = embed_all(root, photos, embedders, cache)
    no_face = {p: [photos[i] for i in np.flatnonzero(np.isnan(vectors[p]).any(axis=1))] for p in embedders}
    if "regard" in embedders:  # the pipeline's embedding should be the raw one scaled to length 1
        raw = vectors["regard_raw"] / np.linalg.norm(vectors["regard_raw"], axis=1, keepdims=True)
        unscaled = int((np.abs(raw - vectors["regard"]) > 1e-4).any(axis=1).sum())
        if unscaled:
            print(f"warning: {unscaled} Regard embeddings are not the raw ones scaled to length 1", file=sys.stderr)
    matrices = {(v, kind): score_matrix(vectors[v], kind) for p, v, kind, _ in ROWS if p in embedders}
    rows, depths = [], {}
    for g in DEPTHS:
        splits, eligible = make_splits(people, g, args.splits, args.seed)
        depths[g] = {"eligible_persons": eligible, "enrolled_persons": eligible // 2}
        if eligible < 2:
            print(f"g={g}: {eligible} eligible persons, skipped", file=sys.stderr)
            continue
        for pipeline, name, kind, fusion in ROWS:
            if pipeline not in embedders or (fusion == "mean2" and g < 2):
                continue
            uses_default = DEFAULTS.get((pipeline, kind)) if fusion == "best" else None
            records = evaluate(matrices[name, kind], vectors[name], splits, fusion, uses_default)
            rows.append(summarise(pipeline, kind, fusion, g, records))

    table = format_table(rows)
    print(f"\n{root}: {len(photos)} photos of {len(set(people))} people; {args.splits} splits, seed {args.seed}")
    print("no face found: " + ", ".join(f"{name} {len(v)}" for name, v in no_face.items()))
    for g, d in depths.items():
        print(f"g={g}: {d['eligible_persons']} persons with >= {g + 1} photos, {d['enrolled_persons']} enrolled")
    print(
        "persons, faces, mated, non-mated: per split (means); rank-1 and FNIR: pooled over splits; FNIR misses are "
        "not rank 1 or below t.\nThresholds (split means): a distance for euclidean (match if <=), a cosine, a 0-100 "
        "score; defaults: Regard's search_threshold, face_recognition's compare_faces tolerance."
    )
    print()
    print(table)
    report = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": str(args.data),
        "photos_folder": str(root.resolve()),
        "photos": len(photos),
        "people": len(set(people)),
        "splits": args.splits,
        "seed": args.seed,
        "target_fpir": TARGET_FPIR,
        "no_face": no_face,
        "depths": depths,
        "rows": rows,
        "seconds": time.perf_counter() - started,
        "table": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
