"""Combine the audio and video token streams into one block of LLM inputs.

``concat``: [BOV] video [EOV] [BOA] audio [EOA] (as Llama-AVSR).
``sum``: both streams at one token rate, mixed by a fixed weight or a learned gate.
A dropped or absent stream is masked out (its tokens stay in the graph with attention
mask 0), never skipped: every parameter takes part in every step, as DDP requires.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import FusionConfig


class Fusion(nn.Module):
    def __init__(self, config: FusionConfig, hidden_size: int, streams: tuple[str, ...]):
        super().__init__()
        self.kind = config.kind
        self.streams = streams
        if self.kind == "concat":
            self.boundaries = nn.Parameter(torch.randn(len(streams), 2, hidden_size) * 0.02)
        elif config.gate == "learned" and len(streams) == 2:
            self.gate = nn.Parameter(torch.tensor(0.0))  # sigmoid(0) = 0.5: equal weights at start
        else:
            self.register_buffer("fixed_audio_weight", torch.tensor(config.fusion_scale), persistent=False)

    def audio_weight(self) -> torch.Tensor:
        return torch.sigmoid(self.gate) if hasattr(self, "gate") else self.fixed_audio_weight

    def forward(self, tokens: dict[str, tuple[torch.Tensor, torch.Tensor]], keep: dict[str, torch.Tensor]):
        """``tokens[stream] = (B, T, d) embeddings, (B, T) mask``; ``keep[stream]`` is (B,) bool.

        Returns embeddings ``(B, L, d)`` and attention mask ``(B, L)``."""
        if self.kind == "concat":
            return self._concat(tokens, keep)
        return self._sum(tokens, keep)

    def _concat(self, tokens, keep):
        pieces, masks = [], []
        for index, stream in enumerate(self.streams):
            emb, mask = tokens[stream]
            kept = keep[stream]
            bounds = self.boundaries[index].to(emb.dtype).expand(emb.shape[0], -1, -1)
            block = torch.cat([bounds[:, :1], emb, bounds[:, 1:]], dim=1) * kept[:, None, None].to(emb.dtype)
            ones = mask.new_ones((mask.shape[0], 1))
            pieces.append(block)
            masks.append(torch.cat([ones, mask, ones], dim=1) & kept[:, None])
        return torch.cat(pieces, dim=1), torch.cat(masks, dim=1)

    def _sum(self, tokens, keep):
        if len(self.streams) == 1:
            emb, mask = tokens[self.streams[0]]
            return emb, mask
        (audio, audio_mask), (video, video_mask) = tokens["audio"], tokens["video"]
        steps = max(audio.shape[1], video.shape[1])
        audio, audio_mask = _resample(audio, audio_mask, steps)
        video, video_mask = _resample(video, video_mask, steps)
        has_audio = (keep["audio"][:, None] & audio_mask).to(audio.dtype)[..., None]
        has_video = (keep["video"][:, None] & video_mask).to(video.dtype)[..., None]
        weight = self.audio_weight().to(audio.dtype)
        audio_w = has_audio * torch.where(has_video > 0, weight, torch.ones_like(weight))
        video_w = has_video * torch.where(has_audio > 0, 1 - weight, torch.ones_like(weight))
        return audio * audio_w + video * video_w, (audio_w + video_w)[..., 0] > 0


def _resample(emb: torch.Tensor, mask: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest-neighbour resampling of a token stream to ``steps`` tokens; a stream the batch lacks (no tokens)
    becomes ``steps`` masked zeros."""
    if emb.shape[1] == steps:
        return emb, mask
    if emb.shape[1] == 0:
        return emb.new_zeros(emb.shape[0], steps, emb.shape[2]), mask.new_zeros(mask.shape[0], steps)
    index = (torch.arange(steps, device=emb.device) * emb.shape[1] // steps).clamp(max=emb.shape[1] - 1)
    return emb[:, index], mask[:, index]

