"""A batch as the model reads it: what ``collate`` makes of the dataset's items."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch


class Padded(NamedTuple):
    values: torch.Tensor  # rows zero-padded along their first axis after the batch's
    lengths: torch.Tensor  # (rows,): each row's own length; 0 where the row has none


@dataclass
class Batch:
    """The good items' ids and transcripts; per stream their media or, from the feature cache, their encoder
    output (a row missing from one has length 0 there); and the items that failed to decode."""

    ids: list[str]
    texts: list[str | None]
    media: dict[str, Padded] = field(default_factory=dict)  # "audio": (rows, samples); "video": (rows, T, H, W, 3)
    features: dict[str, Padded] = field(default_factory=dict)  # encoder output per stream, from the cache
    order: list[str] = field(default_factory=list)  # every item's id as the loader gave them, failed ones too
    bad: list[tuple[str, str]] = field(default_factory=list)  # (id, error) of the items that failed
    noisy: list[bool] = field(default_factory=list)  # per good item: training mixed noise into its audio

    def __len__(self) -> int:
        return len(self.ids)

    def has(self, stream: str) -> bool:
        """Whether the batch carries ``stream``, as media or as cached encoder features."""
        return stream in self.media or stream in self.features

    def take(self, rows: list[int]) -> Batch:
        """The batch of ``rows`` alone, each stream cut to their longest (failed items left out)."""
        def cut(streams: dict[str, Padded]) -> dict[str, Padded]:
            lengths = {name: p.lengths[rows] for name, p in streams.items()}
            return {name: Padded(p.values[rows][:, : int(lengths[name].max())], lengths[name])
                    for name, p in streams.items()}
        return Batch([self.ids[r] for r in rows], [self.texts[r] for r in rows], cut(self.media),
                     cut(self.features), [self.ids[r] for r in rows],
                     noisy=[self.noisy[r] for r in rows] if self.noisy else [])

    def only(self, stream: str) -> Batch:
        """The batch with ``stream`` alone: the other streams' media and cached features left out."""
        return dataclasses.replace(self, media={k: v for k, v in self.media.items() if k == stream},
                                   features={k: v for k, v in self.features.items() if k == stream})

    def pin_memory(self, done: dict[int, Padded] | None = None) -> Batch:
        """The batch with its tensors in page-locked memory, for a fast copy to a GPU (what the DataLoader calls
        with ``pin_memory=True``). ``done``: streams already pinned, by the id of their unpinned ``Padded``
        (several batches sharing one are pinned once); this batch's are added to it."""
        done = {} if done is None else done

        def pinned_streams(streams: dict[str, Padded]) -> dict[str, Padded]:
            for p in streams.values():
                if id(p) not in done:
                    done[id(p)] = Padded(pinned(p.values), pinned(p.lengths))
            return {name: done[id(p)] for name, p in streams.items()}
        return Batch(self.ids, self.texts, pinned_streams(self.media), pinned_streams(self.features), self.order,
                     self.bad, self.noisy)


def pinned(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of ``tensor`` in page-locked memory. numpy moves the bytes: it releases the GIL during the copy, as
    torch does, but does not wake torch's intra-op threads, which spin after each copy and beside a GPU took
    the cores of a decode's loader workers (``data.dataset.pad_stack``)."""
    out = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    as_bytes(out)[...] = as_bytes(tensor.contiguous())
    return out


def as_bytes(tensor: torch.Tensor) -> np.ndarray:
    """A numpy view of ``tensor``'s bytes, each element's on a new last axis: any dtype, bf16 included."""
    return tensor.unsqueeze(-1).view(torch.uint8).numpy()
