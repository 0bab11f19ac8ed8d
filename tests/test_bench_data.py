"""Every benchmark says which data it needs and where to get it when --data names nothing usable,
instead of a traceback (bench/datasets.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize(
    "script, needs",
    [("lfw.py", "LFW"), ("search.py", "LFW"), ("identification.py", "LFW"), ("load.py", "LFW"),
     ("detection.py", "dlib"), ("redact.py", "dlib")],
)  # fmt: skip
def test_a_benchmark_without_its_data_says_what_it_needs(script: str, needs: str, tmp_path: Path) -> None:
    empty = tmp_path / "not-a-dataset"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--data", str(empty)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert str(empty) in done.stderr and needs in done.stderr and "--data" in done.stderr
    assert "Traceback" not in done.stderr
