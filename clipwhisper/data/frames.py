"""Video frames as the loader carries them: YUV 4:2:0 at the source's size, made RGB at CLIP's size on the model's
device.

A loader worker only decodes (and crops to a centred square): converting a 96-px mouth clip to RGB and scaling it
took libswscale 1.3x (112 px) to 2.6x (224 px) as long as decoding it (the timings in
docs/history/performance-log.md), and its RGB frames are 2.7x (112 px) to 10.9x (224 px) larger to pin and copy. So
a frame travels as its planes, ``(3S/2, S)`` uint8 per frame (``S`` rows of luma, then the two ``S/2 x S/2`` chroma
planes packed row after row, the layout of FFmpeg's ``yuv420p``), BT.601 limited range, with ``S`` the source's
square side, or CLIP's size for a larger source (scaled down by the loader), and even. ``to_rgb`` then makes RGB as
libswscale's unscaled conversion does (each chroma sample for its 2x2 pixels; within 3 levels of it,
tests/test_frames.py) and scales it bilinearly to CLIP's size. Every path (training, decoding, transcribing, the
feature cache) goes through it: a model sees the same pixels however its frames were read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PIXELS = "yuv420p-bt601-nearest-chroma/bilinear"  # what the feature cache's fingerprint records

_LIMITED = ((16.0, 255.0 / 219.0), (128.0, 255.0 / 224.0))  # (offset, gain) of luma, of chroma
_CR_R, _CB_G, _CR_G, _CB_B = 1.402, -0.344136, -0.714136, 1.772  # BT.601: R, G, B from Y and Cb, Cr


def carried_side(width: int, height: int, size: int) -> int:
    """The square side a ``width x height`` source is carried at for CLIP's ``size``: the source's shorter side, or
    ``size`` where the source is larger (no detail above CLIP's size is kept), made even for the chroma planes."""
    return max(2, min(width, height, size) // 2 * 2)


def side_of(frames: torch.Tensor) -> int:
    """``S`` of frames ``(..., 3S/2, S)``."""
    return frames.shape[-1]


def planes(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """YUV 4:2:0 frames ``(N, 3S/2, S)`` -> luma ``(N, S, S)`` and chroma ``(N, 2, S/2, S/2)`` (Cb, Cr), views."""
    count, side = frames.shape[0], side_of(frames)
    flat = frames.reshape(count, -1)
    return (flat[:, : side * side].reshape(count, side, side),
            flat[:, side * side:].reshape(count, 2, side // 2, side // 2))


def to_rgb(frames: torch.Tensor, size: int) -> torch.Tensor:
    """YUV 4:2:0 frames ``(N, 3S/2, S)`` uint8 -> RGB ``(N, size, size, 3)`` uint8, on the frames' device."""
    luma, chroma = planes(frames)
    chroma = chroma.float().repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    (y_offset, y_gain), (c_offset, c_gain) = _LIMITED
    y = (luma.float() - y_offset) * y_gain
    cb, cr = ((chroma - c_offset) * c_gain).unbind(1)
    rgb = torch.stack([y + _CR_R * cr, y + _CB_G * cb + _CR_G * cr, y + _CB_B * cb], 1).clamp_(0, 255)
    if side_of(frames) != size:
        rgb = F.interpolate(rgb, size=(size, size), mode="bilinear", align_corners=False)
    return rgb.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def resized(frames: torch.Tensor, side: int) -> torch.Tensor:
    """YUV 4:2:0 frames ``(N, 3S/2, S)`` at another even ``side``, each plane scaled bilinearly: a batch whose
    sources differ in size (say 88- and 96-px crops) is carried at its largest."""
    if side_of(frames) == side:
        return frames
    count = frames.shape[0]
    luma, chroma = planes(frames)

    def scale(plane: torch.Tensor, to: int) -> torch.Tensor:
        out = F.interpolate(plane.float(), size=(to, to), mode="bilinear", align_corners=False)
        return out.round_().clamp_(0, 255).to(torch.uint8).reshape(count, -1)
    return torch.cat([scale(luma[:, None], side), scale(chroma, side // 2)], 1).reshape(count, side * 3 // 2, side)
