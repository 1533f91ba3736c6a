"""AdamW over trainable parameters only, and a warmup + cosine schedule."""

from __future__ import annotations

import math

import torch

from ..config import TrainConfig
from ..model.fsdp import full


def configure_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """Weight decay on matrices only: biases, norms and 1-D parameters are exempt; frozen ones are left out."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.dim() >= 2]
    no_decay = [p for p in trainable if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = device.type in ("cuda", "cpu")  # one kernel per step; on the CPU 1.3 against 4.6 ms (the tiny preset)
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(0.9, 0.98), fused=fused)


def lr_multiplier(step: int, warmup: int, total: int, floor: float = 0.1) -> float:
    """Linear warmup to 1, then cosine decay to ``floor`` at ``total`` steps."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def configure_scheduler(optimizer, config: TrainConfig, total_steps: int):
    warmup = min(config.warmup_steps, max(0, total_steps - 1))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_multiplier(step, warmup, total_steps))


def clip_gradients(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale the gradients to a total norm of at most ``max_norm``; under FSDP the norm covers all shards.
    Returns the norm before clipping (on the device: reading it waits for the step)."""
    norm = full(torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None]))
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return norm
