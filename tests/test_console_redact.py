"""The console's redact section over HTTP (a real `regard serve`, a real client, real photos): a
group photo blurred in every face and untouched elsewhere, several photos as a zip, a video as a
job with its progress page, results deleted once downloaded, consenting people kept (and audited),
and the refusals: another key's job, a key without `detect`, a form without its CSRF token."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

import regard
from regard.image import load_image
from regard.redact import DEFAULT_SCALE, Mode, head_region, region_mask
from regard.redact.faces import find_faces
from tests.conftest import FIXTURES, lfw
from tests.service_harness import Service, running_service
from tests.test_console import _csrf, sign_in

GROUP = FIXTURES / "2008_002470.jpg"  # 6 faces


@pytest.fixture(scope="module")
def jobs_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The jobs' folder inside the console's working folder ($REGARD_CONSOLE_DIR)."""
    return tmp_path_factory.mktemp("console") / "jobs"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, jobs_folder: Path) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("console-redact"), env={"REGARD_CONSOLE_DIR": str(jobs_folder.parent)}) as svc:
        yield svc


@pytest.fixture(scope="module")
def editor_key(service: Service) -> tuple[str, str]:
    return service.key("detect", name="newsroom")


@pytest.fixture(scope="module")
def editor(service: Service, editor_key: tuple[str, str]) -> httpx.Client:
    client = sign_in(service, editor_key)
    client.timeout = httpx.Timeout(60.0)
    return client


def _post(client: httpx.Client, files: list[tuple[str, tuple[str, bytes, str]]], **fields: str) -> httpx.Response:
    token = _csrf(client.get("/console/redact").text)
    return client.post("/console/redact", data={"csrf": token, "mode": "blur", "scale": str(DEFAULT_SCALE), **fields}, files=files)


def _download_link(html: str) -> str:
    found = re.search(r'id="redact-download"[^>]*href="([^"]+)"|href="([^"]+)"[^>]*id="redact-download"', html)
    assert found, html[-2000:]
    return found.group(1) or found.group(2)


def test_the_form_offers_the_methods_the_default_scale_and_says_nothing_is_kept(service: Service, editor: httpx.Client) -> None:
    response = editor.get("/console/redact")
    assert response.status_code == 200
    html = response.text
    assert 'id="redact-form"' in html and 'enctype="multipart/form-data"' in html
    assert re.search(r'<input id="redact-media" name="media" type="file" multiple', html)
    for mode in ("blur", "pixelate", "solid"):
        assert f'id="redact-mode-{mode}" name="mode" value="{mode}"' in html and f'for="redact-mode-{mode}"' in html
    assert 'value="blur" checked' in html
    assert f'id="redact-scale" name="scale" type="number" min="1.0" max="3.0" step="0.05" value="{DEFAULT_SCALE}"' in html
    assert 'id="redact-nothing-stored"' in html and "Nothing is stored beyond this request" in html
    assert 'id="redact-keep"' not in html  # a key without `search` is not offered to keep anyone
    french = editor.get("/console/redact", headers={"accept-language": "fr"})
    assert "Rien n’est conservé au-delà de cette requête" in french.text


def test_a_group_photo_is_blurred_in_every_face_and_untouched_elsewhere(
    service: Service, editor: httpx.Client, jobs_folder: Path
) -> None:
    response = _post(editor, [("media", ("group.jpg", GROUP.read_bytes(), "image/jpeg"))])
    assert response.status_code == 200, response.text[-1500:]
    html = response.text
    assert "6 face(s) redacted" in html
    assert re.search(r'<img class="preview" src="data:image/jpeg;base64,[^"]+" alt="group.jpg: before', html)
    link = _download_link(html)
    download = editor.get(link)
    assert download.status_code == 200 and download.headers["content-type"] == "image/jpeg"
    assert 'filename="group.redacted.jpg"' in download.headers["content-disposition"]
    original = load_image(GROUP)
    redacted = np.asarray(Image.open(io.BytesIO(download.content)).convert("RGB"))
    assert redacted.shape == original.shape
    difference = np.abs(redacted.astype(int) - original.astype(int)).mean(axis=2)
    faces = regard.detect(original, embed=False)
    assert len(faces) >= 5
    for face in faces:  # every face the recognition detector sees is changed, all over its box
        b = face.box
        inside = difference[int(b.top) : int(b.bottom), int(b.left) : int(b.right)]
        assert inside.mean() > 8, (b, inside.mean())
    regions = [head_region(d.box, DEFAULT_SCALE) for d in find_faces(original)]
    mask = region_mask(regions, original.shape, Mode.BLUR)
    near = np.zeros_like(mask)  # the masks and the JPEG blocks they touch
    for dy in range(-16, 17, 4):
        for dx in range(-16, 17, 4):
            near |= np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
    assert (~near).mean() > 0.5
    # Outside the masks, the pixels are the original's as the library writes a JPEG (quality 95):
    # the same as the original photo encoded that way, and close to the original itself.
    encoded = io.BytesIO()
    Image.fromarray(original).save(encoded, "JPEG", quality=95)
    baseline = np.asarray(Image.open(encoded).convert("RGB")).astype(int)
    assert np.abs(redacted.astype(int) - baseline)[~near].max() <= 2
    assert difference[~near].mean() < 3
    # Downloaded once: gone from the server.
    assert editor.get(link).status_code == 404
    token = link.split("/")[-2]
    assert sorted(p.name for p in (jobs_folder / token).iterdir()) == ["status.json"]


def test_several_photos_come_back_as_one_zip(service: Service, editor: httpx.Client) -> None:
    files = [
        ("media", ("group.jpg", GROUP.read_bytes(), "image/jpeg")),
        ("media", ("pair.jpg", (FIXTURES / "redact" / "2008_001009.jpg").read_bytes(), "image/jpeg")),
    ]
    response = _post(editor, files, mode="pixelate")
    assert response.status_code == 200, response.text[-1500:]
    assert response.text.count('<img class="preview" src="data:image/jpeg') == 2
    download = editor.get(_download_link(response.text))
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        names = sorted(archive.namelist())
        assert names == ["group.redacted.jpg", "pair.redacted.jpg"]
        for name in names:
            image = Image.open(io.BytesIO(archive.read(name)))
            image.load()
            assert image.format == "JPEG"
        group = np.asarray(Image.open(io.BytesIO(archive.read("group.redacted.jpg"))).convert("RGB"))
    assert not np.array_equal(group, load_image(GROUP))


def _video(path: Path, frames: int = 8) -> Path:
    """A short, small video made from a real group photo: a slow pan, no audio."""
    import av

    src = load_image(FIXTURES / "2008_007676.jpg")
    width, height = 320, 240
    top = (src.shape[0] - height) // 2
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for i in range(frames):
            frame = np.ascontiguousarray(src[top : top + height, 4 * i : 4 * i + width])
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def _wait_done(client: httpx.Client, job: str, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while True:
        page = client.get(job)
        assert page.status_code == 200
        state = re.search(r'data-state="(\w+)"', page.text)
        assert state, page.text[-1500:]
        if state.group(1) not in {"queued", "running"}:
            return page.text
        assert '<meta name="regard-refresh" content="2">' in page.text
        assert re.search(r'<progress id="redact-progress" max="100"', page.text)
        assert time.monotonic() < deadline, "the video job did not finish"
        time.sleep(0.3)


def test_a_video_runs_as_a_job_and_its_result_is_deleted_once_downloaded(
    service: Service, editor: httpx.Client, tmp_path: Path, jobs_folder: Path
) -> None:
    import av

    video = _video(tmp_path / "march.mp4")
    response = _post(editor, [("media", ("march.mp4", video.read_bytes(), "video/mp4"))], mode="solid")
    assert response.status_code == 303, response.text[-1500:]
    job = response.headers["location"]
    assert re.fullmatch(r"/console/redact/jobs/[A-Za-z0-9_-]{32}", job)
    token = job.rsplit("/", 1)[1]
    html = _wait_done(editor, job)
    assert 'data-state="done"' in html and "regard-refresh" not in html, html[-2000:]
    assert "8 frames examined" in html
    assert re.search(r'<img class="preview" src="data:image/jpeg;base64,', html)
    assert sorted(p.name for p in (jobs_folder / token).iterdir()) == ["preview.jpg", "result.mp4", "status.json"]  # the input is gone
    # Another key (even an admin) does not see it.
    other = sign_in(service, service.key("admin", name="other desk"))
    assert other.get(job).status_code == 404
    assert other.get(job + "/download").status_code == 404
    # The page survives a reload; the list on the form links to it.
    assert 'data-state="done"' in editor.get(job).text
    assert f'href="{job}"' in editor.get("/console/redact").text
    download = editor.get(_download_link(html))
    assert download.status_code == 200 and download.headers["content-type"] == "video/mp4"
    assert 'filename="march.redacted.mp4"' in download.headers["content-disposition"]
    (tmp_path / "out.mp4").write_bytes(download.content)
    with av.open(str(tmp_path / "out.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(video)) as container:
        originals = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == len(originals) == 8
    assert any((frame == 0).all(axis=2).sum() > 500 for frame in frames)  # solid black boxes
    assert editor.get(job + "/download").status_code == 404  # downloaded once: deleted
    assert sorted(p.name for p in (jobs_folder / token).iterdir()) == ["status.json"]
    assert 'id="redact-downloaded"' in editor.get(job).text


def test_a_running_job_shows_its_progress_and_reloads_itself(
    service: Service, editor: httpx.Client, editor_key: tuple[str, str], jobs_folder: Path
) -> None:
    from regard.console.jobs import JobStore

    job = JobStore(jobs_folder).create(editor_key[0], "video", state="running", done=30, total=120, summary={"name": "long.mp4"})
    page = editor.get(f"/console/redact/jobs/{job.token}")
    assert page.status_code == 200
    assert '<meta name="regard-refresh" content="2">' in page.text
    assert '<progress id="redact-progress" max="100" value="25">25%</progress>' in page.text
    assert "25% (30 of 120 frames)" in page.text and 'id="redact-download"' not in page.text
    assert editor.get(f"/console/redact/jobs/{job.token}/download").status_code == 404  # nothing to download yet
    JobStore(jobs_folder).update(job.token, state="failed", finished=time.time(), error="the video is truncated")
    failed = editor.get(f"/console/redact/jobs/{job.token}")
    assert "regard-refresh" not in failed.text and "the video is truncated" in failed.text and 'role="alert"' in failed.text


def test_a_file_that_is_not_a_video_is_refused_on_the_form(service: Service, editor: httpx.Client, jobs_folder: Path) -> None:
    before = set(p.name for p in jobs_folder.iterdir())
    response = _post(editor, [("media", ("clip.mp4", b"not a video at all", "video/mp4"))])
    assert response.status_code == 400 and 'id="redact-error"' in response.text
    assert set(p.name for p in jobs_folder.iterdir()) == before  # nothing left behind
    mixed = _post(editor, [("media", ("a.mp4", b"x", "video/mp4")), ("media", ("b.jpg", GROUP.read_bytes(), "image/jpeg"))])
    assert mixed.status_code == 400 and "one video" in mixed.text.lower()
    bad_scale = _post(editor, [("media", ("group.jpg", GROUP.read_bytes(), "image/jpeg"))], scale="0.5")
    assert bad_scale.status_code == 400 and "from 1 to 3" in bad_scale.text


def test_consenting_people_are_kept_visible_with_the_key_as_actor(service: Service, tmp_path: Path) -> None:
    from regard.gallery import enroll
    from regard.store import ConsentBasis, open_store

    store = open_store(service.store_url)
    try:
        store.create_collection("staff", purpose="keep staff visible in event photos", actor="tester")
        store.create_collection("elsewhere", purpose="another desk", actor="tester")
        store.add_person("staff", "angela", actor="tester")
        store.record_consent("staff", "angela", basis=ConsentBasis.CONSENT, actor="tester", reference="release-1")
        assert enroll(store, "staff", lfw("Angela_Bassett", 1), person_id="angela", actor="tester").enrolled
    finally:
        store.close()
    pair = np.concatenate([load_image(lfw("Angela_Bassett", 2)), load_image(lfw("Anthony_Fauci", 1))], axis=1)
    buffer = io.BytesIO()
    Image.fromarray(pair).save(buffer, "PNG")
    photo = [("media", ("pair.png", buffer.getvalue(), "image/png"))]
    key = service.key("detect", "search", collections=["staff"], name="events desk")
    client = sign_in(service, key)
    client.timeout = httpx.Timeout(60.0)
    form = client.get("/console/redact").text
    assert 'id="redact-keep"' in form and '<option value="staff"' in form and "elsewhere" not in form
    purpose = "press photos of the open day"
    response = _post(client, photo, keep="1", collection="staff", purpose=purpose)
    assert response.status_code == 200, response.text[-1500:]
    assert "1 consenting face(s) kept visible" in response.text
    out = np.asarray(Image.open(io.BytesIO(client.get(_download_link(response.text)).content)).convert("RGB"))
    left, right = (slice(60, 190), slice(70, 180)), (slice(60, 190), slice(320, 430))
    assert np.array_equal(out[left], pair[left]) and not np.array_equal(out[right], pair[right])
    store = open_store(service.store_url)
    try:
        entry = store.audit_entries(collection="staff", action="search")[-1]
    finally:
        store.close()
    assert entry.actor == f"key:{key[0]}" and entry.purpose == purpose
    assert entry.details["request"]["operation"] == "redact"
    # A collection outside the key's scope is refused on the server, whatever the page offered.
    refused = _post(client, photo, keep="1", collection="elsewhere", purpose=purpose)
    assert refused.status_code == 403
    missing = _post(client, photo, keep="1", collection="", purpose=purpose)
    assert missing.status_code == 400 and "choose a collection" in missing.text


def test_a_key_without_detect_and_a_form_without_its_token_are_refused(service: Service, editor: httpx.Client) -> None:
    searcher = sign_in(service, service.key("search", name="searcher"))
    assert searcher.get("/console/redact").status_code == 403
    token = _csrf(searcher.get("/console").text)
    photo = [("media", ("group.jpg", GROUP.read_bytes(), "image/jpeg"))]
    assert searcher.post("/console/redact", data={"csrf": token, "mode": "blur"}, files=photo).status_code == 403
    assert editor.post("/console/redact", data={"mode": "blur"}, files=photo).status_code == 403
    assert editor.post("/console/redact", data={"csrf": "forged", "mode": "blur"}, files=photo).status_code == 403
    assert editor.get("/console/redact/jobs/" + "A" * 32).status_code == 404
    assert editor.get("/console/redact/jobs/..%2F..%2Fetc").status_code == 404


def test_results_expire_and_abandoned_jobs_fail(tmp_path: Path) -> None:
    from regard.console.jobs import DONE, FAILED, JobStore

    jobs = JobStore(tmp_path / "jobs", ttl=60, stale=30)
    done = jobs.create("K1", "photos")
    (jobs.folder_of(done) / "result.png").write_bytes(b"x")
    jobs.update(done.token, state=DONE, finished=1000.0, output="result.png")
    stuck = jobs.create("K1", "video", input="input.mp4")
    (jobs.folder_of(stuck) / "input.mp4").write_bytes(b"x")
    jobs.update(stuck.token, state="running")
    assert jobs.sweep(now=1030.0) == 0
    assert jobs.sweep(now=1061.0) == 1 and not jobs.folder_of(done).exists()
    assert jobs.sweep(now=time.time() + 31) == 0
    failed = jobs.get(stuck.token, "K1")
    assert failed.state == FAILED and "stopped" in (failed.error or "")
    assert not (jobs.folder_of(stuck) / "input.mp4").exists()
    with pytest.raises(regard.errors.NotFoundError):
        jobs.get(stuck.token, "K2")
