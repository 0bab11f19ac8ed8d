"""Regard's settings: one frozen object, and the only code that reads the environment.

Each setting comes from, first that has it: the command line, the environment, the configuration
file, Regard's default. `regard config show` prints the effective settings and where each came from.

| variable | in the config file | what | default |
|---|---|---|---|
| `REGARD_STORE` | `store` | the store URL (`sqlite:///path.db`, `postgresql://...`) | `sqlite:///<data>/regard.db` |
| `REGARD_MASTER_KEY_FILE` | `master_key` | the service's master key (API key secrets derive from it) | beside the store (below) |
| `REGARD_THREADS` | `threads` | threads per model session and faiss index | 1 (one process per core) |
| `REGARD_CACHE_DIR` | `cache_dir` | where the converted embedder is cached | `$XDG_CACHE_HOME/regard` or `~/.cache/regard` |
| `REGARD_MODELS_DIR` | `models_dir` | the registry of operator-supplied recognition models (`regard models add`) | `<data>/models` |
| `REGARD_ACTOR` | `actor` | who is acting, for the audit log (CLI) | the operating-system user |
| `REGARD_REGION` | `[service] region` | the region SigV4 requests are signed for | `us-east-1` |
| `REGARD_MAX_IMAGE_BYTES` | `[service] max_image_bytes` | the service's largest image, bytes | 5 MiB (Rekognition's) |
| `REGARD_MAX_PIXELS` | `[service] max_pixels` | the service's largest image, pixels | 25,000,000 |
| `REGARD_REQUEST_TIMEOUT` | `[service] request_timeout` | seconds before a service request is answered 503 | 60 |
| `REGARD_REPORTS_DIR` | `[service] reports_dir` | the folder of `regard audit` reports the console's accuracy page lists | none |
| `REGARD_CONSOLE_DIR` | `[service] console_dir` | the console's working folder (video jobs, photos waiting for a face to be picked), shared by the service's workers | a private folder in the temporary directory, per store |

`<data>` is `$XDG_DATA_HOME/regard`, else `~/.local/share/regard`.

**The configuration file** is TOML: the one `regard --config PATH` names, else `$REGARD_CONFIG`, else
`<config>/regard/config.toml` if it exists (`<config>` is `$XDG_CONFIG_HOME`, else `~/.config`). A
file named by `--config` or `$REGARD_CONFIG` must exist. Paths in it, a `sqlite:///` store's file
included, may start with `~`, and relative ones are relative to the file's folder. A key Regard does
not know, a value of the wrong type, or a file that is not TOML is an error naming the file and the
key, never ignored:

    store = "sqlite:///regard.db"            # the file regard.db beside this one
    master_key = "/etc/regard/master.key"
    threads = 2
    actor = "ops"

    [service]
    region = "eu-west-1"
    max_image_bytes = 10_485_760
    max_pixels = 25_000_000
    request_timeout = 30
    reports_dir = "reports"
    console_dir = "/var/lib/regard/console"

**The command line**: `--store`, `--master-key` and `--actor` (where a command has them) are laid
over these settings for the command's process by `regard`'s main (`command_line`); `regard serve`
lays its other options over the service's part (ServiceConfig), which it builds once in the parent
process and hands to each worker as an argument.

**The master key's file** (`Settings.master_key_for(store_url)`, the one rule for `regard init`,
`keys`, `serve` and `doctor`): the file named by `--master-key`, `$REGARD_MASTER_KEY_FILE` or
`master_key`; else, for a SQLite store `<path>.db`, the file `<path>.db.master.key` beside it (each
store its own key, so two stores in one folder do not share one); for the default store
`<data>/regard.db`, `<data>/master.key`, where it always was; for a PostgreSQL store, which has no
folder, `<data>/master.key` too. Before keys lived beside their store every store's default key was
`<data>/master.key`: so an existing SQLite store without a key beside it, on a machine that has
`<data>/master.key`, keeps using that one (its API keys were issued under it); `regard doctor` says
which file is used and why.
"""

from __future__ import annotations

import getpass
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regard.errors import InvalidArgumentError

DEFAULT_REGION = "us-east-1"
DEFAULT_MAX_IMAGE_BYTES = 5 * 1024 * 1024
DEFAULT_REQUEST_TIMEOUT = 60.0
SERVICE_MAX_PIXELS = 25_000_000
"""The service's pixel limit per image (`regard serve --max-pixels`): a 24 MP camera frame passes.
At its peak a photo takes about 28 bytes per pixel with the detector (0.7 GB for 25 MP, measured),
and a 2 KB lossless WebP can declare 50 MP, so the service holds less than the library (50 MP)."""

DEFAULT_SOURCE = "default"
MASTER_KEY_SUFFIX = ".master.key"
LEGACY_MASTER_KEY = "master.key"
"""The master key's file name in the data folder: the default store's and a PostgreSQL store's."""


@dataclass(frozen=True)
class Setting:
    """One setting: its field in `Settings`, its key in the configuration file, its variable."""

    name: str
    key: str  # in the file; "service.region" is `region` in the [service] table
    variable: str
    kind: str  # text, url, path, count (a whole number, at least 1), seconds


SETTINGS = (
    Setting("store_url", "store", "REGARD_STORE", "url"),
    Setting("master_key_file", "master_key", "REGARD_MASTER_KEY_FILE", "path"),
    Setting("threads", "threads", "REGARD_THREADS", "count"),
    Setting("cache_dir", "cache_dir", "REGARD_CACHE_DIR", "path"),
    Setting("models_dir", "models_dir", "REGARD_MODELS_DIR", "path"),
    Setting("actor", "actor", "REGARD_ACTOR", "text"),
    Setting("region", "service.region", "REGARD_REGION", "text"),
    Setting("max_image_bytes", "service.max_image_bytes", "REGARD_MAX_IMAGE_BYTES", "count"),
    Setting("max_pixels", "service.max_pixels", "REGARD_MAX_PIXELS", "count"),
    Setting("request_timeout", "service.request_timeout", "REGARD_REQUEST_TIMEOUT", "seconds"),
    Setting("reports_dir", "service.reports_dir", "REGARD_REPORTS_DIR", "path"),
    Setting("console_dir", "service.console_dir", "REGARD_CONSOLE_DIR", "path"),
)
"""Every setting the environment and the configuration file may give, in the order `regard config
show` lists them."""

_EXPECTED = {
    "text": "a non-empty string",
    "url": 'a store URL string ("sqlite:///path.db" or "postgresql://user@host/db")',
    "path": "a path (a non-empty string)",
    "count": "a whole number, at least 1",
    "seconds": "a number of seconds, more than 0",
}


@dataclass(frozen=True)
class MasterKeyFile:
    """Where a store's master key is, and why there (for `regard doctor` and `regard config show`)."""

    path: Path
    source: str
    legacy: bool = False  # the data folder's master.key, kept for a store from before keys lived beside it


@dataclass(frozen=True)
class Settings:
    """Everything Regard takes from its environment and configuration file (see the module's table)."""

    store_url: str | None
    data_dir: Path
    cache_dir: Path
    threads: int
    actor: str | None
    master_key_file: Path | None
    region: str
    max_image_bytes: int
    max_pixels: int
    request_timeout: float
    reports_dir: Path | None = None
    console_dir: Path | None = None
    models_dir: Path | None = None  # from_env always sets it (default <data>/models)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    """Where each field's value came from, by field name: "default", "environment ($REGARD_STORE)",
    "config file (/etc/regard/config.toml)" or "command line (--store)"."""
    config_file: Path | None = None  # the configuration file read, if any

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        config_file: str | Path | None = None,
        options: Mapping[str, tuple[str, Any]] | None = None,
    ) -> Settings:
        """The settings of `env` (default: this process's environment) and of the configuration file
        (`config_file`, else $REGARD_CONFIG, else the default one if it exists), with `options` laid
        over them: {field name: (option, value)}, a value of None meaning not given."""
        env = os.environ if env is None else env
        home = _home(env)
        data = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share") / "regard"
        defaults: dict[str, Any] = {
            "store_url": None,
            "master_key_file": None,
            "threads": 1,
            "cache_dir": Path(env.get("XDG_CACHE_HOME") or home / ".cache") / "regard",
            "actor": None,
            "region": DEFAULT_REGION,
            "max_image_bytes": DEFAULT_MAX_IMAGE_BYTES,
            "max_pixels": SERVICE_MAX_PIXELS,
            "request_timeout": DEFAULT_REQUEST_TIMEOUT,
            "reports_dir": None,
            "console_dir": None,
            "models_dir": data / "models",
        }
        file = find_config_file(env, config_file)
        in_file = read_config_file(file) if file is not None else {}
        options = options or {}
        values: dict[str, Any] = {}
        sources: dict[str, str] = {"data_dir": "environment ($XDG_DATA_HOME)" if env.get("XDG_DATA_HOME") else DEFAULT_SOURCE}
        for s in SETTINGS:
            option, given = options.get(s.name, ("", None))
            in_env = _from_env(s, env)
            if given is not None:
                values[s.name], sources[s.name] = _typed(s, given), f"command line ({option})"
            elif in_env is not None:
                values[s.name], sources[s.name] = in_env, f"environment (${s.variable})"
            elif s.name in in_file:
                values[s.name], sources[s.name] = in_file[s.name], f"config file ({file})"
            else:
                values[s.name], sources[s.name] = defaults[s.name], DEFAULT_SOURCE
        return cls(data_dir=data, sources=sources, config_file=file, **values)

    @property
    def default_store_url(self) -> str:
        """The store used when none is named: the settings' store, else the user's SQLite file."""
        return self.store_url or f"sqlite:///{self.data_dir / 'regard.db'}"

    def master_key_for(self, store_url: str | None = None) -> MasterKeyFile:
        """The master key file of the store at `store_url` (None: the settings' store): the rule in
        the module's docstring. Looks at the file system (for a store from before keys lived beside
        their store), so call it before a command creates the store."""
        if self.master_key_file is not None:
            return MasterKeyFile(self.master_key_file, self.sources.get("master_key_file", "given"))
        url = store_url or self.default_store_url
        legacy = self.data_dir / LEGACY_MASTER_KEY
        db = sqlite_file(url)
        if db is None:
            return MasterKeyFile(legacy, "default: the data folder's, as a PostgreSQL store has no folder")
        if os.path.abspath(db) == os.path.abspath(self.data_dir / "regard.db"):
            return MasterKeyFile(legacy, "default: the default store's, in the data folder")
        beside = db.with_name(db.name + MASTER_KEY_SUFFIX)
        if not beside.exists() and db.is_file() and legacy.is_file():
            return MasterKeyFile(
                legacy,
                f"default: the data folder's {LEGACY_MASTER_KEY}, which every store used before keys lived "
                f"beside their store (there is no {beside})",
                legacy=True,
            )
        return MasterKeyFile(beside, "default: beside the store")

    @property
    def default_master_key_file(self) -> Path:
        """The master key file of the settings' own store (`master_key_for`)."""
        return self.master_key_for(None).path

    @property
    def default_actor(self) -> str:
        return self.actor or getpass.getuser()


# ---------------------------------------------------------------- the process's command line

_command_line: tuple[Path | None, Mapping[str, tuple[str, Any]]] = (None, {})


@contextmanager
def command_line(config_file: str | Path | None = None, options: Mapping[str, tuple[str, Any]] | None = None) -> Iterator[None]:
    """While it lasts, `current()` reads `config_file` (`regard --config`; None: $REGARD_CONFIG, else
    the default file) and lays `options` ({field: (option, value)}) over the settings; `regard`'s
    main runs each command inside it. A file given is also put in $REGARD_CONFIG for the processes
    this one starts (serve's workers, bulk enrollment's), whose models read the threads and cache
    folder from it; everything else reaches them as arguments. Both are restored on exit."""
    global _command_line
    path = Path(os.path.abspath(Path(config_file).expanduser())) if config_file else None
    before, exported = _command_line, os.environ.get("REGARD_CONFIG")
    _command_line = (path, dict(options or {}))
    if path is not None:
        os.environ["REGARD_CONFIG"] = str(path)
    try:
        yield
    finally:
        _command_line = before
        if path is not None:
            if exported is None:
                os.environ.pop("REGARD_CONFIG", None)
            else:
                os.environ["REGARD_CONFIG"] = exported


def current() -> Settings:
    """The settings of this process now: its environment, its configuration file and the command
    line (`command_line`). Cheap, and read each time, never cached, so a variable set before a
    model or store is first used takes effect."""
    config_file, options = _command_line
    return Settings.from_env(config_file=config_file, options=options)


# ---------------------------------------------------------------- the configuration file


def default_config_file(env: Mapping[str, str] | None = None) -> Path:
    """`<$XDG_CONFIG_HOME or ~/.config>/regard/config.toml`: read when it exists."""
    env = os.environ if env is None else env
    home = _home(env)
    return Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "regard" / "config.toml"


def find_config_file(env: Mapping[str, str], given: str | Path | None = None) -> Path | None:
    """The configuration file to read: `given` (--config), else $REGARD_CONFIG, which must exist;
    else the default one, if it exists."""
    if given:
        path, named_by = Path(given), "--config"
    elif env.get("REGARD_CONFIG"):
        path, named_by = Path(env["REGARD_CONFIG"]), "$REGARD_CONFIG"
    else:
        path = default_config_file(env)
        if not path.exists():
            return None
        named_by = "the default location"
    path = Path(os.path.abspath(path.expanduser()))
    if not path.exists():
        raise InvalidArgumentError(f"the config file {path} (named by {named_by}) does not exist")
    if not path.is_file():
        raise InvalidArgumentError(f"the config file {path} (named by {named_by}) is not a file")
    return path


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings a configuration file gives, by field name, checked and typed (paths made
    absolute against the file's folder); InvalidArgumentError naming the file and the key."""
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgumentError(f"config file {path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise InvalidArgumentError(f"config file {path}: not UTF-8 text, as TOML must be") from None
    except OSError as exc:
        raise InvalidArgumentError(f"config file {path}: cannot be read: {exc.strerror or exc}") from None
    by_key = {s.key: s for s in SETTINGS}
    out: dict[str, Any] = {}

    def unknown(key: str, hint: str = "") -> InvalidArgumentError:
        top = ", ".join(s.key for s in SETTINGS if "." not in s.key)
        service = ", ".join(s.key.split(".", 1)[1] for s in SETTINGS if s.key.startswith("service."))
        return InvalidArgumentError(
            f"config file {path}: unknown key {key!r}{hint}; the keys are {top}, and in [service]: {service}"
        )

    for key, value in data.items():
        if key == "service":
            if not isinstance(value, dict):
                raise InvalidArgumentError(
                    f"config file {path}: service must be a table (a [service] line, then its keys), not {value!r}"
                )
            for sub, v in value.items():
                s = by_key.get(f"service.{sub}")
                if s is None:
                    raise unknown(f"service.{sub}", f" ({sub} goes above [service])" if sub in by_key else "")
                out[s.name] = _from_file(s, v, path)
        elif key in by_key:
            out[by_key[key].name] = _from_file(by_key[key], value, path)
        else:
            raise unknown(key, f" ({key} goes in the [service] table)" if f"service.{key}" in by_key else "")
    return out


def _from_file(s: Setting, value: Any, file: Path) -> Any:
    def wrong() -> InvalidArgumentError:
        shown = f"[service] {s.key.split('.', 1)[1]}" if s.key.startswith("service.") else s.key
        return InvalidArgumentError(f"config file {file}: {shown} must be {_EXPECTED[s.kind]}, not {value!r}")

    if s.kind in ("text", "url", "path"):
        if not isinstance(value, str) or not value.strip():
            raise wrong()
        if s.kind == "text":
            return value
        if s.kind == "path":
            return _beside(file, value)
        if value.startswith("sqlite:///"):
            return f"sqlite:///{_beside(file, value[len('sqlite:///'):])}" if value != "sqlite:///" else value
        if value.startswith(("postgresql://", "postgres://")):
            return value
        raise wrong()
    if isinstance(value, bool):
        raise wrong()
    if s.kind == "count":
        if not isinstance(value, int) or value < 1:
            raise wrong()
        return value
    if not isinstance(value, (int, float)) or value <= 0:
        raise wrong()
    return float(value)


def _beside(file: Path, text: str) -> Path:
    """A path written in the configuration file: `~` expanded, relative to the file's folder."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else file.parent / path


# ---------------------------------------------------------------- the environment and the command line


def _home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def _from_env(s: Setting, env: Mapping[str, str]) -> Any:
    text = env.get(s.variable)
    if not text:
        return None
    if s.kind in ("text", "url"):
        return text
    if s.kind == "path":
        return Path(text)
    if s.kind == "count":
        try:
            return max(1, int(text))
        except ValueError:
            if s.name == "threads":  # as always: a bad thread count is ignored
                return None
            raise InvalidArgumentError(f"${s.variable} is a whole number, not {text!r}") from None
    try:
        return float(text)
    except ValueError:
        raise InvalidArgumentError(f"${s.variable} is a number of seconds, not {text!r}") from None


def _typed(s: Setting, value: Any) -> Any:
    return Path(value) if s.kind == "path" else value


# ---------------------------------------------------------------- store URLs


def sqlite_file(url: str) -> Path | None:
    """The file of a `sqlite:///` store URL (relative to the working folder unless absolute), else None."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


def redact_url(url: str) -> str:
    """`url` with any password shown as `***`: `postgresql://user:secret@host/db` is
    `postgresql://user:***@host/db`, and so is a `password=` parameter."""
    import re

    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    query_at = rest.find("?")
    head, query = (rest, "") if query_at < 0 else (rest[:query_at], rest[query_at:])
    at = head.rfind("@")
    if at >= 0:
        user, colon, _password = head[:at].partition(":")
        if colon:
            head = f"{user}:***{head[at:]}"
    query = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", query)
    return f"{scheme}{sep}{head}{query}"
