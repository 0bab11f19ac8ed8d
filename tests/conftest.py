"""Shared test fixtures: real photos copied into tests/fixtures (sources in tests/fixtures/SOURCES.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Converted models go to a per-run cache unless REGARD_CACHE_DIR is set already."""
    os.environ.setdefault("REGARD_CACHE_DIR", str(tmp_path_factory.mktemp("regard-cache")))


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


def lfw(name: str, index: int) -> Path:
    return FIXTURES / "lfw" / name / f"{name}_{index:04d}.jpg"
