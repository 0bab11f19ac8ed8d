"""The native /v1 API through httpx, against a real `regard serve`."""

from __future__ import annotations

import base64
import json
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.conftest import TWO_PEOPLE
from tests.service_harness import Service, running_service

FIXTURES = Path(__file__).parent / "fixtures"
LFW = FIXTURES / "lfw"


def lfw(name: str) -> bytes:
    return (LFW / name.rsplit("_", 1)[0] / name).read_bytes()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("native"), "--max-image-bytes", "400000") as svc:
        yield svc


@pytest.fixture(scope="module")
def admin(service: Service) -> httpx.Client:
    with httpx.Client(base_url=service.url, headers=service.bearer("admin"), timeout=60) as c:
        yield c


def test_nothing_is_served_without_a_key(service: Service) -> None:
    """Every operation in the OpenAPI description refuses a request without credentials."""
    spec = httpx.get(service.url + "/openapi.json").json()
    checked = 0
    for path, operations in spec["paths"].items():
        url = service.url + path.replace("{collection_id}", "c").replace("{person_id}", "p").replace("{face_id}", "f")
        for method in operations:
            response = httpx.request(method.upper(), url, params={"reason": "r"})
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"]["type"] == "unauthorized"
            checked += 1
    assert checked >= 18
    assert httpx.get(service.url + "/readyz").status_code == 401
    assert httpx.get(service.url + "/v1/collections", headers={"Authorization": "Bearer RGKAAAAAAAAAAAAAAAAA.nope"}).status_code == 401
    assert httpx.get(service.url + "/healthz").json() == {"status": "ok"}


def test_detect_and_compare(service: Service) -> None:
    headers = service.bearer("detect")
    detected = httpx.post(service.url + "/v1/detect", files={"image": (FIXTURES / "2008_002506.jpg").read_bytes()}, headers=headers)
    assert detected.status_code == 200
    body = detected.json()
    assert body["width"] > 0 and len(body["faces"]) == 3
    assert all(set(f) == {"box", "confidence", "landmarks", "quality"} for f in body["faces"])
    as_json = httpx.post(
        service.url + "/v1/detect",
        json={"image": base64.b64encode((FIXTURES / "2008_002506.jpg").read_bytes()).decode()},
        headers=headers,
    ).json()
    assert as_json == body
    same = httpx.post(
        service.url + "/v1/compare",
        files={"source": lfw("Amber_Tamblyn_0001.jpg"), "target": lfw("Amber_Tamblyn_0002.jpg")},
        headers=headers,
    ).json()
    assert same["match"] is True and same["score"] >= same["threshold"] and same["fmr_at_threshold"] <= 1e-3
    no_face = httpx.post(
        service.url + "/v1/compare",
        files={"source": (FIXTURES / "dogs.jpg").read_bytes(), "target": lfw("Amber_Tamblyn_0002.jpg")},
        headers=headers,
    )
    assert no_face.status_code == 422 and no_face.json()["error"]["type"] == "no_face"


def test_enroll_search_forget_and_audit(service: Service, admin: httpx.Client) -> None:
    created = admin.post("/v1/collections", json={"id": "members", "purpose": "gym entry"})
    assert created.status_code == 201 and created.json()["search_threshold"] > 50
    assert admin.post("/v1/collections", json={"id": "members", "purpose": "again"}).status_code == 409
    assert admin.post("/v1/collections/members/persons", json={"id": "amber"}).status_code == 201
    refused = admin.post("/v1/collections/members/persons/amber/faces", files={"image": lfw("Amber_Tamblyn_0001.jpg")})
    assert refused.status_code == 409 and refused.json()["error"]["type"] == "consent_required"
    consent = admin.put("/v1/collections/members/persons/amber/consent", json={"basis": "consent", "reference": "form-17"})
    assert consent.status_code == 200 and consent.json()["reference"] == "form-17"
    enrolled = admin.post("/v1/collections/members/persons/amber/faces", files={"image": lfw("Amber_Tamblyn_0001.jpg")})
    assert enrolled.status_code == 201
    face_id = enrolled.json()["enrolled"][0]["face_id"]
    nothing = admin.post("/v1/collections/members/persons/amber/faces", files={"image": (FIXTURES / "dogs.jpg").read_bytes()})
    assert nothing.status_code == 201 and nothing.json()["enrolled"] == []

    searcher = httpx.Client(base_url=service.url, headers=service.bearer("search", collections=["members"]))
    no_purpose = searcher.post("/v1/collections/members/search", files={"image": lfw("Amber_Tamblyn_0002.jpg")})
    assert no_purpose.status_code == 400 and "purpose" in no_purpose.json()["error"]["message"]
    found = searcher.post(
        "/v1/collections/members/search",
        files={"image": lfw("Amber_Tamblyn_0002.jpg")},
        data={"purpose": "check-in at the front desk"},
    ).json()
    assert [c["face_id"] for c in found["faces"][0]["candidates"]] == [face_id]
    assert found["faces"][0]["candidates"][0]["person_id"] == "amber"
    stranger = searcher.post(
        "/v1/collections/members/search",
        json={"image": base64.b64encode(lfw("Alanis_Morissette_0001.jpg")).decode(), "purpose": "check-in"},
    ).json()
    assert stranger["faces"][0]["candidates"] == []

    log = admin.get("/v1/audit", params={"collection": "members", "action": "search"}).json()["entries"]
    assert [e["purpose"] for e in log] == ["check-in at the front desk", "check-in"]
    assert all(e["actor"].startswith("key:RGK") for e in log)
    assert admin.get("/v1/audit/verify").json()["ok"] is True

    forgotten = admin.delete("/v1/collections/members/persons/amber", params={"reason": "left the gym"})
    assert forgotten.json() == {"forgotten": "amber", "faces_erased": 1, "erasure_complete": True}
    assert admin.get("/v1/collections/members/faces").json()["faces"] == []
    after = searcher.post(
        "/v1/collections/members/search", files={"image": lfw("Amber_Tamblyn_0002.jpg")}, data={"purpose": "check-in"}
    ).json()
    assert after["faces"][0]["candidates"] == []


def test_enrolling_a_photo_of_two_people_needs_the_face_named(service: Service, admin: httpx.Client) -> None:
    assert admin.post("/v1/collections", json={"id": "family", "purpose": "album faces"}).status_code == 201
    assert admin.post("/v1/collections/family/persons", json={"id": "mum"}).status_code == 201
    assert admin.put("/v1/collections/family/persons/mum/consent", json={"basis": "consent"}).status_code == 200
    url, two = "/v1/collections/family/persons/mum/faces", TWO_PEOPLE.read_bytes()
    refused = admin.post(url, files={"image": two}).json()
    assert refused["enrolled"] == [] and [n["reasons"] for n in refused["not_enrolled"]] == [["MULTIPLE_FACES"]] * 2
    assert admin.get("/v1/collections/family/faces").json()["faces"] == []
    faces = admin.post("/v1/detect", files={"image": two}).json()["faces"]
    b = faces[1]["box"]
    by_box = admin.post(url, files={"image": two}, data={"face_box": f"{b['left']},{b['top']},{b['width']},{b['height']}"})
    assert by_box.status_code == 201 and round(by_box.json()["enrolled"][0]["box"]["top"], 1) == b["top"]
    admin.delete(f"/v1/collections/family/faces/{by_box.json()['enrolled'][0]['face_id']}", params={"reason": "test"})
    beyond = admin.post(url, files={"image": two}, data={"face_index": "5"})
    assert beyond.status_code == 400 and "2 faces" in beyond.json()["error"]["message"]
    both = admin.post(url, files={"image": two}, data={"face_index": "0", "face_box": "1,2,3,4"})
    assert both.status_code == 400
    by_index = admin.post(url, json={"image": base64.b64encode(two).decode(), "face_index": 0}).json()
    assert round(by_index["enrolled"][0]["box"]["top"], 1) == faces[0]["box"]["top"]


def test_roles_and_scopes(service: Service, admin: httpx.Client) -> None:
    admin.post("/v1/collections", json={"id": "scoped", "purpose": "p"})
    admin.post("/v1/collections", json={"id": "hidden", "purpose": "p"})
    detect = httpx.Client(base_url=service.url, headers=service.bearer("detect"))
    enroll = httpx.Client(base_url=service.url, headers=service.bearer("enroll", collections=["scoped"]))
    search = httpx.Client(base_url=service.url, headers=service.bearer("search", collections=["scoped"]))
    assert detect.post("/v1/collections", json={"id": "x", "purpose": "p"}).status_code == 403
    assert detect.get("/v1/collections/scoped/persons").status_code == 403
    assert enroll.post("/v1/collections/scoped/persons", json={"id": "bob"}).status_code == 201
    assert enroll.post("/v1/collections/hidden/persons", json={"id": "bob"}).status_code == 403
    assert enroll.post("/v1/collections/scoped/search", data={"purpose": "p", "face_id": "f"}).status_code == 403
    assert enroll.post("/v1/detect", files={"image": lfw("Amber_Tamblyn_0001.jpg")}).status_code == 403
    assert search.post("/v1/collections/scoped/persons", json={"id": "eve"}).status_code == 403
    assert search.get("/v1/audit").status_code == 403
    assert [c["id"] for c in search.get("/v1/collections").json()["collections"]] == ["scoped"]
    assert search.get("/v1/collections/hidden").status_code == 404
    assert enroll.delete("/v1/collections/scoped", params={"reason": "r"}).status_code == 403


def test_a_scoped_admin_key_sees_no_other_collection_anywhere(service: Service, admin: httpx.Client) -> None:
    for c in ("mine", "theirs"):
        assert admin.post("/v1/collections", json={"id": c, "purpose": f"{c} purpose"}).status_code == 201
        admin.post(f"/v1/collections/{c}/persons", json={"id": "amber"})
        admin.put(f"/v1/collections/{c}/persons/amber/consent", json={"basis": "consent"})
    face = admin.post("/v1/collections/theirs/persons/amber/faces", files={"image": lfw("Amber_Tamblyn_0001.jpg")})
    theirs_face = face.json()["enrolled"][0]["face_id"]
    admin.post("/v1/collections/theirs/search", files={"image": lfw("Amber_Tamblyn_0002.jpg")}, data={"purpose": "SECRET purpose"})
    scoped = httpx.Client(base_url=service.url, headers=service.bearer("admin", collections=["mine"]), timeout=60)
    scoped.post("/v1/collections/mine/search", files={"image": lfw("Amber_Tamblyn_0002.jpg")}, data={"purpose": "my purpose"})

    for params in ({}, {"action": "search"}, {"action": "key_create"}, {"action": "enroll"}):
        entries = scoped.get("/v1/audit", params=params).json()["entries"]
        assert all(e["collection"] == "mine" for e in entries), params
        assert "SECRET purpose" not in json.dumps(entries)
    assert [e["purpose"] for e in scoped.get("/v1/audit", params={"action": "search"}).json()["entries"]] == ["my purpose"]
    assert scoped.get("/v1/audit", params={"collection": "theirs"}).status_code == 403
    assert any(e["action"] == "key_create" for e in admin.get("/v1/audit", params={"action": "key_create"}).json()["entries"])
    verified = scoped.get("/v1/audit/verify").json()
    assert set(verified) == {"ok", "head_seq", "head_hash"} and verified["ok"] is True

    assert [c["id"] for c in scoped.get("/v1/collections").json()["collections"]] == ["mine"]
    assert scoped.get("/v1/collections/theirs").status_code == 404
    assert scoped.get("/v1/collections/theirs/faces").status_code in (403, 404)
    searched = scoped.post("/v1/collections/theirs/search", data={"purpose": "p", "face_id": theirs_face})
    assert searched.status_code in (403, 404)
    assert scoped.delete(f"/v1/collections/theirs/faces/{theirs_face}", params={"reason": "r"}).status_code in (403, 404)
    assert scoped.delete("/v1/collections/theirs", params={"reason": "r"}).status_code in (403, 404)
    assert admin.get("/v1/collections/theirs").json()["faces"] == 1  # untouched


def test_bad_input_gets_a_clear_error(service: Service, admin: httpx.Client) -> None:
    bad_json = admin.post("/v1/collections", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["type"] == "invalid_argument"
    wrong_type = admin.post("/v1/collections", json={"id": "t", "purpose": "p", "retention_days": "soon"})
    assert wrong_type.status_code == 400 and "retention_days" in wrong_type.json()["error"]["message"]
    bad_id = admin.post("/v1/collections", json={"id": "no spaces", "purpose": "p"})
    assert bad_id.status_code == 400
    assert admin.get("/v1/collections/nope").status_code == 404
    assert admin.post("/v1/collections/nope/persons", json={"id": "a"}).status_code == 404
    truncated = admin.post("/v1/detect", files={"image": lfw("Amber_Tamblyn_0001.jpg")[:3000]})
    assert truncated.status_code == 400 and "truncated" in truncated.json()["error"]["message"]
    not_image = admin.post("/v1/detect", files={"image": b"hello"})
    assert not_image.status_code == 400 and not_image.json()["error"]["type"] == "invalid_image"
    missing = admin.post("/v1/detect", files={"photo": lfw("Amber_Tamblyn_0001.jpg")})
    assert missing.status_code == 400 and "'image'" in missing.json()["error"]["message"]
    bad_b64 = admin.post("/v1/detect", json={"image": "###"})
    assert bad_b64.status_code == 400 and "base64" in bad_b64.json()["error"]["message"]
    big = admin.post("/v1/detect", files={"image": (FIXTURES / "bald_guys.jpg").read_bytes()})  # 648 kB > 400 kB
    assert big.status_code == 413 and big.json()["error"]["type"] == "image_too_large"
    huge_body = admin.post("/v1/detect", content=b"x" * 2_000_000, headers={"Content-Type": "application/json"})
    assert huge_body.status_code == 413
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (12000, 9000)).save(buffer, "PNG")  # 108 MP in a few kB
    bomb = admin.post("/v1/detect", files={"image": buffer.getvalue()})
    assert bomb.status_code == 413 and "pixels" in bomb.json()["error"]["message"]


def test_rate_limit_answers_429_with_retry_after(service: Service) -> None:
    client = httpx.Client(base_url=service.url, headers=service.bearer("detect", rate_per_minute=3))
    codes = [client.get("/v1/collections").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    limited = client.get("/v1/collections")
    assert int(limited.headers["Retry-After"]) >= 1 and limited.json()["error"]["type"] == "rate_limited"


def test_several_workers_and_graceful_shutdown(tmp_path: Path) -> None:
    with running_service(tmp_path, "--workers", "2") as svc:
        headers = svc.bearer("detect")
        photo = lfw("Amber_Tamblyn_0001.jpg")
        with httpx.Client(base_url=svc.url, headers=headers, timeout=60) as client:
            assert all(client.post("/v1/detect", files={"image": photo}).status_code == 200 for _ in range(4))
        svc.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert svc.process.wait(timeout=60) == 0
        assert time.monotonic() - started < 30


def test_a_request_that_runs_too_long_is_answered_503() -> None:
    import asyncio

    from regard.service.limits import LimitsMiddleware
    from regard.service.state import ServiceConfig

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(5)

    app = LimitsMiddleware(slow, ServiceConfig(request_timeout=0.2))

    async def call() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://regard") as client:
            return await client.get("/v1/collections"), await client.post("/", content=b"{}")

    started = time.monotonic()
    native, aws = asyncio.run(call())
    assert time.monotonic() - started < 3
    assert native.status_code == 503 and native.json()["error"]["type"] == "timeout"
    assert aws.status_code == 503 and aws.json()["__type"] == "InternalServerError"


def test_docs_page_is_self_contained(service: Service) -> None:
    page = httpx.get(service.url + "/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/v1/collections/{collection_id}/search" in page.text and "purpose" in page.text
    assert "<script" not in page.text and "http://" not in page.text and "https://" not in page.text


def test_serve_signs_audit_checkpoints_as_it_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    key, file = tmp_path / "audit.pem", tmp_path / "audit.checkpoints"
    assert subprocess.run([sys.executable, "-m", "regard.cli", "log", "keygen", str(key)], capture_output=True).returncode == 0
    args = ("--checkpoint-key", str(key), "--checkpoint-file", str(file), "--checkpoint-minutes", "0.02")
    with running_service(tmp_path / "svc", *args) as svc:
        with httpx.Client(base_url=svc.url, headers=svc.bearer("admin"), timeout=60) as admin:
            admin.post("/v1/collections", json={"id": "c", "purpose": "p"})
            time.sleep(2.5)  # a checkpoint a second
        store_url = svc.store_url
    lines = file.read_text().splitlines()
    assert len(lines) >= 3  # at start, while running, at shutdown
    seqs = [json.loads(line)["seq"] for line in lines]
    assert seqs == sorted(seqs) and seqs[-1] > seqs[0]
    verified = subprocess.run(
        [sys.executable, "-m", "regard.cli", "log", "verify", "--checkpoint", str(file), "--store", store_url],
        capture_output=True, text=True,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
