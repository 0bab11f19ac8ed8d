"""Regard's settings: one frozen object, and the only code that reads the environment.

| variable | what | default |
|---|---|---|
| `REGARD_STORE` | the store URL (`sqlite:///path.db`, `postgresql://...`) | `sqlite:///<data>/regard.db` |
| `REGARD_ACTOR` | who is acting, for the audit log (CLI) | the operating-system user |
| `REGARD_THREADS` | threads per model session and faiss index | 1 (one process per core) |
| `REGARD_CACHE_DIR` | where the converted embedder is cached | `$XDG_CACHE_HOME/regard` or `~/.cache/regard` |
| `REGARD_MASTER_KEY_FILE` | the service's master key (API key secrets derive from it) | `<data>/master.key` |
| `REGARD_REGION` | the region SigV4 requests are signed for | `us-east-1` |
| `REGARD_MAX_IMAGE_BYTES` | the service's largest image, bytes | 5 MiB (Rekognition's) |
| `REGARD_MAX_PIXELS` | the service's largest image, pixels | 25,000,000 |
| `REGARD_REQUEST_TIMEOUT` | seconds before a service request is answered 503 | 60 |
| `REGARD_REPORTS_DIR` | the folder of `regard audit` reports the console's accuracy page lists | none |
| `REGARD_CONSOLE_DIR` | the console's working folder (video jobs, photos waiting for a face to be picked), shared by the service's workers | a private folder in the temporary directory, per store |

`<data>` is `$XDG_DATA_HOME/regard`, else `~/.local/share/regard`. The CLI and `regard serve` lay
their options over these; `regard serve` hands its settings to its worker processes as arguments.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from regard.errors import InvalidArgumentError

DEFAULT_REGION = "us-east-1"
DEFAULT_MAX_IMAGE_BYTES = 5 * 1024 * 1024
DEFAULT_REQUEST_TIMEOUT = 60.0
SERVICE_MAX_PIXELS = 25_000_000
"""The service's pixel limit per image (`regard serve --max-pixels`): a 24 MP camera frame passes.
At its peak a photo takes about 28 bytes per pixel with the detector (0.7 GB for 25 MP, measured),
and a 2 KB lossless WebP can declare 50 MP, so the service holds less than the library (50 MP)."""


@dataclass(frozen=True)
class Settings:
    """Everything Regard takes from its environment (see the module's table)."""

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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data = Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "regard"
        cache = env.get("REGARD_CACHE_DIR")
        key = env.get("REGARD_MASTER_KEY_FILE")
        reports = env.get("REGARD_REPORTS_DIR")
        console = env.get("REGARD_CONSOLE_DIR")
        return cls(
            store_url=env.get("REGARD_STORE") or None,
            data_dir=data,
            cache_dir=Path(cache) if cache else Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "regard",
            threads=_whole(env, "REGARD_THREADS", 1, lenient=True),
            actor=env.get("REGARD_ACTOR") or None,
            master_key_file=Path(key) if key else None,
            region=env.get("REGARD_REGION") or DEFAULT_REGION,
            max_image_bytes=_whole(env, "REGARD_MAX_IMAGE_BYTES", DEFAULT_MAX_IMAGE_BYTES),
            max_pixels=_whole(env, "REGARD_MAX_PIXELS", SERVICE_MAX_PIXELS),
            request_timeout=_seconds(env, "REGARD_REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT),
            reports_dir=Path(reports) if reports else None,
            console_dir=Path(console) if console else None,
        )

    @property
    def default_store_url(self) -> str:
        """The store used when none is named: $REGARD_STORE, else the user's SQLite file."""
        return self.store_url or f"sqlite:///{self.data_dir / 'regard.db'}"

    @property
    def default_master_key_file(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"

    @property
    def default_actor(self) -> str:
        return self.actor or getpass.getuser()


def current() -> Settings:
    """The settings of this process's environment now (cheap: read each time, never cached, so a
    variable set before a model or store is first used takes effect)."""
    return Settings.from_env()


def _whole(env: Mapping[str, str], name: str, default: int, *, lenient: bool = False) -> int:
    text = env.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        if lenient:
            return default
        raise InvalidArgumentError(f"${name} is a whole number, not {text!r}") from None
    return max(1, value)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise InvalidArgumentError(f"${name} is a number of seconds, not {text!r}") from None
