"""The service killed with kill -9 while enrollments arrive at once, on both backends: after a
restart every face whose enrollment was acknowledged is there, and the audit chain verifies."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx

from regard.store import open_store
from tests.conftest import FIXTURES
from tests.service_harness import running_service

PEOPLE = {"amber": "Amber_Tamblyn", "akhmed": "Akhmed_Zakayev", "abel": "Abel_Pacheco", "ann": "Ann_Veneman"}


def test_kill_9_during_concurrent_enrollments_loses_no_acknowledged_face(tmp_path: Path, store_url: str) -> None:
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    with running_service(tmp_path, store_url=store_url) as svc:
        admin = httpx.Client(base_url=svc.url, headers=svc.bearer("admin"), timeout=60)
        admin.post("/v1/collections", json={"id": "staff", "purpose": "door access"})
        for person in PEOPLE:
            admin.post("/v1/collections/staff/persons", json={"id": person})
            admin.put(f"/v1/collections/staff/persons/{person}/consent", json={"basis": "consent"})

        def enroll(person: str, name: str) -> None:
            photos = sorted((FIXTURES / "lfw" / name).glob("*.jpg"))
            with httpx.Client(base_url=svc.url, headers=svc.bearer("enroll", collections=["staff"]), timeout=60) as c:
                n = 0
                while not stop.is_set():
                    photo = photos[n % len(photos)]
                    n += 1
                    try:  # a new external image id each time: every request stores a face
                        answer = c.post(
                            f"/v1/collections/staff/persons/{person}/faces",
                            files={"image": photo.read_bytes()}, data={"external_image_id": f"{person}-{n}"},
                        )  # fmt: skip
                    except httpx.HTTPError:
                        return  # the server died under us: this one was never acknowledged
                    if answer.status_code == 201 and answer.json()["enrolled"]:
                        with lock:
                            acknowledged.append(answer.json()["enrolled"][0]["face_id"])

        threads = [threading.Thread(target=enroll, args=item) for item in PEOPLE.items()]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(svc.process.pid, signal.SIGKILL)  # mid-burst: some requests are in flight
        svc.process.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert len(acknowledged) >= 12

    with running_service(tmp_path, store_url=store_url) as svc:  # the same store and master key, a new process
        admin = httpx.Client(base_url=svc.url, headers=svc.bearer("admin"), timeout=60)
        stored = {f["face_id"] for f in admin.get("/v1/collections/staff/faces").json()["faces"]}
        assert set(acknowledged) <= stored
        assert admin.get("/v1/audit/verify").json()["ok"] is True
    store = open_store(store_url)
    try:
        enrolls = store.audit_entries(action="enroll", collection="staff")
        logged = {face for e in enrolls for face in e.details["face_ids"]}
        assert stored <= logged  # every stored face has its audit entry (same transaction)
    finally:
        store.close()
