"""regard.config: the one reader of the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from regard.config import SERVICE_MAX_PIXELS, Settings
from regard.errors import InvalidArgumentError


def test_defaults_and_overrides_come_from_the_environment_given() -> None:
    empty = Settings.from_env({"XDG_DATA_HOME": "/d", "XDG_CACHE_HOME": "/c"})
    assert empty.default_store_url == "sqlite:////d/regard/regard.db"
    assert empty.cache_dir == Path("/c/regard") and empty.default_master_key_file == Path("/d/regard/master.key")
    assert (empty.threads, empty.region, empty.max_pixels, empty.request_timeout) == (1, "us-east-1", SERVICE_MAX_PIXELS, 60.0)
    set_ = Settings.from_env(
        {"REGARD_STORE": "postgresql://db/r", "REGARD_THREADS": "4", "REGARD_CACHE_DIR": "/cache",
         "REGARD_MASTER_KEY_FILE": "/k", "REGARD_ACTOR": "ops", "REGARD_MAX_PIXELS": "1000", "REGARD_REQUEST_TIMEOUT": "2.5"}
    )  # fmt: skip
    assert set_.default_store_url == "postgresql://db/r" and set_.threads == 4 and set_.cache_dir == Path("/cache")
    assert set_.default_master_key_file == Path("/k") and set_.default_actor == "ops"
    assert set_.max_pixels == 1000 and set_.request_timeout == 2.5
    assert Settings.from_env({"REGARD_THREADS": "many"}).threads == 1  # as before: a bad thread count is ignored


def test_a_bad_service_setting_says_which() -> None:
    with pytest.raises(InvalidArgumentError, match="REGARD_MAX_PIXELS"):
        Settings.from_env({"REGARD_MAX_PIXELS": "lots"})
    with pytest.raises(InvalidArgumentError, match="REGARD_REQUEST_TIMEOUT"):
        Settings.from_env({"REGARD_REQUEST_TIMEOUT": "soon"})
