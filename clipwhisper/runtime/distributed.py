"""Training on several processes with PyTorch's own engine: ``torchrun`` sets the environment, we read it.

One process per GPU (NCCL), or per CPU worker (gloo). Rank 0 prints, logs and
writes checkpoints; the others wait for it at the points where files change.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

# torch.distributed.nn (transformers imports it) binds the world group as its functions' default argument when
# first imported. Imported after the group started, it would keep the group alive into interpreter shutdown,
# where gloo's threads abort the process ("terminate called without an active exception": 5 of 40 two-rank
# decodes on a loaded machine). Imported before, it binds None.
import torch.distributed.nn  # noqa: F401


def pick_device(name: str) -> torch.device:
    """``auto`` is the GPU when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # started the process group, so ends it

    @classmethod
    def from_env(cls, device_name: str) -> Distributed:
        """The process group torchrun describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), or one process."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if use_cuda else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(local)
        return cls(dist.get_rank(), world, local, owns)

    @contextmanager
    def closing(self) -> Iterator[Distributed]:
        """Ends the process group when the work ends, normally or with one of the project's errors (every rank
        raises those together), so that no collective is still in flight at interpreter shutdown. After a crash
        the group is left: ending it could wait on ranks still running, and torchrun stops them."""
        from ..errors import ClipWhisperError

        try:
            yield self
        except ClipWhisperError:
            self._end_group()
            raise
        # All ranks end the group together. In 2 of 3 full CPU test runs of 2026-11-27 a rank that ended its
        # group while rank 0 was still at work (finishing its checkpoint) aborted in gloo ("terminate called
        # without an active exception"); torchrun then stopped rank 0.
        self.barrier()
        self._end_group()

    def _end_group(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, name: str) -> torch.device:
        """This process's device: its own GPU (``LOCAL_RANK``) when several share a node."""
        device = pick_device(name)
        return torch.device("cuda", self.local_rank) if device.type == "cuda" and self.world > 1 else device

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast(self, value):
        """Rank 0's ``value`` on every rank (e.g. the checkpoint ``--resume auto`` picked)."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_lists(self, items: list) -> list:
        """Every rank's ``items``, concatenated in rank order, on every rank."""
        if self.world == 1:
            return items
        lists = [None] * self.world
        dist.all_gather_object(lists, items)
        return [item for part in lists for item in part]

    def total(self, value: float, device: torch.device) -> float:
        """The sum of ``value`` over ranks."""
        return self.totals([value], device)[0]

    def totals(self, values: list[float], device: torch.device) -> list[float]:
        """The element-wise sums of ``values`` over ranks, in one all-reduce."""
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()
