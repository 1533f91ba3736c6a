"""Zero padding of a dimension up to a multiple: connector stacks, and the few shapes CUDA graphs need."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_multiple(tensor: torch.Tensor, dim: int, multiple: int) -> torch.Tensor:
    """``tensor`` with zeros appended along ``dim`` up to a multiple of ``multiple``; itself (not a copy)
    where it is one already."""
    size = tensor.shape[dim]
    extra = -(-size // multiple) * multiple - size
    if not extra:
        return tensor
    return F.pad(tensor, [0, 0] * (tensor.dim() - 1 - dim) + [0, extra])
