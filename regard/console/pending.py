"""Photos waiting for their person's face to be picked at enrollment (the console's collections
section): temporary files of this process, bound to the key that uploaded them."""

from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


PENDING_MINUTES = 15
"""How long a photo waiting for its face to be picked is kept, at most."""
PENDING_PER_KEY = 20
"""Photos waiting for a choice per key at most; the oldest goes first."""


# ---------------------------------------------------------------- photos waiting for a face to be picked

_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")


class Pending:
    """Photos waiting for their person's face to be picked: each a file in a private folder
    (mode 0700, files 0600) named by a random token and bound to the key that uploaded it, the
    collection and the person. The folder is <console working folder>/enroll (`pending_for`), so
    every worker of a server sees the photo whichever one receives the choice; without one, a
    temporary folder of this process. A photo goes once its face is picked, once its person's
    consent is revoked or they are forgotten, or after `PENDING_MINUTES` (a background sweep)."""

    def __init__(self, minutes: float = PENDING_MINUTES, folder: Path | None = None) -> None:
        self.seconds = minutes * 60
        self._lock = threading.Lock()
        self._dir: str | None = str(folder) if folder is not None else None
        self._sweeper: threading.Thread | None = None

    def _folder(self) -> str:
        with self._lock:
            if self._dir is not None and not os.path.isdir(self._dir):
                os.makedirs(self._dir, mode=0o700, exist_ok=True)
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="regard-console-enroll-")
                atexit.register(shutil.rmtree, self._dir, True)
            if self._sweeper is None or not self._sweeper.is_alive():
                self._sweeper = threading.Thread(target=self._sweep_forever, name="regard-console-pending", daemon=True)
                self._sweeper.start()
            return self._dir

    def _paths(self, token: str) -> tuple[str, str]:
        folder = self._folder()
        return os.path.join(folder, f"{token}.photo"), os.path.join(folder, f"{token}.json")

    @staticmethod
    def _write(path: str, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)

    def put(self, key_id: str, collection: str, person: str, name: str, photo: bytes, faces: list[dict[str, Any]]) -> str:
        """Keep a photo for its face to be picked; its token."""
        token = secrets.token_urlsafe(24)  # 32 characters
        photo_path, meta_path = self._paths(token)
        meta = {"key": key_id, "collection": collection, "person": person, "name": name, "created": time.time(), "faces": faces}
        self._write(photo_path, photo)
        self._write(meta_path, json.dumps(meta).encode())
        mine = self._all(lambda m: m["key"] == key_id)
        for old in sorted(mine, key=lambda m: m["created"])[:-PENDING_PER_KEY]:
            self._remove(old["token"])
        return token

    def _meta(self, token: str) -> dict[str, Any] | None:
        if not _TOKEN.fullmatch(token):
            return None
        _, meta_path = self._paths(token)
        try:
            with open(meta_path, encoding="utf-8") as source:
                meta = dict(json.load(source))
        except (OSError, ValueError):
            return None
        if time.time() - float(meta["created"]) > self.seconds:
            self._remove(token)
            return None
        meta["token"] = token
        meta["expires"] = _when(datetime.fromtimestamp(float(meta["created"]) + self.seconds, timezone.utc))
        return meta

    def _all(self, keep: Any) -> list[dict[str, Any]]:
        found = []
        for entry in sorted(os.listdir(self._folder())):
            if entry.endswith(".json"):
                meta = self._meta(entry[: -len(".json")])
                if meta is not None and keep(meta):
                    found.append(meta)
        return found

    def _remove(self, token: str) -> None:
        for path in self._paths(token):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def waiting(self, key_id: str, collection: str, person: str) -> list[dict[str, Any]]:
        """The photos this key uploaded for this person that wait for a choice, oldest first."""
        found = self._all(lambda m: (m["key"], m["collection"], m["person"]) == (key_id, collection, person))
        return sorted(found, key=lambda m: m["created"])

    def get(self, token: str, key_id: str, collection: str, person: str) -> tuple[dict[str, Any], bytes] | None:
        """A waiting photo and what is known of it, if this key uploaded it for this person."""
        meta = self._meta(token)
        if meta is None or (meta["key"], meta["collection"], meta["person"]) != (key_id, collection, person):
            return None
        photo_path, _ = self._paths(token)
        try:
            with open(photo_path, "rb") as source:
                return meta, source.read()
        except OSError:
            return None

    def take(self, token: str, key_id: str, collection: str, person: str) -> tuple[dict[str, Any], bytes] | None:
        """`get`, and the photo is deleted."""
        found = self.get(token, key_id, collection, person)
        if found is not None:
            self._remove(token)
        return found

    def drop(self, collection: str, person: str) -> None:
        """Delete every photo waiting for this person, whoever uploaded it."""
        for meta in self._all(lambda m: (m["collection"], m["person"]) == (collection, person)):
            self._remove(meta["token"])

    def sweep(self) -> None:
        """Delete every file older than the time a photo is kept."""
        folder = self._dir
        if folder is None or not os.path.isdir(folder):
            return
        for entry in os.listdir(folder):
            path = os.path.join(folder, entry)
            try:
                if time.time() - os.lstat(path).st_mtime > self.seconds:
                    os.unlink(path)
            except FileNotFoundError:
                pass

    def _sweep_forever(self) -> None:
        """The background sweep, while the folder is there (the next photo kept starts it again)."""
        while self._dir is not None and os.path.isdir(self._dir):
            time.sleep(min(60.0, self.seconds / 4))
            try:
                self.sweep()
            except OSError:  # the folder went: the thread ends
                break


_pending: dict[Path, Pending] = {}
_pending_lock = threading.Lock()


def pending_for(config: Any) -> Pending:
    """The waiting photos of a server's configuration (a ServiceConfig): one store per folder and process."""
    from regard.console.jobs import console_folder

    folder = console_folder(config) / "enroll"
    with _pending_lock:
        found = _pending.get(folder)
        if found is None:
            found = _pending[folder] = Pending(folder=folder)
        return found
