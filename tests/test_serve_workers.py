"""`regard serve`'s worker processes are handed their configuration (never the environment), one
that dies is replaced, and one that cannot start stops the service; bulk enrollment's pool is
handed its thread count the same way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.service_harness import (
    free_port,
    running_service,
    wait_for_replacement,
    worker_pids,
)

FIXTURES = Path(__file__).parent / "fixtures"
PHOTO = FIXTURES / "lfw" / "Amber_Tamblyn" / "Amber_Tamblyn_0001.jpg"  # 8,443 bytes


def _environment(pid: int) -> dict[str, str]:
    pairs = (item.partition(b"=") for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if item)
    return {k.decode(): v.decode(errors="replace") for k, _, v in pairs}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the processes from /proc (Linux)")
def test_several_workers_get_the_options_as_arguments_and_a_dead_one_is_replaced(tmp_path: Path) -> None:
    with running_service(tmp_path, "--workers", "2", "--max-image-bytes", "5000") as svc:
        workers = worker_pids(svc.process.pid)
        assert len(workers) == 2
        for pid in workers:  # the options are nowhere in the workers' environment
            env = _environment(pid)
            assert "REGARD_MAX_IMAGE_BYTES" not in env and "REGARD_STORE" not in env
        headers = svc.bearer("admin")
        with httpx.Client(base_url=svc.url, headers=headers, timeout=60) as client:
            assert client.post("/v1/collections", json={"id": "c", "purpose": "p"}).status_code == 201
        # A new connection each time, so both workers answer some: every one has the option and the store.
        for _ in range(8):
            big = httpx.post(f"{svc.url}/v1/detect", headers=headers, files={"image": PHOTO.read_bytes()}, timeout=60)
            assert big.status_code == 413 and big.json()["error"]["type"] == "image_too_large"
            listed = httpx.get(f"{svc.url}/v1/collections", headers=headers, timeout=60)
            assert [c["id"] for c in listed.json()["collections"]] == ["c"]

        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 120
        wait_for_replacement(svc, workers[0], deadline)
        log = next(tmp_path.glob("server-*.log"))
        while log.read_text().count("Application startup complete") < 3:
            assert time.monotonic() < deadline, "the new worker did not start"
            time.sleep(0.2)
        for _ in range(4):
            big = httpx.post(f"{svc.url}/v1/detect", headers=headers, files={"image": PHOTO.read_bytes()}, timeout=60)
            assert big.status_code == 413

        svc.process.send_signal(signal.SIGTERM)
        assert svc.process.wait(timeout=60) == 0
        assert f"Worker process [{workers[0]}] died" in log.read_text()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_worker_that_cannot_start_stops_the_service(tmp_path: Path, workers: str) -> None:
    (tmp_path / "a-file").write_text("")
    store = f"sqlite:///{tmp_path / 'a-file' / 'regard.db'}"  # cannot be created: startup fails
    done = subprocess.run(
        [sys.executable, "-m", "regard.cli", "serve", "--port", str(free_port()), "--store", store, "--workers", workers],
        env={**os.environ, "REGARD_MASTER_KEY_FILE": str(tmp_path / "master.key")},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    if workers == "2":
        assert "could not start; stopping the service" in done.stderr


def test_serve_lays_its_options_over_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from regard.cli.main import main
    from regard.service import server
    from regard.service.state import ServiceConfig

    seen: list[ServiceConfig] = []
    monkeypatch.setattr(server, "serve", lambda config, **options: seen.append(config))
    monkeypatch.setenv("REGARD_MAX_IMAGE_BYTES", "1234")
    monkeypatch.setenv("REGARD_REGION", "eu-west-3")
    monkeypatch.delenv("REGARD_REQUEST_TIMEOUT", raising=False)
    assert main(["serve", "--region", "ap-south-1", "--max-pixels", "1000"]) == 0
    (config,) = seen
    assert (config.region, config.max_image_bytes, config.max_pixels) == ("ap-south-1", 1234, 1000)
    assert config.request_timeout == 60.0


def test_bulk_pool_workers_are_handed_their_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from regard import bulk
    from regard.models import runtime

    monkeypatch.setenv("REGARD_THREADS", "3")
    before = dict(os.environ)
    try:
        bulk._init_worker(1)
        assert runtime.default_threads() == 1  # the argument, over $REGARD_THREADS
        assert dict(os.environ) == before
    finally:
        runtime.set_threads(None)
    assert runtime.default_threads() == 3
