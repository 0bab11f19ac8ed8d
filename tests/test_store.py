"""Collections, consent, enrollment, search, erasure and retention, on both backends: a real SQLite
file and a real PostgreSQL database (tests/conftest.py starts the server)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

import regard
from regard.errors import (
    AlreadyExistsError,
    ConsentError,
    InvalidArgumentError,
    NotFoundError,
)
from regard.gallery import Reason, enroll, search_face, search_photo
from regard.store import ConsentBasis, open_store
from tests.conftest import FIXTURES, lfw

ACTOR = "test-operator"


@pytest.fixture()
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def _person_with_consent(store, collection: str, person: str, **consent) -> None:
    store.add_person(collection, person, actor=ACTOR)
    store.record_consent(collection, person, basis=ConsentBasis.CONSENT, actor=ACTOR, **consent)


def test_collection_lifecycle_and_bad_ids(store):
    c = store.create_collection("staff.badges-2026", purpose="door access for staff", actor=ACTOR)
    assert c.purpose == "door access for staff" and c.face_count == 0 and c.model.startswith("dlib-resnet")
    assert [x.id for x in store.list_collections()] == ["staff.badges-2026"]
    with pytest.raises(AlreadyExistsError):
        store.create_collection("staff.badges-2026", purpose="again", actor=ACTOR)
    for bad in ("", "has space", "x" * 256, "semi;colon", "slash/no"):
        with pytest.raises(InvalidArgumentError):
            store.create_collection(bad, purpose="p", actor=ACTOR)
    with pytest.raises(InvalidArgumentError, match="purpose"):
        store.create_collection("nopurpose", purpose="  ", actor=ACTOR)
    with pytest.raises(NotFoundError):
        store.get_collection("missing")
    assert store.delete_collection("staff.badges-2026", actor=ACTOR, reason="project ended") == 0
    assert store.list_collections() == []


def test_enrolling_needs_consent_and_stores_nothing_without_it(store):
    store.create_collection("club", purpose="members' entry", actor=ACTOR)
    store.add_person("club", "amber", actor=ACTOR)
    with pytest.raises(ConsentError, match="consent"):
        enroll(store, "club", lfw("Amber_Tamblyn", 1), person_id="amber", actor=ACTOR)
    assert store.list_faces("club") == []
    with pytest.raises(NotFoundError):
        enroll(store, "club", lfw("Amber_Tamblyn", 1), person_id="nobody", actor=ACTOR)
    with pytest.raises(NotFoundError):
        enroll(store, "no-such-collection", lfw("Amber_Tamblyn", 1), person_id="amber", actor=ACTOR)
    store.record_consent("club", "amber", basis=ConsentBasis.CONSENT, actor=ACTOR, reference="form-17")
    result = enroll(store, "club", lfw("Amber_Tamblyn", 1), person_id="amber", actor=ACTOR)
    assert len(result.enrolled) == 1 and result.enrolled[0].person_id == "amber"
    # The same photo again is skipped (resume after interruption), not enrolled twice.
    again = enroll(store, "club", lfw("Amber_Tamblyn", 1), person_id="amber", actor=ACTOR)
    assert again.skipped and len(store.list_faces("club")) == 1


def test_expired_consent_refuses_enrollment(store):
    store.create_collection("club", purpose="members' entry", actor=ACTOR)
    with pytest.raises(InvalidArgumentError):
        _person_with_consent(store, "club", "amber", expires_at=datetime.now(timezone.utc) - timedelta(days=1))
    store.record_consent(
        "club", "amber", basis=ConsentBasis.CONTRACT, actor=ACTOR, expires_at=datetime.now(timezone.utc) + timedelta(seconds=1)
    )
    import time

    time.sleep(1.1)
    with pytest.raises(ConsentError, match="expired"):
        enroll(store, "club", lfw("Amber_Tamblyn", 1), person_id="amber", actor=ACTOR)


def test_group_photo_faces_below_the_gate_are_reported_with_reasons(store):
    store.create_collection("gate", purpose="quality gate test", actor=ACTOR)
    _person_with_consent(store, "gate", "someone")
    result = enroll(store, "gate", FIXTURES / "2008_002470.jpg", person_id="someone", actor=ACTOR)
    assert result.enrolled == []  # six small faces, all rated LOW
    assert len(result.not_enrolled) == 6
    assert all(n.reasons for n in result.not_enrolled)
    assert any(Reason.TOO_SMALL in n.reasons for n in result.not_enrolled)
    no_face = enroll(store, "gate", FIXTURES / "dogs.jpg", person_id="someone", actor=ACTOR)
    assert no_face.enrolled == [] and no_face.not_enrolled == []
    assert store.list_faces("gate") == []


def _gallery(store):
    store.create_collection("demo", purpose="finding consenting volunteers in event photos", actor=ACTOR)
    for name, person in [("Amber_Tamblyn", "amber"), ("Akhmed_Zakayev", "akhmed"), ("Abel_Pacheco", "abel")]:
        _person_with_consent(store, "demo", person)
        enroll(store, "demo", lfw(name, 1), person_id=person, actor=ACTOR)


def test_search_finds_the_enrolled_person_and_writes_the_audit_log(store):
    _gallery(store)
    hits = search_photo(store, "demo", lfw("Akhmed_Zakayev", 3), actor="analyst", purpose="case 42: identify volunteer")
    assert len(hits) == 1
    top = hits[0].candidates[0]
    assert top.person_id == "akhmed" and 0 < top.fmr < 1e-2
    assert all(c.score >= store.search_threshold("demo") for c in hits[0].candidates)
    # Someone not enrolled: no candidate.
    nobody = search_photo(store, "demo", lfw("Alanis_Morissette", 1), actor="analyst", purpose="case 43")
    assert nobody[0].candidates == []
    searches = store.audit_entries(action="search")
    assert [e.actor for e in searches] == ["analyst", "analyst"]
    assert searches[0].purpose == "case 42: identify volunteer"
    assert searches[0].details["results"][0][0]["person_id"] == "akhmed"
    with pytest.raises(InvalidArgumentError, match="purpose"):
        search_photo(store, "demo", lfw("Akhmed_Zakayev", 3), actor="analyst", purpose="")
    assert store.verify_audit().ok


def test_search_by_face_id_leaves_the_face_itself_out(store):
    _gallery(store)
    _person_with_consent(store, "demo", "amber2")
    face = enroll(store, "demo", lfw("Amber_Tamblyn", 2), person_id="amber2", actor=ACTOR).enrolled[0]
    found = search_face(store, "demo", face.face_id, actor="analyst", purpose="de-duplicate enrollments")
    assert face.face_id not in [c.face_id for c in found]
    assert [c.person_id for c in found][:1] == ["amber"]


def test_threshold_grows_with_the_collection(store):
    _gallery(store)
    from regard.match import default_table, search_threshold

    assert store.search_threshold("demo") == search_threshold(default_table(), 3)
    assert search_threshold(default_table(), 100_000) > store.search_threshold("demo")


def _stored_bytes(store, request) -> bytes:
    """Every byte the backend keeps on disk for the store: SQLite's file and its WAL; PostgreSQL's
    files of the faces table and its indexes, after a checkpoint has written them out."""
    if store.__class__.__name__ == "SQLiteStore":
        db = store.path
        wal = db.with_name(db.name + "-wal")
        return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    server = request.getfixturevalue("postgres_server")
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        paths = conn.execute(
            "SELECT pg_relation_filepath(c.oid) FROM pg_class c WHERE c.oid = 'faces'::regclass "
            "OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'faces'::regclass)"
        ).fetchall()
    data = b""
    for (relative,) in paths:
        for part in sorted((server.data / relative).parent.glob(Path(relative).name + "*")):
            data += part.read_bytes()
    return data


def test_forget_leaves_no_vector_bytes_in_the_file(store, request):
    _gallery(store)
    face = store.list_faces("demo", "amber")[0]
    vector = store.face_vector("demo", face.face_id)
    needle = vector.astype(np.float32).tobytes()
    assert needle in _stored_bytes(store, request) or needle[:64] in _stored_bytes(store, request)
    # PostgreSQL's HNSW index holds a half-precision copy of the vector: that must go too.
    half = vector.astype(np.float16).tobytes()
    postgres = store.__class__.__name__ == "PostgresStore"
    if postgres:
        assert half[:64] in _stored_bytes(store, request)
    erased = store.forget_person("demo", "amber", actor="dpo", reason="erasure request #7")
    assert erased == 1
    if postgres:  # dead rows stay in the pages until VACUUM rewrites them (SQLite zeroed them already)
        store.purge_erased(full=True)
    contents = _stored_bytes(store, request)
    assert needle not in contents
    # Not even a 64-byte run of the vector (16 of its 128 numbers) survives anywhere.
    for start in range(0, len(needle) - 64, 64):
        assert needle[start : start + 64] not in contents
    for start in range(0, len(half) - 64, 64) if postgres else []:
        assert half[start : start + 64] not in contents
    with pytest.raises(NotFoundError):
        store.get_person("demo", "amber")
    hits = search_photo(store, "demo", lfw("Amber_Tamblyn", 2), actor="analyst", purpose="after erasure")
    assert all(c.person_id != "amber" for c in hits[0].candidates)
    forget_entry = store.audit_entries(action="forget")[0]
    assert forget_entry.actor == "dpo" and forget_entry.details["reason"] == "erasure request #7"
    assert store.verify_audit().ok


def test_revoking_consent_erases_the_faces(store):
    _gallery(store)
    assert store.revoke_consent("demo", "abel", actor="dpo", reason="withdrawn by email") == 1
    assert store.list_faces("demo", "abel") == []
    assert store.get_person("demo", "abel").consent is None
    with pytest.raises(ConsentError):
        enroll(store, "demo", lfw("Abel_Pacheco", 4), person_id="abel", actor=ACTOR)


def test_delete_one_face(store):
    _gallery(store)
    face = store.list_faces("demo", "abel")[0]
    store.delete_face("demo", face.face_id, actor="dpo", reason="wrong photo")
    with pytest.raises(NotFoundError):
        store.get_face("demo", face.face_id)
    assert store.get_person("demo", "abel").face_count == 0


def test_sweep_erases_expired_consent_and_retention(store):
    store.create_collection("short", purpose="one-day event", actor=ACTOR, retention_days=1)
    _person_with_consent(store, "short", "amber")
    enroll(store, "short", lfw("Amber_Tamblyn", 1), person_id="amber", actor=ACTOR)
    store.create_collection("long", purpose="staff", actor=ACTOR)
    _person_with_consent(store, "long", "akhmed", expires_at=datetime.now(timezone.utc) + timedelta(days=30))
    enroll(store, "long", lfw("Akhmed_Zakayev", 1), person_id="akhmed", actor=ACTOR)
    assert store.sweep(actor="cron").faces_erased == 0
    report = store.sweep(actor="cron", now=datetime.now(timezone.utc) + timedelta(days=31))
    assert report.faces_erased == 2 and report.persons_erased == 1
    assert store.list_faces("short") == [] and store.list_faces("long") == []
    assert store.audit_entries(action="sweep")[0].actor == "cron"


def test_index_follows_changes_made_by_another_connection(store, store_url):
    _gallery(store)
    probe = regard.embed(lfw("Akhmed_Zakayev", 3))
    other = open_store(store_url)
    try:
        from regard.store import SearchQuery

        assert other.search("demo", [SearchQuery(probe)], actor="a", purpose="p")[0][0].person_id == "akhmed"
        store.forget_person("demo", "akhmed", actor="dpo", reason="request")
        after = other.search("demo", [SearchQuery(probe)], actor="a", purpose="p")[0]
        assert all(c.person_id != "akhmed" for c in after)
    finally:
        other.close()


def test_audit_log_catches_tampering_through_the_store(store, store_url):
    _gallery(store)
    search_photo(store, "demo", lfw("Akhmed_Zakayev", 3), actor="analyst", purpose="case 9")
    seq = store.audit_entries(action="search")[0].seq
    # Someone with write access to the database: the append-only triggers are dropped first.
    if store_url.startswith("sqlite"):
        raw = sqlite3.connect(store_url[len("sqlite:///") :])
        raw.execute("DROP TRIGGER audit_log_no_update")
        raw.execute("UPDATE audit_log SET purpose = 'nothing to see' WHERE seq = ?", (seq,))
        raw.commit()
        raw.close()
    else:
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as raw:
            with pytest.raises(psycopg.Error, match="append-only"):
                raw.execute("UPDATE audit_log SET purpose = 'nothing to see' WHERE seq = %s", (seq,))
            raw.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            raw.execute("UPDATE audit_log SET purpose = 'nothing to see' WHERE seq = %s", (seq,))
    report = store.verify_audit()
    assert not report.ok and any(str(seq) in p for p in report.problems)


def test_erasure_with_a_reader_holding_the_file_answers_at_once_and_clears_the_log_after(tmp_path):
    import sqlite3
    import threading
    import time

    from regard.store import open_store

    url = f"sqlite:///{tmp_path / 'regard.db'}"
    store = open_store(url)
    try:
        _gallery(store)
        face = store.list_faces("demo", "amber")[0]
        needle = store.face_vector("demo", face.face_id).astype(np.float32).tobytes()
        reader = sqlite3.connect(tmp_path / "regard.db", isolation_level=None)  # a backup, the sqlite3 shell...
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM faces").fetchone()  # holds a snapshot from before the erasure
        started = time.monotonic()
        assert store.forget_person("demo", "amber", actor="dpo", reason="erasure request") == 1
        assert time.monotonic() - started < 5  # was: as long as the reader, up to the 60 s busy timeout
        assert store.erasure_pending
        # Other requests are not stalled behind it.
        listed: list[int] = []
        other = threading.Thread(target=lambda: listed.append(len(store.list_collections())))
        other.start()
        other.join(timeout=5)
        assert listed == [1]
        reader.execute("COMMIT")
        reader.close()
        deadline = time.monotonic() + 20
        while store.erasure_pending and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not store.erasure_pending  # the background retry truncated the log
        contents = b"".join(p.read_bytes() for p in tmp_path.glob("regard.db*"))
        for start in range(0, len(needle) - 64, 64):
            assert needle[start : start + 64] not in contents
    finally:
        store.close()
