"""A decode's batches: each made whole in a loader worker (its media decoded once for every SNR, noise mixed,
padded) and pinned for the GPU as it arrives, so the model never waits for them when the workers keep up."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import DecodeConfig
from ..data.batch import Batch
from ..data.dataset import AVDataset, collate
from ..data.noise import mix_at_snr

GPU_BATCH, CPU_BATCH = 64, 8  # the default batch sizes (DecodeConfig.batch_size)


def with_batch_size(config: DecodeConfig, device: torch.device) -> DecodeConfig:
    """``config`` with its batch size settled: the one asked for, or the device's default. On the H200 greedy
    audio decoding ran twice as fast at batch 64 as at 16 (docs/history/performance-log.md, 2026-12-03); on the
    CPU larger batches gain little and hold more media in memory."""
    if config.batch_size is not None:
        return config
    return config.model_copy(update={"batch_size": GPU_BATCH if device.type == "cuda" else CPU_BATCH})


@contextmanager
def decode_batches(dataset: AVDataset, config: DecodeConfig, device: torch.device, noise=None,
                   snrs: Sequence = ("clean",), pending: dict[str, set[str]] | None = None
                   ) -> Iterator[Iterator[Cells]]:
    """Per ``config.batch_size`` items of the dataset, in order, their batch at each of ``snrs`` (babble from
    ``noise`` mixed into the audio; only the ids ``pending[str(snr)]`` holds, where given): the media of an
    utterance are decoded once for all its SNRs, and one loader serves the whole decode. The loader starts
    reading on entry, before the first batch is asked for (a decode loads its checkpoint meanwhile)."""
    yield iter(batch_loader(DecodeBatches(dataset, config.batch_size, noise, snrs, pending), config, device))


class Cells(list):
    """A batch at each of its SNRs, ``(snr, Batch)`` pairs, whose video the cells may share."""

    def pin_memory(self) -> Cells:
        """The cells in page-locked memory (DataLoader's pin thread calls it), a shared tensor pinned once."""
        done: dict = {}
        return Cells((snr, batch.pin_memory(done)) for snr, batch in self)


class DecodeBatches(Dataset):
    """Batch ``index`` of a decode at each SNR: ``size`` items of ``dataset`` from ``index * size`` on."""

    def __init__(self, dataset: AVDataset, size: int, noise, snrs: Sequence, pending: dict[str, set[str]] | None):
        self.dataset, self.size, self.noise, self.snrs, self.pending = dataset, size, noise, snrs, pending

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.size)

    def __getitem__(self, index: int) -> Cells:
        return self.cells(
            [self.dataset[i] for i in range(index * self.size, min((index + 1) * self.size, len(self.dataset)))])

    def cells(self, items: list[dict]) -> Cells:
        """The items' batch at each SNR where some of them are pending; cells of the same rows share their video."""
        cells = Cells()
        for snr in self.snrs:
            rows = [item for item in items if self.pending is None or item["id"] in self.pending[str(snr)]]
            ids = [item["id"] for item in rows]
            same = next((batch for _, batch in cells if batch.order == ids), None)
            if same is not None and "video" in same.media:
                batch = noisy_collate([{k: v for k, v in item.items() if k != "video"} for item in rows], self.noise,
                                      snr)
                batch.media["video"] = same.media["video"]
                cells.append((snr, batch))
            elif rows:
                cells.append((snr, noisy_collate(rows, self.noise, snr)))
        return cells


def batch_loader(batches: DecodeBatches, config: DecodeConfig, device: torch.device) -> DataLoader:
    """The batches in order, each made whole by one of ``num_workers`` processes (by default none on the CPU,
    where they would take the model's cores, and up to 8 beside a GPU), one batch ahead each; beside a GPU,
    pinned by DataLoader's thread as they arrive. A worker makes a whole batch so that what crosses into the
    decode's process is a handful of tensors in shared memory per batch. Handed over an item at a time, each
    item's arrays crossed the workers' pipe in reads of 64 KB, each taking the GIL back from the thread
    launching the model's kernels: ``generate`` runs 9% faster beside whole batches (``benchmarks/
    batch_forming_ab.py``). The cost: the first batch comes after a batch of items, not a worker's share of
    one (a decode loads its checkpoint meanwhile), and a decode holds about ``num_workers`` + 1 batches."""
    workers = min(loader_workers(config, device), len(batches))
    ahead = {"prefetch_factor": 1} if workers else {}
    return DataLoader(batches, batch_size=None, shuffle=False, num_workers=workers, collate_fn=as_made,
                      pin_memory=device.type == "cuda", **ahead)


def as_made(cells: Cells) -> Cells:
    """A batch's cells as the worker made them (DataLoader's default would make their tuples lists)."""
    return cells


def loader_workers(config: DecodeConfig, device: torch.device) -> int:
    if config.num_workers is not None:
        return config.num_workers
    return 0 if device.type == "cpu" else min(8, max((os.cpu_count() or 1) - 1, 0))


def noisy_collate(items: list[dict], noise, snr) -> Batch:
    """The items' batch with ``snr`` babble in their audio (the items themselves are left clean)."""
    if snr != "clean":
        items = [{**item, "audio": mix_at_snr(np.asarray(item["audio"]), noise, float(snr), item["id"])}
                 if "audio" in item else item for item in items]
    return collate(items)
