"""``torch.compile`` of the LLM's decoder layers (``train --compile``, on by default on a GPU).

Each layer compiles for any sequence length (dynamic shapes), and the layers
share one compiled graph (their parameters are its inputs), so the first batches
pay for compiling once. The gain is fewer, fused kernels: the LoRA LLM step was
bound by the host launching them. On the H100, compiling CLIP's blocks as well
made training from media slower, so the encoders run as they are
(docs/performance.md has the measurements).
"""

from __future__ import annotations

from torch import nn

from .llm import decoder_layers


def compile_llm_layers(llm: nn.Module) -> nn.Module:
    for layer in decoder_layers(llm):
        layer.compile(dynamic=True)
    return llm
