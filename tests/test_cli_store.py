"""The store commands as a user runs them: collection, person, consent, enroll, search, log, sweep."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

from tests.conftest import FIXTURES, lfw


def make_runner(tmp_path):
    env = dict(os.environ, REGARD_STORE=f"sqlite:///{tmp_path / 'cli.db'}", REGARD_ACTOR="alice")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "regard.cli", *args], capture_output=True, text=True, timeout=300, env=env
        )

    assert run("init", "--master-key", str(tmp_path / "master.key")).returncode == 0  # the store, on purpose
    return run


def test_a_whole_session_from_the_command_line(tmp_path):
    run = make_runner(tmp_path)
    created = run("collection", "create", "volunteers", "--purpose", "find volunteers in event photos", "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["purpose"] == "find volunteers in event photos"
    assert run("collection", "create", "volunteers", "--purpose", "again").returncode == 2
    assert run("collection", "create", "bad id", "--purpose", "x").returncode == 2

    assert run("person", "add", "volunteers", "akhmed").returncode == 0
    refused = run("enroll", "volunteers", str(lfw("Akhmed_Zakayev", 1)), "--person", "akhmed")
    assert refused.returncode == 2 and "consent" in refused.stderr and "Traceback" not in refused.stderr
    assert run("consent", "record", "volunteers", "akhmed", "--basis", "consent", "--reference", "form-1").returncode == 0

    enrolled = run("enroll", "volunteers", str(lfw("Akhmed_Zakayev", 1)), str(FIXTURES / "dogs.jpg"), "--person", "akhmed")
    assert enrolled.returncode == 1, enrolled.stderr  # the dog photo had no face
    assert "1 enrolled" in enrolled.stdout and "NO_FACE" in enrolled.stdout

    found = run("search", "volunteers", str(lfw("Akhmed_Zakayev", 3)), "--purpose", "credits for event 12", "--json")
    assert found.returncode == 0, found.stderr
    result = json.loads(found.stdout)
    assert result["faces"][0]["candidates"][0]["person_id"] == "akhmed"
    nobody = run("search", "volunteers", str(lfw("Amber_Tamblyn", 1)), "--purpose", "credits for event 12")
    assert nobody.returncode == 1 and "0 candidate" in nobody.stdout
    no_purpose = run("search", "volunteers", str(lfw("Amber_Tamblyn", 1)))
    assert no_purpose.returncode == 2
    unknown = run("search", "nope", str(lfw("Amber_Tamblyn", 1)), "--purpose", "x")
    assert unknown.returncode == 2 and "nope" in unknown.stderr

    shown = run("log", "show", "--action", "search", "--json")
    entries = json.loads(shown.stdout)
    assert [e["purpose"] for e in entries] == ["credits for event 12", "credits for event 12"]
    assert all(e["actor"] == "alice" for e in entries)
    assert run("log", "verify").returncode == 0

    forgot = run("person", "forget", "volunteers", "akhmed", "--reason", "erasure request")
    assert forgot.returncode == 0 and "1 faces erased" in forgot.stdout
    listed = json.loads(run("collection", "describe", "volunteers", "--json").stdout)
    assert listed["faces"] == 0 and listed["persons"] == 0
    assert run("sweep").returncode == 0
    before = (tmp_path / "cli.db").stat().st_size
    purged = run("purge", "--json")
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["full"] is False
    assert (tmp_path / "cli.db").stat().st_size <= before and run("log", "verify").returncode == 0

    raw = sqlite3.connect(tmp_path / "cli.db")
    raw.execute("DROP TRIGGER audit_log_no_update")
    raw.execute("UPDATE audit_log SET actor = 'mallory' WHERE action = 'forget'")
    raw.commit()
    raw.close()
    tampered = run("log", "verify")
    assert tampered.returncode == 3 and "FAILED" in tampered.stdout


def test_enroll_of_a_photo_of_two_people_needs_the_face_named(tmp_path):
    from tests.conftest import TWO_PEOPLE, side_by_side

    run = make_runner(tmp_path)
    assert run("collection", "create", "family", "--purpose", "album faces").returncode == 0
    for person in ("mum", "akhmed"):
        assert run("person", "add", "family", person).returncode == 0
        assert run("consent", "record", "family", person, "--basis", "consent").returncode == 0
    refused = run("enroll", "family", str(TWO_PEOPLE), "--person", "mum")
    assert refused.returncode == 1 and "MULTIPLE_FACES" in refused.stdout and "--face N" in refused.stdout
    assert "  1  left 150, top 74" in refused.stdout and "  2  left 135, top 199" in refused.stdout
    assert json.loads(run("collection", "describe", "family", "--json").stdout)["faces"] == 0

    detected = json.loads(run("detect", str(TWO_PEOPLE), "--json").stdout)[0]["faces"]
    named = run("enroll", "family", str(TWO_PEOPLE), "--person", "mum", "--face", "2", "--json")
    assert named.returncode == 0, named.stderr
    [entry] = json.loads(named.stdout)
    assert round(entry["enrolled"][0]["box"]["top"], 1) == detected[1]["box"]["top"]
    assert [n["reasons"] for n in entry["not_enrolled"]] == [["EXCEEDS_MAX_FACES"]]
    b = detected[0]["box"]
    by_box = run("enroll", "family", str(TWO_PEOPLE), "--person", "akhmed", "--face-box", f"{b['left']},{b['top']},{b['width']},{b['height']}")
    assert by_box.returncode == 0 and "the face at left 150, top 74" in by_box.stdout  # the other person's photo, other face
    group = str(FIXTURES / "2008_002506.jpg")  # three faces
    beyond = run("enroll", "family", group, "--person", "mum", "--face", "4")
    assert beyond.returncode == 2 and "3 faces" in beyond.stderr
    nowhere = run("enroll", "family", group, "--person", "mum", "--face-box", "0,0,10,10")
    assert nowhere.returncode == 2 and "no face" in nowhere.stderr
    assert run("enroll", "family", group, "--person", "mum", "--face", "0").returncode == 2

    # Akhmed beside Amber, for Akhmed who has an enrolled face already: his face is the one that matches.
    mixed = tmp_path / "akhmed_and_amber.jpg"
    mixed.write_bytes(side_by_side(lfw("Akhmed_Zakayev", 3), lfw("Amber_Tamblyn", 1)))
    assert run("enroll", "family", str(lfw("Akhmed_Zakayev", 1)), "--person", "akhmed").returncode == 0
    matched = run("enroll", "family", str(mixed), "--person", "akhmed", "--json")
    assert matched.returncode == 0, matched.stdout
    assert json.loads(matched.stdout)[0]["enrolled"][0]["box"]["left"] < 250  # the left-hand portrait


def test_search_looks_at_every_face_and_ranks_persons_by_their_best_face(tmp_path):
    from tests.conftest import TWO_PEOPLE

    run = make_runner(tmp_path)
    assert run("collection", "create", "family", "--purpose", "album faces").returncode == 0
    for person, face in (("kid", "1"), ("mum", "2")):
        assert run("person", "add", "family", person).returncode == 0
        assert run("consent", "record", "family", person, "--basis", "consent").returncode == 0
        assert run("enroll", "family", str(TWO_PEOPLE), "--person", person, "--face", face).returncode == 0
    assert run("person", "add", "family", "akhmed").returncode == 0
    assert run("consent", "record", "family", "akhmed", "--basis", "consent").returncode == 0
    two = run("enroll", "family", str(lfw("Akhmed_Zakayev", 1)), str(lfw("Akhmed_Zakayev", 2)), "--person", "akhmed")
    assert two.returncode == 0 and "2 enrolled" in two.stdout

    found = run("search", "family", str(TWO_PEOPLE), "--purpose", "album 2026")
    assert found.returncode == 0, found.stderr
    assert "face 1 at left 150, top 74" in found.stdout and "face 2 at left 135, top 199" in found.stdout
    assert "of searches for people not enrolled return a candidate" in found.stdout
    result = json.loads(run("search", "family", str(TWO_PEOPLE), "--purpose", "album 2026", "--json").stdout)
    assert [f["persons"][0]["person_id"] for f in result["faces"]] == ["kid", "mum"]
    assert all(f["box"]["width"] > 50 for f in result["faces"])
    assert 0 < result["expected"]["expected_fpir"] <= 0.01
    largest = json.loads(run("search", "family", str(TWO_PEOPLE), "--purpose", "album 2026", "--largest", "--json").stdout)
    assert [f["persons"][0]["person_id"] for f in largest["faces"]] == ["mum"]

    him = json.loads(run("search", "family", str(lfw("Akhmed_Zakayev", 3)), "--purpose", "album 2026", "--json").stdout)
    [face] = him["faces"]
    best = face["persons"][0]
    assert best["person_id"] == "akhmed" and len(best["face_ids"]) == len({c["face_id"] for c in face["candidates"] if c["person_id"] == "akhmed"})
    assert best["score"] == max(c["score"] for c in face["candidates"])
    assert len({p["person_id"] for p in face["persons"]}) == len(face["persons"])  # each person once

    entries = json.loads(run("log", "show", "--action", "search", "--json").stdout)
    assert len(entries) == 4  # one entry per search request
    newest = json.loads(run("log", "show", "--limit", "2", "--json").stdout)
    everything = json.loads(run("log", "show", "--json").stdout)
    assert [e["seq"] for e in newest] == [e["seq"] for e in everything[-2:]]  # the newest two, oldest first
    assert len(entries[0]["details"]["queries"]) == 2 and len(entries[0]["details"]["results"]) == 2


def test_signed_checkpoints_catch_entries_cut_off_with_the_head_rolled_back(tmp_path):
    run = make_runner(tmp_path)
    key, checkpoints = tmp_path / "keys" / "audit.pem", tmp_path / "audit.checkpoints"
    made = run("log", "keygen", str(key), "--json")
    assert made.returncode == 0 and oct(key.stat().st_mode & 0o777) == "0o600"
    public = json.loads(made.stdout)["public_key"]
    assert run("log", "keygen", str(key)).returncode == 2  # never overwritten
    assert run("collection", "create", "c", "--purpose", "p").returncode == 0
    assert run("person", "add", "c", "ann").returncode == 0
    first = run("log", "checkpoint", "--key", str(key), "--out", str(checkpoints), "--json")
    assert first.returncode == 0 and json.loads(first.stdout)["seq"] == 2
    assert run("person", "add", "c", "bob").returncode == 0
    assert run("person", "add", "c", "cyd").returncode == 0
    assert run("log", "checkpoint", "--key", str(key), "--out", str(checkpoints)).returncode == 0
    ok = run("log", "verify", "--checkpoint", str(checkpoints), "--public-key", public)
    assert ok.returncode == 0 and "extends all 2 checkpoints" in ok.stdout

    # Cut off the newest entry and roll the head back to match: the chain alone still verifies.
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        for trigger in ("audit_log_no_delete", "audit_head_forward_only"):
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("DELETE FROM audit_log WHERE seq = 4")
        conn.execute("UPDATE audit_head SET seq = 3, hash = (SELECT hash FROM audit_log WHERE seq = 3)")
    assert run("log", "verify").returncode == 0  # the database alone cannot tell
    caught = run("log", "verify", "--checkpoint", str(checkpoints))
    assert caught.returncode == 3 and "entries were cut off" in caught.stdout
    # A checkpoint file edited to match is caught by its signature.
    lines = checkpoints.read_text().splitlines()
    forged = json.loads(lines[1]) | {"seq": 3}
    checkpoints.write_text(lines[0] + "\n" + json.dumps(forged) + "\n")
    assert "signature does not verify" in run("log", "verify", "--checkpoint", str(checkpoints)).stdout
    other = run("log", "verify", "--checkpoint", str(checkpoints), "--public-key", "00" * 32)
    assert other.returncode == 3 and "another key" in other.stdout
