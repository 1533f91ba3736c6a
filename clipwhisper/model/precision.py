"""Which dtype each part computes in.

Trainable parameters stay fp32 (the optimizer updates them); frozen ones are
cast to the autocast dtype, so the frozen encoders and a LoRA base LLM are not
re-cast on every forward and take half the memory. openai-whisper's LayerNorm
computes in fp32 and needs fp32 weights, so every LayerNorm stays fp32.
"""

from __future__ import annotations

import torch
from torch import nn


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """``auto`` is bf16 on a GPU and fp32 (no autocast) on the CPU."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


def cast_frozen(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """Frozen floating-point parameters and buffers to ``dtype``, except LayerNorms."""
    if dtype is None:
        return model
    keep_fp32 = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    for param in model.parameters():
        if not param.requires_grad and param.is_floating_point() and id(param) not in keep_fp32:
            param.data = param.data.to(dtype)
    return model


def for_inference(model: nn.Module, precision: str = "auto") -> nn.Module:
    """Everything frozen, cast once; ``generate`` then runs under autocast in that dtype."""
    model.eval().requires_grad_(False)
    model.inference_dtype = autocast_dtype(precision, model.device)
    return cast_frozen(model, model.inference_dtype)
