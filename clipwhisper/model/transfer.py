"""Host-to-device copies that do not make the host wait for the device."""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``, queued behind the device's work: a copy from pageable host memory would
    first wait for that work to finish, so a host tensor bound for a GPU is pinned first."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)
