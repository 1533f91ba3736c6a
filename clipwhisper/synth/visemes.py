"""eSpeak phoneme mnemonics to mouth shapes, and a frame-rate mouth track.

A shape is (opening, width, teeth, tongue), each in 0..1. Like real lips the
table is ambiguous: p/b/m share a shape, and so do many tongue consonants.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .speech import Phoneme


class Shape(NamedTuple):
    opening: float
    width: float
    teeth: float
    tongue: float


REST = Shape(0.05, 0.5, 0.0, 0.0)
_GROUPS: list[tuple[tuple[str, ...], Shape]] = [
    (("p", "b", "m"), Shape(0.0, 0.5, 0.0, 0.0)),                      # lips pressed
    (("f", "v"), Shape(0.12, 0.55, 1.0, 0.0)),                         # lower lip under teeth
    (("T", "D"), Shape(0.22, 0.58, 1.0, 1.0)),                         # tongue between teeth
    (("t", "d", "n", "l", "s", "z", "t#", "d#"), Shape(0.2, 0.62, 0.8, 0.3)),
    (("S", "Z", "tS", "dZ"), Shape(0.25, 0.38, 0.7, 0.0)),             # protruded
    (("k", "g", "N", "h", "x"), Shape(0.32, 0.55, 0.3, 0.2)),
    (("r", "w", "W"), Shape(0.18, 0.3, 0.0, 0.0)),                     # rounded
    (("j",), Shape(0.2, 0.72, 0.6, 0.2)),
    (("a", "aa", "A:", "A", "a#", "aI", "aU", "A@"), Shape(0.9, 0.62, 0.4, 0.5)),
    (("E", "e", "eI", "e@", "E@", "&"), Shape(0.6, 0.72, 0.5, 0.4)),
    (("i:", "i", "I", "I2", "i@", "I#"), Shape(0.3, 0.85, 0.7, 0.3)),
    (("u:", "U", "u", "U@"), Shape(0.25, 0.28, 0.0, 0.0)),
    (("O:", "O", "oU", "OI", "o", "O@", "0"), Shape(0.6, 0.38, 0.2, 0.2)),
    (("@", "3:", "V", "@L", "@2", "3", "a2"), Shape(0.45, 0.55, 0.3, 0.3)),
    (("_", "_:", "_!", "_^_", "||"), REST),
]
VISEMES: dict[str, Shape] = {symbol: shape for symbols, shape in _GROUPS for symbol in symbols}
_NEUTRAL = Shape(0.3, 0.55, 0.3, 0.2)


def shape_of(symbol: str) -> Shape:
    """The mouth shape of one eSpeak phoneme; stress marks are ignored, unknowns fall back by first letter."""
    bare = symbol.lstrip("',%=")
    if bare in VISEMES:
        return VISEMES[bare]
    return VISEMES.get(bare[:1], _NEUTRAL)


def mouth_track(phonemes: list[Phoneme], duration_s: float, fps: float) -> np.ndarray:
    """Shapes at each frame centre, ``(n_frames, 4)``; keyframes at phoneme midpoints, linear between
    (a crude coarticulation), resting shape before the first and after the last."""
    n_frames = max(1, int(round(duration_s * fps)))
    starts = [p.start_s for p in phonemes] + [duration_s]
    times = [0.0] + [(a + b) / 2 for a, b in zip(starts, starts[1:])] + [duration_s]
    shapes = [REST] + [shape_of(p.symbol) for p in phonemes] + [REST]
    frame_times = (np.arange(n_frames) + 0.5) / fps
    values = np.array(shapes, dtype=np.float64)
    return np.stack([np.interp(frame_times, times, values[:, k]) for k in range(values.shape[1])], axis=1)
