"""Redacting videos with PyAV: every frame examined, faces tracked, audio copied bit for bit.

The pipeline runs in three threads so that decoding, detection and encoding overlap (FFmpeg's
codecs release the GIL): a reader demuxes and decodes, the caller's thread finds and tracks faces
and redacts them, a writer encodes and muxes. Frames are held back `persistence` frames before
they are redacted, so that a face first found in frame t is also covered in the frames before it
(where it was entering, turning or too blurred to detect); a face the detector loses stays covered
for `persistence` frames after its last detection.

Kept as they were: frame rate and timestamps, resolution, the display rotation (a phone's portrait
video: faces are looked for upright, the pixels are stored as they came), and every audio stream
(its packets remuxed, never re-encoded). Dropped by default: the container's and streams' metadata
(creation time, GPS location, device make and model) and data and subtitle streams (which can hold
GPS tracks); `keep_metadata` copies the metadata tags.

The output goes to a temporary file next to it and is renamed when complete, so an error leaves no
partial output.

With `keep` (--keep-collection), a face is left visible in a frame only when it is positively
confirmed in that frame: its track was detected there and either searched in the gallery there
(one audited search per frame at most, for all the faces due) or, since the search that found a
consenting person, it still shows that person: its face, embedded again in every frame, scores at
or above the collection's threshold against the probe the search matched, and its box did not
jump. Anything else (a miss, a face too small or blurred to embed, a jump, a lower score) redacts
it in that frame and asks for a fresh search; so an IoU tracker that swaps two people's tracks
cannot carry one person's consent over to the other, not even for a frame.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from regard.errors import RegardError
from regard.face import box_iou
from regard.redact.faces import DEFAULT_MIN_CONFIDENCE, DEFAULT_MIN_FACE, find_faces
from regard.redact.files import atomic_output, check_output
from regard.redact.keep import KeepConsenting
from regard.redact.masks import DEFAULT_SCALE, Mode, Region, head_region, redact_regions
from regard.redact.tracker import DEFAULT_PERSISTENCE, Track, Tracker

X264_PRESET = "veryfast"
X264_CRF = 20
"""libx264 settings for MP4, MOV, MKV and other outputs: visually close to the input at a speed
that keeps encoding cheaper than detection. WebM outputs use VP9 in its real-time mode."""

KEEP_REVERIFY_FRAMES = 15
"""With keep, each track's face is searched in the gallery again at least this often (frames): a
withdrawn consent or a forgotten person takes effect, and a redacted track that now follows a
consenting person lets them be seen. Between searches a kept track is confirmed frame by frame
(see `_confirm`); identity is never carried over on the tracker's word alone."""

KEEP_MIN_IOU = 0.3
"""With keep, a kept track whose box overlaps its previous frame's box less than this has jumped
(likely onto another face): it is redacted and searched again."""

_QUEUE = 16


class VideoError(RegardError, ValueError):
    """The input could not be read as a video, or the output could not be written."""


@dataclass(frozen=True)
class VideoRedaction:
    """What `redact_video` did."""

    source: str
    output: Path | None
    frames: int
    width: int
    height: int
    fps: float
    rotation: int  # degrees, counter-clockwise, as stored in the input and copied to the output
    faces: int  # detections over all frames
    tracks: int
    kept_tracks: int
    redacted_frames: int  # frames with at least one redacted region
    audio_streams: int
    seconds: float
    frame_regions: list[list[Region]] = field(repr=False, default_factory=list)
    """Per frame, the regions redacted, in the upright frame's pixels."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.source,
            "output": str(self.output) if self.output else None,
            "frames": self.frames,
            "width": self.width,
            "height": self.height,
            "fps": round(self.fps, 3),
            "rotation": self.rotation,
            "faces": self.faces,
            "tracks": self.tracks,
            "kept_tracks": self.kept_tracks,
            "redacted_frames": self.redacted_frames,
            "audio_streams": self.audio_streams,
            "seconds": round(self.seconds, 2),
            "frames_per_second": round(self.frames / self.seconds, 2) if self.seconds > 0 else None,
        }


@dataclass
class _Slot:
    """A decoded frame waiting to be redacted, with what covers it."""

    index: int
    upright: np.ndarray
    pts: int | None
    tracks: list[Track]  # the tracks that cover it, including those first found a little later
    visible: set[int] = field(default_factory=set)  # ids of tracks confirmed as consenting in this frame


def _open_input(path: str) -> Any:
    import av

    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{path}: cannot open as a video ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def _probe_rotation(path: str) -> int:
    """The display rotation of the first frame (degrees counter-clockwise), which PyAV reports per
    frame from the stream's display matrix. Also proves the first frame decodes."""
    import av

    container = _open_input(path)
    try:
        for frame in container.decode(video=0):
            return int(round(frame.rotation / 90.0)) * 90 % 360
        raise VideoError(f"{path}: the video stream has no frames")
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: the video is corrupt or truncated ({exc})") from exc
    finally:
        container.close()


def _signed(rotation: int) -> int:
    return rotation - 360 if rotation > 180 else rotation


class _Stopped(Exception):
    pass


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
    raise _Stopped


def redact_video(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str] | None,
    *,
    mode: Mode | str = Mode.BLUR,
    scale: float = DEFAULT_SCALE,
    min_face: float = DEFAULT_MIN_FACE,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    persistence: int = DEFAULT_PERSISTENCE,
    keep: KeepConsenting | None = None,
    keep_metadata: bool = False,
    preview: str | os.PathLike[str] | None = None,
    in_place: bool = False,
    progress: bool = False,
    encoder_threads: int = 1,
    encoder_options: dict[str, str] | None = None,
    on_frame: Callable[[int, list[Region]], None] | None = None,
) -> VideoRedaction:
    """Redact every face in every frame of a video file and write the result to `output`.

    `output` None runs the whole analysis without writing (a dry run, e.g. for a preview). Faces
    are found as in photos (same `min_face`, `min_confidence`, `scale`, `mode`) and tracked; a face
    missed by the detector stays covered `persistence` frames after its last detection and before
    its first. `progress` shows a bar with frames/s and the time left. `encoder_options` override
    the video encoder's (e.g. {"preset": "medium", "crf": "25"} for libx264).
    Raises VideoError for a file that is not a readable video, or an output that cannot hold the
    input's audio; nothing is written then.
    """
    import av

    mode = Mode(mode)
    path = str(source)
    if not Path(path).is_file():
        raise VideoError(f"{path}: no such file")
    out_path = Path(output) if output is not None else None
    if out_path is not None:
        check_output(Path(path), out_path, in_place)
    rotation = _probe_rotation(path)
    started = time.perf_counter()
    if out_path is None:
        return _run(path, None, None, mode, scale, min_face, min_confidence, persistence, keep, keep_metadata,
                    preview, progress, rotation, encoder_threads, encoder_options, on_frame, started)
    try:
        with atomic_output(out_path) as temporary:
            return _run(path, temporary, out_path, mode, scale, min_face, min_confidence, persistence, keep,
                        keep_metadata, preview, progress, rotation, encoder_threads, encoder_options, on_frame, started)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: {exc}") from exc


def _video_codec(suffix: str) -> tuple[str, dict[str, str]]:
    if suffix == ".webm":
        return "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0", "row-mt": "1"}
    return "libx264", {"preset": X264_PRESET, "crf": str(X264_CRF)}


def _run(
    path: str,
    temporary: Path | None,
    out_path: Path | None,
    mode: Mode,
    scale: float,
    min_face: float,
    min_confidence: float,
    persistence: int,
    keep: KeepConsenting | None,
    keep_metadata: bool,
    preview: str | os.PathLike[str] | None,
    progress: bool,
    rotation: int,
    encoder_threads: int,
    encoder_options: dict[str, str] | None,
    on_frame: Callable[[int, list[Region]], None] | None,
    started: float,
) -> VideoRedaction:
    import av
    from tqdm import tqdm

    from regard.models import get_detector

    detector = get_detector()
    container = _open_input(path)
    in_video = container.streams.video[0]
    in_audio = list(container.streams.audio)
    width, height = in_video.codec_context.width, in_video.codec_context.height
    rate = in_video.average_rate or in_video.guessed_rate or Fraction(25)
    time_base = in_video.time_base or Fraction(1, 90000)
    k = rotation // 90  # np.rot90(raw, k) turns the stored pixels upright

    output = out_video = None
    out_audio: dict[int, Any] = {}
    if temporary is not None and out_path is not None:
        output = av.open(str(temporary), "w", format=_muxer_for(out_path))
        codec, options = _video_codec(out_path.suffix.lower())
        out_video = output.add_stream(codec, rate=rate)
        out_video.width, out_video.height = width, height
        out_video.pix_fmt = "yuv420p"
        out_video.codec_context.time_base = time_base
        out_video.time_base = time_base
        out_video.thread_count = max(1, encoder_threads)
        out_video.options = {**options, **(encoder_options or {})}
        if rotation:
            out_video.set_display_rotation(_signed(rotation))
        for stream in in_audio:
            try:
                out_audio[stream.index] = output.add_stream_from_template(stream)
            except (av.error.FFmpegError, ValueError) as exc:
                raise VideoError(
                    f"{out_path}: cannot copy the {stream.codec_context.name} audio into {out_path.suffix} "
                    f"({exc}); write to the input's container type"
                ) from exc
        if keep_metadata:
            output.metadata.update(container.metadata)
            out_video.metadata.update(in_video.metadata)
            for stream in in_audio:
                out_audio[stream.index].metadata.update(stream.metadata)

    stop = threading.Event()
    decoded: queue.Queue[Any] = queue.Queue(_QUEUE)
    encoded: queue.Queue[Any] = queue.Queue(_QUEUE)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for packet in container.demux(in_video, *in_audio):
                if packet.stream.index == in_video.index:
                    for frame in packet.decode():
                        _put(decoded, ("video", frame.to_ndarray(format="rgb24"), frame.pts), stop)
                elif packet.dts is not None and output is not None:
                    _put(decoded, ("audio", packet, None), stop)
        except _Stopped:
            return
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        try:
            _put(decoded, None, stop)
        except _Stopped:
            pass

    def write() -> None:
        assert output is not None and out_video is not None
        try:
            while True:
                try:
                    item = encoded.get(timeout=0.1)
                except queue.Empty:
                    if stop.is_set():
                        return
                    continue
                if item is None:
                    break
                kind, payload, pts = item
                if kind == "audio":
                    payload.stream = out_audio[payload.stream.index]
                    output.mux(payload)
                    continue
                frame = av.VideoFrame.from_ndarray(payload, format="rgb24")
                frame.pts, frame.time_base = pts, time_base
                output.mux(out_video.encode(frame))
            output.mux(out_video.encode(None))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            stop.set()

    reader = threading.Thread(target=read, name="regard-redact-read", daemon=True)
    writer = threading.Thread(target=write, name="regard-redact-write", daemon=True) if output else None
    reader.start()
    if writer:
        writer.start()

    tracker = Tracker(persistence)
    buffer: deque[_Slot] = deque()
    frame_regions: list[list[Region]] = []
    counts = {"faces": 0, "redacted_frames": 0}
    track_ids: set[int] = set()
    kept_ids: set[int] = set()
    best_preview: tuple[int, np.ndarray, np.ndarray, list[Any]] | None = None
    total = in_video.frames or None
    bar = tqdm(total=total, unit="frame", desc=Path(path).name, disable=not progress, dynamic_ncols=True)
    next_pts = 0
    frame_step = int(round(1 / (rate * time_base))) if rate and time_base else 1

    def emit(slot: _Slot) -> None:
        nonlocal best_preview
        # Covered now, `persistence` frames later, with what was seen since (see Track.cover).
        # Only tracks confirmed in this very frame stay visible; a track added by the look-back
        # (found in a later frame) never is.
        regions = [head_region(t.cover(slot.index), scale) for t in slot.tracks if t.id not in slot.visible]
        kept = [head_region(t.cover(slot.index), scale) for t in slot.tracks if t.id in slot.visible]
        frame_regions.append(regions)
        if on_frame is not None:
            on_frame(slot.index, regions)
        if regions:
            counts["redacted_frames"] += 1
        before = slot.upright.copy() if preview is not None and len(regions) + len(kept) > (best_preview[0] if best_preview else -1) else None
        redact_regions(slot.upright, regions, mode)
        if before is not None:
            from regard.face import Box
            from regard.redact.image import RedactedFace

            faces = [RedactedFace(Box(r.left, r.top, r.right, r.bottom), r, 1.0, False) for r in regions]
            faces += [RedactedFace(Box(r.left, r.top, r.right, r.bottom), r, 1.0, True) for r in kept]
            best_preview = (len(regions) + len(kept), before, slot.upright.copy(), faces)
        if output is not None:
            raw = np.ascontiguousarray(np.rot90(slot.upright, -k)) if k else slot.upright
            _put(encoded, ("video", raw, slot.pts), stop)

    try:
        index = 0
        while True:
            try:
                item = decoded.get(timeout=0.5)
            except queue.Empty:
                if errors:
                    raise errors[0]
                continue
            if item is None:
                break
            kind, payload, pts = item
            if kind == "audio":
                _put(encoded, item, stop)
                continue
            if pts is None:
                pts = next_pts
            next_pts = pts + frame_step
            upright = np.ascontiguousarray(np.rot90(payload, k)) if k else payload
            detections = find_faces(upright, detector=detector, min_face=min_face, min_confidence=min_confidence)
            counts["faces"] += len(detections)
            tracks, new = tracker.update(index, detections)
            visible = _verify(keep, upright, tracks, index, path) if keep is not None else set()
            track_ids.update(t.id for t in new)
            kept_ids.update(visible)
            slot = _Slot(index, upright, pts, list(tracks), visible)
            for track in new:  # cover the frames before the face was first found
                for earlier in buffer:
                    if index - earlier.index <= persistence:
                        earlier.tracks.append(track)
            buffer.append(slot)
            while len(buffer) > persistence:
                emit(buffer.popleft())
            index += 1
            bar.update(1)
        if errors:
            raise errors[0]
        while buffer:
            emit(buffer.popleft())
        if writer is not None:
            _put(encoded, None, stop)
            writer.join()
            if errors:
                raise errors[0]
    except _Stopped:
        raise errors[0] if errors else VideoError(f"{path}: stopped") from None
    finally:
        stop.set()
        bar.close()
        if writer is not None:
            writer.join(timeout=10)
        reader.join(timeout=10)
        container.close()
        if output is not None:
            try:
                output.close()  # writes the trailer; after an error, only releases the file
            except Exception as exc:
                if not errors:
                    errors.append(exc)
    if errors:
        raise errors[0]
    if preview is not None and best_preview is not None:
        from regard.redact.image import side_by_side

        with atomic_output(Path(preview)) as temporary_preview:
            side_by_side(best_preview[1], best_preview[2], best_preview[3]).save(temporary_preview, "PNG")
    frames = len(frame_regions)
    upright_w, upright_h = (height, width) if k % 2 else (width, height)
    return VideoRedaction(
        source=path,
        output=out_path,
        frames=frames,
        width=upright_w,
        height=upright_h,
        fps=float(rate),
        rotation=rotation,
        faces=counts["faces"],
        tracks=len(track_ids),
        kept_tracks=len(kept_ids),
        redacted_frames=counts["redacted_frames"],
        audio_streams=len(in_audio),
        seconds=time.perf_counter() - started,
        frame_regions=frame_regions,
    )


def _verify(keep: KeepConsenting, rgb: np.ndarray, tracks: list[Track], index: int, path: str) -> set[int]:
    """The ids of the tracks whose face may stay visible in this frame.

    Kept tracks not due for a search are confirmed by `_confirm`; one that fails is redacted and
    marked for a fresh search. If it failed on a face it was matched to (another face, a jump, a
    face no longer recognisable), every track is marked: that is how one half of an identity
    switch looks, and the other half may now follow the consenting person. The faces that are new, marked
    or due (every KEEP_REVERIFY_FRAMES) are searched in the gallery together, in one audited search.
    """
    due = [
        t for t in tracks
        if t.detection is not None
        and (t.recheck or t.verified_frame < 0 or index - t.verified_frame >= KEEP_REVERIFY_FRAMES)
    ]
    due_ids = {t.id for t in due}
    confirming = [t for t in tracks if t.keep and t.id not in due_ids]
    visible = _confirm(keep, rgb, confirming, index)
    lost = [t for t in confirming if t.id not in visible]
    for track in lost:
        track.keep, track.probe, track.recheck = False, None, True
    if any(t.detection is not None for t in lost):  # found, but not the same face: maybe a switch
        for track in tracks:
            track.recheck = True
    if due:
        decisions = keep.check(rgb, [t.detection for t in due], source=path, extra={"frame": index})  # type: ignore[misc]
        for track, decision in zip(due, decisions):
            track.keep = decision.kept
            track.probe = decision.embedding if decision.kept else None
            # A face too small or blurred to recognise was not searched: search it once it can be.
            track.recheck = decision.embedding is None
            if decision.embedding is not None:
                track.verified_frame = index
            if decision.kept:
                visible.add(track.id)
    return visible


def _confirm(keep: KeepConsenting, rgb: np.ndarray, kept: list[Track], index: int) -> set[int]:
    """The ids of the kept tracks that still show the person their last search matched: detected
    in this frame, not jumped (IoU with the previous frame's box at least KEEP_MIN_IOU), and
    embedded again scoring at or above the collection's threshold against the matched probe. No
    gallery search, so nothing is audited; about 7 ms of embedding per face (with its mirror
    image, like the probe)."""
    present = [
        t for t in kept
        if t.detection is not None
        and t.probe is not None
        and (index - 1) in t.history
        and box_iou(t.history[index - 1], t.detection.box) >= KEEP_MIN_IOU
    ]
    if not present:
        return set()
    vectors = keep.embed(rgb, [t.detection for t in present])  # type: ignore[misc]
    return {
        t.id for t, vector in zip(present, vectors)
        if vector is not None and t.probe is not None and keep.same_person(t.probe, vector)
    }


def _muxer_for(path: Path) -> str | None:
    """The FFmpeg muxer for an output name (None lets FFmpeg guess from the extension)."""
    return {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".mp4": "mp4", ".m4v": "mp4"}.get(path.suffix.lower())
