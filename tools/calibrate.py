"""Build Regard's threshold table (regard/data/calibration.json) from labelled photos.

    python tools/calibrate.py --data ../shared/data/lfw-fold1

Every photo under DATA/lfw/<person>/ is embedded (its main face); the scores of every same-person
pair and every different-person pair give the false-match and false non-match rates at each score
threshold. LFW fold 1 (807 photos of 435 people) gives about 325,000 different-person pairs, enough
to measure an FMR of 1e-4; an FMR of 1e-3 is measured from about 325 false matches.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "lfw-fold1"
OUT = HERE.parent / "regard" / "data" / "calibration.json"


def main() -> None:
    import regard
    from regard.match import calibrate, pair_scores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    photos = sorted((args.data / "lfw").glob("*/*.jpg"))
    vectors, labels, missing = [], [], 0
    iterator = photos
    if sys.stderr.isatty():
        from tqdm import tqdm

        iterator = tqdm(photos, desc="embedding", file=sys.stderr)
    for path in iterator:
        try:
            vectors.append(regard.embed(path))
            labels.append(path.parent.name)
        except regard.NoFaceError:
            missing += 1
    genuine, impostor = pair_scores(np.stack(vectors), labels)
    source = (
        f"LFW {args.data.name}: {len(vectors)} photos of {len(set(labels))} people "
        f"({missing} without a face), every pair"
    )
    table = calibrate(genuine, impostor, source)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table.to_json() + "\n")
    print(source)
    print(f"{table.genuine_pairs} same-person pairs, {table.impostor_pairs} different-person pairs")
    print(f"{'target FMR':>10} {'threshold':>9} {'FMR':>9} {'FNMR':>7}")
    for row in table.summary():
        print(f"{row['target_fmr']:>10.0e} {row['threshold']:>9.1f} {row['fmr']:>9.2e} {row['fnmr']:>7.3f}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
