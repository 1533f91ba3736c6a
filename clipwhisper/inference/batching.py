"""A decode's batches: media decoded in loader workers an utterance at a time and once for every SNR, noise mixed,
batches formed, padded and pinned for the GPU in a thread beside the model, so the model never waits for them
when the workers keep up."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from queue import Full, Queue

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config import DecodeConfig
from ..data.batch import Batch
from ..data.dataset import AVDataset, collate
from ..data.noise import mix_at_snr

AHEAD = 2  # batches made before the model asks for them
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
                   ) -> Iterator[Iterator[list[tuple[object, Batch]]]]:
    """Per ``config.batch_size`` items of the dataset, in order, their batch at each of ``snrs`` (babble from
    ``noise`` mixed into the audio; only the ids ``pending[str(snr)]`` holds, where given): the media of an
    utterance are decoded once for all its SNRs, and one loader serves the whole decode. The loader starts
    reading on entry, before the first batch is asked for (a decode loads its checkpoint meanwhile)."""
    items = media_items(dataset, config, device)
    reading = iter(items)  # the workers start here
    made = (_cells(group, noise, snrs, pending, device) for group in groups(reading, config.batch_size))
    if items.num_workers == 0:
        yield made
        return
    with _ahead(made) as batches:
        yield batches


def _cells(items: list[dict], noise, snrs: Sequence, pending: dict[str, set[str]] | None,
           device: torch.device) -> list[tuple[object, Batch]]:
    cells = []
    for snr in snrs:
        rows = [item for item in items if pending is None or item["id"] in pending[str(snr)]]
        if rows:
            cells.append((snr, noisy_collate(rows, noise, snr, pin=device.type == "cuda")))
    return cells


def media_items(dataset: AVDataset, config: DecodeConfig, device: torch.device) -> DataLoader:
    """The dataset's items in order, decoded in ``num_workers`` processes (by default none on the CPU, where
    they would take the model's cores, and up to 8 beside a GPU). Workers decode one item each at a time, not a
    batch each: the first batch is ready after batch/workers items, not a whole batch of them, and a short
    test set keeps every worker busy; two batches' worth are kept in flight. Items come back as read, their
    arrays pickled through the workers' pipe: as torch tensors (DataLoader's default) each array would cross in
    shared memory, its file descriptor fetched by this process over a socket, which costs this process more CPU
    per item than the copy (``benchmarks/row_copies_ab.py``)."""
    workers = loader_workers(config, device)
    ahead = {"prefetch_factor": -(-2 * config.batch_size // workers), "persistent_workers": False} if workers else {}
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers, collate_fn=as_read, **ahead)


def as_read(item: dict) -> dict:
    """An item as the dataset made it (DataLoader's default would make its arrays torch tensors)."""
    return item


def loader_workers(config: DecodeConfig, device: torch.device) -> int:
    if config.num_workers is not None:
        return config.num_workers
    return 0 if device.type == "cpu" else min(8, max((os.cpu_count() or 1) - 1, 0))


def noisy_collate(items: list[dict], noise, snr, pin: bool = False) -> Batch:
    """The items' batch with ``snr`` babble in their audio (the items themselves are left clean); ``pin``: in
    page-locked memory, for a fast copy to the GPU (pageable memory took about a third of a 224-px batch's
    decoding time on the H200 machine)."""
    if snr != "clean":
        items = [{**item, "audio": mix_at_snr(np.asarray(item["audio"]), noise, float(snr), item["id"])}
                 if "audio" in item else item for item in items]
    return collate(items, pin)


def groups(items: Iterable, size: int) -> Iterator[list]:
    group = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


@contextmanager
def _ahead(made: Iterator) -> Iterator[Iterator]:
    """``made`` computed by a thread, started on entry, ``AHEAD`` values (a batch's cells) ahead of the caller
    (collation and pinning release the GIL); an error in it is raised to the caller; leaving stops it."""
    queue: Queue = Queue(maxsize=AHEAD)
    stop = threading.Event()
    end = object()

    def fill() -> None:
        try:
            for batch in made:
                if not _put(queue, batch, stop):
                    return
        except Exception as exc:  # handed to the caller, who raises it
            _put(queue, exc, stop)
            return
        _put(queue, end, stop)

    def taken() -> Iterator:
        while (batch := queue.get()) is not end:
            if isinstance(batch, Exception):
                raise batch
            yield batch

    worker = threading.Thread(target=fill, name="decode-batches", daemon=True)
    worker.start()
    try:
        yield taken()
    finally:
        stop.set()
        worker.join(timeout=10)


def _put(queue: Queue, value, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            queue.put(value, timeout=0.1)
            return True
        except Full:
            continue
    return False
