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
    """``(T, n, n)`` masks of one ellipse per frame; the centres and radii are ``(T, 1, 1)``, in float64 until
    here, so each frame is drawn as if alone."""
    f32 = np.float32
    return ((yy - cy.astype(f32)) / np.maximum(ry, 1e-3).astype(f32)) ** 2 + \
        ((xx - cx.astype(f32)) / np.maximum(rx, 1e-3).astype(f32)) ** 2 <= 1.0


def render_frames(track: np.ndarray, look: Appearance, size: int) -> np.ndarray:
    """``(T, size, size, 3)`` uint8 frames for a ``(T, 4)`` track of (opening, width, teeth, tongue), drawn
    at once for the whole track."""
    opening, width, teeth, tongue = (np.asarray(track, np.float64).reshape(-1, 4).T[k][:, None, None]
                                     for k in range(4))
    n = size * _SUPERSAMPLE
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    cy, cx = np.full_like(opening, 0.5 + look.offset[1]), np.full_like(opening, 0.5 + look.offset[0])
    half_w = (0.22 + 0.2 * width) * look.scale  # a mouth ROI crop: the mouth fills most of the frame
    inner_h = 0.28 * opening * look.scale
    lip = 0.09 * look.scale

    shade = 1.0 - 0.25 * np.abs(xx - 0.5) - 0.15 * yy  # a soft light from the top centre
    face = np.empty((n, n, 3), np.float32)
    face[:] = np.array(look.skin, np.float32)
    face *= shade[..., None]
    image = np.repeat(face[None], len(opening), axis=0)

    image[_ellipse(yy, xx, cy, cx, inner_h + lip, half_w)] = look.lips
    inner = _ellipse(yy, xx, cy, cx, inner_h, half_w * 0.85) & (opening > 0.02)
    image[inner] = (40, 12, 16)
    image[inner & (teeth > 0) & (yy < (cy - inner_h + 0.05 * teeth * look.scale).astype(np.float32))] = (235, 232, 220)
    tongue_shape = _ellipse(yy, xx, cy + inner_h * 0.7, cx, inner_h * 0.6 * tongue, half_w * 0.5)
    image[inner & (tongue > 0) & tongue_shape] = (190, 80, 90)
    return np.clip(_downsample(image, size), 0, 255).astype(np.uint8)


def _downsample(image: np.ndarray, size: int) -> np.ndarray:
    """The mean of each 2x2 block, summed in the order ``mean(axis=(2, 4))`` sums them, four times faster."""
    blocks = image.reshape(-1, size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3)
    return (blocks[:, :, 0, :, 0] + blocks[:, :, 0, :, 1] + blocks[:, :, 1, :, 0] + blocks[:, :, 1, :, 1]) / 4


def render_frame(shape: np.ndarray, look: Appearance, size: int) -> np.ndarray:
    return render_frames(np.asarray(shape)[None], look, size)[0]


def render_video(track: np.ndarray, look: Appearance, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(T, size, size, 3)`` uint8 frames with a little sensor noise."""
    frames = render_frames(track, look, size).astype(np.int16)
    frames += rng.normal(0, 2.0, frames.shape).astype(np.int16)
    return np.clip(frames, 0, 255).astype(np.uint8)
