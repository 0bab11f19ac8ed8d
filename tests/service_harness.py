"""A real `regard serve` on a free loopback port, for the service tests, and keys to call it with."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import httpx

from regard.service.keys import KeyRing
from regard.store import open_store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    url: str
    store_url: str
    master_key: Path
    process: subprocess.Popen

    def key(
        self,
        *roles: str,
        collections: Sequence[str] | None = None,
        purpose: str | None = None,
        rate_per_minute: int | None = None,
        name: str = "test",
    ) -> tuple[str, str]:
        """A new key (id, secret), issued the way `regard keys create` does."""
        store = open_store(self.store_url)
        try:
            key, secret = KeyRing(store, self.master_key).create(
                name=name,
                roles=list(roles),
                collections=collections,
                default_purpose=purpose,
                rate_per_minute=rate_per_minute,
                actor="test-admin",
            )
        finally:
            store.close()
        return key.key_id, secret

    def bearer(self, *roles: str, **options: object) -> dict[str, str]:
        key_id, secret = self.key(*roles, **options)  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {key_id}.{secret}"}


@contextmanager
def running_service(
    tmp: Path, *extra_args: str, env: dict[str, str] | None = None, store_url: str | None = None, master_key: Path | None = None
) -> Iterator[Service]:
    """A server on a free port over `store_url` (default: a new SQLite file in `tmp`); the log is tmp/server-PORT.log."""
    port = free_port()
    store_url = store_url or f"sqlite:///{tmp / 'service.db'}"
    master_key = master_key or tmp / "master.key"
    environment = {
        **os.environ,
        "REGARD_MASTER_KEY_FILE": str(master_key),
        "REGARD_THREADS": "1",
        **(env or {}),
    }
    # Create the master key before the server starts, as `regard keys create` would.
    store = open_store(store_url)
    KeyRing(store, master_key).create(name="bootstrap", roles=["admin"], collections=None, default_purpose=None, rate_per_minute=None, actor="setup")
    store.close()
    log_path = tmp / f"server-{port}.log"
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "regard.cli", "serve", "--port", str(port), "--store", store_url, *extra_args],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", params={"ready": 1}, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready in 120 s")
            time.sleep(0.2)
        yield Service(url, store_url, master_key, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def worker_pids(pid: int) -> list[int]:
    """The worker processes of a `regard serve` (multiprocessing's spawned children, not its
    resource tracker), from /proc (Linux)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in children:
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
        except OSError:  # gone meanwhile
            continue
    return found


def wait_for_replacement(service: Service, dead: int, deadline: float) -> list[int]:
    """Wait until the serve process has replaced its dead worker `dead` (as many workers as before
    it died, 2); the workers then."""
    while True:
        now = worker_pids(service.process.pid)
        if len(now) == 2 and dead not in now:
            return now
        assert time.monotonic() < deadline, "the dead worker was not replaced"
        time.sleep(0.2)
