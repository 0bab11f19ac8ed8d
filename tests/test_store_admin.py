"""Store: collection thresholds and API key records on both backends; schema upgrades of each."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from regard.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from regard.store import ApiKey, Role, Store, open_store
from regard.store.sqlite import SCHEMA_VERSION, SQLiteStore


@pytest.fixture()
def store(store_url: str) -> Store:
    s = open_store(store_url)
    s.create_collection("staff", purpose="door access", actor="alice")
    yield s
    s.close()


def test_threshold_set_overrides_the_size_rule_and_is_audited(store: Store) -> None:
    by_size = store.search_threshold("staff")
    collection = store.set_threshold("staff", 70.5, actor="alice", reason="audit of 2026-11", source={"target_fmr": 1e-5})
    assert collection.threshold == 70.5 and collection.threshold_source == {"target_fmr": 1e-5}
    assert store.search_threshold("staff") == 70.5
    entry = store.audit_entries(action="collection_update")[-1]
    assert entry.details["threshold"] == 70.5 and entry.details["previous_threshold"] is None
    cleared = store.set_threshold("staff", None, actor="alice", reason="back to the default")
    assert cleared.threshold is None and store.search_threshold("staff") == by_size
    with pytest.raises(InvalidArgumentError):
        store.set_threshold("staff", 101, actor="alice", reason="x")
    with pytest.raises(NotFoundError):
        store.set_threshold("nope", 60, actor="alice", reason="x")
    assert store.verify_audit().ok


def _key(key_id: str = "RGKTEST1") -> ApiKey:
    return ApiKey(
        key_id=key_id,
        name="front desk",
        secret_hash="ab" * 32,
        roles=(Role.ENROLL, Role.SEARCH),
        collections=("staff",),
        default_purpose="door access",
        rate_per_minute=600,
        created_at=datetime.now(timezone.utc),
        created_by="alice",
    )


def test_api_keys_round_trip_and_revoke(store: Store) -> None:
    created = store.create_api_key(_key(), actor="alice")
    assert created.roles == (Role.ENROLL, Role.SEARCH) and created.collections == ("staff",) and created.active
    with pytest.raises(AlreadyExistsError):
        store.create_api_key(_key(), actor="alice")
    assert [k.key_id for k in store.list_api_keys()] == ["RGKTEST1"]
    revoked = store.revoke_api_key("RGKTEST1", actor="bob", reason="laptop lost")
    assert not revoked.active and revoked.revoked_by == "bob"
    assert not store.get_api_key("RGKTEST1").active
    with pytest.raises(NotFoundError):
        store.get_api_key("RGKNONE")
    actions = [e.action.value for e in store.audit_entries()]
    assert actions[-2:] == ["key_create", "key_revoke"]
    assert "secret_hash" not in store.audit_entries(action="key_create")[0].details


def test_a_first_schema_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    store.create_collection("c", purpose="p", actor="a")
    store.close()
    # Make the file look like the first release: no threshold columns, no key table, version 0.
    conn = sqlite3.connect(path)
    conn.executescript(
        "ALTER TABLE collections DROP COLUMN threshold; ALTER TABLE collections DROP COLUMN threshold_source;"
        "DROP TABLE api_keys; PRAGMA user_version = 0;"
    )
    conn.close()
    upgraded = SQLiteStore(path)
    assert upgraded.get_collection("c").threshold is None
    upgraded.set_threshold("c", 66.0, actor="a", reason="r")
    upgraded.create_api_key(_key(), actor="a")
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert upgraded.verify_audit().ok
    upgraded.close()


def test_postgres_schema_is_versioned_and_applied_once(postgres_url: str) -> None:
    import psycopg

    from regard.store.postgres import PostgresStore, migrations

    first = PostgresStore(postgres_url)
    latest = migrations()[-1][0]
    assert first.schema_version == latest
    first.create_collection("c", purpose="p", actor="a")
    # A second process opening the same database applies nothing again and keeps the data.
    second = PostgresStore(postgres_url)
    assert second.schema_version == latest and second.get_collection("c").purpose == "p"
    with psycopg.connect(postgres_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM regard_schema_version ORDER BY version")]
        index = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'faces_embedding_hnsw'").fetchone()
    assert versions == [v for v, _, _ in migrations()]
    assert index is not None and "hnsw" in index[0] and "halfvec_l2_ops" in index[0]
    assert second.verify_audit().ok
    first.close()
    second.close()


def test_postgres_store_reconnects_after_the_server_drops_it(postgres_url: str) -> None:
    import psycopg

    from regard.store.postgres import PostgresStore

    store = PostgresStore(postgres_url)
    store.create_collection("c", purpose="p", actor="a")
    pid = store._conn.info.backend_pid  # noqa: SLF001 - the connection a restart would cut
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        store.get_collection("c")  # the call in flight fails...
    assert store.get_collection("c").purpose == "p"  # ...and the next one reconnects
    store.add_person("c", "x", actor="a")
    assert store.verify_audit().ok
    store.close()


def test_search_depth_grows_with_a_shrinking_share_of_the_table() -> None:
    from regard.store.postgres import EF_SEARCH, EF_SEARCH_MAX, search_depth

    assert search_depth(1_000_000, 1_000_000) == (EF_SEARCH, False)
    assert search_depth(500_000, 1_000_000) == (min(2 * EF_SEARCH, EF_SEARCH_MAX), False)
    deep, iterative = search_depth(1_000, 1_000_000)  # too small a share for any depth
    assert deep == EF_SEARCH_MAX and iterative
    assert search_depth(10, 0) == (EF_SEARCH, False)  # counts not yet updated: never divide by zero
    assert search_depth(500_000, 1_000_000, 100) == (200, False)  # a store's own depth


def test_postgres_search_depth_is_a_session_setting_a_store_can_change(postgres_url: str) -> None:
    import psycopg

    from regard.store.postgres import EF_SEARCH, EF_SEARCH_MAX, PostgresStore

    store = PostgresStore(postgres_url)
    show = lambda: store._conn.execute("SHOW hnsw.ef_search").fetchone()["hnsw.ef_search"]  # noqa: E731
    assert store.ef_search == EF_SEARCH and show() == str(EF_SEARCH)
    store.ef_search = 120
    assert store.ef_search == 120 and show() == "120"
    with pytest.raises(NotFoundError):  # a failed search transaction rolls back...
        store.search("nowhere", [], actor="t", purpose="test")
    assert show() == "120"  # ...and leaves the session's depth as it was
    for bad in (0, EF_SEARCH_MAX + 1, 2.5, "300", True):
        with pytest.raises(InvalidArgumentError):
            store.ef_search = bad  # type: ignore[assignment]
    assert store.ef_search == 120
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # a reconnect keeps the store's depth
        admin.execute("SELECT pg_terminate_backend(%s)", (store._conn.info.backend_pid,))
    with pytest.raises(psycopg.OperationalError):
        store.list_collections()
    store.list_collections()
    assert show() == "120"
    store.close()


def test_postgres_large_collections_are_searched_through_the_halfvec_index(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above EXACT_BELOW faces the planner walks the HNSW graph of half-precision copies; the
    candidates come back scored with the exact vectors, nearest first, from this collection only."""
    import numpy as np

    from regard.face import QualityLevel
    from regard.match import score_from_distance, unit
    from regard.store import ConsentBasis, NewFace, SearchQuery, postgres
    from regard.store.postgres import search as pgsearch

    monkeypatch.setattr(pgsearch, "EXACT_BELOW", 100)
    rng = np.random.default_rng(7)
    store = postgres.PostgresStore(postgres_url)
    vectors = {}
    for collection, people in (("big", 60), ("other", 20)):
        store.create_collection(collection, purpose="test", actor="t")
        vectors[collection] = rng.normal(0, 0.15, (people * 5, 128)).astype(np.float32)
        for p in range(people):
            person = f"p{p}"
            store.add_person(collection, person, actor="t")
            store.record_consent(collection, person, basis=ConsentBasis.CONSENT, actor="t")
            faces = [
                NewFace(embedding=v, box=(0, 0, 10, 10), quality_score=80.0, quality_level=QualityLevel.HIGH)
                for v in vectors[collection][p * 5 : p * 5 + 5]
            ]
            store.add_faces(collection, person, faces, actor="t")
    # A table this small would be sorted in full: make the graph the planner's only ordered path.
    for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
        store._conn.execute(f"SET {setting} = off")
    query = vectors["big"][17] + rng.normal(0, 0.01, 128).astype(np.float32)
    found = store.search("big", [SearchQuery(query)], actor="t", purpose="test", k=10, threshold=0)[0]
    exact = np.sort(np.linalg.norm(unit(vectors["big"]) - unit(query), axis=1))[:10]  # stored at length 1
    assert [c.person_id for c in found][0] == "p3"  # row 17 is the third person's third face
    assert np.allclose([c.score for c in found], score_from_distance(exact), atol=1e-3)  # exact scores, in order
    assert len({c.face_id for c in found}) == 10
    plan = "\n".join(
        r["QUERY PLAN"]
        for r in store._conn.execute(
            f"EXPLAIN SELECT row FROM faces WHERE collection_id = 'big' "
            f"ORDER BY {postgres.INDEXED} <-> %s::halfvec(128) LIMIT 10",
            (query,),
        )
    )
    assert postgres.HNSW_INDEX in plan
    store.close()


def test_search_plans_serve_only_searches_they_cover() -> None:
    from regard.store.postgres import SearchPlan

    exact, graph = SearchPlan(exact=True), SearchPlan(exact=False, depth=400)
    assert exact.covers(graph) and exact.covers(exact)  # exact finds the true nearest, whatever the size
    assert not graph.covers(exact)  # a collection that shrank below EXACT_BELOW is searched again
    assert graph.covers(SearchPlan(exact=False, depth=420))  # 5 % short: the share moved a little
    assert not graph.covers(SearchPlan(exact=False, depth=450))
    assert not graph.covers(SearchPlan(exact=False, depth=400, iterative=True))
    assert SearchPlan(exact=False, depth=1000, iterative=True).covers(graph)


def test_postgres_search_sent_ahead_on_a_stale_plan_is_sent_again(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store sends a collection's queries along with the lookup of its row, planned from the
    sizes it saw at its last search there. When another process has changed those sizes so much
    that the old plan falls short, the row says so and the queries go again with the right plan."""
    import numpy as np

    from regard.face import QualityLevel
    from regard.match import score_from_distance, unit
    from regard.store import ConsentBasis, NewFace, SearchQuery, postgres
    from regard.store.postgres import search as pgsearch

    monkeypatch.setattr(pgsearch, "EXACT_BELOW", 100)
    rng = np.random.default_rng(11)

    def enroll(store: postgres.PostgresStore, collection: str, count: int) -> np.ndarray:
        store.create_collection(collection, purpose="test", actor="t")
        vectors = rng.normal(0, 0.15, (count, 128)).astype(np.float32)
        for p in range(0, count, 50):
            store.add_person(collection, f"p{p}", actor="t")
            store.record_consent(collection, f"p{p}", basis=ConsentBasis.CONSENT, actor="t")
            faces = [
                NewFace(embedding=v, box=(0, 0, 10, 10), quality_score=80.0, quality_level=QualityLevel.HIGH)
                for v in vectors[p : p + 50]
            ]
            store.add_faces(collection, f"p{p}", faces, actor="t")
        return vectors

    searcher, other = postgres.PostgresStore(postgres_url), postgres.PostgresStore(postgres_url)
    small = enroll(searcher, "small", 150)
    for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):  # the graph, as at scale
        searcher._conn.execute(f"SET {setting} = off")
    searcher.ef_search = 20  # alone in the table: 20 candidates, all of this collection
    query = small[3] + rng.normal(0, 0.01, 128).astype(np.float32)
    search = lambda: searcher.search("small", [SearchQuery(query)], actor="t", purpose="test", k=10, threshold=0)[0]  # noqa: E731
    assert len(search()) == 10
    assert searcher._plans["small"] == postgres.SearchPlan(exact=False, depth=20)
    enroll(other, "big", 1350)  # now a tenth of the table: depth 20 finds about 2 of its faces
    found = search()
    assert searcher._plans["small"] == postgres.SearchPlan(exact=False, depth=200)
    exact = np.sort(np.linalg.norm(unit(small) - unit(query), axis=1))[:10]  # stored at length 1
    assert len(found) == 10 and np.allclose([c.score for c in found], score_from_distance(exact), atol=1e-3)
    # Sent ahead with the old plan, the depth-20 search would have come back short: it is the resend that found them.
    stale = searcher._conn.execute(
        f"SELECT row FROM faces WHERE collection_id = 'small' ORDER BY {postgres.INDEXED} <-> %s::halfvec(128) LIMIT 10",
        (query,),
    ).fetchall()
    assert len(stale) < 10
    searcher.close()
    other.close()


def test_postgres_first_schema_is_upgraded_to_the_halfvec_index(postgres_url: str) -> None:
    """A database made by the first release (full-precision HNSW index, schema version 1) gets the
    half-precision index when a newer Regard opens it, and keeps its faces and audit chain."""
    import numpy as np
    import psycopg

    from regard.face import QualityLevel
    from regard.store import ConsentBasis, NewFace, SearchQuery
    from regard.store.postgres import HNSW_INDEX, PostgresStore

    store = PostgresStore(postgres_url)
    store.create_collection("c", purpose="p", actor="a")
    store.add_person("c", "ann", actor="a")
    store.record_consent("c", "ann", basis=ConsentBasis.CONSENT, actor="a")
    vector = np.random.default_rng(3).normal(0, 0.15, 128).astype(np.float32)
    face = NewFace(embedding=vector, box=(0, 0, 10, 10), quality_score=80.0, quality_level=QualityLevel.HIGH)
    store.add_faces("c", "ann", [face], actor="a")
    store.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # back to what version 1 left
        conn.execute(f"DROP INDEX {HNSW_INDEX}")
        conn.execute("ALTER TABLE faces ALTER COLUMN embedding TYPE vector(128)")  # version 1's column
        conn.execute(f"CREATE INDEX {HNSW_INDEX} ON faces USING hnsw (embedding vector_l2_ops) WITH (m = 24)")
        conn.execute("DELETE FROM regard_schema_version WHERE version > 1")
    upgraded = PostgresStore(postgres_url)
    assert upgraded.schema_version >= 2
    with psycopg.connect(postgres_url) as conn:
        definition = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (HNSW_INDEX,)).fetchone()[0]
    assert "halfvec_l2_ops" in definition and "ef_construction='200'" in definition.replace(" ", "")
    found = upgraded.search("c", [SearchQuery(vector)], actor="a", purpose="p", threshold=0)[0]
    assert [c.person_id for c in found] == ["ann"] and found[0].score > 99
    assert upgraded.verify_audit().ok
    upgraded.close()


def test_postgres_faces_enrolled_before_0_2_are_scaled_to_length_1_and_old_thresholds_cleared(postgres_url: str) -> None:
    """Migration 0003: the stored vectors of faces enrolled unscaled are scaled to length 1, so the
    index orders them as the angle-based score does; a threshold set on the old score scale is
    cleared (the calibrated default applies) and where it came from is kept."""
    import numpy as np
    import psycopg

    from regard.face import QualityLevel
    from regard.store import ConsentBasis, NewFace, SearchQuery
    from regard.store.postgres import PostgresStore

    store = PostgresStore(postgres_url)
    store.create_collection("c", purpose="p", actor="a")
    store.add_person("c", "ann", actor="a")
    store.record_consent("c", "ann", basis=ConsentBasis.CONSENT, actor="a")
    vector = np.random.default_rng(5).normal(0, 0.15, 128).astype(np.float32)
    face = NewFace(embedding=vector, box=(0, 0, 10, 10), quality_score=80.0, quality_level=QualityLevel.HIGH)
    [record] = store.add_faces("c", "ann", [face], actor="a")
    assert np.linalg.norm(store.face_vector("c", record.face_id)) == pytest.approx(1.0, abs=1e-5)
    store.set_threshold("c", 66.6, actor="a", reason="audit", source={"target_fmr": 1e-4})
    store.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # as Regard 0.1 left it
        conn.execute("UPDATE faces SET embedding = %s::vector", (str((vector * 1.43).tolist()),))
        conn.execute("DELETE FROM regard_schema_version WHERE version > 2")
    upgraded = PostgresStore(postgres_url)
    stored = upgraded.face_vector("c", record.face_id)
    assert np.allclose(stored, vector / np.linalg.norm(vector), atol=1e-5)
    collection = upgraded.get_collection("c")
    assert collection.threshold is None
    assert collection.threshold_source["previous_threshold"] == 66.6
    assert collection.threshold_source["previous_source"] == {"target_fmr": 1e-4}
    found = upgraded.search("c", [SearchQuery(vector * 3)], actor="a", purpose="p", threshold=0)[0]
    assert found[0].score == pytest.approx(100.0, abs=1e-3)
    upgraded.close()


def test_sqlite_thresholds_on_the_old_score_scale_are_cleared_and_old_vectors_searched_by_angle(tmp_path) -> None:
    import sqlite3

    import numpy as np

    from regard.face import QualityLevel
    from regard.store import ConsentBasis, NewFace, SearchQuery, open_store

    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = open_store(url)
    store.create_collection("c", purpose="p", actor="a")
    store.add_person("c", "ann", actor="a")
    store.record_consent("c", "ann", basis=ConsentBasis.CONSENT, actor="a")
    rng = np.random.default_rng(6)
    near, far = rng.normal(0, 0.15, 128).astype(np.float32), rng.normal(0, 0.15, 128).astype(np.float32)
    for v in (near, far):
        face = NewFace(embedding=v, box=(0, 0, 10, 10), quality_score=80.0, quality_level=QualityLevel.HIGH)
        store.add_faces("c", "ann", [face], actor="a")
    store.set_threshold("c", 66.6, actor="a", reason="audit")
    store.close()
    with sqlite3.connect(tmp_path / "old.db") as conn:  # as Regard 0.1 left it: unscaled vectors, version 2
        rows = conn.execute("SELECT row FROM faces ORDER BY row").fetchall()
        # the near face stored long, the far one short: raw Euclidean distance would rank far first
        conn.execute("UPDATE faces SET embedding = ? WHERE row = ?", ((near * 3).tobytes(), rows[0][0]))
        conn.execute("UPDATE faces SET embedding = ? WHERE row = ?", ((far * 0.01).tobytes(), rows[1][0]))
        conn.execute("PRAGMA user_version = 2")
    upgraded = open_store(url)
    assert upgraded.get_collection("c").threshold is None
    assert upgraded.get_collection("c").threshold_source["previous_threshold"] == 66.6
    found = upgraded.search("c", [SearchQuery(near)], actor="a", purpose="p", threshold=0)[0]
    assert found[0].score == pytest.approx(100.0, abs=1e-3) and found[0].score > found[1].score
    upgraded.close()


def test_postgres_adding_many_faces_updates_the_collection_row_once_per_statement(postgres_url: str) -> None:
    """The face count is kept by a statement-level trigger: faces go in as one INSERT per chunk,
    so the collections table does not grow a dead row version per face (which every search that
    reads the collection would then step over)."""
    import numpy as np
    import psycopg

    from regard.face import QualityLevel
    from regard.store import ConsentBasis, NewFace
    from regard.store.postgres import PostgresStore

    store = PostgresStore(postgres_url)
    store.create_collection("c", purpose="p", actor="a")
    store.add_person("c", "ann", actor="a")
    store.record_consent("c", "ann", basis=ConsentBasis.CONSENT, actor="a")
    vectors = np.random.default_rng(5).normal(0, 0.15, (3000, 128)).astype(np.float32)
    faces = [NewFace(embedding=v, box=(0, 0, 10, 10), quality_score=80.0, quality_level=QualityLevel.HIGH) for v in vectors]
    records = store.add_faces("c", "ann", faces, actor="a")
    assert len(records) == 3000 and store.get_collection("c").face_count == 3000
    with psycopg.connect(postgres_url) as conn:
        size = conn.execute("SELECT pg_relation_size('collections')").fetchone()[0]
    assert size <= 2 * 8192, f"collections grew to {size} bytes: a row version per face?"
    store.close()
