"""The `regard` command, run as a user runs it: a real process, exit codes, stdout and stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.conftest import lfw


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regard.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_detect_json_and_drawing(fixtures, tmp_path):
    out = tmp_path / "faces.png"
    result = run("detect", str(fixtures / "2008_002470.jpg"), "--json", "--draw", str(out))
    assert result.returncode == 0, result.stderr
    [report] = json.loads(result.stdout)  # always a list, one entry per photo
    assert len(report["faces"]) == 6
    assert {"box", "confidence", "landmarks", "quality"} <= set(report["faces"][0])
    drawn = Image.open(out)
    assert drawn.size == (500, 332) and drawn.format == "PNG"
    original = Image.open(fixtures / "2008_002470.jpg").convert("RGB")
    assert drawn.convert("RGB").tobytes() != original.tobytes()


def test_ordinary_mistakes_get_one_line_and_exit_2(fixtures, tmp_path):
    missing = run("detect", str(fixtures / "2008_002470.jpg"), "--draw", str(tmp_path / "no" / "such" / "x.png"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and "x.png" in missing.stderr
    store = f"sqlite:///{tmp_path / 's.db'}"
    unknown = run("collection", "create", "c", "--purpose", "p", "--store", store)  # a typo must create nothing
    assert unknown.returncode != 0 and "regard init" in unknown.stderr and not (tmp_path / "s.db").exists()
    assert run("init", "--store", store, "--master-key", str(tmp_path / "master.key")).returncode == 0
    assert oct((tmp_path / "master.key").stat().st_mode & 0o777) == "0o600"
    assert run("collection", "create", "c", "--purpose", "p", "--store", store).returncode == 0
    assert run("person", "add", "c", "ann", "--store", store).returncode == 0
    tomorrow = run("consent", "record", "c", "ann", "--basis", "consent", "--expires", "tomorrow", "--store", store)
    assert tomorrow.returncode == 2 and "Traceback" not in tomorrow.stderr and "30d" in tomorrow.stderr
    thirty = run("consent", "record", "c", "ann", "--basis", "consent", "--expires", "30d", "--store", store, "--json")
    assert thirty.returncode == 0 and json.loads(thirty.stdout)["expires_at"].startswith("20")
    dated = run("consent", "record", "c", "ann", "--basis", "consent", "--expires", "2099-01-01", "--store", store, "--json")
    assert json.loads(dated.stdout)["expires_at"] == "2099-01-01T00:00:00+00:00"  # a date is midnight UTC
    yesterday = run("log", "show", "--since", "yesterday", "--store", store)
    assert yesterday.returncode == 2 and "Traceback" not in yesterday.stderr
    assert run("log", "show", "--since", "7d", "--store", store).returncode == 0
    piped = subprocess.run(
        f"{sys.executable} -m regard.cli detect {fixtures / '2008_002470.jpg'} {fixtures / 'bald_guys.jpg'} | head -c 10",
        shell=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr


def test_detect_takes_folders(fixtures, tmp_path):
    folder = tmp_path / "photos" / "deeper"
    folder.mkdir(parents=True)
    for name in ("Tom_Cruise_avp_2014_4.jpg", "2008_002470.jpg"):
        (folder / name).write_bytes((fixtures / name).read_bytes())
    result = run("detect", str(tmp_path / "photos"), "--json")
    assert result.returncode == 0, result.stderr
    assert [Path(r["photo"]).name for r in json.loads(result.stdout)] == ["2008_002470.jpg", "Tom_Cruise_avp_2014_4.jpg"]


def test_detect_table_and_exit_codes(fixtures, tmp_path):
    ok = run("detect", str(fixtures / "Tom_Cruise_avp_2014_4.jpg"))
    assert ok.returncode == 0 and "1 face " in ok.stdout
    none = run("detect", str(fixtures / "dogs.jpg"))
    assert none.returncode == 1 and "0 faces" in none.stdout
    garbage = tmp_path / "broken.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    bad = run("detect", str(garbage), str(fixtures / "dogs.jpg"))
    assert bad.returncode == 2
    assert "broken.jpg" in bad.stderr and "Traceback" not in bad.stderr


def test_compare_exit_codes_and_json():
    same = run("compare", str(lfw("Akhmed_Zakayev", 1)), str(lfw("Akhmed_Zakayev", 3)), "--json")
    assert same.returncode == 0, same.stderr
    data = json.loads(same.stdout)
    assert data["match"] is True and data["fmr_at_threshold"] <= 1e-3
    different = run("compare", str(lfw("Abel_Pacheco", 1)), str(lfw("Amber_Tamblyn", 1)))
    assert different.returncode == 1 and "no match" in different.stdout
    assert "FMR" in different.stdout


def test_compare_with_no_face_or_missing_file(fixtures, tmp_path):
    no_face = run("compare", str(fixtures / "dogs.jpg"), str(lfw("Abel_Pacheco", 1)))
    assert no_face.returncode == 1 and "no face" in no_face.stderr
    missing = run("compare", str(tmp_path / "nope.jpg"), str(lfw("Abel_Pacheco", 1)))
    assert missing.returncode == 2 and "nope.jpg" in missing.stderr


def test_models_lists_verified_files():
    result = run("models", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    names = {row["name"] for row in rows}
    assert {"centerface", "dlib-resnet"} <= names
    assert all(row["status"].startswith("ok") for row in rows)
    assert all(len(row["sha256"]) == 64 for row in rows)


def test_version_prints_the_package_version() -> None:
    import subprocess
    import sys

    import regard

    done = subprocess.run([sys.executable, "-m", "regard.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"regard {regard.__version__}"
