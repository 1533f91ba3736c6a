"""Project encoder frames into the LLM's embedding space, k frames per token."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConnectorConfig


class Connector(nn.Module):
    def __init__(self, input_size: int, output_size: int, config: ConnectorConfig):
        super().__init__()
        self.stack = config.stack
        stacked = input_size * config.stack
        if config.kind == "linear":
            self.project = nn.Linear(stacked, output_size)
        else:
            hidden = config.hidden_size or output_size
            self.project = nn.Sequential(nn.Linear(stacked, hidden), nn.GELU(), nn.Linear(hidden, output_size))

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, D)`` + mask -> ``(B, ceil(T/k), d_llm)`` + mask; a token is real if any frame in it is."""
        batch, steps, size = features.shape
        pad = (-steps) % self.stack
        features = F.pad(features * mask[..., None], (0, 0, 0, pad))
        mask = F.pad(mask, (0, pad))
        tokens = features.reshape(batch, -1, size * self.stack)
        token_mask = mask.reshape(batch, -1, self.stack).any(dim=-1)
        return self.project(tokens.to(self.project_dtype)), token_mask

    @property
    def project_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype
