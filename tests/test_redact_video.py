"""Video redaction on a video made from a real group photo: a 2 s pan across dlib's 2008_007676.jpg
with a sine-tone audio track, generated here with PyAV. The faces' true position in every frame
follows from the pan and the photo's hand-drawn boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image, ImageFilter

from regard.models.detector import Detection
from regard.redact import VideoError, redact_video
from regard.redact.tracker import Tracker

from .conftest import FIXTURES, lfw
from .test_redact import annotated, covered

PHOTO = FIXTURES / "2008_007676.jpg"
SIZE = (320, 240)
FPS = 25
Box = tuple[float, float, float, float]


def make_pan_video(
    path: Path, *, seconds: float = 2.0, rotation: int = 0, blurred_frames: int = 0, metadata: dict[str, str] | None = None
) -> list[list[Box]]:
    """Write the pan video; return, per frame, the boxes of the faces wholly inside the frame."""
    src = np.asarray(Image.open(PHOTO).convert("RGB"))
    blurred = np.asarray(Image.fromarray(src).filter(ImageFilter.GaussianBlur(6)))
    width, height = SIZE
    frames = int(seconds * FPS)
    top, span = (src.shape[0] - height) // 2, src.shape[1] - width
    out = av.open(str(path), "w")
    out.metadata.update(metadata or {})
    video = out.add_stream("libx264", rate=FPS)
    video.width, video.height = (height, width) if rotation % 180 else (width, height)
    video.pix_fmt, video.options = "yuv420p", {"preset": "ultrafast", "crf": "16"}
    if rotation:
        video.set_display_rotation(rotation)
    audio = out.add_stream("aac", rate=48000)
    audio.layout = "mono"
    truth: list[list[Box]] = []
    for i in range(frames):
        left = round(span * i / (frames - 1))
        frame = (blurred if i < blurred_frames else src)[top : top + height, left : left + width]
        truth.append(
            [(l - left, t - top, r - left, b - top) for l, t, r, b in annotated()[PHOTO]
             if l >= left and r <= left + width and t >= top and b <= top + height]
        )
        stored = np.ascontiguousarray(np.rot90(frame, -rotation // 90)) if rotation else frame
        out.mux(video.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
    out.mux(video.encode(None))
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(48000 * seconds)) / 48000)).astype(np.float32)[None]
    for start in range(0, tone.shape[1], 1024):
        chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start : start + 1024]), format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 48000, start
        out.mux(audio.encode(chunk))
    out.mux(audio.encode(None))
    out.close()
    return truth


def audio_packets(path: Path) -> list[tuple[int | None, bytes]]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [(p.pts, bytes(p)) for p in container.demux(stream) if p.size]


def upright_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            frames.append(np.rot90(rgb, frame.rotation // 90) if frame.rotation else rgb)
        return frames


def test_every_frame_is_covered_and_the_audio_is_intact(tmp_path: Path) -> None:
    source, out = tmp_path / "pan.mp4", tmp_path / "pan.redacted.mp4"
    truth = make_pan_video(source, metadata={"location": "+48.8577+002.2950/", "make": "Acme"})
    result = redact_video(source, out, mode="mask")
    assert result.frames == len(truth) == 50 and result.audio_streams == 1
    frames = upright_frames(out)
    assert len(frames) == 50
    checked = 0
    for i, (frame, boxes) in enumerate(zip(frames, truth)):
        assert frame.shape[:2] == (SIZE[1], SIZE[0])
        mask = frame.mean(axis=2) > 127
        for box in boxes:
            assert covered(mask, box) >= 0.9, (i, box)
            checked += 1
    assert checked >= 250  # 5 to 7 faces in every frame
    assert audio_packets(out) == audio_packets(source)  # remuxed, bit for bit
    with av.open(str(source)) as a, av.open(str(out)) as b:
        assert b.streams.video[0].average_rate == a.streams.video[0].average_rate == FPS
        assert [f.pts for f in b.decode(video=0)] == [f.pts for f in a.decode(video=0)]
        assert "location" in a.metadata and "location" not in b.metadata and "make" not in b.metadata


def test_rotation_is_kept_and_faces_are_found_upright(tmp_path: Path) -> None:
    source, out = tmp_path / "portrait.mp4", tmp_path / "portrait.redacted.mp4"
    truth = make_pan_video(source, seconds=0.6, rotation=90)
    result = redact_video(source, out, mode="mask", keep_metadata=True)
    assert result.rotation == 90
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (SIZE[1], SIZE[0])
        assert next(container.decode(video=0)).rotation == 90
    for frame, boxes in zip(upright_frames(out), truth):
        mask = frame.mean(axis=2) > 127
        assert all(covered(mask, box) >= 0.9 for box in boxes)


def test_frames_before_a_face_is_first_found_are_covered(tmp_path: Path) -> None:
    """The first 5 frames are out of focus: the detector finds little or nothing there, and the
    look-back covers them with the boxes found once the picture is sharp."""
    source, out = tmp_path / "focus.mp4", tmp_path / "focus.redacted.mp4"
    truth = make_pan_video(source, seconds=0.8, blurred_frames=5)
    result = redact_video(source, out, mode="mask")
    frames = upright_frames(out)
    for i in range(5):
        mask = frames[i].mean(axis=2) > 127
        assert all(covered(mask, box) >= 0.9 for box in truth[i]), i
    assert result.frames == 20


def test_a_face_missed_for_a_few_frames_stays_covered() -> None:
    tracker = Tracker(persistence=3)
    face = Detection(box=(100.0, 50.0, 140.0, 100.0), landmarks=np.zeros((5, 2), np.float32), confidence=0.9)
    moved = Detection(box=(104.0, 50.0, 144.0, 100.0), landmarks=np.zeros((5, 2), np.float32), confidence=0.9)
    tracker.update(0, [face])
    tracks, new = tracker.update(1, [moved])
    assert len(tracks) == 1 and not new  # followed, not a new face
    for frame in (2, 3, 4):  # missed: still covered, over its last box and where it was heading
        tracks, _ = tracker.update(frame, [])
        assert len(tracks) == 1
        cover = tracks[0].cover(frame)
        assert cover[0] <= 104.0 and cover[2] >= 144.0 + 2 * (frame - 1) - 1e-6
    assert tracker.update(5, [])[0] == []  # gone after `persistence` frames


def test_corrupt_video_raises_and_leaves_no_file(tmp_path: Path) -> None:
    source = tmp_path / "pan.mp4"
    make_pan_video(source, seconds=0.4)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    with pytest.raises(VideoError):
        redact_video(broken, tmp_path / "broken.redacted.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\0\1\2" * 1000)
    with pytest.raises(VideoError):
        redact_video(garbage, tmp_path / "garbage.redacted.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4", "garbage.mp4", "pan.mp4"]


# ---------------------------------------------------------------- --keep-collection on video

CONSENTING = lfw("Angela_Bassett", 2)  # enrolled from Angela_Bassett_0001
BYSTANDER = lfw("Anthony_Fauci", 1)  # not enrolled
CROSS_SIZE = (480, 240)
CROP = (slice(35, 215), slice(50, 200))  # 180 x 150 around the face of a 250 x 250 LFW photo
SWAP_FRAME = 38


def _crossing_positions() -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Per frame, the top-left corners of the consenting person's and the bystander's crops:
    frames 0-27 they walk towards each other and cross (the bystander passing in front), 28-37
    they stand apart, and at SWAP_FRAME they swap places at once (a cut), so the IoU tracker
    carries each track over to the other person; 38-49 they stand apart again."""
    out = []
    for i in range(50):
        jitter = round(2 * np.sin(i))
        if i < 28:
            x = 10 + round(310 * i / 27)
            out.append(((x, 20), (330 - x, 40)))
        elif i < SWAP_FRAME:
            out.append(((320 + jitter, 20), (10 - jitter, 40)))
        else:
            out.append(((10 + jitter, 40), (320 - jitter, 20)))
    return out


def _background() -> np.ndarray:
    """A CROSS_SIZE piece of dogs.jpg: texture, and no human face."""
    width, height = CROSS_SIZE
    photo = Image.open(FIXTURES / "dogs.jpg").convert("RGB")
    photo = photo.resize((2 * width, round(photo.height * 2 * width / photo.width)))
    return np.asarray(photo)[200 : 200 + height, 100 : 100 + width].copy()


def _oval() -> np.ndarray:
    from PIL import ImageDraw

    oval = Image.new("L", (150, 180), 0)
    ImageDraw.Draw(oval).ellipse((8, 6, 142, 174), fill=255)
    return np.asarray(oval.filter(ImageFilter.GaussianBlur(5)), np.float32)[:, :, None] / 255


def _paste(frame: np.ndarray, crop: np.ndarray, x: int, y: int, alpha: np.ndarray) -> None:
    """Blend a face crop into the frame at (x, y) with a soft oval edge."""
    under = frame[y : y + 180, x : x + 150].astype(np.float32)
    frame[y : y + 180, x : x + 150] = np.round(alpha * crop + (1 - alpha) * under).astype(np.uint8)


def _crop(photo: Path) -> np.ndarray:
    from regard.image import load_image

    return load_image(photo)[CROP]


def _keep_store(tmp_path: Path) -> Any:
    """A real SQLite store: collection "staff" with Angela Bassett enrolled (her photo 1), consenting."""
    from regard.gallery import enroll
    from regard.store import ConsentBasis, open_store

    store = open_store(f"sqlite:///{tmp_path / 'regard.db'}")
    store.create_collection("staff", purpose="keep staff visible in event videos", actor="tester")
    store.add_person("staff", "angela", actor="tester")
    store.record_consent("staff", "angela", basis=ConsentBasis.CONSENT, actor="tester", reference="release-1")
    assert enroll(store, "staff", lfw("Angela_Bassett", 1), person_id="angela", actor="tester").enrolled
    return store


def make_crossing_video(path: Path) -> tuple[list[Box], list[Box]]:
    """Two real faces (LFW crops blended into dogs.jpg with a soft oval edge) crossing and then
    swapping places; returns, per frame, each person's face box."""
    from regard.redact import find_faces

    background, alpha = _background(), _oval()
    crops = [_crop(CONSENTING), _crop(BYSTANDER)]
    # Each face's box within its crop: the detector on the crop alone, over the same background.
    offsets = []
    for crop in crops:
        alone = background.copy()
        _paste(alone, crop, 100, 30, alpha)
        (face,) = [d for d in find_faces(alone) if d.box[2] - d.box[0] > 60]
        offsets.append((face.box[0] - 100, face.box[1] - 30, face.box[2] - 100, face.box[3] - 30))
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=FPS)
    video.width, video.height = CROSS_SIZE
    video.pix_fmt, video.options = "yuv420p", {"preset": "ultrafast", "crf": "16"}
    truth: tuple[list[Box], list[Box]] = ([], [])
    for corners in _crossing_positions():
        frame = background.copy()
        for person, (crop, (x, y), (l, t, r, b)) in enumerate(zip(crops, corners, offsets)):
            _paste(frame, crop, x, y, alpha)  # the bystander last: in front when they cross
            truth[person].append((x + l, y + t, x + r, y + b))
        out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    out.mux(video.encode(None))
    out.close()
    return truth


def test_keep_collection_video_never_shows_the_bystander_even_when_tracks_swap(tmp_path: Path) -> None:
    """Both tracks swap people at SWAP_FRAME (the tracker follows positions); the kept track's face,
    embedded again in that frame, no longer matches the probe its search matched, so it is
    redacted there and searched again in the next frame, where the other track, now on the
    consenting person, is searched too and kept."""
    from regard.redact import KEEP_PURPOSE, KeepConsenting

    store = _keep_store(tmp_path)
    source, out = tmp_path / "crossing.mp4", tmp_path / "crossing.redacted.mp4"
    consenting, bystander = make_crossing_video(source)

    keep = KeepConsenting(store, "staff", actor="editor")
    result = redact_video(source, out, mode="mask", keep=keep)
    frames = upright_frames(out)
    assert result.frames == len(frames) == 50 and result.kept_tracks >= 1
    apart, visible = 0, 0
    for i, frame in enumerate(frames):
        mask = frame.mean(axis=2) > 127
        assert covered(mask, bystander[i]) >= 0.9, i  # the bystander: redacted in every frame
        if abs(consenting[i][0] - bystander[i][0]) >= 190:  # far enough apart for neither to cover the other
            apart += 1
            visible += covered(mask, consenting[i]) < 0.05
    assert apart >= 30
    assert visible >= 0.9 * apart, (visible, apart)
    entries = store.audit_entries(collection="staff", action="search")
    assert len(entries) == keep.searches
    assert all(e.purpose == KEEP_PURPOSE and e.actor == "editor" for e in entries)
    assert all(e.details["request"]["operation"] == "redact" for e in entries)
    assert 2 <= keep.searches <= len(frames) // 5  # a few searches, never one per frame


def test_a_kept_face_that_jumps_or_is_missed_is_redacted_in_that_frame_and_searched_again(tmp_path: Path) -> None:
    """Frame by frame, with a real store, detector and embedder: the consenting face is kept (one
    search), stays kept without searching while it holds still, is redacted in the frame where its
    box jumps 0.6 face widths (the same track, so only the jump rule can catch it) and in the frame
    where it is missing, and is searched again (audited) in the frame after each."""
    from regard.redact import KeepConsenting, find_faces
    from regard.redact.video import _verify

    store = _keep_store(tmp_path)
    keep = KeepConsenting(store, "staff", actor="editor")
    background, alpha, face = _background(), _oval(), _crop(CONSENTING)
    tracker = Tracker()
    seen: list[tuple[set[int], int]] = []
    ids: set[int] = set()
    for x in (100, 100, 160, 160, None, 160, 162):
        frame = background.copy()
        if x is not None:
            _paste(frame, face, x, 30, alpha)
        tracks, _ = tracker.update(len(seen), find_faces(frame))
        ids.update(t.id for t in tracks)
        seen.append((_verify(keep, frame, tracks, len(seen), "frames"), keep.searches))
    assert len(ids) == 1  # one track throughout
    (track,) = ids
    assert seen == [({track}, 1), ({track}, 1), (set(), 1), ({track}, 2), (set(), 2), ({track}, 3), ({track}, 3)]
    assert len(store.audit_entries(collection="staff", action="search")) == 3
