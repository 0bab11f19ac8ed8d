"""The photos the benchmarks read, and a clear refusal where they are missing.

Benchmarks take their data as `--data PATH`; by default they look beside the clone, in
../shared/data (the project's shared folder, which a user's fresh clone does not have):

- an LFW fold (`lfw-fold1`): `pairs*.txt` and `lfw/<person>/<person>_NNNN.jpg`, from Labeled Faces
  in the Wild (University of Massachusetts Amherst, http://vis-www.cs.umass.edu/lfw/; its terms:
  research and benchmarking). Any LFW View 2 fold, or the whole set with its pairs file, works.
- dlib's example faces (`dlib-faces`): photos with hand-drawn boxes in `training.xml` and
  `testing.xml`, from the examples/faces folder of the dlib C++ library (Boost Software License).
"""

from __future__ import annotations

import sys
from pathlib import Path

WHERE = {
    "lfw": (
        "an LFW fold: a folder holding lfw/<person>/*.jpg (and pairs*.txt for bench/lfw.py). Get LFW from "
        "http://vis-www.cs.umass.edu/lfw/ (research and benchmarking terms) and pass its folder with --data"
    ),
    "dlib": (
        "dlib's example faces: a folder of photos with training.xml and testing.xml (imglab boxes), the "
        "examples/faces folder of https://github.com/davisking/dlib; pass it with --data"
    ),
}


def require(path: Path, kind: str, *, pairs: bool = False) -> Path:
    """`path` if it holds the data `kind` ("lfw" or "dlib") needs; else say what is missing and where
    to get it, and exit with status 2."""
    problem = None
    if not path.is_dir():
        problem = f"there is no folder {path}"
    elif kind == "lfw" and not (path / "lfw").is_dir():
        problem = f"{path} has no lfw/ folder of person folders"
    elif kind == "lfw" and pairs and not any(path.glob("pairs*.txt")):
        problem = f"{path} has no pairs*.txt file"
    elif kind == "dlib" and not (path / "training.xml").is_file() and not (path / "testing.xml").is_file():
        problem = f"{path} has no training.xml or testing.xml"
    if problem:
        print(f"{Path(sys.argv[0]).name}: {problem}. This benchmark needs {WHERE[kind]}.", file=sys.stderr)
        raise SystemExit(2)
    return path
