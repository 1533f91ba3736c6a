"""Attention for generation's one-token steps as two matmuls and a softmax, for the compiled static-cache path.

With a static KV cache every step attends over the whole cache through a mask (its unused slots, the left
padding), so SDPA takes its memory-efficient kernel, which is tiled for blocks of 64 queries: with one query
it spent 2.7 of a step's 4.1 ms at batch 64 on the H200 (the profile of benchmarks/decode_breakdown.py). Here
the query heads that share a key/value head form one small matmul against the cache (no copies of the cache
per query head), which inductor fuses with the mask and the softmax. Scores are taken in the weights' dtype
and normalised in fp32, as transformers' eager attention does. Prompts (several queries) keep SDPA. Beam
search's steps, whose beams share their row's prefix, attend here too (``shared_prefix.py``). Written as
products summed instead of matmuls, inductor fuses the whole attention into one reduction, but split over the
cache it ran 6-25% slower on the H200 (docs/history/performance-log.md, 2026-12-05, night).
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

from .causal import sdpa_replaced
from .shared_prefix import shared_prefix_attention

SINGLE_QUERY = "clipwhisper_single_query"


def single_query_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                           **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: ``query`` ``(B, H, Q, D)``, ``key``/``value`` ``(B, KV, L, D)``, the
    mask broadcastable to ``(B, 1, Q, L)`` (bool: attend where True; float: added); returns ``(B, Q, H, D)``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    unusual = dropout or kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None
    if query.shape[2] != 1 or unusual:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    batch, heads, _, dim = query.shape
    scale = dim ** -0.5 if scaling is None else scaling
    prefix = getattr(module, "shared_prefix", None)
    if prefix is not None:  # beams over a prefix held once per row (shared_prefix.py)
        return shared_prefix_attention(query, key, value, prefix, attention_mask, scale), None
    grouped = query.reshape(batch, key.shape[1], heads // key.shape[1], dim)  # query heads sharing a KV head
    scores = torch.matmul(grouped, key.transpose(-1, -2)).float() * scale
    if attention_mask is not None:
        mask = attention_mask[:, :, -1:]  # (B, 1, 1, L), over the groups
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    attended = torch.matmul(scores.softmax(-1).to(value.dtype), value)  # (B, KV, groups, D)
    return attended.reshape(batch, 1, heads, dim), None


@functools.cache  # once per process
def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(SINGLE_QUERY, single_query_attention)
    AttentionMaskInterface.register(SINGLE_QUERY, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])  # SDPA's masks


@contextlib.contextmanager
def single_query_steps(llm: nn.Module):
    """Within: ``llm``'s one-token steps attend by ``single_query_attention``. An LLM on another attention
    implementation than SDPA keeps its own."""
    _register()
    with sdpa_replaced(llm, SINGLE_QUERY):
        yield
