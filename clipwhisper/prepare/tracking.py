"""Find the face in every frame, track it, and place the crop (mouth or face) on each frame.

The detectors are OpenCV's Haar cascades for frontal faces and for eyes, which
the opencv-python-headless wheel ships (``cv2.data``): nothing is downloaded.
Detection runs on a grey copy scaled to ``DETECT_WIDTH``; the largest face, or
the one nearest the previous, is kept, and the line through its two eyes gives
the head's roll. Frames without a detection take the values interpolated from
their neighbours (up to ``MAX_GAP_FRAMES`` in a row; the frames of a longer gap are left black),
and the track is smoothed over ``SMOOTH_FRAMES`` so the crop does not jitter.
The crop is aligned: rotated so the eyes are level, centred on the mouth,
which sits at a fixed place along the face's vertical axis
(measured: 77% down the cascade's box), and ``MOUTH_WIDTH`` of the face's width
on a side.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

DETECT_WIDTH = 320
SMOOTH_FRAMES = 7
MOUTH_DOWN = 0.77  # the mouth centre's height in the cascade's face box
MOUTH_WIDTH = 0.55  # the mouth crop's side, as a share of the face box's width
FACE_MARGIN = 1.2  # the face crop's side, as a multiple of the face box's width
MAX_ROLL = 30.0  # degrees: a steeper eye line is a wrong pair of eye detections
MAX_GAP_FRAMES = 25  # a face missing longer than 1 s is not interpolated: those crops would be guesses


@dataclass(frozen=True)
class Region:
    """A square crop: centre and side in pixels of the full frame, the roll (degrees) to undo, and the (68, 2)
    landmarks it was placed by (None for the Haar cascades), which the preview draws."""
    cx: float
    cy: float
    side: float
    angle: float = 0.0
    points: np.ndarray | None = field(default=None, compare=False, repr=False)


@functools.cache
def _cascade(name: str):
    import cv2

    return cv2.CascadeClassifier(cv2.data.haarcascades + name)


def _roll(grey: np.ndarray, box: np.ndarray) -> float:
    """The angle (degrees, image coordinates) of the line through the eyes in the face ``box``; NaN if two
    plausible eyes are not found."""
    x, y, w, h = (round(v) for v in box)
    upper = grey[max(0, y):y + round(0.6 * h), max(0, x):x + w]
    eyes = _cascade("haarcascade_eye.xml").detectMultiScale(upper, scaleFactor=1.05, minNeighbors=2,
                                                            minSize=(max(4, w // 8), max(4, w // 8)))
    if len(eyes) < 2:
        return float("nan")
    largest = sorted(eyes.tolist(), key=lambda e: -e[2] * e[3])[:2]
    (ax, ay), (bx, by) = sorted((ex + ew / 2, ey + eh / 2) for ex, ey, ew, eh in largest)
    angle = float(np.degrees(np.arctan2(by - ay, bx - ax)))
    return angle if bx - ax > 0.2 * w and abs(angle) <= MAX_ROLL else float("nan")


def detect(frame: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray | None:
    """``(x, y, w, h, roll)`` of the face in ``frame``'s pixels (roll NaN when the eyes are not found),
    or None."""
    import cv2

    scale = DETECT_WIDTH / frame.shape[1]
    small = cv2.resize(frame, (DETECT_WIDTH, max(1, round(frame.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    minimum = max(12, DETECT_WIDTH // 12)
    faces = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(
        cv2.equalizeHist(grey), scaleFactor=1.1, minNeighbors=5, minSize=(minimum, minimum))
    if len(faces) == 0:
        return None
    faces = faces.astype(np.float64)
    if previous is None:
        face = faces[np.argmax(faces[:, 2] * faces[:, 3])]
    else:
        centres = (faces[:, :2] + faces[:, 2:] / 2) / scale
        face = faces[np.argmin(np.linalg.norm(centres - (previous[:2] + previous[2:4] / 2), axis=1))]
    return np.append(face / scale, _roll(grey, face))


def _interpolate(values: np.ndarray, default: float) -> np.ndarray:
    known = np.flatnonzero(~np.isnan(values))
    if not len(known):
        return np.full_like(values, default)
    return np.interp(np.arange(len(values)), known, values[known])


def gaps(detections: list[np.ndarray | None]) -> list[range]:
    """The runs of frames without a detection, in order."""
    runs, start = [], None
    for index, found in enumerate([*detections, True]):
        if found is None and start is None:
            start = index
        elif found is not None and start is not None:
            runs.append(range(start, index))
            start = None
    return runs


def lost(detections: list[np.ndarray | None]) -> list[range]:
    """The gaps too long to interpolate: their crops are left black."""
    return [gap for gap in gaps(detections) if len(gap) > MAX_GAP_FRAMES]


def fill_and_smooth(detections: list[np.ndarray | None]) -> np.ndarray | None:
    """One row per frame (``(x, y, w, h, roll)``, or flattened landmarks): gaps interpolated (ends held; a
    value never found, such as the roll of eyes never seen, is 0), then a moving average; None if no face at all."""
    known = [d for d in detections if d is not None]
    if not known:
        return None
    table = np.stack([np.full(len(known[0]), np.nan) if d is None else d for d in detections])
    for column in range(table.shape[1]):
        table[:, column] = _interpolate(table[:, column], default=0.0)
    width = min(SMOOTH_FRAMES, len(table))
    padded = np.pad(table, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
    kernel = np.ones(width) / width
    return np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(table.shape[1])], axis=1)


def region(track: np.ndarray, crop: str) -> Region:
    """The crop for one frame's ``(x, y, w, h, roll)``: the mouth lies down the face's rolled vertical axis."""
    x, y, w, h, roll = track
    cx, cy = x + w / 2, y + h / 2
    if crop == "face":
        return Region(cx, cy, FACE_MARGIN * w, roll)
    down = (MOUTH_DOWN - 0.5) * h
    theta = np.radians(roll)
    return Region(cx - down * np.sin(theta), cy + down * np.cos(theta), MOUTH_WIDTH * w, roll)


def cut(frame: np.ndarray, where: Region, size: int) -> np.ndarray:
    """The square ``where`` of ``frame``, rotated level (edges replicated past the border), resized to ``size``."""
    import cv2

    side = max(2, round(where.side))
    if abs(where.angle) < 0.5:
        patch = cv2.getRectSubPix(frame, (side, side), (where.cx, where.cy))
    else:  # a patch wide enough for any rotation, levelled about its centre, then its middle
        outer = round(side * 1.5)
        patch = cv2.getRectSubPix(frame, (outer, outer), (where.cx, where.cy))
        turn = cv2.getRotationMatrix2D((outer / 2, outer / 2), where.angle, 1.0)
        patch = cv2.warpAffine(patch, turn, (outer, outer), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        patch = cv2.getRectSubPix(patch, (side, side), (outer / 2, outer / 2))
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
