"""A small IoU tracker, so that a face the detector misses for a few frames stays redacted.

Each frame's detections are matched to the running tracks by the overlap of their head regions
(which are large, so a face that moved between frames still overlaps its track). A track that finds
no detection keeps being redacted for `persistence` frames: over its last box and the box its
recent motion predicts. A new track is reported so that the video pipeline, which holds the last
few frames back, can cover the frames before the face was first found.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from regard.face import iou_matrix
from regard.models.detector import Detection

Box = tuple[float, float, float, float]

DEFAULT_PERSISTENCE = 8
"""Frames a face stays redacted after its last detection, and before its first one."""

_MATCH_IOU = 0.2
_GROW = 1.6  # match on boxes grown like the default head region, which tolerates fast motion
_SMOOTHING = 0.5  # weight of the newest displacement in the velocity estimate


@dataclass
class Track:
    """One face followed across frames."""

    id: int
    box: np.ndarray  # last detected box: left, top, right, bottom
    first_frame: int
    last_frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    detection: Detection | None = None  # this frame's detection, if it was found in this frame
    # --keep-collection: `keep` is True while the track is confirmed, in every frame since the
    # gallery search that found a consenting person, to still show that person (`probe`, the
    # embedding the search matched); `recheck` asks for a fresh search when it is next detected.
    keep: bool = False
    probe: np.ndarray | None = field(default=None, repr=False)
    verified_frame: int = -1  # the frame of the last gallery search of this track's face
    recheck: bool = False
    history: dict[int, np.ndarray] = field(default_factory=dict)  # recent detected boxes by frame

    def predicted(self, frame: int) -> np.ndarray:
        return self.box + self.velocity * (frame - self.last_frame)

    def cover(self, frame: int) -> Box:
        """The box to redact in `frame`, from what is known now (the video holds frames back, so
        this can use detections made after `frame`): the detected box where it was found; in a
        gap between two detections, both boxes joined (the face moved from one to the other);
        after its last detection, the last box joined with where its motion was heading; before
        its first, the first box joined with where its motion says it came from."""
        if frame in self.history:
            anchor = moved = self.history[frame]
        else:
            before = max((f for f in self.history if f < frame), default=None)
            after = min((f for f in self.history if f > frame), default=None)
            if before is not None and after is not None:
                anchor, moved = self.history[before], self.history[after]
            elif before is not None:
                anchor = self.history[before]
                moved = anchor + self.velocity * (frame - before)
            elif after is not None:
                anchor = self.history[after]
                moved = anchor - self.velocity * (after - frame)
            else:
                anchor, moved = self.box, self.predicted(frame)
        b = np.concatenate([np.minimum(anchor[:2], moved[:2]), np.maximum(anchor[2:], moved[2:])])
        return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


def _grown(boxes: np.ndarray) -> np.ndarray:
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * _GROW / 2
    return np.concatenate([centre - half, centre + half], axis=1)


class Tracker:
    """Follows faces across the frames of one video. Call `update` once per frame, in order."""

    def __init__(self, persistence: int = DEFAULT_PERSISTENCE) -> None:
        if persistence < 0:
            raise ValueError("persistence must be 0 or more frames")
        self.persistence = persistence
        self._tracks: list[Track] = []
        self._next_id = 0

    def update(self, frame: int, detections: list[Detection]) -> tuple[list[Track], list[Track]]:
        """Match this frame's detections; returns (tracks to redact in this frame, new tracks)."""
        for track in self._tracks:
            track.detection = None
        unmatched = list(range(len(detections)))
        if self._tracks and detections:
            predicted = np.array([t.predicted(frame) for t in self._tracks])
            found = np.array([d.box for d in detections], dtype=np.float64)
            iou = iou_matrix(_grown(predicted), _grown(found))
            while iou.size and iou.max() >= _MATCH_IOU:
                ti, di = np.unravel_index(int(np.argmax(iou)), iou.shape)
                self._follow(self._tracks[ti], frame, detections[di])
                unmatched.remove(int(di))
                iou[ti, :] = -1
                iou[:, di] = -1
        new = []
        for di in unmatched:
            d = detections[di]
            box = np.array(d.box, dtype=np.float64)
            track = Track(self._next_id, box, frame, frame, detection=d, history={frame: box})
            self._next_id += 1
            self._tracks.append(track)
            new.append(track)
        self._tracks = [t for t in self._tracks if frame - t.last_frame <= self.persistence]
        horizon = frame - 2 * self.persistence - 2  # older detections can no longer matter
        for track in self._tracks:
            for old in [f for f in track.history if f < horizon]:
                del track.history[old]
        return list(self._tracks), new

    @staticmethod
    def _follow(track: Track, frame: int, detection: Detection) -> None:
        box = np.array(detection.box, dtype=np.float64)
        step = (box - track.box) / max(1, frame - track.last_frame)
        track.velocity = _SMOOTHING * step + (1 - _SMOOTHING) * track.velocity
        track.box, track.last_frame, track.detection = box, frame, detection
        track.history[frame] = box
