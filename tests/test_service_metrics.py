"""`regard serve --metrics-address`: Prometheus metrics on a listener of their own (never the API's
port), counted from real requests to a real server: by operation and status, latency, faces
detected, searches by collection and purpose hash, the store's size read at each scrape, and with
several workers (prometheus_client's multiprocess mode) the sum of every worker's counts."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from prometheus_client.parser import text_string_to_metric_families

from regard.store import open_store
from tests.service_harness import (
    free_port,
    running_service,
    wait_for_replacement,
    worker_pids,
)

FIXTURES = Path(__file__).parent / "fixtures"
GROUP = FIXTURES / "2008_002470.jpg"  # several people
AMBER = FIXTURES / "lfw" / "Amber_Tamblyn" / "Amber_Tamblyn_0001.jpg"
AMBER_AGAIN = FIXTURES / "lfw" / "Amber_Tamblyn" / "Amber_Tamblyn_0002.jpg"
PURPOSE = "find our volunteers in event photos"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(address: str) -> Samples:
    """Every sample at the metrics address, keyed by (name, sorted labels)."""
    text = httpx.get(f"http://{address}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the series of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    address = f"127.0.0.1:{free_port()}"
    with running_service(tmp_path_factory.mktemp("metrics"), "--metrics-address", address, "--max-image-bytes", "400000") as svc:
        svc.metrics = address  # type: ignore[attr-defined]
        yield svc


def test_requests_latency_detections_and_searches_are_counted(service: Any) -> None:
    admin = httpx.Client(base_url=service.url, headers=service.bearer("admin"), timeout=60)
    before = scrape(service.metrics)

    assert admin.post("/v1/collections", json={"id": "volunteers", "purpose": PURPOSE}).status_code == 201
    assert admin.post("/v1/collections/volunteers/persons", json={"id": "amber"}).status_code == 201
    assert admin.put("/v1/collections/volunteers/persons/amber/consent", json={"basis": "consent"}).status_code == 200
    enrolled = admin.post("/v1/collections/volunteers/persons/amber/faces", files={"image": AMBER.read_bytes()})
    assert enrolled.status_code == 201 and len(enrolled.json()["enrolled"]) == 1
    for _ in range(3):
        assert admin.get("/v1/collections/volunteers").status_code == 200
    assert admin.get("/v1/collections/nobody-has-this").status_code == 404
    assert admin.get("/no/such/path").status_code == 404
    assert admin.get("/console/static/console.css").status_code == 200
    assert admin.post("/v1/detect", content=b"x" * 2_000_000).status_code == 413  # refused before routing

    detected = admin.post("/v1/detect", files={"image": GROUP.read_bytes()})
    assert detected.status_code == 200
    native_faces = len(detected.json()["faces"])
    key_id, secret = service.key("admin", purpose="metrics tests")
    rek = boto3.client(
        "rekognition", endpoint_url=service.url, region_name="us-east-1", config=Config(retries={"max_attempts": 1}),
        aws_access_key_id=key_id, aws_secret_access_key=secret,
    )  # fmt: skip
    aws_faces = len(rek.detect_faces(Image={"Bytes": GROUP.read_bytes()})["FaceDetails"])
    assert native_faces >= 3 and aws_faces >= 3

    found = admin.post(
        "/v1/collections/volunteers/search", files={"image": AMBER_AGAIN.read_bytes()}, data={"purpose": "photo credits"}
    )
    assert found.status_code == 200 and found.json()["faces"][0]["candidates"]
    rek.search_faces_by_image(CollectionId="volunteers", Image={"Bytes": AMBER_AGAIN.read_bytes()})

    after = scrape(service.metrics)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "regard_http_requests_total"
    one = "/v1/collections/{collection_id}"
    assert delta(requests, operation="/v1/collections", method="POST", status="201") == 1
    assert delta(requests, operation=one, method="GET", status="200") == 3  # the template, never the raw path
    assert delta(requests, operation=one, method="GET", status="404") == 1
    assert delta(requests, operation="other", method="GET", status="404") == 1
    assert delta(requests, operation="/console/static/{path}", method="GET", status="200") == 1
    assert delta(requests, operation="/v1/detect", method="POST", status="200") == 1
    assert delta(requests, operation="/v1/detect", method="POST", status="413") == 1
    assert delta(requests, operation="DetectFaces", method="POST", status="200") == 1
    assert delta(requests, operation="SearchFacesByImage", method="POST", status="200") == 1
    assert not any(n == requests and "volunteers" in dict(ls)["operation"] for n, ls in after)

    latency = "regard_http_request_duration_seconds"
    assert delta(f"{latency}_count", operation=one, method="GET") == 4
    assert delta(f"{latency}_bucket", operation=one, method="GET", le="60.0") == 4
    assert delta(f"{latency}_sum", operation="/v1/detect", method="POST") > 0

    assert delta("regard_faces_detected_total") == native_faces + aws_faces
    for purpose in ("photo credits", "metrics tests"):  # each search under the purpose it declared (audited)
        digest = hashlib.sha256(purpose.encode()).hexdigest()[:12]
        assert delta("regard_searches_total", collection="volunteers", purpose_hash=digest) == 1
        assert not any(purpose in str(key) for key in after)  # the purpose itself is never exposed
    assert value(after, "regard_model_load_seconds") > 0


def test_store_gauges_are_what_the_store_holds(service: Any) -> None:
    admin = httpx.Client(base_url=service.url, headers=service.bearer("admin"), timeout=60)
    assert admin.post("/v1/collections", json={"id": "gauged", "purpose": "counting"}).status_code == 201
    samples = scrape(service.metrics)
    store = open_store(service.store_url)
    try:
        collections = store.list_collections()
        head = store.verify_audit().head_seq
    finally:
        store.close()
    assert value(samples, "regard_store_up") == 1
    assert value(samples, "regard_store_collections") == len(collections) >= 1
    for c in collections:
        assert value(samples, "regard_store_faces", collection=c.id) == c.face_count
        assert value(samples, "regard_store_persons", collection=c.id) == c.person_count
    assert value(samples, "regard_audit_log_entries") == head > 0


def test_the_api_port_does_not_serve_the_metrics(service: Any) -> None:
    assert httpx.get(f"{service.url}/metrics").status_code == 404
    assert "regard_http_requests_total" not in httpx.get(f"{service.url}/metrics").text


def test_a_bad_metrics_address_is_refused_before_serving(capsys: pytest.CaptureFixture[str]) -> None:
    from regard.cli.main import main

    assert main(["serve", "--metrics-address", "9464"]) == 2
    assert "--metrics-address" in capsys.readouterr().err


def _environment(pid: int) -> dict[str, str]:
    pairs = (item.partition(b"=") for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if item)
    return {k.decode(): v.decode(errors="replace") for k, _, v in pairs}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the processes from /proc (Linux)")
def test_several_workers_counts_are_summed(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    with running_service(tmp_path, "--workers", "2", "--metrics-address", address) as svc:
        workers = worker_pids(svc.process.pid)
        assert len(workers) == 2
        folders = {_environment(pid).get("PROMETHEUS_MULTIPROC_DIR") for pid in workers}
        (folder,) = folders
        assert folder and stat.S_IMODE(Path(folder).stat().st_mode) == 0o700  # private to this user

        headers = svc.bearer("admin")
        made = 24
        for _ in range(made):  # a new connection each time, so that both workers answer some
            assert httpx.get(f"{svc.url}/v1/collections", headers=headers, timeout=60).status_code == 200
        # Each worker writes its own file; the listener serves their sum.
        writers = {p.stem.rsplit("_", 1)[1] for p in Path(folder).glob("counter_*.db")}
        assert writers == {str(pid) for pid in workers}
        samples = scrape(address)
        assert value(samples, "regard_http_requests_total", operation="/v1/collections", method="GET", status="200") == made
        assert value(samples, "regard_http_request_duration_seconds_count", operation="/v1/collections", method="GET") == made
        assert value(samples, "regard_model_load_seconds") > 0
        assert value(samples, "regard_store_up") == 1 and value(samples, "regard_audit_log_entries") >= 1

        # A worker that dies leaves the live gauges; what it counted stays in the sum.
        assert (Path(folder) / f"gauge_livemax_{workers[0]}.db").exists()
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 120
        wait_for_replacement(svc, workers[0], deadline)
        assert not (Path(folder) / f"gauge_livemax_{workers[0]}.db").exists()  # mark_process_dead
        again = scrape(address)
        assert value(again, "regard_http_requests_total", operation="/v1/collections", method="GET", status="200") == made

        svc.process.send_signal(signal.SIGTERM)
        assert svc.process.wait(timeout=60) == 0
        deadline = time.monotonic() + 5
        while Path(folder).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(folder).exists()  # removed at shutdown
