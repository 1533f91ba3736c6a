"""Training state for an exact resume, stored without pickle.

``train_state/tensors.safetensors`` holds the optimizer's tensors and the RNG
states; ``train_state/state.json`` holds everything else (step, epoch,
position in the epoch, scheduler, scaler, python and numpy RNG).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from ..model.fsdp import full, reshard_like


def _optimizer_tensors(optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Whole tensors, also under FSDP (gathered: every rank calls this), so N ranks' state resumes on M."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = full(value).detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    for param, values in optimizer.state.items():  # under FSDP: this rank's shard of each whole tensor
        for name, value in values.items():
            values[name] = reshard_like(value, param)


def capture_train_state(*, optimizer, scheduler, scaler, progress: dict) -> tuple[dict, dict]:
    """The state's tensors and the rest, in memory; ``write_train_state`` stores them."""
    tensors, optimizer_meta = _optimizer_tensors(optimizer)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for index, value in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = value
    numpy_state = np.random.get_state()
    meta = {
        "progress": progress,
        "optimizer": optimizer_meta,
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng_python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "rng_numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
    }
    return tensors, meta


def write_train_state(folder: Path, captured: tuple[dict, dict]) -> None:
    tensors, meta = captured
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "tensors.safetensors"))
    (folder / "state.json").write_text(json.dumps(meta), encoding="utf-8")


def load_train_state(folder: Path, *, optimizer, scheduler, scaler) -> dict:
    """Restore everything and return the saved ``progress`` dict."""
    try:
        tensors = load_file(str(folder / "tensors.safetensors"))
        meta = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(folder, f"unreadable training state: {exc}") from None
    try:  # a state.json of another shape (edited, or not ours) is the checkpoint's fault, in one line
        _restore(meta, tensors, optimizer, scheduler, scaler)
        if not isinstance(meta["progress"], dict):
            raise TypeError("progress is not a mapping")
    except (KeyError, TypeError, ValueError, IndexError, OverflowError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(folder / "state.json", f"not a training state this version wrote: {exc!r}") from None
    return meta["progress"]


def _restore(meta: dict, tensors: dict, optimizer, scheduler, scaler) -> None:
    _restore_optimizer(optimizer, tensors, meta["optimizer"])
    scheduler.load_state_dict(meta["scheduler"])
    if scaler is not None and meta["scaler"] is not None:
        scaler.load_state_dict(meta["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    version, internal, gauss = meta["rng_python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = meta["rng_numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
