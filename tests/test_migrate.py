"""`regard migrate`: a real SQLite store copied into a real PostgreSQL database, interrupted and resumed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

import regard
from regard.cli import main
from regard.gallery import enroll, search_photo
from regard.store import ApiKey, ConsentBasis, Role, SearchQuery, open_store
from regard.store.migrate import MigrationError, migrate
from tests.conftest import lfw

PEOPLE = [("Amber_Tamblyn", "amber"), ("Akhmed_Zakayev", "akhmed"), ("Abel_Pacheco", "abel"), ("Anthony_Fauci", "tony")]


@pytest.fixture()
def source_url(tmp_path) -> str:
    """A SQLite store with everything a store holds: two collections, consent with and without
    expiry, faces (thumbnails in one collection), a fixed threshold, a key, a search, an erasure."""
    url = f"sqlite:///{tmp_path / 'source.db'}"
    store = open_store(url)
    store.create_collection("staff", purpose="door access", actor="admin", retention_days=365)
    store.create_collection("events", purpose="event photo credits", actor="admin", store_thumbnails=True)
    for collection in ("staff", "events"):
        for name, person in PEOPLE:
            store.add_person(collection, person, actor="admin", display_name=name.replace("_", " "))
            expires = datetime.now(timezone.utc) + timedelta(days=90) if person == "abel" else None
            store.record_consent(collection, person, basis=ConsentBasis.CONSENT, actor="admin", expires_at=expires)
            for index in (1, 2):
                enroll(store, collection, lfw(name, index), person_id=person, actor="admin")
    store.set_threshold("staff", 57.5, actor="admin", reason="audit 2026-11", source={"target_fmr": 1e-4})
    store.create_api_key(
        ApiKey("RGKMIGRATE1", "front desk", "cd" * 32, (Role.SEARCH,), ("staff",), "door access", 60,
               datetime.now(timezone.utc), "admin"),
        actor="admin",
    )  # fmt: skip
    search_photo(store, "staff", lfw("Akhmed_Zakayev", 3), actor="guard", purpose="door 4")
    store.forget_person("events", "tony", actor="dpo", reason="erasure request")
    store.close()
    return url


def test_migration_copies_everything_verifies_and_resumes(source_url, postgres_url):
    source = open_store(source_url)
    source_head = source.verify_audit()

    class Interrupted(Exception):
        pass

    def crash_in_faces(table: str, done: int, total: int) -> None:
        if table == "faces" and done >= 4:
            raise Interrupted  # as a kill between two committed batches would leave it

    with pytest.raises(Interrupted):
        migrate(source_url, postgres_url, batch_size=2, progress=crash_in_faces)
    partial = open_store(postgres_url)
    assert 4 <= partial.get_collection("staff").face_count + partial.get_collection("events").face_count < 14
    assert partial.audit_entries() == []  # the log comes after the faces
    partial.close()

    report = migrate(source_url, postgres_url, batch_size=2)  # the same command again resumes it
    assert report.ok, report.problems
    assert report.counts["faces"] == (14, 14) and report.counts["persons"] == (7, 7)
    assert report.counts["audit_log"][0] == report.counts["audit_log"][1] == source_head.checked
    assert migrate(source_url, postgres_url).ok  # run once more: nothing to copy, still verified
    target = open_store(postgres_url)
    try:
        # The chain verifies on the target and ends at the same hash: an anchor kept from before holds.
        after = target.verify_audit()
        assert after.ok and (after.head_seq, after.head_hash) == (source_head.head_seq, source_head.head_hash)
        assert [e.hash for e in target.audit_entries()] == [e.hash for e in source.audit_entries()]
        for collection in ("staff", "events"):
            assert target.get_collection(collection) == source.get_collection(collection)
            assert target.list_persons(collection) == source.list_persons(collection)
            assert target.list_faces(collection) == source.list_faces(collection)
            for face in source.list_faces(collection):
                assert np.array_equal(target.face_vector(collection, face.face_id), source.face_vector(collection, face.face_id))
        assert target.list_api_keys() == source.list_api_keys()
        assert target.search_threshold("staff") == 57.5
        probe = [SearchQuery(regard.embed(lfw("Abel_Pacheco", 4)))]
        found = target.search("staff", probe, actor="a", purpose="p")[0]
        expected = source.search("staff", probe, actor="a", purpose="p")[0]
        assert [c.face_id for c in found] == [c.face_id for c in expected] and found
        assert [c.score for c in found] == pytest.approx([c.score for c in expected], abs=1e-4)  # float32 sums
        # And it goes on as a working store: the next entry links to the copied head.
        target.sweep(actor="cron", now=datetime.now(timezone.utc) + timedelta(days=100))
        assert target.get_person("staff", "abel").consent is None and target.verify_audit().ok
    finally:
        source.close()
        target.close()
    # Once the target has moved on (its own searches and sweep), it is no longer a copy to resume.
    with pytest.raises(MigrationError, match="not this store's"):
        migrate(source_url, postgres_url)


def test_a_target_holding_another_store_is_refused(source_url, postgres_url):
    other = open_store(postgres_url)
    other.create_collection("staff", purpose="someone else's", actor="x")
    other.close()
    with pytest.raises(MigrationError, match="not this store's"):
        migrate(source_url, postgres_url)


def test_migrate_command(source_url, postgres_url, capsys):
    assert main(["migrate", "--from", source_url, "--to", postgres_url]) == 0
    out = capsys.readouterr().out
    assert "migration verified" in out and "faces" in out
    assert main(["migrate", "--from", source_url, "--to", "mysql://nope"]) == 2
