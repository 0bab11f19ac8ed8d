"""Two `regard serve` processes sharing one PostgreSQL database, as replicas behind a load balancer:
what one enrolls the other finds, concurrent enrollment and search lose nothing, and the audit chain
stays linear."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from regard.store import open_store
from tests.service_harness import running_service

LFW = Path(__file__).parent / "fixtures" / "lfw"


def rekognition(url: str, key: tuple[str, str], **headers: str) -> Any:
    client = boto3.client(
        "rekognition", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key[0],
        aws_secret_access_key=key[1], config=Config(retries={"max_attempts": 1}),
    )

    def add(request: Any, **_: Any) -> None:
        for name, value in headers.items():
            request.headers[name] = value

    client.meta.events.register("before-sign.rekognition.*", add)
    return client


def test_two_replicas_share_one_postgresql(tmp_path: Path, postgres_url: str) -> None:
    master = tmp_path / "master.key"
    with running_service(tmp_path, store_url=postgres_url, master_key=master) as a, running_service(
        tmp_path, store_url=postgres_url, master_key=master
    ) as b:
        key = a.key("admin", purpose="replica test")  # issued once, valid on both replicas
        headers = {"X-Regard-Consent-Basis": "consent"}
        on_a, on_b = rekognition(a.url, key, **headers), rekognition(b.url, key, **headers)
        on_a.create_collection(CollectionId="shared")
        people = sorted(p for p in LFW.iterdir() if len(list(p.glob("*.jpg"))) >= 2)[:6]
        errors: list[BaseException] = []

        def enroll(client: Any, folders: list[Path]) -> None:
            try:
                for folder in folders:
                    client.create_user(CollectionId="shared", UserId=folder.name)
                    photo = sorted(folder.glob("*.jpg"))[0].read_bytes()
                    client.index_faces(CollectionId="shared", Image={"Bytes": photo}, ExternalImageId=folder.name)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        def search(client: Any) -> None:
            try:
                for folder in people:
                    client.search_faces_by_image(CollectionId="shared", Image={"Bytes": sorted(folder.glob("*.jpg"))[1].read_bytes()})
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [
            threading.Thread(target=enroll, args=(on_a, people[0::2])),
            threading.Thread(target=enroll, args=(on_b, people[1::2])),
            threading.Thread(target=search, args=(on_a,)),
            threading.Thread(target=search, args=(on_b,)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors

        # Every face enrolled through either replica is found through the other.
        assert on_b.describe_collection(CollectionId="shared")["FaceCount"] == len(people)
        for folder in people:
            probe = sorted(folder.glob("*.jpg"))[1].read_bytes()
            found = on_b.search_faces_by_image(CollectionId="shared", Image={"Bytes": probe})
            assert [m["Face"]["UserId"] for m in found["FaceMatches"]][:1] == [folder.name]

        store = open_store(postgres_url)
        try:
            report = store.verify_audit()
            entries = store.audit_entries()
        finally:
            store.close()
        assert report.ok, report.problems
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        searches = [e for e in entries if e.action.value == "search"]
        assert len(searches) == 3 * len(people)
        assert {e.actor for e in searches} == {f"key:{key[0]}"} and {e.purpose for e in searches} == {"replica test"}
