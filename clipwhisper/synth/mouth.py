"""Render a lower face whose mouth follows a track of shapes (see ``visemes``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SUPERSAMPLE = 2  # render at 2x and average: smooth edges without a drawing library


@dataclass(frozen=True)
class Appearance:
    skin: tuple[int, int, int]
    lips: tuple[int, int, int]
    offset: tuple[float, float]  # mouth centre shift, fraction of the image
    scale: float


def random_appearance(rng: np.random.Generator) -> Appearance:
    skins = [(236, 194, 160), (198, 146, 110), (141, 96, 67), (92, 62, 45), (224, 172, 138)]
    skin = skins[int(rng.integers(len(skins)))]
    lips = tuple(int(np.clip(c * f + a, 0, 255)) for c, f, a in zip(skin, (0.7, 0.35, 0.4), (60, 10, 20)))
    offset = (float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.04, 0.04)))
    return Appearance(skin, lips, offset, float(rng.uniform(0.9, 1.1)))


def _ellipse(yy, xx, cy, cx, ry, rx) -> np.ndarray:
    return ((yy - cy) / max(ry, 1e-3)) ** 2 + ((xx - cx) / max(rx, 1e-3)) ** 2 <= 1.0


def render_frame(shape: np.ndarray, look: Appearance, size: int) -> np.ndarray:
    opening, width, teeth, tongue = (float(v) for v in shape)
    n = size * _SUPERSAMPLE
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    cy, cx = 0.5 + look.offset[1], 0.5 + look.offset[0]
    half_w = (0.22 + 0.2 * width) * look.scale  # a mouth ROI crop: the mouth fills most of the frame
    inner_h = 0.28 * opening * look.scale
    lip = 0.09 * look.scale

    shade = 1.0 - 0.25 * np.abs(xx - 0.5) - 0.15 * yy  # a soft light from the top centre
    image = np.empty((n, n, 3), np.float32)
    image[:] = np.array(look.skin, np.float32)
    image *= shade[..., None]

    image[_ellipse(yy, xx, cy, cx, inner_h + lip, half_w)] = look.lips
    inner = _ellipse(yy, xx, cy, cx, inner_h, half_w * 0.85) if opening > 0.02 else np.zeros_like(yy, bool)
    image[inner] = (40, 12, 16)
    if teeth > 0:
        band = inner & (yy < cy - inner_h + 0.05 * teeth * look.scale)
        image[band] = (235, 232, 220)
    if tongue > 0:
        image[inner & _ellipse(yy, xx, cy + inner_h * 0.7, cx, inner_h * 0.6 * tongue, half_w * 0.5)] = (190, 80, 90)
    image = image.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def render_video(track: np.ndarray, look: Appearance, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(T, size, size, 3)`` uint8 frames with a little sensor noise."""
    frames = np.stack([render_frame(shape, look, size) for shape in track]).astype(np.int16)
    frames += rng.normal(0, 2.0, frames.shape).astype(np.int16)
    return np.clip(frames, 0, 255).astype(np.uint8)
