"""The console's redact section: blur, pixelate or black out every face of photos or a video, see
the before/after preview, download the result.

Role `detect` is enough. Everything is `regard.redact`, as `regard redact` does it: photos with
`redact_image` (its before/after preview, `side_by_side`: red outlines for redacted faces, green for
kept ones), a video with `redact_video` as a job (regard/console/jobs.py) with a progress page.
"Keep consenting people visible" is `regard.redact.KeepConsenting` on a collection the key may
search, with the key as the actor and the purpose given: each photo (each video frame that needs
it) is one audited search, as through the API.

Nothing is kept beyond the request but the result waiting to be downloaded: the uploads are never
stored (a video's input only while its job runs), the previews are drawn into the page, and the
result is deleted when downloaded or after jobs.JOB_TTL.
"""

from __future__ import annotations

import io
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from PIL import Image
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from regard.console import jobs as jobstore
from regard.console.common import form, see_other, signed_in, state
from regard.console.render import HEADERS, data_uri, page, words_for
from regard.console.session import Session
from regard.errors import ImageError, RegardError
from regard.redact import (
    DEFAULT_SCALE,
    KEEP_PURPOSE,
    KeepConsenting,
    Mode,
    redact_image,
    redact_video,
)
from regard.redact.files import VIDEO_SUFFIXES
from regard.redact.image import side_by_side
from regard.service.keys import allowed
from regard.service.state import ServiceState, declared_pixels
from regard.store.base import Role

router = APIRouter(prefix="/console", include_in_schema=False)

MODES = (Mode.BLUR, Mode.PIXELATE, Mode.SOLID)
"""The methods offered (the library's MASK, which writes the mask itself, is for the CLI)."""
SCALE_MIN, SCALE_MAX, SCALE_STEP = 1.0, 3.0, 0.05
PREVIEW_WIDTH = 1600
"""The before/after image as drawn in the page, at most this wide (pixels)."""
PHOTO_OUTPUTS = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
                 ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff", ".gif": "image/gif"}
VIDEO_OUTPUTS = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska",
                 ".webm": "video/webm"}
"""Containers a redacted video is written in as it came; any other becomes Matroska (.mkv), which
holds every audio codec the input may carry (the audio is copied, never re-encoded)."""


# ---------------------------------------------------------------- the form


@dataclass(frozen=True)
class Choices:
    """What the form asked for."""

    mode: str = Mode.BLUR.value
    scale: float = DEFAULT_SCALE
    keep: bool = False
    collection: str = ""
    purpose: str = KEEP_PURPOSE


def _keepable(session: Session, service: ServiceState) -> list[str]:
    """The collections this key may search, whose consenting people it may keep visible."""
    return [c.id for c in service.store.list_collections() if allowed(session.caller.key, Role.SEARCH, c.id)]


def _form_page(
    request: Request, session: Session, *, choices: Choices | None = None, error: str | None = None, status: int = 200
) -> Response:
    service = state(request)
    jobs = jobstore.jobs_for(service.config)
    return page(
        request,
        "redact_form.html",
        session=session,
        status=status,
        choices=choices or Choices(),
        modes=[m.value for m in MODES],
        scale_min=SCALE_MIN,
        scale_max=SCALE_MAX,
        scale_step=SCALE_STEP,
        default_scale=DEFAULT_SCALE,
        collections=_keepable(session, service),
        error=error,
        jobs=[j for j in jobs.of_key(session.caller.key.key_id) if j.kind == "video"],
        ttl_minutes=round(jobs.ttl / 60),
        limit_mb=f"{service.config.max_body_bytes / 1_000_000:.0f}",
    )


@router.get("/redact", response_class=HTMLResponse)
def redact_page(request: Request, session: Session = Depends(signed_in)) -> Response:
    session.caller.require(Role.DETECT)
    jobstore.jobs_for(state(request).config).sweep()
    return _form_page(request, session)


def _choices(data: Any) -> tuple[Choices, str | None]:
    """The form's choices, and the message key of what is wrong with them (None if nothing)."""
    mode = str(data.get("mode") or Mode.BLUR.value)
    raw_scale = str(data.get("scale") or "").strip().replace(",", ".")
    keep = str(data.get("keep") or "") in {"1", "on", "true", "yes"}
    collection = str(data.get("collection") or "").strip()
    purpose = str(data.get("purpose") or "").strip()
    try:
        scale = float(raw_scale) if raw_scale else DEFAULT_SCALE
    except ValueError:
        scale = float("nan")
    choices = Choices(mode, scale if scale == scale else DEFAULT_SCALE, keep, collection, purpose or KEEP_PURPOSE)
    if mode not in {m.value for m in MODES}:
        return choices, "redact.bad_mode"
    if not (SCALE_MIN <= scale <= SCALE_MAX):  # also NaN
        return choices, "redact.bad_scale"
    if keep and not collection:
        return choices, "redact.need_collection"
    if keep and not purpose:
        return choices, "redact.need_purpose"
    return choices, None


def _is_video(upload: UploadFile) -> bool:
    suffix = Path(upload.filename or "").suffix.lower()
    return suffix in VIDEO_SUFFIXES or (upload.content_type or "").startswith("video/")


def _stem(name: str, default: str = "photo") -> str:
    """A file name's stem made safe for a download's name (letters, digits, - _ . only)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name or "").stem).strip("._") or default
    return stem[:80]


@router.post("/redact", response_class=HTMLResponse)
async def redact(request: Request, session: Session = Depends(signed_in)) -> Response:
    data = await form(request, session)
    caller = session.caller
    caller.require(Role.DETECT)
    service = state(request)
    jobs = jobstore.jobs_for(service.config)
    jobs.sweep()
    words = words_for(request)
    choices, problem = _choices(data)
    if problem:
        return _form_page(request, session, choices=choices, error=words(problem), status=400)
    keep = None
    if choices.keep:
        caller.require(Role.SEARCH, choices.collection)  # only a collection the key may search (403)
        keep = KeepConsenting(service.store, choices.collection, actor=caller.actor, purpose=choices.purpose)
    uploads = [u for u in data.getlist("media") if isinstance(u, UploadFile) and (u.filename or u.size)]
    if not uploads:
        return _form_page(request, session, choices=choices, error=words("redact.need_media"), status=400)
    videos = [u for u in uploads if _is_video(u)]
    if videos:
        if len(uploads) > 1:
            return _form_page(request, session, choices=choices, error=words("redact.one_video"), status=400)
        return await _start_video(request, session, jobs, videos[0], choices, keep)
    photos = [(u.filename or f"photo-{i}", await u.read()) for i, u in enumerate(uploads, 1)]
    results, failures = await _redact_photos(service, jobs, caller.key.key_id, photos, choices, keep, words)
    if not results["photos"]:
        message = words("redact.none_redacted") + " " + " ".join(f"{name}: {why}" for name, why in failures)
        return _form_page(request, session, choices=choices, error=message, status=400)
    return page(
        request,
        "redact_result.html",
        session=session,
        result=results,
        failures=failures,
        choices=choices,
        ttl_minutes=round(jobs.ttl / 60),
    )


# ---------------------------------------------------------------- photos


async def _redact_photos(
    service: ServiceState,
    jobs: jobstore.JobStore,
    key_id: str,
    photos: list[tuple[str, bytes]],
    choices: Choices,
    keep: KeepConsenting | None,
    words: Any,
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Redact each photo into a new job's folder (one result: the photo, several: a zip); the
    previews for the page, and the photos that could not be redacted (name, why)."""
    job = jobs.create(key_id, "photos", state=jobstore.RUNNING, total=len(photos))
    folder = jobs.folder_of(job)
    done: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    written: list[tuple[Path, str]] = []
    limit = service.config.max_image_bytes
    try:
        for number, (name, photo) in enumerate(photos, 1):
            if not photo:
                failures.append((name, words("redact.empty_file")))
                continue
            if len(photo) > limit:
                failures.append((name, words("redact.too_large", limit=f"{limit:,}")))
                continue
            held = await run_in_threadpool(service.pixels.acquire, declared_pixels([photo]))
            try:
                view = await run_in_threadpool(_redact_photo, service, folder, number, name, photo, choices, keep)
            except ImageError as exc:
                failures.append((name, str(exc)))
                continue
            finally:
                service.pixels.release(held)
            written.append((folder / view.pop("file"), view["download_name"]))
            done.append(view)
        if not done:
            jobs.discard(job.token)
            return {"photos": []}, failures
        if len(written) == 1:
            path, download_name = written[0]
            outcome = {"output": path.name, "download_name": download_name,
                       "media_type": PHOTO_OUTPUTS.get(path.suffix.lower(), "application/octet-stream")}
        else:
            await run_in_threadpool(_zip, folder / "result.zip", written)
            outcome = {"output": "result.zip", "download_name": "redacted.zip", "media_type": "application/zip"}
        summary = {"photos": len(done), "redacted": sum(v["redacted"] for v in done), "kept": sum(v["kept"] for v in done)}
        job = jobs.update(job.token, state=jobstore.DONE, finished=time.time(), done=len(done), summary=summary, **outcome)
    except BaseException:
        jobs.discard(job.token)
        raise
    return {"photos": done, "token": job.token, "download_name": job.download_name, "summary": summary}, failures


def _redact_photo(
    service: ServiceState, folder: Path, number: int, name: str, photo: bytes, choices: Choices, keep: KeepConsenting | None
) -> dict[str, Any]:
    """One photo redacted by the library into `folder`; what the page shows of it."""
    from regard.image import load_image

    suffix = Path(name).suffix.lower()
    suffix = suffix if suffix in PHOTO_OUTPUTS else ".png"
    output = folder / f"{number:03d}-{_stem(name)}.redacted{suffix}"
    result = redact_image(photo, output, mode=choices.mode, scale=choices.scale, keep=keep,
                          max_pixels=service.config.max_pixels)  # fmt: skip
    before = load_image(photo, max_pixels=service.config.max_pixels)
    return {
        "file": output.name,
        "name": name,
        "download_name": f"{_stem(name)}.redacted{suffix}",
        "width": int(result.image.shape[1]),
        "height": int(result.image.shape[0]),
        "redacted": result.redacted,
        "kept": result.kept,
        "preview": data_uri(_jpeg(side_by_side(before, result.image, result.faces)), "image/jpeg"),
    }


def _jpeg(image: Image.Image) -> bytes:
    if image.width > PREVIEW_WIDTH:
        image = image.resize((PREVIEW_WIDTH, max(1, round(image.height * PREVIEW_WIDTH / image.width))), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def _zip(target: Path, files: list[tuple[Path, str]]) -> None:
    """The redacted photos in one zip (stored: they are compressed already), each under its own
    name (numbered when two photos had the same), then deleted from the folder."""
    used: set[str] = set()
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for path, name in files:
            entry, n = name, 1
            while entry.lower() in used:
                n += 1
                entry = f"{Path(name).stem}-{n}{Path(name).suffix}"
            used.add(entry.lower())
            archive.write(path, entry)
    for path, _ in files:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------- a video, as a job


def _frames_in(path: Path) -> int | None:
    """The number of frames the video declares (or its duration says), None if it does not say;
    VideoError if it is not a video."""
    import av

    from regard.redact import VideoError

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError("the file has no video stream")
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            rate = stream.average_rate or stream.guessed_rate
            if container.duration and rate:
                return max(1, round(container.duration / 1_000_000 * float(rate)))
            return None
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"the file cannot be read as a video ({exc})") from exc


async def _start_video(
    request: Request,
    session: Session,
    jobs: jobstore.JobStore,
    upload: UploadFile,
    choices: Choices,
    keep: KeepConsenting | None,
) -> Response:
    words = words_for(request)
    name = upload.filename or "video"
    suffix = Path(name).suffix.lower()
    out_suffix = suffix if suffix in VIDEO_OUTPUTS else ".mkv"
    job = jobs.create(
        session.caller.key.key_id,
        "video",
        input=f"input{suffix if re.fullmatch(r'[.][a-z0-9]{1,5}', suffix) else '.video'}",
        summary={"name": name, "mode": choices.mode, "scale": choices.scale,
                 "collection": choices.collection if keep is not None else None},
    )  # fmt: skip
    folder = jobs.folder_of(job)
    source = folder / str(job.input)
    try:
        with source.open("wb") as out:
            while chunk := await upload.read(1 << 20):
                out.write(chunk)
        total = await run_in_threadpool(_frames_in, source)
    except RegardError as exc:
        jobs.discard(job.token)
        return _form_page(request, session, choices=choices, error=words("redact.bad_video", reason=str(exc)), status=400)
    except BaseException:
        jobs.discard(job.token)
        raise
    jobs.update(job.token, total=total)
    output = folder / f"result{out_suffix}"
    stem = _stem(name, "video")

    def work(progress: Any) -> dict[str, Any]:
        progress(0, total)
        preview = folder / "preview.png"
        try:
            result = redact_video(
                source, output, mode=choices.mode, scale=choices.scale, keep=keep, preview=preview,
                on_frame=lambda index, regions: progress(index + 1, total),
            )  # fmt: skip
        except RegardError as exc:  # its message names the file as the server saved it: name the upload
            raise RegardError(str(exc).replace(str(source), name)) from exc
        shown = None
        if preview.exists():
            with Image.open(preview) as image:
                (folder / "preview.jpg").write_bytes(_jpeg(image))
            preview.unlink(missing_ok=True)
            shown = "preview.jpg"
        summary = {key: value for key, value in result.to_dict().items() if key not in {"input", "output"}}
        summary.update(name=name, mode=choices.mode, scale=choices.scale,
                       collection=choices.collection if keep is not None else None)  # fmt: skip
        summary["_job"] = {
            "output": output.name,
            "preview": shown,
            "download_name": f"{stem}.redacted{out_suffix}",
            "media_type": VIDEO_OUTPUTS.get(out_suffix, "video/x-matroska"),
            "done": result.frames,
            "total": result.frames,
        }
        return summary

    jobs.start(job, work)
    return see_other(f"/console/redact/jobs/{job.token}")


# ---------------------------------------------------------------- a job's page and its download


@router.get("/redact/jobs/{token}", response_class=HTMLResponse)
def job_page(request: Request, token: str, session: Session = Depends(signed_in)) -> Response:
    session.caller.require(Role.DETECT)
    jobs = jobstore.jobs_for(state(request).config)
    jobs.sweep()
    job = jobs.get(token, session.caller.key.key_id)
    preview = None
    if job.preview:
        try:
            preview = data_uri((jobs.folder_of(job) / job.preview).read_bytes(), "image/jpeg")
        except OSError:
            preview = None
    return page(request, "redact_job.html", session=session, job=job, preview=preview, ttl_minutes=round(jobs.ttl / 60))


@router.get("/redact/jobs/{token}/download")
def download(request: Request, token: str, session: Session = Depends(signed_in)) -> Response:
    session.caller.require(Role.DETECT)
    jobs = jobstore.jobs_for(state(request).config)
    jobs.sweep()
    job, path = jobs.take(token, session.caller.key.key_id)  # NotFoundError (404): another key's, or gone
    return FileResponse(
        path,
        media_type=job.media_type or "application/octet-stream",
        filename=job.download_name or path.name,
        headers={k: v for k, v in HEADERS.items() if k != "Content-Security-Policy"},
        background=BackgroundTask(path.unlink, missing_ok=True),
    )
