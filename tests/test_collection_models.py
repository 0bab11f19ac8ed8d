"""A collection is pinned to one recognition model: its faces are embedded, stored and searched only
with that model's vectors (any width), its thresholds come only from that model's calibration, and
an uncalibrated model may enrol but not search. Run on both backends, with real photos and real
networks (dlib's exported by dlib_convert; an ArcFace-shaped one built with onnx.helper)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from regard.errors import ModelError, NotFoundError
from regard.gallery import enroll, search_face, search_photo
from regard.match import calibrate
from regard.models import operator
from regard.models.dlib_convert import convert_dlib_resnet
from regard.models.recognizer import BUILT_IN
from regard.models.registry import DLIB_RESNET
from regard.pipeline import embed
from regard.store import ConsentBasis, open_store
from regard.store.base import SearchQuery
from tests.conftest import lfw
from tests.test_operator_models import PHOTO, arcface_shaped

ACTOR = "test-operator"
PURPOSE = "testing pinned models"
PEOPLE = {"Ann_Veneman": (3, 5), "Angela_Bassett": (1, 2), "Anders_Fogh_Rasmussen": (1, 2)}


@pytest.fixture()
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("REGARD_MODELS_DIR", str(tmp_path / "models"))
    dlib_file = tmp_path / "dlib-export.onnx"
    convert_dlib_resnet(DLIB_RESNET.verified_path(), dlib_file)
    dlib = operator.add(dlib_file, name="dlib-export", family="dlib", license="CC0-1.0", check_photo=PHOTO)
    operator.set_calibration("dlib-export", BUILT_IN.table())  # the same network: the same table
    arc = operator.add(arcface_shaped(tmp_path / "arc.onnx"), name="arc", family="arcface", license="ours", check_photo=PHOTO)
    rng = np.random.default_rng(3)
    operator.set_calibration("arc", calibrate(rng.normal(80, 5, 300).clip(0, 100), rng.normal(20, 10, 3000).clip(0, 100), "synthetic"))
    raw = operator.add(arcface_shaped(tmp_path / "raw.onnx", seed=9), name="raw", family="arcface", license="ours", check_photo=PHOTO)
    return {"dlib": dlib.id, "arc": arc.id, "raw": raw.id}


@pytest.fixture()
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def _enrol_everyone(store, collection: str) -> None:
    for person, (first, _) in PEOPLE.items():
        store.add_person(collection, person, actor=ACTOR)
        store.record_consent(collection, person, basis=ConsentBasis.CONSENT, actor=ACTOR)
        result = enroll(store, collection, str(lfw(person, first)), person_id=person, actor=ACTOR)
        assert len(result.enrolled) == 1, result


def test_a_collection_of_an_operator_model_stores_and_searches_its_vectors(store, models) -> None:
    c = store.create_collection("arc-club", purpose=PURPOSE, actor=ACTOR, model="arc")
    assert c.model == models["arc"]
    created = [e for e in store.audit_entries(collection="arc-club") if e.action == "collection_create"]
    assert created and created[0].details["model"] == models["arc"]
    _enrol_everyone(store, "arc-club")
    face = store.list_faces("arc-club", "Ann_Veneman")[0]
    assert store.face_vector("arc-club", face.face_id).shape == (512,)
    found = search_photo(store, "arc-club", str(lfw("Ann_Veneman", 3)), actor=ACTOR, purpose=PURPOSE, threshold=0.0)
    assert found.model == models["arc"] and found[0].candidates[0].person_id == "Ann_Veneman"
    assert found[0].candidates[0].score == pytest.approx(100.0, abs=0.01)
    by_face = search_face(store, "arc-club", face.face_id, actor=ACTOR, purpose=PURPOSE, threshold=0.0)
    assert {c.person_id for c in by_face} == set(PEOPLE) - {"Ann_Veneman"}


def test_vectors_of_another_model_are_refused_by_construction(store, models) -> None:
    store.create_collection("arc-club", purpose=PURPOSE, actor=ACTOR, model="arc")
    store.create_collection("dlib-club", purpose=PURPOSE, actor=ACTOR, model="dlib-export")
    _enrol_everyone(store, "arc-club")
    built_in = embed(str(lfw("Ann_Veneman", 5)))  # 128 numbers from the built-in model
    with pytest.raises(ModelError, match="cannot be compared"):
        store.search("dlib-club", [SearchQuery(built_in, {})], actor=ACTOR, purpose=PURPOSE)  # same width, other model
    rng = np.random.default_rng(4)
    operator.set_calibration("raw", calibrate(rng.normal(80, 5, 300).clip(0, 100), rng.normal(20, 10, 3000).clip(0, 100), "synthetic"))
    other = embed(str(lfw("Ann_Veneman", 5)), model="raw")  # 512 numbers from another 512-d model
    with pytest.raises(ModelError, match="cannot be compared"):
        store.search("arc-club", [SearchQuery(other, {})], actor=ACTOR, purpose=PURPOSE, model=models["raw"])
    before = store.get_collection("arc-club").face_count
    from regard.gallery import new_face
    from regard.image import load_image
    from regard.pipeline import detect

    rgb = load_image(str(lfw("Ann_Veneman", 5)))
    wrong = new_face(rgb, detect(rgb)[0], "x", with_thumbnail=False)
    with pytest.raises(Exception, match="512|cannot be compared"):
        store.add_faces("arc-club", "Ann_Veneman", [wrong], actor=ACTOR)  # built-in vectors into a 512-d collection
    assert store.get_collection("arc-club").face_count == before


def test_the_same_network_as_an_operator_model_searches_as_the_built_in_one(store, models) -> None:
    store.create_collection("builtin", purpose=PURPOSE, actor=ACTOR)
    store.create_collection("export", purpose=PURPOSE, actor=ACTOR, model="dlib-export")
    _enrol_everyone(store, "builtin")
    _enrol_everyone(store, "export")
    for person, (_, second) in PEOPLE.items():
        a = search_photo(store, "builtin", str(lfw(person, second)), actor=ACTOR, purpose=PURPOSE, threshold=0.0)
        b = search_photo(store, "export", str(lfw(person, second)), actor=ACTOR, purpose=PURPOSE, threshold=0.0)
        assert [c.person_id for c in a[0].candidates] == [c.person_id for c in b[0].candidates]
        np.testing.assert_allclose([c.score for c in a[0].candidates], [c.score for c in b[0].candidates], atol=0.01)
    assert store.search_threshold("builtin") == store.search_threshold("export")


def test_an_uncalibrated_model_enrols_but_may_not_search(store, models, tmp_path: Path) -> None:
    store.create_collection("raw-club", purpose=PURPOSE, actor=ACTOR, model="raw")
    _enrol_everyone(store, "raw-club")  # enrolling needs no threshold
    entries = len(store.audit_entries(collection="raw-club"))
    with pytest.raises(ModelError, match="not calibrated.*--model raw --calibrate"):
        search_photo(store, "raw-club", str(lfw("Ann_Veneman", 5)), actor=ACTOR, purpose=PURPOSE)
    with pytest.raises(ModelError, match="not calibrated"):
        store.search_threshold("raw-club")
    assert len(store.audit_entries(collection="raw-club")) == entries  # refused before anything was searched


def test_a_collection_needs_a_registered_model_whose_file_is_unchanged(store, models, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no model 'nobody'"):
        store.create_collection("x", purpose=PURPOSE, actor=ACTOR, model="nobody")
    assert store.list_collections() == []
    store.create_collection("arc-club", purpose=PURPOSE, actor=ACTOR, model="arc")
    arcface_shaped(tmp_path / "arc.onnx", seed=99)  # the registered file replaced by another network
    store.add_person("arc-club", "Ann_Veneman", actor=ACTOR)
    store.record_consent("arc-club", "Ann_Veneman", basis=ConsentBasis.CONSENT, actor=ACTOR)
    with pytest.raises(ModelError, match="sha256"):
        enroll(store, "arc-club", str(lfw("Ann_Veneman", 3)), person_id="Ann_Veneman", actor=ACTOR)
    assert store.get_collection("arc-club").face_count == 0


def _pg_enrol(store, collection: str, vectors: np.ndarray, model: str | None = None) -> None:
    """Faces of `vectors` (five a person, p0, p1, ...) without photos: enough faces for the graph."""
    from regard.face import QualityLevel
    from regard.store import NewFace

    for p in range(0, len(vectors), 5):
        store.add_person(collection, f"p{p // 5}", actor=ACTOR)
        store.record_consent(collection, f"p{p // 5}", basis=ConsentBasis.CONSENT, actor=ACTOR)
        faces = [
            NewFace(embedding=v, box=(0, 0, 10, 10), quality_score=80.0, quality_level=QualityLevel.HIGH)
            for v in vectors[p : p + 5]
        ]
        store.add_faces(collection, f"p{p // 5}", faces, actor=ACTOR, model=model)


def _pg_search_explained(store, monkeypatch, collection: str, query: np.ndarray, model: str | None = None):
    """A search through the graph (the planner left no other ordered path), and EXPLAIN of the
    nearest-neighbour statement the backend ran for it."""
    import psycopg

    for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
        store._conn.execute(f"SET {setting} = off")
    ran: list[tuple[str, object]] = []
    execute = psycopg.Cursor.execute

    def recorded(self, statement, params=None, **kwargs):
        ran.append((statement, params))
        return execute(self, statement, params, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(psycopg.Cursor, "execute", recorded)
        found = store.search(collection, [SearchQuery(query)], actor=ACTOR, purpose=PURPOSE, k=10, threshold=0, model=model)[0]
    [(statement, params)] = [(s, p) for s, p in ran if isinstance(s, str) and "WITH hits AS" in s]
    plan = "\n".join(r["QUERY PLAN"] for r in store._conn.execute("EXPLAIN " + statement, params))
    return found, plan


def test_postgres_a_512_d_collection_is_searched_through_its_own_index(
    postgres_url: str, models, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first enrolment of a width creates its HNSW index; a search of a collection of that width
    walks it (not the 128-d one), scores exactly, and a query of another model is refused with
    ModelError even when the store sent its queries ahead of the collection's row."""
    import psycopg

    from regard.match import score_of_distance, unit
    from regard.store import postgres
    from regard.store.postgres import search as pgsearch

    monkeypatch.setattr(pgsearch, "EXACT_BELOW", 100)
    rng = np.random.default_rng(21)
    store = postgres.PostgresStore(postgres_url)
    store.create_collection("arc-club", purpose=PURPOSE, actor=ACTOR, model="arc")
    store.create_collection("builtin", purpose=PURPOSE, actor=ACTOR)
    wide = rng.normal(0, 1, (150, 512)).astype(np.float32)
    _pg_enrol(store, "arc-club", wide, model=models["arc"])
    _pg_enrol(store, "builtin", rng.normal(0, 1, (150, 128)).astype(np.float32))
    indexes = lambda: {r["indexname"] for r in store._conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'faces' AND indexname LIKE 'faces_embedding_hnsw%%'")}  # noqa: E731
    assert indexes() == {"faces_embedding_hnsw", "faces_embedding_hnsw_512"}
    query = wide[17] + rng.normal(0, 0.05, 512).astype(np.float32)
    found, plan = _pg_search_explained(store, monkeypatch, "arc-club", query, model=models["arc"])
    assert "Index Scan using faces_embedding_hnsw_512 on faces" in plan, plan
    assert "faces_embedding_hnsw on" not in plan
    assert found[0].person_id == "p3"  # row 17: the fourth person's third face
    exact = np.sort(np.linalg.norm(unit(wide) - unit(query), axis=1))[:10]
    scale = store.recognizer(models["arc"]).distance_at_zero
    assert np.allclose([c.score for c in found], [score_of_distance(d, scale) for d in exact], atol=1e-2)
    assert store._plans["arc-club"] == postgres.SearchPlan(exact=False, depth=pgsearch.EF_SEARCH * 2)
    # Sent ahead with the plan of the last search: another model's queries, of either width, find
    # nothing of this collection's and are refused before anything is logged.
    entries = len(store.audit_entries(collection="arc-club"))
    operator.set_calibration("raw", calibrate(rng.normal(80, 5, 300).clip(0, 100), rng.normal(20, 10, 3000).clip(0, 100), "synthetic"))
    with pytest.raises(ModelError, match="cannot be compared"):
        store.search("arc-club", [SearchQuery(query)], actor=ACTOR, purpose=PURPOSE, model=models["raw"])
    with pytest.raises(ModelError, match="cannot be compared"):
        store.search("arc-club", [SearchQuery(wide[0, :128])], actor=ACTOR, purpose=PURPOSE)
    assert len(store.audit_entries(collection="arc-club")) == entries
    # The upkeep of the indexes covers every width.
    store.drop_vector_index()
    assert indexes() == set()
    store.build_vector_index()
    assert indexes() == {"faces_embedding_hnsw", "faces_embedding_hnsw_512"}
    _, plan = _pg_search_explained(store, monkeypatch, "builtin", rng.normal(0, 1, 128).astype(np.float32))
    assert "Index Scan using faces_embedding_hnsw on faces" in plan, plan
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM faces WHERE vector_dims(embedding) = 512").fetchone()[0] == 150
    store.close()


def test_postgres_a_store_migrated_from_0003_keeps_searching_its_128_d_faces(
    postgres_url: str, models, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0004 on a database as 0003 left it (a vector(128) column, the unrestricted halfvec
    index): the rows stay where they are (no table rewrite), the 128-d index is rebuilt for 128-d
    vectors only, the old faces are found as before, and a 512-d collection can join them."""
    import psycopg

    from regard.store import postgres
    from regard.store.postgres import search as pgsearch

    monkeypatch.setattr(pgsearch, "EXACT_BELOW", 100)
    rng = np.random.default_rng(22)
    store = postgres.PostgresStore(postgres_url)
    store.create_collection("old", purpose=PURPOSE, actor=ACTOR)
    old = rng.normal(0, 1, (150, 128)).astype(np.float32)
    _pg_enrol(store, "old", old)
    store.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # back to what 0003 left
        conn.execute("DROP INDEX faces_embedding_hnsw")
        conn.execute("ALTER TABLE faces ALTER COLUMN embedding TYPE vector(128)")
        conn.execute(
            "CREATE INDEX faces_embedding_hnsw ON faces USING hnsw ((embedding::halfvec(128)) halfvec_l2_ops) "
            "WITH (m = 24, ef_construction = 200)"
        )
        conn.execute("DELETE FROM regard_schema_version WHERE version > 3")
        column = "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'faces'::regclass AND attname = 'embedding'"
        assert conn.execute(column).fetchone()[0] == "vector(128)"
        filenode = conn.execute("SELECT pg_relation_filenode('faces')").fetchone()[0]
    upgraded = postgres.PostgresStore(postgres_url)
    assert upgraded.schema_version == 4
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute(column).fetchone()[0] == "vector"
        assert conn.execute("SELECT pg_relation_filenode('faces')").fetchone()[0] == filenode  # not rewritten
        definition = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'faces_embedding_hnsw'").fetchone()[0]
    assert "vector_dims(embedding) = 128" in definition and "halfvec_l2_ops" in definition
    assert upgraded.get_collection("old").face_count == 150
    found, plan = _pg_search_explained(upgraded, monkeypatch, "old", old[42] + rng.normal(0, 0.05, 128).astype(np.float32))
    assert "Index Scan using faces_embedding_hnsw on faces" in plan, plan
    assert found[0].person_id == "p8" and len(found) == 10
    upgraded.create_collection("arc-club", purpose=PURPOSE, actor=ACTOR, model="arc")
    wide = rng.normal(0, 1, (10, 512)).astype(np.float32)
    _pg_enrol(upgraded, "arc-club", wide, model=models["arc"])
    hits = upgraded.search("arc-club", [SearchQuery(wide[7])], actor=ACTOR, purpose=PURPOSE, threshold=0, model=models["arc"])[0]
    assert hits[0].person_id == "p1" and hits[0].score == pytest.approx(100.0, abs=0.01)  # exact: a small collection
    again = upgraded.search("old", [SearchQuery(old[3])], actor=ACTOR, purpose=PURPOSE, threshold=0)[0]
    assert again[0].person_id == "p0" and again[0].score == pytest.approx(100.0, abs=0.01)
    assert upgraded.verify_audit().ok
    upgraded.close()
