"""open_clip's visual tower: one embedding per frame, all frames of a batch together."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from ..config import VideoEncoderConfig
from ..data.frames import to_rgb
from .graphs import ShapeGraphs
from .padding import pad_to_multiple
from .patch_embedding import PatchEmbedding
from .transfer import to_device

# A text tower we never use: open_clip's public CLIP class always builds one.
_UNUSED_TEXT_CFG = {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}


def _build_visual(config: VideoEncoderConfig) -> tuple[nn.Module, dict[str, Any]]:
    import open_clip

    if config.vision_cfg:
        vision_cfg = dict(config.vision_cfg)
        if config.image_size:
            vision_cfg["image_size"] = config.image_size
        visual = open_clip.CLIP(embed_dim=config.embed_dim or vision_cfg["width"], vision_cfg=vision_cfg,
                                text_cfg=_UNUSED_TEXT_CFG).visual
        preprocess = {}
    else:
        model = open_clip.create_model(config.name, pretrained=config.pretrained, force_image_size=config.image_size)
        visual, preprocess = model.visual, open_clip.get_model_preprocess_cfg(model)
    mean = config.mean or preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN)
    std = config.std or preprocess.get("std", open_clip.OPENAI_DATASET_STD)
    return visual, {"mean": mean, "std": std}


def configured_image_size(config: VideoEncoderConfig) -> int | None:
    """The input size ``config`` builds the tower with, read without building it (a decode starts reading frames
    while the checkpoint loads); None where only the built model knows (a config fetched from a hub)."""
    import open_clip

    if config.image_size:
        return config.image_size
    vision_cfg = config.vision_cfg or (open_clip.get_model_config(config.name) or {}).get("vision_cfg", {})
    size = vision_cfg.get("image_size")
    return size[0] if isinstance(size, (tuple, list)) else size


class ClipVideoEncoder(nn.Module):
    def __init__(self, visual: nn.Module, mean, std, chunk_frames: int = 512):
        super().__init__()
        if hasattr(visual, "conv1"):
            visual.conv1 = PatchEmbedding.replacing(visual.conv1)
        self.visual = visual
        self.chunk_frames = chunk_frames
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.graphs = ShapeGraphs(self._embed, self)

    @classmethod
    def build(cls, config: VideoEncoderConfig) -> ClipVideoEncoder:
        visual, norm = _build_visual(config)
        return cls(visual, norm["mean"], norm["std"], config.chunk_frames)

    @property
    def image_size(self) -> int:
        size = self.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else int(size)

    @property
    def output_size(self) -> int:
        return int(self.visual.output_dim)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``frames`` with frame ``lengths`` -> ``(B, T, D)``, mask. ``frames``: uint8, as the loader carries them,
        YUV 4:2:0 ``(B, T, 3S/2, S)`` (made RGB at the tower's size here, ``data/frames.py``), or RGB
        ``(B, T, H, W, 3)`` at the tower's size.

        Only real frames are encoded, packed across the batch in chunks of ``chunk_frames``. Their
        positions come from the lengths on the host: no device sync, so the host can queue the LLM's
        kernels while CLIP runs. On a GPU a chunk is padded to a few sizes and replayed as a CUDA graph, its
        pixels' conversion included."""
        batch, steps = frames.shape[:2]
        mask = torch.arange(steps)[None, :] < lengths.cpu()[:, None]
        real = to_device(mask.flatten().nonzero().flatten(), frames.device)
        multiple = self.graphs.multiple(frames)
        outputs = []
        for chunk in frames.flatten(0, 1).index_select(0, real).split(self.chunk_frames):
            outputs.append(self.graphs(pad_to_multiple(chunk, 0, multiple))[: len(chunk)])
        dtype = next(self.visual.parameters()).dtype
        encoded = torch.cat(outputs) if outputs else frames.new_zeros((0, self.output_size), dtype=dtype)
        features = encoded.new_zeros((batch * steps, encoded.shape[-1])).index_copy_(0, real, encoded)
        return features.view(batch, steps, -1), to_device(mask, frames.device)

    def _embed(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames, YUV 4:2:0 ``(N, 3S/2, S)`` or RGB ``(N, H, W, 3)`` at the tower's size -> CLIP
        embeddings ``(N, D)`` in the tower's dtype."""
        prepare = compiled_clip_input() if frames.is_cuda and self.graphs.enabled else clip_input
        return self.visual(prepare(frames, self.image_size, self.mean, self.std, next(self.visual.parameters()).dtype))


def clip_input(frames: torch.Tensor, size: int, mean: torch.Tensor, std: torch.Tensor,
               dtype: torch.dtype) -> torch.Tensor:
    """uint8 frames, YUV 4:2:0 ``(N, 3S/2, S)`` or RGB ``(N, size, size, 3)`` -> the tower's input ``(N, 3, size,
    size)``: RGB in [0, 1] normalised by ``mean`` and ``std``, in ``dtype``."""
    rgb = to_rgb(frames, size) if frames.dim() == 3 else frames
    pixels = rgb.permute(0, 3, 1, 2).float().div(255.0)
    return ((pixels - mean) / std).to(dtype)


@functools.cache
def compiled_clip_input():
    """``clip_input`` compiled, for a GPU where CUDA graphs are on (``--no-cuda-graphs`` turns both off): eagerly
    it is about twenty elementwise passes over float images; compiled, a few kernels, which give the same values
    but for a rare one a level away (floats rounded in another order before the rounding to a level;
    ``benchmarks/clip_input_ab.py`` measures both). One compilation per image size for any number of frames
    but one (torch specialises a size of 1; under CUDA graphs chunks are padded to multiples of 32)."""
    compiled = torch.compile(clip_input, dynamic=False)

    def prepare(frames: torch.Tensor, *args) -> torch.Tensor:
        torch._dynamo.maybe_mark_dynamic(frames, 0)
        return compiled(frames, *args)
    return prepare
