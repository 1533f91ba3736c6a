"""Which face in a video is the one speaking (``--speaker``).

``active``: the face whose mouth opening (the gap between the inner lips, in eye distances) rises and falls
with the sound's loudness, by their correlation over the clip; where the sound's loudness does not vary (a
tone, silence) or only one face is there, the face the detector was surest of. ``largest``: the largest face.
``all``: every face, each cropped on its own.
A face seen in fewer than half the frames (a passer-by, a false detection) is not a candidate unless no face
is seen that often; nor is one the detector was far less sure of than of the surest face (on the astronaut
photograph, a patch of her suit followed in 28 of 50 frames at a mean HOG score of 0.11 against the face's
0.64; two drawn faces side by side score 1.09 and 0.88).
"""

from __future__ import annotations

import numpy as np

from ..data.media import SAMPLE_RATE, VIDEO_FPS
from .landmarks import FaceTrack

SPEAKERS = ("active", "largest", "all")
MIN_SHARE = 0.5
MIN_SURENESS = 0.4  # of the surest face's mean detection score
STEADY = 0.05  # a loudness whose log varies less than this over the clip says nothing of who speaks


def candidates(tracks: list[FaceTrack]) -> list[FaceTrack]:
    frames = len(tracks[0].points) if tracks else 0
    often = [t for t in tracks if t.found >= MIN_SHARE * frames]
    if not often:
        return sorted(tracks, key=lambda t: -t.found)[:1]
    surest = max(_sureness(t) for t in often)
    return [t for t in often if _sureness(t) >= MIN_SURENESS * surest]


def _sureness(track: FaceTrack) -> float:
    return float(np.mean(track.scores))


def mouth_opening(track: FaceTrack) -> np.ndarray:
    """Per frame: the inner lips' gap over the eye distance (NaN where the face was not found)."""
    opening = np.full(len(track.points), np.nan)
    for index, points in enumerate(track.points):
        if points is not None:
            gap = np.linalg.norm(points[65:68].mean(0) - points[61:64].mean(0))
            opening[index] = gap / max(1e-6, np.linalg.norm(points[45] - points[36]))
    return opening


def loudness(samples: np.ndarray, frames: int) -> np.ndarray:
    """Log RMS of the sound in each video frame's span (1/25 s)."""
    step = SAMPLE_RATE // int(VIDEO_FPS)
    padded = np.zeros(frames * step, dtype=np.float64)
    padded[: min(len(samples), len(padded))] = samples[: len(padded)]
    return np.log(np.sqrt((padded.reshape(frames, step) ** 2).mean(1)) + 1e-4)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    seen = ~np.isnan(a)
    if seen.sum() < 3 or a[seen].std() == 0 or b[seen].std() == 0:
        return float("nan")
    return float(np.corrcoef(a[seen], b[seen])[0, 1])


def _size(track: FaceTrack) -> float:
    return float(np.mean([np.ptp(points[:, 0]) for points in track.points if points is not None]))


def choose(tracks: list[FaceTrack], samples: np.ndarray | None, speaker: str) -> list[FaceTrack]:
    """The tracks of the faces ``speaker`` asks for: one, every candidate (``all``, in the order first seen),
    or none if there is no face."""
    pool = candidates(tracks)
    if speaker == "all" or not pool:
        return pool
    if speaker == "largest":
        return [max(pool, key=_size)]
    return [_active(pool, samples)]


def _active(pool: list[FaceTrack], samples: np.ndarray | None) -> FaceTrack:
    surest = max(pool, key=_sureness)
    if len(pool) == 1 or samples is None:
        return surest
    sound = loudness(samples, len(pool[0].points))
    if sound.std() < STEADY:
        return surest
    scores = [_correlation(mouth_opening(t), sound) for t in pool]
    if all(np.isnan(score) for score in scores):
        return surest
    return pool[int(np.nanargmax(scores))]
