"""Crashes and concurrency, on both backends: kill -9 during enrollment, several processes on one
SQLite file or one PostgreSQL database (enrolling and searching at once, the audit chain linear)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from regard.store import ConsentBasis, SearchQuery, open_store
from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parent.parent

ENROLL_SCRIPT = """
import sys
from pathlib import Path
from regard.gallery import enroll
from regard.store import open_store
store = open_store(sys.argv[1])
person = sys.argv[2]
enrolled = 0
for path in sorted(Path(sys.argv[3]).glob("*.jpg")):
    enrolled += len(enroll(store, "crowd", path, person_id=person, actor="worker-" + person).enrolled)
print("enrolled", enrolled, flush=True)
"""

SEARCH_SCRIPT = """
import sys, time
from regard.gallery import search_photo
from regard.store import open_store
store = open_store(sys.argv[1])
deadline = time.time() + float(sys.argv[3])
n = 0
while time.time() < deadline:
    search_photo(store, "crowd", sys.argv[2], actor="searcher", purpose="concurrency test")
    n += 1
print("searches", n, flush=True)
"""


def _variants(folder: Path, count: int, seed: int) -> None:
    """Distinct photos of real faces: the LFW fixtures, shifted, scaled and mirrored."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((FIXTURES / "lfw").glob("*/*.jpg"))
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = Image.open(sources[i % len(sources)]).convert("RGB")
        dx, dy = rng.integers(-12, 13, size=2)
        scale = rng.uniform(0.9, 1.1)
        image = image.transform(image.size, Image.AFFINE, (scale, 0, dx, 0, scale, dy), resample=Image.BILINEAR)
        if i % 2:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image.save(folder / f"photo_{seed}_{i:03d}.jpg", quality=92)


def _setup(url: str, persons: list[str]) -> None:
    store = open_store(url)
    store.create_collection("crowd", purpose="fault tests", actor="setup")
    for person in persons:
        store.add_person("crowd", person, actor="setup")
        store.record_consent("crowd", person, basis=ConsentBasis.CONSENT, actor="setup")
    store.close()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _check_consistent(url: str) -> int:
    """Store, audit chain and index agree; returns the number of faces."""
    store = open_store(url)
    try:
        assert store.verify_audit().ok
        faces = store.list_faces("crowd")
        logged = {fid for e in store.audit_entries(action="enroll") for fid in e.details["face_ids"]}
        assert logged == {f.face_id for f in faces}, "every committed face has its audit entry and vice versa"
        for face in faces:
            vector = store.face_vector("crowd", face.face_id)
            top = store.search("crowd", [SearchQuery(vector)], actor="checker", purpose="consistency", k=1, threshold=0)[0]
            assert top and top[0].score > 99.9, "the index finds every stored face"
        return len(faces)
    finally:
        store.close()


def _face_count(url: str) -> int:
    store = open_store(url)
    try:
        return store.get_collection("crowd").face_count
    finally:
        store.close()


def test_kill_9_during_enrollment_leaves_a_consistent_store(tmp_path, store_url):
    url = store_url
    _setup(url, ["p"])
    _variants(tmp_path / "photos", 60, seed=1)
    proc = subprocess.Popen(
        [sys.executable, "-c", ENROLL_SCRIPT, url, "p", str(tmp_path / "photos")], env=_env(), stdout=subprocess.PIPE
    )
    try:
        deadline = time.time() + 120
        committed = 0
        while time.time() < deadline and committed < 8:
            time.sleep(0.05)
            committed = _face_count(url)
        assert proc.poll() is None, "enrollment finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    count = _check_consistent(url)
    assert 8 <= count < 60
    # Resuming enrolls the rest and skips what is there.
    done = subprocess.run(
        [sys.executable, "-c", ENROLL_SCRIPT, url, "p", str(tmp_path / "photos")], env=_env(), capture_output=True, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()
    final = _check_consistent(url)
    assert count < final <= 60


def test_concurrent_enrollment_and_search_from_several_processes(tmp_path, store_url):
    url = store_url
    _setup(url, ["a", "b"])
    _variants(tmp_path / "a", 20, seed=2)
    _variants(tmp_path / "b", 20, seed=3)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", ENROLL_SCRIPT, url, name, str(tmp_path / name)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("a", "b")
    ]
    searcher = subprocess.Popen(
        [sys.executable, "-c", SEARCH_SCRIPT, url, str(FIXTURES / "lfw" / "Amber_Tamblyn" / "Amber_Tamblyn_0002.jpg"), "8"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    reported = {}
    for name, proc in zip(("a", "b", "search"), [*workers, searcher]):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        reported[name] = int(out.decode().split()[-1])
    store = open_store(url)
    try:
        per_person = {p: len(store.list_faces("crowd", p)) for p in ("a", "b")}
        searches = len(store.audit_entries(action="search", actor="searcher"))
        log = store.audit_entries()
    finally:
        store.close()
    # One linear chain: consecutive seqs, each entry linked to the one before it.
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    assert all(e.prev_hash == p.hash for p, e in zip(log, log[1:]))
    # No lost faces: what each worker was told it enrolled is what the store holds.
    assert per_person == {"a": reported["a"], "b": reported["b"]}
    assert per_person["a"] >= 15 and per_person["b"] >= 15, per_person
    assert _check_consistent(url) == per_person["a"] + per_person["b"]
    assert searches == reported["search"] >= 1


@pytest.mark.parametrize("searched_before", [False, True], ids=["first-search", "plan-known"])
def test_postgres_search_leaves_out_a_face_erased_while_it_waited_for_the_audit_lock(postgres_url, searched_before):
    """The race a search runs with writers: its query sees a face that another transaction is
    erasing; the search then queues behind that writer for the audit head's lock. Once it holds the
    lock, the erased face is in neither its results nor its audit entry (the check of which hits
    are still there runs after the lock, though it is sent together with it). Both ways a search
    goes: the first of a collection by a store, and later ones, whose queries, lock and check go
    out before the collection's row has come back."""
    import threading

    import psycopg

    from regard.auditlog import postgres as pglog
    from regard.auditlog.log import AuditAction
    from regard.face import QualityLevel
    from regard.store import NewFace

    rng = np.random.default_rng(3)
    query = rng.normal(size=128).astype(np.float32) * 0.12
    store = open_store(postgres_url)
    store.create_collection("race", purpose="race test", actor="t")
    face_ids = {}
    for person in ("kept", "erased"):
        store.add_person("race", person, actor="t")
        store.record_consent("race", person, basis=ConsentBasis.CONSENT, actor="t")
        face = NewFace(embedding=query + rng.normal(size=128).astype(np.float32) * 0.01, box=(0.0, 0.0, 90.0, 90.0),
                       quality_score=80.0, quality_level=QualityLevel.HIGH)  # fmt: skip
        face_ids[person] = store.add_faces("race", person, [face], actor="t")[0].face_id
    if searched_before:
        assert len(store.search("race", [SearchQuery(query)], actor="t", purpose="race test", threshold=0)[0]) == 2
    searched: list = []
    with psycopg.connect(postgres_url, autocommit=True) as writer, psycopg.connect(postgres_url, autocommit=True) as admin:
        with writer.transaction():
            head = pglog.lock_head(writer)
            writer.execute("DELETE FROM faces WHERE face_id = %s", (face_ids["erased"],))
            pglog.append(writer, action=AuditAction.FACE_DELETE, actor="t", collection="race", purpose=None,
                         details={"face_id": face_ids["erased"], "reason": "race test"}, locked_head=head)  # fmt: skip
            search = threading.Thread(
                target=lambda: searched.extend(store.search("race", [SearchQuery(query)], actor="t", purpose="race test", threshold=0))
            )
            search.start()
            pid = store._conn.info.backend_pid  # the search's own session
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # until the search waits for the lock the writer holds
                row = admin.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
                if row and row[0] == "Lock":
                    break
                time.sleep(0.01)
            else:
                raise AssertionError("the search never waited for the audit lock")
        search.join(30)
    assert not search.is_alive()
    assert [c.face_id for c in searched[0]] == [face_ids["kept"]]
    entry = store.audit_entries(action="search")[-1]
    assert [c["face_id"] for c in entry.details["results"][0]] == [face_ids["kept"]]
    assert store.verify_audit().ok
    store.close()
