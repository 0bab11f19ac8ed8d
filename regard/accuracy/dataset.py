"""The labelled photos an audit runs on, the pairs formed from them, and the auditor's groups.

Two layouts are read:

- an LFW-style pairs file: lines `name i j` (two photos of one person) or `name1 i name2 j` (two
  people), photo = `ROOT/name/name_<i:04d>.jpg`; a first line of one or two numbers (LFW's folds and
  pair counts) is skipped;
- a folder of person folders, `ROOT/person/photo.jpg`: every same-person pair is used (or a sample,
  if asked), and different-person pairs are all used up to `impostor_pairs`, above which that many
  are drawn at random with a fixed seed, so that a rerun gives the same report.

Groups come only from the auditor: a CSV of `person,group` lines (a header `person,group` is
allowed). Regard never infers a group from a face.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Literal

import numpy as np

from regard.errors import RegardError
from regard.image import PHOTO_SUFFIXES
from regard.match import DISTANCE_AT_ZERO
from regard.models.registry import EMBEDDING_SIZE

if TYPE_CHECKING:
    from regard.models.recognizer import Recognizer

DEFAULT_IMPOSTOR_PAIRS = 2_000_000
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Pairs:
    """Pairs of photos, as indices into the dataset's photo list."""

    a: np.ndarray
    b: np.ndarray
    same: np.ndarray  # True for genuine (same-person) pairs

    def __len__(self) -> int:
        return int(self.a.size)


@dataclass(frozen=True)
class Dataset:
    """Labelled photos and the pairs an audit compares."""

    name: str
    kind: Literal["pairs", "folders"]
    root: Path
    photos: list[Path]  # relative to root
    persons: list[str]  # the person of each photo
    pairs: Pairs
    genuine_available: int  # same-person pairs before any sampling
    impostor_available: int  # different-person pairs before any sampling
    seed: int | None  # the seed of the sampling, None if nothing was sampled

    @property
    def person_count(self) -> int:
        return len(set(self.persons))


def load(
    data: Path,
    *,
    images: Path | None = None,
    name: str | None = None,
    genuine_pairs: int | None = None,
    impostor_pairs: int = DEFAULT_IMPOSTOR_PAIRS,
    seed: int = DEFAULT_SEED,
) -> Dataset:
    """A pairs file (with its image root) or a folder of person folders."""
    data = Path(data)
    if data.is_file():
        root = images or (data.parent / "lfw" if (data.parent / "lfw").is_dir() else data.parent)
        return load_pairs_file(data, root, name=name or f"{data.parent.name}/{data.name}")
    if data.is_dir():
        return load_folders(
            data,
            name=name or f"{data.parent.name}/{data.name}",
            genuine_pairs=genuine_pairs,
            impostor_pairs=impostor_pairs,
            seed=seed,
        )
    raise RegardError(f"{data}: no such file or folder")


def load_pairs_file(path: Path, root: Path, *, name: str) -> Dataset:
    """The pairs of an LFW-style pairs file; every photo it names must exist under `root`."""
    photos: dict[Path, int] = {}
    persons: list[str] = []
    a: list[int] = []
    b: list[int] = []
    same: list[bool] = []

    def index(person: str, number: str, line_no: int) -> int:
        try:
            rel = Path(person) / f"{person}_{int(number):04d}.jpg"
        except ValueError:
            raise RegardError(f"{path}:{line_no}: {number!r} is not a photo number") from None
        if rel not in photos:
            if not (root / rel).is_file():
                raise RegardError(f"{path}:{line_no}: the photo {root / rel} does not exist (give the image folder with --images)")
            photos[rel] = len(photos)
            persons.append(person)
        return photos[rel]

    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts or (line_no == 1 and len(parts) <= 2 and all(p.isdigit() for p in parts)):
            continue
        if len(parts) == 3:
            a.append(index(parts[0], parts[1], line_no))
            b.append(index(parts[0], parts[2], line_no))
            same.append(True)
        elif len(parts) == 4:
            a.append(index(parts[0], parts[1], line_no))
            b.append(index(parts[2], parts[3], line_no))
            same.append(parts[0] == parts[2])
        else:
            raise RegardError(f"{path}:{line_no}: expected `name i j` or `name1 i name2 j`, got {line.strip()!r}")
    pairs = Pairs(np.array(a, dtype=np.int64), np.array(b, dtype=np.int64), np.array(same, dtype=bool))
    _check_pairs(pairs, str(path))
    return Dataset(
        name=name,
        kind="pairs",
        root=root,
        photos=list(photos),
        persons=persons,
        pairs=pairs,
        genuine_available=int(pairs.same.sum()),
        impostor_available=int((~pairs.same).sum()),
        seed=None,
    )


def load_folders(
    root: Path,
    *,
    name: str,
    genuine_pairs: int | None = None,
    impostor_pairs: int = DEFAULT_IMPOSTOR_PAIRS,
    seed: int = DEFAULT_SEED,
) -> Dataset:
    """Photos in `root/person/` folders; every same-person pair, and different-person pairs (all of
    them up to `impostor_pairs`, else a sample of that many drawn with `seed`)."""
    photos: list[Path] = []
    persons: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for photo in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES):
            photos.append(photo.relative_to(root))
            persons.append(folder.name)
    if not photos:
        hint = ""
        if any(root.glob("pairs*.txt")):
            hint = f"; for an LFW fold give the pairs file ({next(root.glob('pairs*.txt'))}) or its photo folder"
        raise RegardError(f"{root}: no person folders with photos in them (expected ROOT/person/photo.jpg){hint}")
    ids = np.unique(np.array(persons), return_inverse=True)[1].astype(np.int64)
    rng = np.random.default_rng(seed)
    sampled = False

    # Same-person pairs: every pair within each person's photos.
    ga: list[np.ndarray] = []
    gb: list[np.ndarray] = []
    order = np.argsort(ids, kind="stable")
    bounds = np.flatnonzero(np.diff(np.concatenate([[-1], ids[order], [-2]])))
    for start, stop in zip(bounds[:-1], bounds[1:]):
        members = order[start:stop]
        if len(members) > 1:
            i, j = np.triu_indices(len(members), k=1)
            ga.append(members[i])
            gb.append(members[j])
    g_a = np.concatenate(ga) if ga else np.zeros(0, np.int64)
    g_b = np.concatenate(gb) if gb else np.zeros(0, np.int64)
    genuine_available = int(g_a.size)
    if genuine_pairs is not None and genuine_pairs < g_a.size:
        keep = np.sort(rng.choice(g_a.size, size=genuine_pairs, replace=False))
        g_a, g_b, sampled = g_a[keep], g_b[keep], True

    # Different-person pairs: all of them, or a sample without repeats.
    n = len(photos)
    impostor_available = n * (n - 1) // 2 - genuine_available
    if impostor_pairs >= impostor_available:
        i, j = np.triu_indices(n, k=1)
        different = ids[i] != ids[j]
        i_a, i_b = i[different], j[different]
    else:
        i_a, i_b = _sample_impostors(ids, impostor_pairs, rng)
        sampled = True
    pairs = Pairs(
        np.concatenate([g_a, i_a]),
        np.concatenate([g_b, i_b]),
        np.concatenate([np.ones(g_a.size, bool), np.zeros(i_a.size, bool)]),
    )
    _check_pairs(pairs, str(root))
    return Dataset(
        name=name,
        kind="folders",
        root=root,
        photos=photos,
        persons=persons,
        pairs=pairs,
        genuine_available=genuine_available,
        impostor_available=impostor_available,
        seed=seed if sampled else None,
    )


def _sample_impostors(ids: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` distinct different-person pairs (i < j), drawn uniformly, sorted."""
    n = ids.size
    chosen = np.zeros(0, dtype=np.int64)
    while chosen.size < count:
        need = count - chosen.size
        i = rng.integers(0, n, size=2 * need + 16)
        j = rng.integers(0, n, size=2 * need + 16)
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        ok = ids[lo] != ids[hi]
        chosen = np.unique(np.concatenate([chosen, lo[ok] * n + hi[ok]]))
    if chosen.size > count:
        chosen = np.sort(rng.choice(chosen, size=count, replace=False))
    return chosen // n, chosen % n


def _check_pairs(pairs: Pairs, where: str) -> None:
    if len(pairs) == 0:
        raise RegardError(f"{where}: no pairs of photos to compare")
    if not pairs.same.any():
        raise RegardError(
            f"{where}: no same-person pairs, so the false non-match rate cannot be measured "
            "(a folder dataset needs at least one person with two photos)"
        )
    if pairs.same.all():
        raise RegardError(
            f"{where}: no different-person pairs, so the false-match rate cannot be measured "
            "(the data needs photos of at least two people)"
        )


# ---------------------------------------------------------------- groups


def read_groups(path: Path) -> dict[str, str]:
    """person -> group from the auditor's CSV (`person,group`; an optional header row)."""
    groups: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise RegardError(f"cannot read the groups file {path}: {exc.strerror}") from None
    for line_no, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise RegardError(f"{path}:{line_no}: expected `person,group`, got {','.join(row)!r}")
        person, group = row[0].strip(), row[1].strip()
        if line_no == 1 and (person.lower(), group.lower()) == ("person", "group"):
            continue
        if not person or not group:
            raise RegardError(f"{path}:{line_no}: a person and a group are both needed")
        if groups.get(person, group) != group:
            raise RegardError(f"{path}:{line_no}: {person!r} is in two groups ({groups[person]!r} and {group!r})")
        groups[person] = group
    if not groups:
        raise RegardError(f"{path}: no `person,group` rows")
    return groups


# ---------------------------------------------------------------- embedding


@dataclass
class Embedded:
    """The main face of each photo: its embedding (NaN if no face) and quality level."""

    vectors: np.ndarray  # (photos, the model's width: 128 for the built-in) float64, NaN rows where no face was found
    quality: list[str | None]  # LOW / MEDIUM / HIGH, None where no face was found
    errors: dict[int, str] = field(default_factory=dict)  # photo index -> why it could not be read

    @property
    def has_face(self) -> np.ndarray:
        return ~np.isnan(self.vectors[:, 0])


def embed_photos(dataset: Dataset, *, progress: bool | None = None, model: Recognizer | None = None) -> Embedded:
    """Embed the main face of every photo with Regard's own pipeline (detection, quality, flip
    averaging, as `compare` and enrollment do). A photo that cannot be read counts as a failure to
    enrol, with its reason. Shows a progress bar on a terminal.

    `model` is the recognition model that embeds the faces (a registered one, as
    `regard.models.operator.resolve` gives it: each face aligned with its family's template, vectors
    of its width); None or the built-in model: Regard's own."""
    from regard.image import load_image
    from regard.pipeline import detect, primary_face

    name = None if model is None or model.built_in else model.id
    width = EMBEDDING_SIZE if model is None else model.width
    vectors = np.full((len(dataset.photos), width), np.nan)
    quality: list[str | None] = [None] * len(dataset.photos)
    errors: dict[int, str] = {}
    for k in _progress(range(len(dataset.photos)), len(dataset.photos), progress):
        path = dataset.root / dataset.photos[k]
        try:
            rgb = load_image(path)
            face = primary_face(detect(rgb, model=name), rgb.shape[1], rgb.shape[0])
        except RegardError as exc:
            errors[k] = str(exc)
            continue
        if face is not None and face.embedding is not None:
            vectors[k] = face.embedding
            quality[k] = face.quality.level.value
    return Embedded(vectors=vectors, quality=quality, errors=errors)


def _progress(items: Iterable[int], total: int, progress: bool | None) -> Iterable[int]:
    show = sys.stderr.isatty() if progress is None else progress
    if not show:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc="embedding photos", unit="photo", file=sys.stderr)


def pair_scores(vectors: np.ndarray, pairs: Pairs, *, chunk: int = 1 << 16, scale: float = DISTANCE_AT_ZERO) -> np.ndarray:
    """The 0-100 score of every pair (NaN where a photo has no face), in chunks so that millions of
    pairs fit in memory. Same arithmetic as `regard.match.similarity`, vectorised; `scale` is the
    model's score scale (`Recognizer.distance_at_zero`; the built-in model's by default)."""
    from regard.match import score_from_distance

    vectors = np.asarray(vectors, dtype=np.float64)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)  # rows without a face stay NaN
    out = np.empty(len(pairs))
    for start in range(0, len(pairs), chunk):
        a = vectors[pairs.a[start : start + chunk]]
        b = vectors[pairs.b[start : start + chunk]]
        out[start : start + chunk] = score_from_distance(np.sqrt(((a - b) ** 2).sum(axis=1)), scale)
    return out
