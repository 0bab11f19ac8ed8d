"""A face quality score from size, sharpness, pose and detection confidence.

Each factor is scored 0..1 with a soft ramp between a point where it starts to hurt recognition and
a point where it is unusable; the overall score is their product (one bad factor makes a bad face),
scaled to 0..100. Levels: HIGH >= 60, MEDIUM >= 30, else LOW. The ramps were set from what dlib's
embedder is known to tolerate (faces of about 40 px between the eyes and up, near-frontal pose) and
checked on LFW, where almost every face is MEDIUM or HIGH, and on dlib's crowd photos, where the
small, blurred and turned faces come out MEDIUM or LOW.
"""

from __future__ import annotations

import math

import numpy as np

from regard.face import Quality, QualityLevel

HIGH_AT = 60.0
MEDIUM_AT = 30.0


def _ramp(value: float, bad: float, good: float) -> float:
    """0 at `bad`, 1 at `good`, linear between (either direction)."""
    if good == bad:
        return 1.0 if value >= good else 0.0
    t = (value - bad) / (good - bad)
    return float(min(1.0, max(0.0, t)))


def pose_from_landmarks(landmarks: np.ndarray) -> tuple[float, float, float]:
    """Rough (yaw, pitch, roll) in degrees from the 5 landmarks.

    Roll is the angle of the eye line. Yaw comes from how far the nose sits from the middle of the
    eyes and mouth, relative to the half-width of the face (sin of the turn); pitch from where the
    nose sits between the eye line and the mouth line (0.5 of the way is taken as level).
    """
    right_eye, left_eye, nose, mouth_right, mouth_left = np.asarray(landmarks, dtype=np.float64)
    eye_vec = left_eye - right_eye
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    # Undo the roll so that the remaining measures are in the face's own frame.
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    rot = np.array([[c, -s], [s, c]])
    pts = (np.array([right_eye, left_eye, nose, mouth_right, mouth_left]) - nose) @ rot.T
    eye_mid = (pts[0] + pts[1]) / 2
    mouth_mid = (pts[3] + pts[4]) / 2
    half_width = max(1e-6, (np.linalg.norm(pts[1] - pts[0]) + np.linalg.norm(pts[4] - pts[3])) / 4)
    centre_x = (eye_mid[0] + mouth_mid[0]) / 2
    yaw_sin = float(np.clip((0.0 - centre_x) / (2 * half_width), -1.0, 1.0))
    yaw = math.degrees(math.asin(yaw_sin))
    span = mouth_mid[1] - eye_mid[1]
    ratio = (0.0 - eye_mid[1]) / span if abs(span) > 1e-6 else 0.5
    pitch = float(np.clip((ratio - 0.55) * 180.0, -90.0, 90.0))
    return yaw, pitch, roll


def sharpness_of(chip: np.ndarray) -> float:
    """0..100 from the mean absolute Laplacian of the chip's centre (eyes, nose, mouth)."""
    gray = chip[30:120, 30:120].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = (
        -4 * gray[1:-1, 1:-1]
        + gray[:-2, 1:-1]
        + gray[2:, 1:-1]
        + gray[1:-1, :-2]
        + gray[1:-1, 2:]
    )
    energy = float(np.mean(np.abs(lap)))
    # About 2 for a badly blurred face, 6 and more for a sharp one (at 150 px).
    return 100.0 * _ramp(energy, 1.5, 6.0)


def assess(landmarks: np.ndarray, confidence: float, chip: np.ndarray) -> Quality:
    """The quality of one face, from its landmarks in the photo, detector confidence and chip."""
    eye_distance = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    yaw, pitch, roll = pose_from_landmarks(landmarks)
    sharpness = sharpness_of(chip)
    factors = (
        _ramp(eye_distance, 8.0, 30.0),  # a chip of 150 px has 47 px between the eyes
        0.2 + 0.8 * sharpness / 100.0,
        _ramp(abs(yaw), 55.0, 20.0),
        _ramp(abs(pitch), 50.0, 20.0),
        _ramp(confidence, 0.4, 0.75),
    )
    score = 100.0 * math.prod(factors)
    level = (
        QualityLevel.HIGH if score >= HIGH_AT else QualityLevel.MEDIUM if score >= MEDIUM_AT else QualityLevel.LOW
    )
    return Quality(
        score=score,
        level=level,
        eye_distance=eye_distance,
        sharpness=sharpness,
        yaw=yaw,
        pitch=pitch,
        roll=roll,
        confidence=confidence,
    )


MIN_EYE_DISTANCE = 16.0
"""Faces with less than this many pixels between the eyes are not enrolled (TOO_SMALL), nor kept
visible by redaction's keep-consenting rule: too small to recognise reliably."""
