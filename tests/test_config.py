"""regard.config: the one reader of the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from regard.config import SERVICE_MAX_PIXELS, Settings
from regard.errors import InvalidArgumentError


def test_defaults_and_overrides_come_from_the_environment_given() -> None:
    empty = Settings.from_env({"XDG_DATA_HOME": "/d", "XDG_CACHE_HOME": "/c", "XDG_CONFIG_HOME": "/nowhere"})
    assert empty.default_store_url == "sqlite:////d/regard/regard.db"
    assert empty.cache_dir == Path("/c/regard") and empty.default_master_key_file == Path("/d/regard/master.key")
    assert (empty.threads, empty.region, empty.max_pixels, empty.request_timeout) == (1, "us-east-1", SERVICE_MAX_PIXELS, 60.0)
    assert empty.sources["store_url"] == "default" and empty.config_file is None
    set_ = Settings.from_env(
        {"XDG_CONFIG_HOME": "/nowhere", "REGARD_STORE": "postgresql://db/r", "REGARD_THREADS": "4", "REGARD_CACHE_DIR": "/cache",
         "REGARD_MASTER_KEY_FILE": "/k", "REGARD_ACTOR": "ops", "REGARD_MAX_PIXELS": "1000", "REGARD_REQUEST_TIMEOUT": "2.5"}
    )  # fmt: skip
    assert set_.default_store_url == "postgresql://db/r" and set_.threads == 4 and set_.cache_dir == Path("/cache")
    assert set_.default_master_key_file == Path("/k") and set_.default_actor == "ops"
    assert set_.max_pixels == 1000 and set_.request_timeout == 2.5
    assert set_.sources["master_key_file"] == "environment ($REGARD_MASTER_KEY_FILE)"
    assert Settings.from_env({"REGARD_THREADS": "many"}).threads == 1  # as before: a bad thread count is ignored


def test_a_bad_service_setting_says_which() -> None:
    with pytest.raises(InvalidArgumentError, match="REGARD_MAX_PIXELS"):
        Settings.from_env({"REGARD_MAX_PIXELS": "lots"})
    with pytest.raises(InvalidArgumentError, match="REGARD_REQUEST_TIMEOUT"):
        Settings.from_env({"REGARD_REQUEST_TIMEOUT": "soon"})


def test_the_master_key_follows_its_store(tmp_path: Path) -> None:
    """One rule for init, keys, serve and doctor: beside a SQLite store; the data folder's master.key
    for the default store, for PostgreSQL, and for a store from before keys lived beside it."""
    data = tmp_path / "data" / "regard"
    s = Settings.from_env({"XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "none")})
    assert s.master_key_for(f"sqlite:///{tmp_path / 'a.db'}").path == tmp_path / "a.db.master.key"
    assert s.master_key_for(f"sqlite:///{tmp_path / 'b.db'}").path == tmp_path / "b.db.master.key"  # two stores, two keys
    assert s.master_key_for("sqlite:///rel/c.db").path == Path("rel/c.db.master.key")  # as the store: from the working folder
    assert s.master_key_for(None).path == data / "master.key" == s.default_master_key_file  # the default store
    assert s.master_key_for(f"sqlite:///{data / 'regard.db'}").source == "default: the default store's, in the data folder"
    pg = s.master_key_for("postgresql://u:p@db/r")
    assert pg.path == data / "master.key" and "PostgreSQL" in pg.source
    # A store that exists, without a key beside it, on a machine with the old default key: that key.
    (tmp_path / "a.db").touch()
    assert s.master_key_for(f"sqlite:///{tmp_path / 'a.db'}").path == tmp_path / "a.db.master.key"  # no old key here
    data.mkdir(parents=True)
    (data / "master.key").write_bytes(b"k" * 32)
    old = s.master_key_for(f"sqlite:///{tmp_path / 'a.db'}")
    assert old.path == data / "master.key" and old.legacy and "a.db.master.key" in old.source
    assert s.master_key_for(f"sqlite:///{tmp_path / 'b.db'}").path == tmp_path / "b.db.master.key"  # a new store: its own
    (tmp_path / "a.db.master.key").write_bytes(b"n" * 32)
    assert s.master_key_for(f"sqlite:///{tmp_path / 'a.db'}").path == tmp_path / "a.db.master.key"  # once there, it wins
