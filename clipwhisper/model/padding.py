"""Zero padding of a dimension up to a multiple: connector stacks, and the few shapes CUDA graphs and
compiled generation steps need."""

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


def fixed_generation_shape(prefix: torch.Tensor, mask: torch.Tensor, rows: int,
                           multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A left-padded generation prefix ``(batch, tokens, dim)`` and its mask with masked zeros added on the
    left up to a multiple of ``multiple`` tokens, and copies of the first row added up to ``rows`` rows.
    Positions come from the mask, so the real rows generate what they would unpadded."""
    extra = -(-prefix.shape[1] // multiple) * multiple - prefix.shape[1]
    prefix, mask = F.pad(prefix, (0, 0, extra, 0)), F.pad(mask, (extra, 0))
    fill = max(rows - prefix.shape[0], 0)
    return (torch.cat([prefix, prefix[:1].expand(fill, -1, -1)]), torch.cat([mask, mask[:1].expand(fill, -1)]))
