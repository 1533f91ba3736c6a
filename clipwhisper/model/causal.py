"""Causal attention with no mask at all, for training rows packed to the front (avsr.AVSRModel._llm_hidden).

transformers builds an attention mask for every forward, and its checks read
tensors on the host: with a padding mask whether every token is attended, with
none whether the positions hold several packed sequences. Each read waits for
the GPU, so the host cannot queue the next kernels while the encoders run. An
attention implementation that transformers has no mask function for gets no
mask and no checks; ours is PyTorch's SDPA, which without a mask runs causal
flash attention.
"""

from __future__ import annotations

import contextlib
import functools

from torch import nn

CAUSAL_SDPA = "clipwhisper_causal_sdpa"


@functools.cache  # once per process
def _register() -> None:
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    AttentionInterface.register(CAUSAL_SDPA, sdpa_attention_forward)


@contextlib.contextmanager
def causal_only(llm: nn.Module):
    """Within: ``llm`` attends causally and ignores any attention mask. Only for rows whose padding comes
    after every real token; an LLM on another attention implementation than SDPA keeps it (and its mask), and
    so does one with sliding-window layers (Gemma 3, Mistral): a plain causal kernel would ignore the window."""
    config = llm.config
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        yield
        return
    _register()
    with sdpa_replaced(llm, CAUSAL_SDPA):
        yield


@contextlib.contextmanager
def sdpa_replaced(llm: nn.Module, name: str):
    """Within: ``llm``'s SDPA attention runs as the registered implementation ``name``, back to SDPA after,
    whatever happened; an LLM on another implementation keeps its own."""
    config = llm.config
    if config._attn_implementation != "sdpa":
        yield
        return
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"
