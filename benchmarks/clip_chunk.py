"""One chunk of 512 frames through CLIP ViT-B-16 (random weights), replayed as a CUDA graph, four ways.

    python benchmarks/clip_chunk.py

What was tried to make CLIP, most of a 224-px training step, run faster: open_clip's tower as it is (what
the library runs), its patch embedding as a matmul instead of cuDNN's convolution, the tower under
torch.compile, and both. Prints milliseconds per chunk at 224 and 112 px, and each variant's largest
difference from the first, relative to its scale (bf16).
"""

from __future__ import annotations

import functools
import time

import speed
import torch
from torch import nn

from clipwhisper.config import VideoEncoderConfig
from clipwhisper.model.precision import cast_frozen, configure_kernels
from clipwhisper.model.video_encoder import ClipVideoEncoder


class PatchMatmul(nn.Module):
    """A stride-equals-kernel convolution as one matmul over the flattened patches."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p, out = self.conv.kernel_size[0], self.conv.out_channels
        patches = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(n, -1, c * p * p)
        y = patches @ self.conv.weight.reshape(out, -1).t()
        return y.transpose(1, 2).view(n, out, h // p, w // p)


def encoder(size: int, patch_matmul: bool = False, compiled: bool = False) -> ClipVideoEncoder:
    torch.manual_seed(0)
    settings = dict(speed.REFERENCE["video_encoder"])
    settings["vision_cfg"] = dict(settings["vision_cfg"], image_size=size)
    clip = cast_frozen(ClipVideoEncoder.build(VideoEncoderConfig(**settings)).cuda().eval().requires_grad_(False),
                       torch.bfloat16)
    if patch_matmul:
        clip.visual.conv1 = PatchMatmul(clip.visual.conv1)
    if compiled:
        clip.visual = torch.compile(clip.visual)
    return clip


def milliseconds(work, reps: int = 20) -> float:
    for _ in range(3):
        work()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        work()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps * 1e3


def main() -> None:
    configure_kernels()
    with torch.no_grad():
        for size in (224, 112):
            frames = torch.randint(0, 256, (512, size, size, 3), dtype=torch.uint8, device="cuda")
            variants = {"open_clip as it is": encoder(size), "patch matmul": encoder(size, patch_matmul=True),
                        "compiled": encoder(size, compiled=True),
                        "patch matmul + compiled": encoder(size, patch_matmul=True, compiled=True)}
            reference = variants["open_clip as it is"]._embed(frames).float()
            for _ in range(2):
                for name, clip in variants.items():
                    started = time.perf_counter()
                    out = clip.graphs(frames).float()
                    first = time.perf_counter() - started
                    difference = ((out - reference).abs().max() / reference.abs().max()).item()
                    print(f"{size} px {name}: {milliseconds(functools.partial(clip.graphs, frames)):.2f} ms per 512 "
                          f"frames; relative difference {difference:.1e}; first call {first:.1f} s", flush=True)
            variants = None
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
