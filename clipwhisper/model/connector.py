"""Project encoder frames into the LLM's embedding space, k frames per token."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ConnectorConfig
from .ctc import CHARACTERS
from .padding import pad_to_multiple


class Connector(nn.Module):
    def __init__(self, input_size: int, output_size: int, config: ConnectorConfig,
                 ctc_table: torch.Tensor | None = None):
        """``ctc_table``: the LLM's input embedding table where it trains with the LLM; CTC then scores the
        tokens through a copy of it that is the connector's own (``ctc.py`` says why)."""
        super().__init__()
        self.ctc_head = nn.Parameter(ctc_table.detach().clone()) if ctc_table is not None else None
        self.reads = config.ctc_units
        reads_characters = config.ctc_weight > 0 and config.ctc_units == "characters"
        self.character_head = nn.Linear(input_size, len(CHARACTERS) + 1) if reads_characters else None
        self.stack = config.stack
        stacked = input_size * config.stack
        if config.kind == "linear":
            self.project = nn.Linear(stacked, output_size)
        else:
            hidden = config.hidden_size or output_size
            self.project = nn.Sequential(nn.Linear(stacked, hidden), nn.GELU(), nn.Linear(hidden, output_size))

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, D)`` + mask -> ``(B, ceil(T/k), d_llm)`` + mask; a token is real if any frame in it is."""
        batch, _, size = features.shape
        features = pad_to_multiple(features * mask[..., None], 1, self.stack)
        mask = pad_to_multiple(mask, 1, self.stack)
        tokens = features.reshape(batch, -1, size * self.stack)
        token_mask = mask.reshape(batch, -1, self.stack).any(dim=-1)
        return self.project(tokens.to(self.project_dtype)), token_mask

    def ctc_logits(self, tokens: tuple[torch.Tensor, torch.Tensor], frames: tuple[torch.Tensor, torch.Tensor],
                   llm_table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What CTC scores, with its mask: each encoder frame over the characters where the connector reads
        characters, else each token over the LLM's vocabulary, through its own head or the LLM's table."""
        if self.reads == "characters":
            return self.character_head(frames[0].to(self.project_dtype)), frames[1]
        table = llm_table if self.ctc_head is None else self.ctc_head
        return tokens[0].float() @ table.float().T, tokens[1]

    @property
    def project_dtype(self) -> torch.dtype:
        return next(self.project.parameters()).dtype  # not the CTC head's, which has the LLM table's dtype
