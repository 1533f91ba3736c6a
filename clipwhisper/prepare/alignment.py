"""Crops from landmarks, as the lip-reading field cuts them (auto_avsr, AV-HuBERT): each frame's stable points
(nose tip, eye corners) are aligned to a reference face by a similarity transform, and the mouth crop is a
square ``MOUTH_UNITS`` of the reference face wide, centred on the frame's mouth, turned so the eyes are level.

The landmarks are interpolated over short gaps and smoothed over time first, so the crop does not jitter. The
reference face ships with the package (``reference_face.json``, see scripts/make_reference_face.py); any
68-point face in the same 256-unit frame may replace it (``--mean-face``: auto_avsr's ``20words_mean_face.npy``
gives their crops' scale).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .landmarks import STABLE
from .tracking import Region, fill_and_smooth

MOUTH = slice(48, 68)
MOUTH_UNITS = 96.0  # the mouth crop's side in the reference face's units (auto_avsr cuts 96 x 96)
FACE_UNITS = 176.0  # the face crop's side: the face's 127 units across and some margin
JUMP, JUMP_FRAMES = 0.12, 9  # a fit whose face is 12% bigger or smaller than over the 9 frames around it
REFERENCE = Path(__file__).with_name("reference_face.json")


def load_reference(path: Path | None = None) -> np.ndarray:
    """The reference face's 68 points: the packaged one, or a ``.npy``/``.json`` file of shape (68, 2)."""
    path = path or REFERENCE
    try:
        if path.suffix == ".npy":
            points = np.load(path, allow_pickle=False)
        else:
            points = np.asarray(json.loads(path.read_text(encoding="utf-8"))["points"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError("--mean-face", [f"{path}: not a face of 68 points ({exc})"]) from None
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise ConfigError("--mean-face", [f"{path}: 68 (x, y) points wanted, got shape {points.shape}"])
    return points.astype(np.float64)


def similarity(source: np.ndarray, target: np.ndarray) -> complex:
    """The scale and rotation (as one complex number ``s * e^{i theta}``) of the least-squares similarity
    transform taking ``source`` points onto ``target`` points (translation aside)."""
    src = source[:, 0] + 1j * source[:, 1]
    dst = target[:, 0] + 1j * target[:, 1]
    src, dst = src - src.mean(), dst - dst.mean()
    return complex(np.vdot(src, dst) / np.vdot(src, src).real)


def drop_jumps(landmarks: list[np.ndarray | None]) -> list[np.ndarray | None]:
    """``landmarks`` without the fits whose face size (the stable points' spread) is more than ``JUMP`` away from
    the median of the ``JUMP_FRAMES`` around it: now and then dlib's predictor fits a face 30-40% too big for a
    frame or three (the mouth on the chin), and no face grows that fast."""
    sizes = np.array([np.nan if p is None else np.linalg.norm(p[STABLE] - p[STABLE].mean(0)) for p in landmarks])
    half = JUMP_FRAMES // 2
    kept = []
    for index, points in enumerate(landmarks):
        around = sizes[max(0, index - half): index + half + 1]
        typical = np.nanmedian(around) if np.isfinite(around).any() else np.nan
        kept.append(None if points is None or abs(sizes[index] / typical - 1) > JUMP else points)
    return kept


def region(points: np.ndarray, reference: np.ndarray, crop: str) -> Region:
    """The crop of one frame whose landmarks are ``points``."""
    turn = similarity(points[STABLE], reference[STABLE])
    scale, roll = abs(turn), -float(np.degrees(np.angle(turn)))  # roll: the eye line's angle in the frame
    if crop == "face":
        cx, cy = points.mean(0)
        return Region(float(cx), float(cy), FACE_UNITS / scale, roll, points)
    cx, cy = points[MOUTH].mean(0)
    return Region(float(cx), float(cy), MOUTH_UNITS / scale, roll, points)


def regions(landmarks: list[np.ndarray | None], reference: np.ndarray, crop: str) -> list[Region] | None:
    """One crop per frame from the landmarks found (None where not): gaps interpolated, smoothed; None if
    no frame has a face."""
    rows = [None if points is None else points.reshape(-1) for points in landmarks]
    smoothed = fill_and_smooth(rows)
    if smoothed is None:
        return None
    return [region(row.reshape(-1, 2), reference, crop) for row in smoothed]
