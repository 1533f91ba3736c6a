"""Parameter counts per component, and per-component logs of how much the parameters moved."""

from __future__ import annotations

import torch
from torch import nn

from ..model.fsdp import full


def component_rows(components: dict[str, nn.Module]) -> list[dict]:
    """One row per component; the LLM is split into its base and its LoRA weights."""
    rows = []
    for name, module in components.items():
        groups = {name: list(module.named_parameters())}
        if name == "llm":
            lora = [(n, p) for n, p in module.named_parameters() if "lora_" in n]
            if lora:
                groups = {"llm base": [(n, p) for n, p in module.named_parameters() if "lora_" not in n],
                          "lora": lora}
        for label, params in groups.items():
            tensors = [p for _, p in params]
            dtypes = sorted({str(p.dtype).replace("torch.", "") for p in tensors}) or ["-"]
            devices = sorted({str(p.device) for p in tensors}) or ["-"]
            rows.append({
                "component": label,
                "parameters": sum(p.numel() for p in tensors),
                "trainable": sum(p.numel() for p in tensors if p.requires_grad),
                "dtype": ",".join(dtypes),
                "device": ",".join(devices),
            })
    return rows


class UpdateTracker:
    """Norm of each component's change since the last report and how many tensors changed.

    Trainable tensors are copied; frozen ones keep a cheap fingerprint (sum and sum of
    squares in float64), which is enough to show that they did not move at all. Under FSDP every rank
    takes part (the whole tensors are gathered)."""

    def __init__(self, components: dict[str, nn.Module]):
        self.components = components
        self.snapshot = self._take()

    def _take(self) -> dict[str, dict[str, torch.Tensor]]:
        snap = {}
        for name, module in self.components.items():
            snap[name] = {}
            for key, param in module.named_parameters():
                data = param.detach()
                if param.requires_grad:
                    snap[name][key] = full(data).clone()
                else:  # under FSDP the sums of a shard are reduced over the ranks by full()
                    wide = data.double()
                    snap[name][key] = torch.stack([full(wide.sum()), full((wide * wide).sum())])
        return snap

    def report(self) -> dict[str, dict[str, float]]:
        current = self._take()
        result = {}
        for name, params in current.items():
            squared, changed = 0.0, 0
            for key, value in params.items():
                delta = (value.double() - self.snapshot[name][key].double())
                if torch.any(delta != 0):
                    changed += 1
                    squared += float(delta.pow(2).sum())
            result[name] = {"update_norm": squared ** 0.5, "tensors_changed": changed, "tensors": len(params)}
        self.snapshot = current
        return result
