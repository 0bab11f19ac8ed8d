"""The console's jobs: work that outlives a request (a video's redaction) and results waiting to be
downloaded (a redacted photo, a zip of several), kept on disk and nowhere else.

Each job is a folder <random token>/ under the jobs folder holding status.json (its state, its
progress, the key id that created it), its input while it runs, and its output until it is
downloaded. The state is on disk, so a job page survives a browser reload and any worker process of
the server can answer it. Only the key that created a job can see it: for any other key it does not
exist (NotFoundError: 404).

What is kept, and for how long:
- the input is deleted as soon as the job ends (done or failed);
- the output (and the before/after preview of a video) is deleted when it is downloaded, or
  JOB_TTL seconds after the job ended, whichever comes first;
- status.json goes with the rest JOB_TTL seconds after the job ended (so that the page can say
  "downloaded, deleted from the server" meanwhile).
`sweep` applies this; the console calls it on each request of the redact section. A job whose
process stopped (the server restarted) stops being updated: after STALE seconds it is marked
failed and its input deleted.

The jobs folder is <console_dir>/jobs (ServiceConfig.console_dir, $REGARD_CONSOLE_DIR), else a
private folder (0700) in the system's temporary directory, one per store the server serves.

Jobs run in a background thread of the process that accepted them, RUNNING_AT_ONCE at a time per
process (the others wait, queued).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from regard.errors import NotFoundError, RegardError

log = logging.getLogger("regard.console")

JOB_TTL = 3600.0
"""Seconds a finished job's result (and then its status) is kept when nobody downloads it."""
STALE = 300.0
"""Seconds without news after which a queued or running job is taken as abandoned."""
RUNNING_AT_ONCE = 1
"""Jobs worked on at once in one process (a video uses the detector for all its frames)."""
PROGRESS_EVERY = 0.5
"""Seconds between two writes of a running job's progress."""
QUEUED, RUNNING, DONE, FAILED, DOWNLOADED = "queued", "running", "done", "failed", "downloaded"
FINISHED = frozenset({DONE, FAILED, DOWNLOADED})
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")
_STATUS = "status.json"


@dataclass(frozen=True)
class Job:
    """What status.json says of a job."""

    token: str
    key_id: str
    kind: str  # "video" or "photos"
    state: str = QUEUED
    created: float = 0.0
    updated: float = 0.0
    finished: float | None = None
    done: int = 0  # frames (or photos) done so far
    total: int | None = None  # frames (or photos) in all, when known
    input: str | None = None  # file name of the input in the job's folder, while it runs
    output: str | None = None  # file name of the result in the job's folder, until downloaded
    preview: str | None = None  # file name of a before/after image, until downloaded
    download_name: str | None = None  # the name the browser saves the result as
    media_type: str | None = None
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def percent(self) -> int | None:
        """How far it got, 0-100 (100 once done); None while the total is unknown."""
        if self.state in (DONE, DOWNLOADED):
            return 100
        if not self.total:
            return None
        return max(0, min(99, int(100 * self.done / self.total)))

    @property
    def running(self) -> bool:
        return self.state in (QUEUED, RUNNING)


class JobStore:
    """The jobs in one folder (see the module's docstring)."""

    def __init__(self, folder: Path, *, ttl: float = JOB_TTL, stale: float = STALE) -> None:
        self.folder = _private_folder(Path(folder))
        self.ttl = ttl
        self.stale = stale
        self._lock = threading.RLock()
        self._running = threading.BoundedSemaphore(RUNNING_AT_ONCE)

    # ------------------------------------------------------------ reading and writing

    def create(self, key_id: str, kind: str, **fields: Any) -> Job:
        """A new job's folder and status, for the key `key_id`."""
        now = time.time()
        while True:
            token = secrets.token_urlsafe(24)
            try:
                (self.folder / token).mkdir(mode=0o700)
                break
            except FileExistsError:  # pragma: no cover - 192 random bits
                continue
        job = Job(token=token, key_id=key_id, kind=kind, created=now, updated=now, **fields)
        self._write(job)
        return job

    def folder_of(self, job: Job | str) -> Path:
        token = job if isinstance(job, str) else job.token
        if not _TOKEN.match(token):
            raise NotFoundError("no such job")
        return self.folder / token

    def get(self, token: str, key_id: str) -> Job:
        """The job `token` of the key `key_id`; NotFoundError for a job of another key, as for none."""
        job = self._read(token)
        if job is None or not secrets.compare_digest(job.key_id, key_id):
            raise NotFoundError("no such job: it never existed, it belongs to another key, or its result expired")
        return job

    def of_key(self, key_id: str) -> list[Job]:
        """The key's jobs, newest first."""
        jobs = []
        for entry in self._tokens():
            job = self._read(entry)
            if job is not None and job.key_id == key_id:
                jobs.append(job)
        return sorted(jobs, key=lambda j: j.created, reverse=True)

    def update(self, token: str, **changes: Any) -> Job:
        with self._lock:
            job = self._read(token)
            if job is None:
                raise NotFoundError("no such job")
            job = replace(job, updated=time.time(), **changes)
            self._write(job)
            return job

    def discard(self, token: str) -> None:
        """Remove a job and all its files."""
        shutil.rmtree(self.folder_of(token), ignore_errors=True)

    def _read(self, token: str) -> Job | None:
        if not _TOKEN.match(token):
            return None
        try:
            data = json.loads((self.folder / token / _STATUS).read_text(encoding="utf-8"))
            return Job(**data)
        except (OSError, ValueError, TypeError):
            return None

    def _write(self, job: Job) -> None:
        folder = self.folder_of(job)
        temporary = folder / f".{_STATUS}.{secrets.token_hex(4)}"
        temporary.write_text(json.dumps(asdict(job)), encoding="utf-8")
        os.replace(temporary, folder / _STATUS)

    def _tokens(self) -> list[str]:
        try:
            return [entry.name for entry in os.scandir(self.folder) if _TOKEN.match(entry.name) and entry.is_dir()]
        except OSError:
            return []

    # ------------------------------------------------------------ running

    def start(self, job: Job, work: Callable[[Callable[[int, int | None], None]], dict[str, Any]]) -> None:
        """Run `work(progress)` in a background thread: it returns the job's summary (and may set
        `output`, `download_name`, `media_type`, `preview` in it under "_job"); `progress(done, total)`
        records how far it got. A RegardError fails the job with its message, anything else with
        a generic one (logged). The input is deleted when the work ends, however it ends."""
        thread = threading.Thread(target=self._run, args=(job.token, work), name=f"regard-console-job-{job.token[:6]}", daemon=True)
        thread.start()

    def _run(self, token: str, work: Callable[[Callable[[int, int | None], None]], dict[str, Any]]) -> None:
        try:
            while not self._running.acquire(timeout=min(10.0, self.stale / 3)):
                self.update(token)  # still queued: news, so that the job is not taken as abandoned
        except NotFoundError:  # discarded (expired) while it waited
            return
        last = [0.0]

        def progress(done: int, total: int | None = None) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY:
                last[0] = now
                changes: dict[str, Any] = {"done": done}
                if total is not None:
                    changes["total"] = total
                self.update(token, **changes)

        try:
            self.update(token, state=RUNNING)
            summary = work(progress)
            outcome = dict(summary.pop("_job", {}))
            self.update(token, state=DONE, finished=time.time(), summary=summary, **outcome)
        except RegardError as exc:
            self._fail(token, str(exc))
        except Exception:
            log.exception("console job %s failed", token[:6])
            self._fail(token, "internal error; see the server log")
        finally:
            self._running.release()
            self._drop_input(token)

    def _fail(self, token: str, message: str) -> None:
        try:
            self.update(token, state=FAILED, finished=time.time(), error=message)
        except NotFoundError:
            pass

    def _drop_input(self, token: str) -> None:
        job = self._read(token)
        if job is not None and job.input:
            (self.folder_of(token) / job.input).unlink(missing_ok=True)
            try:
                self.update(token, input=None)
            except NotFoundError:
                pass

    # ------------------------------------------------------------ downloading and expiring

    def take(self, token: str, key_id: str) -> tuple[Job, Path]:
        """The result of a finished job, for one download: the file is moved aside (so a second
        download finds nothing), the preview deleted and the job marked downloaded. The caller
        sends the file and then deletes it."""
        with self._lock:
            job = self.get(token, key_id)
            if job.state != DONE or not job.output:
                raise NotFoundError("this job has no result to download (it is not done, failed, or was downloaded)")
            folder = self.folder_of(job)
            sending = folder / f".sending.{secrets.token_hex(8)}"
            try:
                os.rename(folder / job.output, sending)  # one download wins, even across processes
            except FileNotFoundError:
                raise NotFoundError("this job's result was downloaded already") from None
            if job.preview:
                (folder / job.preview).unlink(missing_ok=True)
            job = self.update(token, state=DOWNLOADED, output=None, preview=None)
            return job, sending

    def sweep(self, now: float | None = None) -> int:
        """Delete what has outlived its time (see the module's docstring); the number of jobs removed."""
        now = time.time() if now is None else now
        removed = 0
        for token in self._tokens():
            folder = self.folder / token
            job = self._read(token)
            if job is None:  # a folder without a status: half created, or damaged
                try:
                    if now - folder.stat().st_mtime > self.stale:
                        shutil.rmtree(folder, ignore_errors=True)
                        removed += 1
                except OSError:
                    pass
                continue
            if job.state in FINISHED and job.finished is not None and now - job.finished > self.ttl:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
            elif job.running and now - job.updated > self.stale:
                self.update(token, state=FAILED, finished=now, error="the server stopped while working on this job")
                self._drop_input(token)
        return removed


def _private_folder(folder: Path) -> Path:
    """`folder`, made if need be, a directory of ours that only we can read (never a link)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
        raise RegardError(f"{folder}: the console's working folder must be a directory owned by this user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(folder, 0o700)
    return folder


def default_folder(store_url: str | None) -> Path:
    """A private folder in the system's temporary directory for the server of this store (its
    workers share it)."""
    user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    base = _private_folder(Path(tempfile.gettempdir()) / f"regard-console-{user}")
    return base / hashlib.sha256((store_url or "default").encode()).hexdigest()[:16]


def console_folder(config: Any) -> Path:
    """The console's working folder for a server's configuration (a ServiceConfig): its
    `console_dir`, else `default_folder` of its store. Video jobs and photos waiting for a face
    to be picked live in it, so every worker of the server sees them."""
    configured = getattr(config, "console_dir", None)
    return _private_folder(Path(configured) if configured else default_folder(getattr(config, "store_url", None)))


_stores: dict[Path, JobStore] = {}
_stores_lock = threading.Lock()


def jobs_for(config: Any) -> JobStore:
    """The job store of a server's configuration (a ServiceConfig), one per folder and process."""
    folder = console_folder(config) / "jobs"
    with _stores_lock:
        found = _stores.get(folder)
        if found is None:
            found = _stores[folder] = JobStore(folder)
        return found
