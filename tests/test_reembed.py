"""Moving a collection to another recognition model: every face re-embedded from the thumbnails
the collection keeps or from the enrolment photos, all or nothing, consent and audit trail kept,
the move in the audit log. Real photos, real networks, both backends."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from regard.errors import InvalidArgumentError
from regard.gallery import enroll, search_photo
from regard.models import operator
from regard.reembed import reembed
from regard.store import ConsentBasis, open_store
from tests.conftest import lfw
from tests.test_collection_models import ACTOR, PEOPLE, PURPOSE
from tests.test_collection_models import models as models  # noqa: F401 - the registered-models fixture
from tests.test_operator_models import arcface_shaped

REASON = "moving to a stronger model"


@pytest.fixture()
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def _fill(store, collection: str, *, thumbnails: bool, model: str | None = None) -> None:
    store.create_collection(collection, purpose=PURPOSE, actor=ACTOR, store_thumbnails=thumbnails, model=model)
    for person, (first, _) in PEOPLE.items():
        store.add_person(collection, person, actor=ACTOR)
        store.record_consent(collection, person, basis=ConsentBasis.CONSENT, actor=ACTOR, reference=f"form-{person}")
        assert enroll(store, collection, str(lfw(person, first)), person_id=person, actor=ACTOR).enrolled


def test_from_thumbnails_every_face_moves_and_search_still_finds_people(store, store_url, models) -> None:
    """The built-in model to its own network registered as dlib-export: re-embedded from thumbnails
    (a JPEG of the chip) the scores must stay those of the same network, within JPEG's loss."""
    _fill(store, "club", thumbnails=True)
    before = {f.face_id: f for f in store.list_faces("club")}
    consent = {p.id: p.consent for p in store.list_persons("club")}
    moved, plan = reembed(store, "club", "dlib-export", actor=ACTOR, reason=REASON)
    assert moved.model == models["dlib"] and len(plan.vectors) == len(before) and not plan.missing
    assert {f.face_id: f for f in store.list_faces("club")} == before  # face records carry over
    assert {p.id: p.consent for p in store.list_persons("club")} == consent
    for person, (_, second) in PEOPLE.items():
        found = search_photo(store, "club", str(lfw(person, second)), actor=ACTOR, purpose=PURPOSE)
        assert found.model == models["dlib"] and found[0].persons and found[0].persons[0].person_id == person
    move = [e for e in store.audit_entries(collection="club") if e.details.get("previous_model")]
    assert len(move) == 1 and move[0].details["model"] == models["dlib"] and move[0].details["faces_reembedded"] == 3
    assert move[0].details["source"] == "the collection's thumbnails" and move[0].details["reason"] == REASON
    assert store.verify_audit().ok


def test_from_photos_to_a_512_d_model_matched_by_image_id(store, store_url, models, tmp_path: Path) -> None:
    _fill(store, "club", thumbnails=False)
    with pytest.raises(InvalidArgumentError, match="no thumbnails"):
        reembed(store, "club", "arc", actor=ACTOR, reason=REASON)
    photos = tmp_path / "photos"
    photos.mkdir()
    for person, (first, _) in list(PEOPLE.items())[:2]:  # one person's photo is missing
        shutil.copy(lfw(person, first), photos / f"renamed-{person}.jpg")  # matched by content, not name
    with pytest.raises(InvalidArgumentError, match="1 of 3 faces have no new vector, so nothing was moved"):
        reembed(store, "club", "arc", actor=ACTOR, reason=REASON, photos=photos)
    assert store.get_collection("club").model != models["arc"]  # nothing moved
    last = list(PEOPLE)[2]
    shutil.copy(lfw(last, PEOPLE[last][0]), photos / "third.jpg")
    moved, plan = reembed(store, "club", "arc", actor=ACTOR, reason=REASON, photos=photos)
    assert moved.model == models["arc"] and len(plan.vectors) == 3
    assert {store.face_vector("club", f.face_id).shape for f in store.list_faces("club")} == {(512,)}
    found = search_photo(store, "club", str(lfw(last, PEOPLE[last][0])), actor=ACTOR, purpose=PURPOSE, threshold=0.0)
    assert found[0].candidates[0].person_id == last and found[0].candidates[0].score == pytest.approx(100.0, abs=0.01)


def test_a_move_is_refused_when_the_faces_changed_meanwhile_and_keeps_the_old_vectors(store, store_url, models) -> None:
    _fill(store, "club", thumbnails=True)
    vectors = {f.face_id: store.face_vector("club", f.face_id) for f in store.list_faces("club")}
    some = dict(list(vectors.items())[:2])
    with pytest.raises(InvalidArgumentError, match="changed"):
        store.move_collection("club", "dlib-export", some, actor=ACTOR, reason=REASON, source="test")
    assert store.get_collection("club").model == operator.BUILT_IN.id
    for face_id, vector in vectors.items():
        np.testing.assert_array_equal(store.face_vector("club", face_id), vector)
    with pytest.raises(InvalidArgumentError, match="already"):
        reembed(store, "club", operator.BUILT_IN.name, actor=ACTOR, reason=REASON)


def test_the_cli_moves_a_collection(tmp_path: Path, models) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    s = open_store(url)
    _fill(s, "club", thumbnails=True)
    s.close()
    env = {"REGARD_MODELS_DIR": str(tmp_path / "models"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "regard.cli", "collection", "reembed", "club", "--model", "dlib-export",
         "--reason", REASON, "--store", url, "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["model"] == models["dlib"] and out["faces_reembedded"] == 3
    refused = subprocess.run(
        [sys.executable, "-m", "regard.cli", "collection", "reembed", "club", "--model", "nobody", "--reason", REASON,
         "--store", url], capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert refused.returncode == 2 and "no model 'nobody'" in refused.stderr


def test_arcface_shaped_builder_is_shared(tmp_path: Path) -> None:
    assert arcface_shaped(tmp_path / "a.onnx").stat().st_size > 100_000
