"""Which dtype each part computes in.

Trainable parameters stay fp32 (the optimizer updates them) and run under
autocast; frozen ones are cast once to the low-precision dtype, so the frozen
encoders and a LoRA base LLM are not re-cast on every forward and take half
the memory. Frozen encoders then run outside autocast, entirely in bf16:
autocast would send every LayerNorm through fp32 and back (measured: a third
of CLIP's time on the H100). openai-whisper's LayerNorm computes in fp32 and
needs fp32 weights, so those stay fp32.
"""

from __future__ import annotations

import torch
from torch import nn


def configure_kernels() -> None:
    """Process-wide kernel choices for variable-length batches on a GPU.

    cuDNN's attention builds an execution plan for each new sequence length, and
    every batch and every generated token brings one; flash and memory-efficient
    attention need no plan. TF32 matmuls for whatever still runs in fp32."""
    torch.backends.cuda.enable_cudnn_sdp(False)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """``auto`` is bf16 on a GPU and fp32 (no autocast) on the CPU."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


def cast_frozen(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """Frozen floating-point parameters to ``dtype``, except openai-whisper's LayerNorms."""
    if dtype is None:
        return model
    from whisper.model import LayerNorm as WhisperLayerNorm

    keep_fp32 = {id(p) for m in model.modules() if isinstance(m, WhisperLayerNorm) for p in m.parameters()}
    for param in model.parameters():
        if not param.requires_grad and param.is_floating_point() and id(param) not in keep_fp32:
            param.data = param.data.to(dtype)
    return model


def for_inference(model: nn.Module, precision: str = "auto") -> nn.Module:
    """Frozen, LoRA merged into the base weights (fewer kernels per generated token), and cast once:
    generation then runs in that dtype without autocast."""
    configure_kernels()
    if hasattr(model.llm, "merge_and_unload"):
        model.llm = model.llm.merge_and_unload()
    model.eval().requires_grad_(False)
    return cast_frozen(model, autocast_dtype(precision, model.device))
