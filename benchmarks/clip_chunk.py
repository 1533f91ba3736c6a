"""One chunk of 512 frames through CLIP ViT-B-16 (random weights), replayed as a CUDA graph, four ways.

    python benchmarks/clip_chunk.py

What was tried to make CLIP, most of a 224-px training step, run faster: open_clip's tower as it is, its
patch embedding as a matmul instead of cuDNN's convolution (what the library runs), the tower under
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


def open_clip_conv(patch: nn.Conv2d) -> nn.Conv2d:
    """open_clip's own convolution, sharing the library's patch embedding's parameters."""
    conv = nn.Conv2d(patch.in_channels, patch.out_channels, patch.kernel_size, patch.stride, bias=False)
    conv.weight, conv.bias = patch.weight, patch.bias
    return conv


def encoder(size: int, patch_matmul: bool = False, compiled: bool = False) -> ClipVideoEncoder:
    torch.manual_seed(0)
    settings = dict(speed.REFERENCE["video_encoder"])
    settings["vision_cfg"] = dict(settings["vision_cfg"], image_size=size)
    clip = cast_frozen(ClipVideoEncoder.build(VideoEncoderConfig(**settings)).cuda().eval().requires_grad_(False),
                       torch.bfloat16)
    if not patch_matmul:
        clip.visual.conv1 = open_clip_conv(clip.visual.conv1)
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
