"""A Rekognition SearchFacesByImage, counted statement by statement on both backends: it reads the
caller's key once, the collection once (inside the search's own transaction, with the threshold
decided there), and the records of the faces it matched in one query."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import uvicorn
from botocore.config import Config

from regard.gallery import enroll
from regard.service.app import create_app
from regard.service.keys import KeyRing
from regard.service.state import ServiceConfig
from regard.store import ConsentBasis, open_store
from tests.service_harness import free_port

LFW = Path(__file__).parent / "fixtures" / "lfw"


def _prepare(store_url: str, master_key: Path) -> tuple[str, str]:
    """A collection with three people (Akhmed Zakayev from two photos) and a search key."""
    store = open_store(store_url)
    try:
        store.create_collection("staff", purpose="building access", actor="setup")
        for person, photos in (
            ("akhmed", ["Akhmed_Zakayev_0001.jpg", "Akhmed_Zakayev_0002.jpg"]),
            ("amber", ["Amber_Tamblyn_0001.jpg"]),
            ("alanis", ["Alanis_Morissette_0001.jpg"]),
        ):
            store.add_person("staff", person, actor="setup")
            store.record_consent("staff", person, basis=ConsentBasis.CONSENT, actor="setup")
            for name in photos:
                enroll(store, "staff", LFW / name.rsplit("_", 1)[0] / name, person_id=person, actor="setup")
        key, secret = KeyRing(store, master_key).create(
            name="searcher", roles=["search"], collections=None, default_purpose="statement count",
            rate_per_minute=None, actor="setup",
        )  # fmt: skip
    finally:
        store.close()
    return key.key_id, secret


@pytest.fixture()
def served(store_url: str, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """The service in this process (so its store's statements can be counted), on a real port."""
    master_key = tmp_path / "master.key"
    key_id, secret = _prepare(store_url, master_key)
    app = create_app(ServiceConfig(store_url=store_url, master_key_file=master_key))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
        time.sleep(0.05)
    client = boto3.client(
        "rekognition", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id=key_id, aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}),
    )  # fmt: skip
    try:
        yield client, app.state.regard.store
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture()
def statements(served: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement the service's store sends from now on."""
    _, store = served
    seen: list[str] = []
    if store.backend.__class__.__name__ == "SQLiteBackend":
        store.backend._conn.set_trace_callback(seen.append)  # noqa: SLF001
    else:
        execute = psycopg.Cursor.execute

        def counted(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(query if isinstance(query, str) else repr(query))
            return execute(self, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    return seen


def _reads(statements: list[str], table: str) -> list[str]:
    return [s for s in statements if re.search(rf"\bFROM {table}\b", s) and not s.lstrip().upper().startswith("INSERT")]


def test_search_faces_by_image_reads_key_collection_and_matches_once(
    served: tuple[Any, Any], statements: list[str]
) -> None:
    client, _ = served
    probe = (LFW / "Akhmed_Zakayev" / "Akhmed_Zakayev_0003.jpg").read_bytes()
    for attempt in ("first", "second"):  # the first also builds the SQLite store's index
        statements.clear()
        response = client.search_faces_by_image(CollectionId="staff", Image={"Bytes": probe}, FaceMatchThreshold=50)
        matches = response["FaceMatches"]
        assert len(matches) >= 2 and {m["Face"]["UserId"] for m in matches[:2]} == {"akhmed"}, attempt
        assert len({m["Face"]["ExternalImageId"] for m in matches[:2]}) == 2  # the records of both photos' faces
        assert len(_reads(statements, "api_keys")) == 1, (attempt, _reads(statements, "api_keys"))
        # The first request also reads which model the collection's faces come from, before the
        # photo's faces are embedded (remembered: it never changes while the collection exists).
        assert len(_reads(statements, "collections")) == (2 if attempt == "first" else 1), (attempt, _reads(statements, "collections"))
        matched = [s for s in _reads(statements, "faces") if "face_id" in s]
        assert len(matched) == 1, (attempt, matched)


def test_a_search_without_a_threshold_uses_the_one_its_transaction_read(
    served: tuple[Any, Any], statements: list[str]
) -> None:
    """No FaceMatchThreshold: the store picks the default for the size it saw, and says which."""
    client, store = served
    from regard.match import search_threshold
    from regard.service.rekognition import similarity_of_score

    probe = (LFW / "Akhmed_Zakayev" / "Akhmed_Zakayev_0003.jpg").read_bytes()
    response = client.search_faces_by_image(CollectionId="staff", Image={"Bytes": probe})
    used = search_threshold(store.table, 4)  # four faces enrolled
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert float(headers["x-regard-threshold"]) == pytest.approx(used, abs=0.01)
    assert all(m["Similarity"] >= similarity_of_score(store.table, used) - 1e-6 for m in response["FaceMatches"])
    assert len(_reads(statements, "collections")) <= 2  # the search's gallery read, and the model's on a first request
