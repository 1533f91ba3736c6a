"""``--strategy fsdp``: PyTorch's FSDP2 (``fully_shard``) for LLMs that do not fit one GPU.

Each LLM decoder layer is one unit (the classes transformers lists in the model's
``_no_split_modules``); the rest of the model (encoders, connectors, fusion, the
embeddings and the LM head, which Llama 3.2 ties) is the root unit. Every rank
holds 1/N of every parameter, frozen or not, and the optimizer state of its
trainable shards only: a LoRA run's memory is the base's shard, the unit being
gathered, and small adapter states. Frozen and trainable parameters may share a
unit (FSDP2 shards per parameter). No mixed-precision policy: the frozen base is
already bf16 (precision.cast_frozen) and the trainable fp32 parameters run under
autocast, exactly as without FSDP.

Checkpoints stay portable: the helpers below gather full tensors on save and cut
a rank's shard back out on load, so a checkpoint from N ranks resumes on M.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from .llm import decoder_layers


def shard_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Shard ``model`` over all ranks in place; the shards move to ``device``."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    for layer in decoder_layers(model.llm):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    register_fsdp_forward_method(model, "generate")  # validation generates: gather the root unit for it too
    return model


def full(value):
    """A whole tensor from a sharded one (a collective: every rank must call it); others as they are."""
    return value.full_tensor() if isinstance(value, DTensor) else value


def reshard_like(value: torch.Tensor, param) -> torch.Tensor:
    """This rank's shard of a whole tensor ``value``, placed as ``param`` is (no communication)."""
    if not isinstance(param, DTensor) or isinstance(value, DTensor) or value.shape != param.shape:
        return value
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(value, param.device_mesh, param.placements, src_data_rank=None)
