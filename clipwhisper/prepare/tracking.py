"""Find the face in every frame, track it, and place the crop (mouth or face) on each frame.

The detector is OpenCV's frontal-face Haar cascade, which the opencv-python-headless
wheel ships (``cv2.data``): nothing is downloaded. Detection runs on a grey copy
scaled to ``DETECT_WIDTH``; the largest face, or the one nearest the previous, is
kept. Frames without a detection take the box interpolated from their
neighbours, and the box track is smoothed over ``SMOOTH_FRAMES`` so the crop does
not jitter. The mouth sits at a fixed place in the cascade's box (measured: 77%
down, centred); its crop is ``MOUTH_WIDTH`` of the face's width, square.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

DETECT_WIDTH = 320
SMOOTH_FRAMES = 7
MOUTH_DOWN = 0.77  # the mouth centre's height in the cascade's face box
MOUTH_WIDTH = 0.55  # the mouth crop's side, as a share of the face box's width
FACE_MARGIN = 1.2  # the face crop's side, as a multiple of the face box's width


@dataclass(frozen=True)
class Region:
    """A square crop: centre and side in pixels of the full frame."""
    cx: float
    cy: float
    side: float


@functools.cache
def _cascade():
    import cv2

    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def detect(frame: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray | None:
    """The face box ``(x, y, w, h)`` in ``frame``'s pixels, or None."""
    import cv2

    scale = DETECT_WIDTH / frame.shape[1]
    small = cv2.resize(frame, (DETECT_WIDTH, max(1, round(frame.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    minimum = max(12, DETECT_WIDTH // 12)
    faces = _cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(minimum, minimum))
    if len(faces) == 0:
        return None
    faces = faces.astype(np.float64) / scale
    if previous is None:
        return faces[np.argmax(faces[:, 2] * faces[:, 3])]
    centres = faces[:, :2] + faces[:, 2:] / 2
    return faces[np.argmin(np.linalg.norm(centres - (previous[:2] + previous[2:] / 2), axis=1))]


def fill_and_smooth(boxes: list[np.ndarray | None]) -> np.ndarray | None:
    """One box per frame: gaps interpolated (ends held), then a moving average; None if no face at all."""
    found = [i for i, box in enumerate(boxes) if box is not None]
    if not found:
        return None
    known = np.stack([boxes[i] for i in found])
    frames = np.arange(len(boxes))
    track = np.stack([np.interp(frames, found, known[:, k]) for k in range(4)], axis=1)
    width = min(SMOOTH_FRAMES, len(boxes))
    padded = np.pad(track, ((width // 2, width - 1 - width // 2), (0, 0)), mode="edge")
    kernel = np.ones(width) / width
    return np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(4)], axis=1)


def region(box: np.ndarray, crop: str) -> Region:
    x, y, w, h = box
    if crop == "mouth":
        return Region(x + w / 2, y + MOUTH_DOWN * h, MOUTH_WIDTH * w)
    return Region(x + w / 2, y + h / 2, FACE_MARGIN * w)


def cut(frame: np.ndarray, where: Region, size: int) -> np.ndarray:
    """The square ``where`` of ``frame`` (edges replicated past the border), resized to ``size``."""
    import cv2

    side = max(2, round(where.side))
    patch = cv2.getRectSubPix(frame, (side, side), (where.cx, where.cy))
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
