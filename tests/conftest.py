"""Shared test fixtures: real photos copied into tests/fixtures (sources in tests/fixtures/SOURCES.md)."""

from __future__ import annotations

import getpass
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Converted models go to a per-run cache unless REGARD_CACHE_DIR is set already; the tests
    never read the developer's configuration file nor write to their registry of models."""
    os.environ.setdefault("REGARD_CACHE_DIR", str(tmp_path_factory.mktemp("regard-cache")))
    os.environ.pop("REGARD_CONFIG", None)
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config-home"))
    os.environ["REGARD_MODELS_DIR"] = str(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


def lfw(name: str, index: int) -> Path:
    return FIXTURES / "lfw" / name / f"{name}_{index:04d}.jpg"


TWO_PEOPLE = FIXTURES / "redact" / "2008_001009.jpg"
"""A real photo of two people (dlib's examples, PASCAL VOC): both faces pass the quality gate."""


def side_by_side(*photos: Path) -> bytes:
    """One JPEG of several LFW portraits next to each other: a photo of people whose names we know
    (each portrait keeps its own pixels; only the canvas is new)."""
    import io

    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in photos]
    canvas = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)), (128, 128, 128))
    x = 0
    for image in images:
        canvas.paste(image, (x, 0))
        x += image.width
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


# ---------------------------------------------------------------- PostgreSQL (regard/store/postgres/)
#
# One throwaway server per test session (initdb in a temporary folder, a free loopback port, fsync
# off), and a fresh database per test. Store tests take the `store_url` fixture, parametrized over
# ["sqlite", "postgresql"]. Where PostgreSQL or pgvector is not installed (.ci/run installs both),
# the postgresql cases are skipped with the reason, repeated loudly at the end of the run.

BACKENDS = ["sqlite", "postgresql"]
_PG_SKIPPED: list[str] = []


def _pg_bin() -> Path | None:
    """The newest PostgreSQL server binaries on this machine whose installation has pgvector."""
    for postgres in sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True):
        bindir = Path(postgres).parent
        share = subprocess.run([str(bindir / "pg_config"), "--sharedir"], capture_output=True, text=True)
        sharedir = Path(share.stdout.strip()) if share.returncode == 0 else bindir.parent.parent.parent.parent / "share"
        if (sharedir / "extension" / "vector.control").exists() or glob.glob(
            f"/usr/share/postgresql/{bindir.parent.name}/extension/vector.control"
        ):
            return bindir
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A PostgreSQL server in a temporary folder, run as an unprivileged user (it refuses root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="regard-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.user_prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, user="postgres")
            self.user_prefix = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.user_prefix, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60"
        )
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "start")

    def stop(self) -> None:
        subprocess.run([*self.user_prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server; skips (loudly) when it cannot be had."""
    if os.environ.get("REGARD_TEST_POSTGRES") == "0":
        reason = "REGARD_TEST_POSTGRES=0"
    else:
        reason = ""
        bindir = _pg_bin()
        try:
            import pgvector.psycopg  # noqa: F401
            import psycopg  # noqa: F401
        except ImportError as exc:
            reason = f"the postgres extra is not installed ({exc}): pip install -e '.[postgres]'"
        if not reason and bindir is None:
            reason = "no PostgreSQL server binaries (apt-get install postgresql postgresql-15-pgvector; .ci/run does)"
    if reason:
        _PG_SKIPPED.append(reason)
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    server = PostgresServer(bindir)  # type: ignore[arg-type]
    try:
        server.start()
        import psycopg

        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")  # fails here if pgvector is missing
    except Exception as exc:  # noqa: BLE001 - any failure to start means: skip, and say why
        server.stop()
        reason = f"could not start PostgreSQL with pgvector from {bindir} as {getpass.getuser()}: {exc}"
        _PG_SKIPPED.append(reason)
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    yield server
    server.stop()


@pytest.fixture()
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped after the test."""
    import psycopg

    name = f"regard_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_server.url(name)
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for each backend: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'regard.db'}"
    return str(request.getfixturevalue("postgres_url"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say loudly, at the end, that the PostgreSQL backend or the console's browser tests went untested."""
    from tests.browser import SKIPPED

    if SKIPPED:
        terminalreporter.section("BROWSER TESTS NOT RUN", sep="!", red=True, bold=True)
        terminalreporter.line(f"WARNING: the console's browser tests were skipped: {SKIPPED[0]}", red=True)
    if _PG_SKIPPED:
        terminalreporter.section("PostgreSQL NOT TESTED", sep="!", red=True, bold=True)
        terminalreporter.line(f"WARNING: every postgresql test case was skipped: {_PG_SKIPPED[0]}", red=True)
