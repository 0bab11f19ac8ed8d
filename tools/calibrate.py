"""Build Regard's shipped threshold table (regard/data/calibration.json) from labelled photos.

    python tools/calibrate.py --data ../shared/data/lfw-fold1

A thin wrapper over `regard audit`, which measures the table on any labelled photos:

    regard audit ../shared/data/lfw-fold1/lfw --name "LFW lfw-fold1" --out audit/ \
        --calibrate regard/data/calibration.json

Every photo under DATA/lfw/<person>/ is embedded (its main face); the scores of every same-person
pair and every different-person pair give the false-match and false non-match rates at each score
threshold. LFW fold 1 (807 photos of 435 people) gives about 325,000 different-person pairs, enough
to measure an FMR of 1e-4; an FMR of 1e-3 is measured from about 325 false matches. The audit's
report (HTML and JSON) goes to --report.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "lfw-fold1"
OUT = HERE.parent / "regard" / "data" / "calibration.json"


def main() -> int:
    from regard.cli import main as regard_main

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an LFW fold: DATA/lfw/<person>/*.jpg")
    parser.add_argument("--out", type=Path, default=OUT, help="where the table goes (default: the shipped one)")
    parser.add_argument("--report", type=Path, help="where the audit report goes (default: a temporary folder)")
    args = parser.parse_args()
    report = args.report or Path(tempfile.mkdtemp(prefix="regard-calibration-"))
    return regard_main(
        [
            "audit",
            str(args.data / "lfw"),
            "--name",
            f"LFW {args.data.name}",
            "--out",
            str(report),
            "--calibrate",
            str(args.out),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
