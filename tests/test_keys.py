"""API keys through a real SQLite store: issue, authenticate (bearer and SigV4), revoke, scope,
the master key file, the rate limiter, and the `regard keys` command."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from regard.cli import main
from regard.errors import AuthError, InvalidArgumentError, NotFoundError
from regard.service.keys import KeyRing, allowed, derive_secret
from regard.service.ratelimit import RateLimiter
from regard.service.sigv4 import verify_sigv4
from regard.store import Role
from regard.store.sqlite import SQLiteStore


@pytest.fixture
def store(tmp_path: Path):
    s = SQLiteStore(tmp_path / "regard.db")
    yield s
    s.close()


@pytest.fixture
def ring(store: SQLiteStore, tmp_path: Path) -> KeyRing:
    return KeyRing(store, tmp_path / "secrets" / "master.key")


def issue(ring: KeyRing, **overrides):
    arguments = dict(
        name="photo desk", roles=["search"], collections=["staff"], default_purpose=None, rate_per_minute=None, actor="alice"
    )
    arguments.update(overrides)
    return ring.create(**arguments)


def reason_of(call) -> str:
    with pytest.raises(AuthError) as caught:
        call()
    return caught.value.reason


def sigv4_request(key_id: str, secret: str) -> dict:
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:8080/",
        data=b'{"MaxResults": 10}',
        headers={"X-Amz-Target": "RekognitionService.ListCollections", "Content-Type": "application/x-amz-json-1.1"},
    )
    SigV4Auth(Credentials(key_id, secret), "rekognition", "us-east-1").add_auth(request)
    parts = urlsplit(request.url)
    return dict(
        method="POST",
        path=parts.path,
        query=parts.query,
        headers={"Host": parts.netloc, **dict(request.headers.items())},
        body=b'{"MaxResults": 10}',
        region="us-east-1",
    )


def test_a_key_is_issued_stored_hashed_and_authenticates(ring: KeyRing, store: SQLiteStore, tmp_path: Path) -> None:
    key, secret = issue(ring, default_purpose="badge photos", rate_per_minute=120)
    assert re.fullmatch(r"RGK[A-Z0-9]{17}", key.key_id)
    assert len(secret) == 40 and re.fullmatch(r"[A-Za-z0-9_-]{40}", secret)
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert (key.roles, key.collections, key.default_purpose, key.rate_per_minute) == ((Role.SEARCH,), ("staff",), "badge photos", 120)
    stored = store.get_api_key(key.key_id)
    assert stored == key and stored.created_by == "alice"
    assert secret.encode() not in (tmp_path / "regard.db").read_bytes()
    logged = store.audit_entries(action="key_create")
    assert [(e.actor, e.details["key_id"]) for e in logged] == [("alice", key.key_id)]
    assert secret not in json.dumps([e.details for e in logged]) and key.secret_hash not in json.dumps([e.details for e in logged])

    assert ring.authenticate_bearer(f"{key.key_id}.{secret}") == key
    assert ring.secret_for(key.key_id) == secret
    assert verify_sigv4(**sigv4_request(key.key_id, secret), secret_for=ring.secret_for) == key.key_id

    other, other_secret = issue(ring, name="second")
    assert other.key_id != key.key_id and other_secret != secret
    assert [k.key_id for k in ring.list()] == [key.key_id, other.key_id]


def test_wrong_unknown_and_malformed_credentials_are_refused(ring: KeyRing) -> None:
    key, secret = issue(ring)
    assert reason_of(lambda: ring.authenticate_bearer(f"{key.key_id}.{secret[:-1]}x")) == "bad secret"
    assert reason_of(lambda: ring.authenticate_bearer(f"RGK00000000000000000.{secret}")) == "unknown key"
    for token in ("", key.key_id, f"{key.key_id}.", f".{secret}", secret):
        assert reason_of(lambda: ring.authenticate_bearer(token)) == "malformed authorization"
    assert reason_of(lambda: ring.secret_for("RGK00000000000000000")) == "unknown key"
    wrong = sigv4_request(key.key_id, secret[::-1])
    assert reason_of(lambda: verify_sigv4(**wrong, secret_for=ring.secret_for)) == "bad signature"


def test_a_revoked_key_stops_working_at_once_in_every_process(ring: KeyRing, tmp_path: Path) -> None:
    key, secret = issue(ring)
    # Another worker: its own store connection and key ring on the same files.
    worker_store = SQLiteStore(tmp_path / "regard.db")
    try:
        worker = KeyRing(worker_store, ring.master_key_path)
        assert worker.authenticate_bearer(f"{key.key_id}.{secret}").key_id == key.key_id
        revoked = ring.revoke(key.key_id, actor="bob", reason="laptop stolen")
        assert not revoked.active and revoked.revoked_by == "bob"
        assert reason_of(lambda: worker.authenticate_bearer(f"{key.key_id}.{secret}")) == "revoked key"
        assert reason_of(lambda: worker.secret_for(key.key_id)) == "revoked key"
        request = sigv4_request(key.key_id, secret)
        assert reason_of(lambda: verify_sigv4(**request, secret_for=worker.secret_for)) == "revoked key"
    finally:
        worker_store.close()
    assert ring.revoke(key.key_id, actor="carol", reason="again").revoked_by == "bob"
    with pytest.raises(NotFoundError):
        ring.revoke("RGK00000000000000000", actor="bob", reason="typo")


def test_the_master_key_file_is_private_created_once_and_reused(ring: KeyRing, store: SQLiteStore) -> None:
    assert not ring.master_key_path.exists()
    key, secret = issue(ring)
    path = ring.master_key_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    original = path.read_bytes()
    assert len(original) == 32
    assert not [p for p in path.parent.iterdir() if p != path]  # no temporary file left behind

    again = KeyRing(store, path)
    issue(again, name="second")
    assert path.read_bytes() == original  # never overwritten
    assert again.secret_for(key.key_id) == secret

    path.write_text(original.hex() + "\n")  # the hex form (openssl rand -hex 32) is the same key
    assert KeyRing(store, path).secret_for(key.key_id) == secret


def test_the_master_key_path_follows_the_environment(store: SQLiteStore, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("REGARD_MASTER_KEY_FILE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert KeyRing(store).master_key_path == tmp_path / "data" / "regard" / "master.key"
    monkeypatch.setenv("REGARD_MASTER_KEY_FILE", str(tmp_path / "elsewhere.key"))
    ring = KeyRing(store)
    issue(ring)
    assert (tmp_path / "elsewhere.key").stat().st_size == 32


def test_a_copy_of_the_database_without_the_master_key_authenticates_nothing(ring: KeyRing, tmp_path: Path) -> None:
    key, secret = issue(ring)
    ring.store.close()
    copy = tmp_path / "stolen.db"
    shutil.copy(tmp_path / "regard.db", copy)
    thief_store = SQLiteStore(copy)
    try:
        thief = KeyRing(thief_store, tmp_path / "thief" / "master.key")
        assert reason_of(lambda: thief.secret_for(key.key_id)) == "no master key"
        issue(thief, name="thief's own")  # makes a different master key
        assert reason_of(lambda: thief.secret_for(key.key_id)) == "master key mismatch"
        # Signing with what the thief can derive fails, and so does the real secret on this server.
        derived_by_thief = derive_secret((tmp_path / "thief" / "master.key").read_bytes(), key.key_id)
        assert derived_by_thief != secret
        forged = sigv4_request(key.key_id, derived_by_thief)
        assert reason_of(lambda: verify_sigv4(**forged, secret_for=thief.secret_for)) == "master key mismatch"
        assert reason_of(lambda: thief.authenticate_bearer(f"{key.key_id}.{derived_by_thief}")) == "bad secret"
        assert reason_of(lambda: thief.authenticate_bearer(f"{key.key_id}.{secret}")) == "master key mismatch"
    finally:
        thief_store.close()


def test_bad_key_settings_are_refused(ring: KeyRing) -> None:
    for bad in (
        {"roles": []},
        {"roles": ["superuser"]},
        {"collections": ["no spaces allowed"]},
        {"rate_per_minute": 0},
        {"name": "  "},
        {"default_purpose": ""},
    ):
        with pytest.raises(InvalidArgumentError):
            issue(ring, **bad)
    assert ring.list() == []


def test_allowed_follows_roles_admin_and_collection_scope(ring: KeyRing) -> None:
    searcher, _ = issue(ring, roles=["search", "detect"], collections=["staff", "visitors"])
    assert allowed(searcher, Role.SEARCH, "staff") and allowed(searcher, "search", "visitors")
    assert not allowed(searcher, Role.SEARCH, "payroll")
    assert allowed(searcher, Role.DETECT, None)
    assert not allowed(searcher, Role.ENROLL, "staff")
    assert not allowed(searcher, Role.ADMIN, None)

    admin, _ = issue(ring, roles=["admin"], collections=None)
    assert all(allowed(admin, role, c) for role in Role for c in (None, "staff", "anything"))

    scoped_admin, _ = issue(ring, roles=["admin"], collections=["staff"])
    assert allowed(scoped_admin, Role.ENROLL, "staff") and allowed(scoped_admin, Role.ADMIN, None)
    assert not allowed(scoped_admin, Role.SEARCH, "visitors")

    no_collections, _ = issue(ring, roles=["detect", "search"], collections=[])
    assert allowed(no_collections, Role.DETECT, None) and not allowed(no_collections, Role.SEARCH, "staff")

    revoked = ring.revoke(admin.key_id, actor="alice", reason="rotated")
    assert not any(allowed(revoked, role, c) for role in Role for c in (None, "staff"))
    with pytest.raises(InvalidArgumentError):
        allowed(searcher, "superuser", None)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_limiter_allows_a_minutes_burst_then_the_steady_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    assert all(limiter.check("A", 60) is None for _ in range(60))
    wait = limiter.check("A", 60)
    assert wait == pytest.approx(1.0)  # 60/min: one token a second
    assert limiter.check("B", 60) is None  # buckets are per key
    assert all(limiter.check("C", None) is None for _ in range(1000))  # no limit
    clock.now += 0.5
    assert limiter.check("A", 60) == pytest.approx(0.5)  # a refused request spends nothing
    clock.now += 0.5
    assert limiter.check("A", 60) is None
    assert limiter.check("A", 60) == pytest.approx(1.0)
    clock.now += 3600  # refills to the minute's allowance, not beyond
    assert sum(limiter.check("A", 60) is None for _ in range(100)) == 60

    slow = RateLimiter(clock)
    assert [slow.check("S", 2) for _ in range(2)] == [None, None]
    assert slow.check("S", 2) == pytest.approx(30.0)
    with pytest.raises(ValueError):
        slow.check("S", 0)


def test_the_rate_limiter_is_exact_under_threads() -> None:
    limiter = RateLimiter(FakeClock())  # frozen time: exactly the burst may pass
    passed: list[int] = []

    def hammer() -> None:
        passed.append(sum(limiter.check("K", 500) is None for _ in range(200)))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(passed) == 500


def test_the_keys_command(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("REGARD_STORE", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("REGARD_MASTER_KEY_FILE", str(tmp_path / "master.key"))
    assert main(["init"]) == 0
    code = main(
        ["keys", "create", "--name", "ci", "--role", "search", "--role", "detect", "--collection", "staff",
         "--purpose", "badge check", "--rate-per-minute", "30", "--actor", "alice"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    key_id = re.search(r"AWS_ACCESS_KEY_ID=(RGK[A-Z0-9]{17})", out).group(1)
    secret = re.search(r"AWS_SECRET_ACCESS_KEY=(\S+)", out).group(1)
    assert f"Authorization: Bearer {key_id}.{secret}" in out
    assert "not shown again" in out

    assert main(["keys", "create", "--name", "ops", "--role", "admin", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["roles"] == ["admin"] and created["collections"] is None
    assert created["bearer_token"] == f"{created['key_id']}.{created['secret']}"

    store = SQLiteStore(tmp_path / "cli.db")
    try:
        ring = KeyRing(store, tmp_path / "master.key")
        key = ring.authenticate_bearer(f"{key_id}.{secret}")
        assert (key.roles, key.collections, key.default_purpose, key.rate_per_minute, key.created_by) == (
            (Role.SEARCH, Role.DETECT), ("staff",), "badge check", 30, "alice"
        )
        assert ring.secret_for(created["key_id"]) == created["secret"]

        assert main(["keys", "list", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert [k["key_id"] for k in listed] == [key_id, created["key_id"]]
        assert "secret" not in json.dumps(listed)

        assert main(["keys", "revoke", key_id, "--reason", "left the team", "--actor", "bob"]) == 0
        assert "revoked" in capsys.readouterr().out
        assert reason_of(lambda: ring.authenticate_bearer(f"{key_id}.{secret}")) == "revoked key"
        assert main(["keys", "list"]) == 0
        table = capsys.readouterr().out
        assert re.search(rf"{key_id} .*\[revoked \d{{4}}-\d\d-\d\d by bob\]", table)
        assert re.search(rf"{created['key_id']} .*\[active\]", table)
    finally:
        store.close()

    assert main(["keys", "revoke", "RGK00000000000000000", "--reason", "typo"]) == 2
    assert "no key" in capsys.readouterr().err
    assert main(["keys", "create", "--name", "x", "--role", "search", "--rate-per-minute", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["keys", "create", "--name", "x", "--role", "root"])


def test_the_rate_limiter_forgets_idle_full_buckets_only() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    limiter.PRUNE_ABOVE = 3
    for key in ("A", "B", "C"):
        limiter.check(key, 60)
    for _ in range(59):
        limiter.check("C", 60)  # C has spent its minute
    clock.now += 5  # A and B are full again, C is not
    assert limiter.check("D", 60) is None  # a fourth key triggers the pruning
    assert sorted(limiter._buckets) == ["C", "D"]
    assert limiter.check("C", 60) is None and limiter.check("C", 60) is None  # 5 s gave C 5 tokens...
    assert sum(limiter.check("C", 60) is None for _ in range(10)) == 3  # ...and no more
