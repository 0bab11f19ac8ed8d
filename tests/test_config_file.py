"""The configuration file (regard/config.py), `regard config show`, and where the master key lives,
as a user meets them: real TOML files, the real `regard` command in its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from regard import config
from regard.config import Settings, redact_url
from regard.errors import InvalidArgumentError


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any Regard setting, with the user's folders in tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGARD_")}
    env.update(XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    env.update(extra)
    return env


def regard(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regard.cli", *args], capture_output=True, text=True, timeout=120, env=env,
        cwd=cwd or Path(__file__).parent.parent,
    )  # fmt: skip


def shown(env: dict[str, str], *args: str) -> dict[str, dict[str, object]]:
    done = regard(env, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------- precedence and sources


def test_command_line_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    file = write(
        tmp_path / "etc" / "regard.toml",
        'store = "sqlite:////srv/file.db"\nactor = "file-actor"\nthreads = 3\n'
        '[service]\nregion = "eu-west-1"\nrequest_timeout = 30\nmax_pixels = 1000\n',
    )
    env = clean_env(tmp_path, REGARD_ACTOR="env-actor", REGARD_THREADS="5", REGARD_REGION="ap-south-1")
    report = shown(env, "--config", str(file), "config", "show", "--json", "--store", "sqlite:////srv/option.db")
    assert report["config_file"] == str(file)
    s = report["settings"]
    in_file = f"config file ({file})"
    assert s["store"] == {"value": "sqlite:////srv/option.db", "source": "command line (--store)"}
    assert s["actor"] == {"value": "env-actor", "source": "environment ($REGARD_ACTOR)"}
    assert s["threads"] == {"value": 5, "source": "environment ($REGARD_THREADS)"}
    assert s["service.region"] == {"value": "ap-south-1", "source": "environment ($REGARD_REGION)"}
    assert s["service.request_timeout"] == {"value": 30.0, "source": in_file}
    assert s["service.max_pixels"] == {"value": 1000, "source": in_file}
    assert s["service.max_image_bytes"] == {"value": 5 * 1024 * 1024, "source": "default"}
    assert s["data_dir"] == {"value": str(tmp_path / "data" / "regard"), "source": "environment ($XDG_DATA_HOME)"}

    # Without the option and the variables, the file's values; the file found through $REGARD_CONFIG.
    report = shown(clean_env(tmp_path, REGARD_CONFIG=str(file)), "config", "show", "--json")["settings"]
    assert report["store"] == {"value": "sqlite:////srv/file.db", "source": in_file}
    assert report["actor"]["value"] == "file-actor" and report["threads"]["value"] == 3
    # ... and found in the user's config folder without either.
    write(tmp_path / "config" / "regard" / "config.toml", file.read_text())
    default = tmp_path / "config" / "regard" / "config.toml"
    assert shown(clean_env(tmp_path), "config", "show", "--json")["settings"]["threads"] == {
        "value": 3, "source": f"config file ({default})"
    }  # fmt: skip


def test_the_same_precedence_in_settings_from_a_mapping(tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", 'master_key = "keys/master.key"\ncache_dir = "/cache/file"\n[service]\nmax_image_bytes = 1024\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path / "none"), "XDG_DATA_HOME": "/d", "REGARD_CACHE_DIR": "/cache/env"}
    s = Settings.from_env(env, config_file=file)
    assert s.master_key_file == tmp_path / "keys" / "master.key" and s.sources["master_key_file"] == f"config file ({file})"
    assert s.cache_dir == Path("/cache/env") and s.sources["cache_dir"] == "environment ($REGARD_CACHE_DIR)"
    assert s.max_image_bytes == 1024 and s.config_file == file
    given = Settings.from_env(env, config_file=file, options={"master_key_file": ("--master-key", "/opt/k")})
    assert given.master_key_for("sqlite:////x.db").path == Path("/opt/k")
    assert given.master_key_for("sqlite:////x.db").source == "command line (--master-key)"
    plain = Settings.from_env(env)  # no file anywhere: the defaults, and nothing read
    assert plain.config_file is None and plain.max_image_bytes == 5 * 1024 * 1024 and plain.sources["max_image_bytes"] == "default"


def test_the_text_of_config_show_says_each_source_and_masks_passwords(tmp_path: Path) -> None:
    file = write(tmp_path / "regard.toml", 'store = "postgresql://regard:hunter2@db.internal/regard?sslmode=require"\n')
    done = regard(clean_env(tmp_path, REGARD_THREADS="2"), "--config", str(file), "config", "show")
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in done.stdout
    lines = {line.split()[0]: line for line in done.stdout.splitlines()}
    assert lines["config"] == f"config file: {file}"
    assert "postgresql://regard:***@db.internal/regard?sslmode=require" in lines["store"] and f"[config file ({file})]" in lines["store"]
    assert "[environment ($REGARD_THREADS)]" in lines["threads"]
    assert str(tmp_path / "data" / "regard" / "master.key") in lines["master_key"] and "PostgreSQL" in lines["master_key"]
    assert "[default]" in lines["service.region"] and "us-east-1" in lines["service.region"]
    as_json = regard(clean_env(tmp_path), "--config", str(file), "config", "show", "--json")
    assert "hunter2" not in as_json.stdout
    nothing = regard(clean_env(tmp_path), "config", "show")
    assert f"config file: none (no --config or $REGARD_CONFIG, and no {tmp_path / 'config' / 'regard' / 'config.toml'})" in nothing.stdout


def test_passwords_are_masked_wherever_the_url_carries_them() -> None:
    assert redact_url("postgresql://user:secret@host/db") == "postgresql://user:***@host/db"
    assert redact_url("postgres://u:p%40ss@h:5432/db?password=x&sslmode=require") == "postgres://u:***@h:5432/db?password=***&sslmode=require"
    assert redact_url("postgresql://user@host/db") == "postgresql://user@host/db"
    assert redact_url("postgresql://user:a@b@host/db") == "postgresql://user:***@host/db"
    assert redact_url("sqlite:////srv/regard.db") == "sqlite:////srv/regard.db"


# ---------------------------------------------------------------- mistakes


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("store = [\n", "not valid TOML"),
        ('stor = "sqlite:///a.db"\n', "unknown key 'stor'"),
        ('region = "eu-west-1"\n', "unknown key 'region' (region goes in the [service] table)"),
        ('[service]\nactor = "x"\n', "unknown key 'service.actor' (actor goes above [service])"),
        ('[database]\nurl = "x"\n', "unknown key 'database'"),
        ('threads = "four"\n', "threads must be a whole number, at least 1, not 'four'"),
        ("threads = 0\n", "threads must be a whole number, at least 1, not 0"),
        ("threads = true\n", "threads must be a whole number"),
        ("[service]\nrequest_timeout = \"soon\"\n", "[service] request_timeout must be a number of seconds"),
        ("[service]\nmax_pixels = 2.5\n", "[service] max_pixels must be a whole number"),
        ("cache_dir = 3\n", "cache_dir must be a path"),
        ('store = "mysql://db/x"\n', "store must be a store URL string"),
        ("service = 1\n", "service must be a table"),
    ],
)
def test_a_bad_file_is_one_clear_line_naming_the_file_and_the_key(tmp_path: Path, text: str, says: str) -> None:
    file = write(tmp_path / "regard.toml", text)
    done = regard(clean_env(tmp_path), "--config", str(file), "config", "show")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"regard: config file {file}: ") and says in done.stderr, done.stderr
    with pytest.raises(InvalidArgumentError, match=str(file)):
        Settings.from_env(clean_env(tmp_path), config_file=file)


def test_a_config_file_named_must_exist_and_the_default_one_need_not(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    by_option = regard(clean_env(tmp_path), "--config", str(missing), "doctor")
    assert by_option.returncode == 2 and by_option.stderr == f"regard: the config file {missing} (named by --config) does not exist\n"
    by_env = regard(clean_env(tmp_path, REGARD_CONFIG=str(missing)), "config", "show")
    assert by_env.returncode == 2 and f"{missing} (named by $REGARD_CONFIG) does not exist" in by_env.stderr
    assert regard(clean_env(tmp_path), "config", "show").returncode == 0  # no file at the default place: fine
    # A broken default file is not hidden by --config naming another, as the parser's defaults are read after it.
    write(tmp_path / "config" / "regard" / "config.toml", "threads = [\n")
    good = write(tmp_path / "good.toml", "threads = 2\n")
    assert shown(clean_env(tmp_path), "--config", str(good), "config", "show", "--json")["settings"]["threads"]["value"] == 2
    broken = regard(clean_env(tmp_path), "config", "show")
    assert broken.returncode == 2 and broken.stderr.startswith(f"regard: config file {tmp_path / 'config' / 'regard' / 'config.toml'}: not valid TOML")


def test_relative_paths_in_the_file_are_relative_to_its_folder(tmp_path: Path) -> None:
    file = write(
        tmp_path / "site" / "regard.toml",
        'store = "sqlite:///db/regard.db"\nmaster_key = "secrets/master.key"\ncache_dir = "~/regard-cache"\n'
        '[service]\nreports_dir = "reports"\nconsole_dir = "/var/lib/regard/console"\n',
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = regard(clean_env(tmp_path, HOME=str(tmp_path / "home")), "--config", "../site/regard.toml", "config", "show", "--json", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["config_file"] == str(file)  # --config, relative to the working folder
    s = {k: v["value"] for k, v in json.loads(done.stdout)["settings"].items()}
    site = tmp_path / "site"
    assert s["store"] == f"sqlite:///{site / 'db' / 'regard.db'}"
    assert s["master_key"] == str(site / "secrets" / "master.key")
    assert s["cache_dir"] == str(tmp_path / "home" / "regard-cache")
    assert s["service.reports_dir"] == str(site / "reports") and s["service.console_dir"] == "/var/lib/regard/console"


def test_the_config_file_reaches_every_command(tmp_path: Path) -> None:
    """The actor of the file, not the parser's default of before --config was read, is the audit log's."""
    store = tmp_path / "s.db"
    file = write(tmp_path / "regard.toml", f'store = "sqlite:///{store}"\nactor = "file-actor"\n')
    env = clean_env(tmp_path)
    assert regard(env, "--config", str(file), "init").returncode == 0
    assert store.is_file() and (tmp_path / "s.db.master.key").is_file()
    assert regard(env, "--config", str(file), "collection", "create", "c", "--purpose", "p").returncode == 0
    assert regard(env, "--config", str(file), "collection", "create", "d", "--purpose", "p", "--actor", "bob").returncode == 0
    log = json.loads(regard(env, "--config", str(file), "log", "show", "--json").stdout)
    assert [e["actor"] for e in log] == ["file-actor", "bob"]


def test_command_line_settings_last_as_long_as_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from regard.service.state import ServiceConfig

    for name in [k for k in os.environ if k.startswith("REGARD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    file = write(tmp_path / "regard.toml", "threads = 4\n")
    store = f"sqlite:///{tmp_path / 'srv' / 'a.db'}"
    with config.command_line(file, {"store_url": ("--store", store)}):
        assert config.current().threads == 4 and os.environ["REGARD_CONFIG"] == str(file)  # for the workers it starts
        # regard serve's settings, made once in the parent: the master key of the store --store names.
        assert ServiceConfig.from_env().master_key_file == tmp_path / "srv" / "a.db.master.key"
        assert ServiceConfig.from_env().store_url == store
    assert "REGARD_CONFIG" not in os.environ and config.current().threads == 1 and config.current().store_url is None


# ---------------------------------------------------------------- the master key beside its store


def test_init_puts_the_master_key_beside_a_sqlite_store(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    folder = tmp_path / "x"
    done = regard(env, "init", "--store", f"sqlite:///{folder / 'a.db'}", "--json")
    assert done.returncode == 0, done.stderr
    key = folder / "a.db.master.key"
    assert json.loads(done.stdout)["master_key"] == str(key) and json.loads(done.stdout)["master_key_created"]
    assert oct(key.stat().st_mode & 0o777) == "0o600" and key.stat().st_size == 32
    # A second store in the same folder has its own key.
    assert regard(env, "init", "--store", f"sqlite:///{folder / 'b.db'}").returncode == 0
    assert (folder / "b.db.master.key").read_bytes() != key.read_bytes()
    assert not (tmp_path / "data").exists()  # nothing went to the user's data folder
    checked = json.loads(regard(env, "doctor", "--store", f"sqlite:///{folder / 'a.db'}", "--json").stdout)
    [master] = [c for c in checked["checks"] if c["name"] == "master key"]
    assert master["status"] == "ok" and master["detail"].startswith(str(key)) and "beside the store" in master["detail"]


def test_keys_create_for_a_store_elsewhere_leaves_the_data_folder_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'srv' / 'regard.db'}"
    (tmp_path / "data").mkdir()
    env = clean_env(tmp_path, REGARD_STORE=url)
    assert regard(env, "init").returncode == 0
    created = regard(env, "keys", "create", "--name", "ci", "--role", "search", "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["master_key_file"] == str(tmp_path / "srv" / "regard.db.master.key")
    assert list((tmp_path / "data").iterdir()) == []
    served = regard(env, "config", "show", "--json")
    assert json.loads(served.stdout)["settings"]["master_key"] == {
        "value": str(tmp_path / "srv" / "regard.db.master.key"), "source": "default: beside the store"
    }  # fmt: skip


def test_the_default_store_keeps_its_master_key_in_the_data_folder(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    assert regard(env, "init").returncode == 0
    data = tmp_path / "data" / "regard"
    assert sorted(p.name for p in data.iterdir() if not p.name.startswith("regard.db-")) == ["master.key", "regard.db"]
    created = json.loads(regard(env, "keys", "create", "--name", "ci", "--role", "search", "--json").stdout)
    assert created["master_key_file"] == str(data / "master.key")
    checked = json.loads(regard(env, "doctor", "--json").stdout)
    [master] = [c for c in checked["checks"] if c["name"] == "master key"]
    assert master["status"] == "ok" and "the default store's, in the data folder" in master["detail"]


def test_a_store_from_before_keeps_the_data_folders_master_key(tmp_path: Path) -> None:
    """Before this rule every store's default key was <data>/master.key: an existing store whose keys
    were issued under it keeps it, until a key beside the store exists; a new store gets its own."""
    data = tmp_path / "data" / "regard"
    legacy = data / "master.key"
    old = tmp_path / "srv" / "old.db"
    env = clean_env(tmp_path, REGARD_STORE=f"sqlite:///{old}")
    assert regard(env, "init", "--master-key", str(legacy)).returncode == 0  # what the old default did
    issued = json.loads(regard(env, "keys", "create", "--name", "old", "--role", "search", "--master-key", str(legacy), "--json").stdout)

    again = regard(env, "keys", "create", "--name", "new", "--role", "search", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["master_key_file"] == str(legacy) and not (tmp_path / "srv" / "old.db.master.key").exists()
    checked = json.loads(regard(env, "doctor", "--json").stdout)
    [master] = [c for c in checked["checks"] if c["name"] == "master key"]
    assert master["status"] == "ok" and master["detail"].startswith(str(legacy))
    assert "before keys lived beside their store" in master["detail"] and "old.db.master.key" in master["detail"]
    from regard.service.keys import KeyRing
    from regard.store import open_store

    store = open_store(f"sqlite:///{old}", create=False)
    try:
        ring = KeyRing(store, Settings.from_env(env).master_key_for(f"sqlite:///{old}").path)
        assert ring.secret_for(issued["key_id"]) == issued["secret"]  # the old key still authenticates
    finally:
        store.close()

    fresh = tmp_path / "srv" / "new.db"
    made = json.loads(regard(env, "init", "--store", f"sqlite:///{fresh}", "--json").stdout)
    assert made["master_key"] == str(tmp_path / "srv" / "new.db.master.key") and made["master_key_created"]
