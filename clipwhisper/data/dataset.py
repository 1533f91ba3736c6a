"""Utterances to model batches: media decoded per item, padded per batch.

A file that fails to decode does not stop the epoch: its item carries the
error, and ``collate`` moves it to ``Batch.bad`` for the caller to count
(training) or record (decoding).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import MediaError
from ..modality import STREAMS
from .batch import Batch, Padded, as_bytes
from .frames import resized, side_of
from .media import MAX_AUDIO_SAMPLES, SAMPLE_RATE, load_audio, load_frames
from .utterance import Utterance


def decoded_bytes(utterances: Sequence[Utterance], streams: Sequence[str], image_size: int | None) -> int:
    """How much memory the decoded media of ``utterances`` take at most (float32 audio, YUV 4:2:0 frames)."""
    total = 0
    for utt in utterances:
        if "audio" in streams:
            total += 4 * utt.n_audio_samples
        if "video" in streams and image_size:
            total += 3 * image_size * image_size // 2 * utt.n_video_frames
    return total


class AVDataset(Dataset):
    """Decoded media per utterance. With ``cache_bytes`` at least the corpus's decoded size, items are
    kept in memory after their first decoding: small corpora then pay ffmpeg once, not every epoch."""

    def __init__(self, utterances: Sequence[Utterance], streams: Sequence[str], image_size: int | None,
                 fps: float = 25.0, cache_bytes: int = 0, augment=None, features=None):
        self.augment = augment  # e.g. noise.NoiseAugmentation, applied after the cache
        self.features = features  # a features.FeatureCache: cached streams skip media decoding
        if features is not None:
            cache_bytes = 0  # the feature cache replaces the in-memory media cache
        self.epoch = 0
        self.utterances = list(utterances)
        self.streams = tuple(streams)
        self.image_size = image_size
        self.fps = fps
        fits = 0 < decoded_bytes(self.utterances, self.streams, image_size) <= cache_bytes
        self.cache: dict[int, dict] | None = {} if fits else None

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> dict:
        if self.cache is None:
            item = self._decode(index)
        else:
            if index not in self.cache:
                self.cache[index] = self._decode(index)
            item = dict(self.cache[index])  # a shallow copy: arrays are replaced (noise), never mutated
        if self.augment is not None and "audio" in item:
            clean = item["audio"]
            item["audio"] = self.augment(clean, item["id"], self.epoch)
            item["noisy"] = item["audio"] is not clean  # the augmentation returns the same array when it adds none
        return item

    def _decode(self, index: int) -> dict:
        utt = self.utterances[index]
        item = {"id": utt.id, "text": utt.text or ""}
        for stream in self.streams:
            cached = self.features.get(stream, utt) if self.features is not None else None
            if cached is not None:
                item[f"{stream}_features"] = cached
        try:
            if "audio" in self.streams and "audio_features" not in item:
                if utt.media("audio") is None:
                    raise MediaError(utt.id, "no audio path in the manifest")
                item["audio"] = load_audio(utt.media("audio"))
                if len(item["audio"]) > MAX_AUDIO_SAMPLES:  # a failed utterance, not a crash in the encoder
                    raise MediaError(utt.media("audio"), f"{len(item['audio']) / SAMPLE_RATE:.1f} s of audio, longer "
                                     "than Whisper's 30-s window (transcribe reads long files in windows)")
            if "video" in self.streams and "video_features" not in item:
                if utt.media("video") is None:
                    raise MediaError(utt.id, "no video path in the manifest")
                item["video"] = load_frames(utt.media("video"), self.image_size, self.fps)
        except MediaError as exc:
            return {"id": utt.id, "text": item["text"], "error": str(exc)}
        return item


def pad_stack(arrays: list[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad arrays along their first axis into one tensor, with their lengths. Each byte is written once
    (rows copied, padding zeroed), by numpy: in a process with several intra-op threads (a loader without
    workers) a torch copy of a row wakes them all, and they spin after it; beside a GPU that kept about nine
    cores of a 16-core host busy (52 against 6 ms of the process's CPU per utterance at 112 px)."""
    tensors = [torch.as_tensor(a) for a in arrays]
    lengths = [len(t) for t in tensors]
    out = torch.empty((len(tensors), max(lengths), *tensors[0].shape[1:]), dtype=tensors[0].dtype)
    rows = as_bytes(out)
    for row, tensor in enumerate(tensors):
        rows[row, : len(tensor)] = as_bytes(tensor.contiguous())
        rows[row, len(tensor):] = 0
    return out, torch.tensor(lengths)


def _pad_present(values: list) -> Padded | None:
    """``pad_stack`` where some rows may be None (length 0); None if every row is."""
    present = next((v for v in values if v is not None), None)
    if present is None:
        return None
    return Padded(*pad_stack([present[:0] if v is None else v for v in values]))


def _one_side(frames: list) -> list:
    """Video rows (YUV 4:2:0, ``frames.py``) at one side, the largest: sources of different sizes in a batch."""
    sides = {side_of(row) for row in frames if row is not None}
    if len(sides) < 2:
        return frames
    largest = max(sides)
    return [row if row is None or side_of(row) == largest else resized(torch.as_tensor(row), largest)
            for row in frames]


def collate(items: list[dict]) -> Batch:
    """The good items padded into a ``Batch``. A stream's rows come as media
    (an item's ``audio``) or, from the feature cache, as encoder output (``audio_features``); a row missing from
    one has length 0 there."""
    good = [item for item in items if "error" not in item]
    batch = Batch(ids=[item["id"] for item in good], texts=[item["text"] for item in good],
                  order=[item["id"] for item in items],
                  bad=[(item["id"], item["error"]) for item in items if "error" in item],
                  noisy=[bool(item.get("noisy")) for item in good])
    for stream in STREAMS:
        for key, into in ((stream, batch.media), (f"{stream}_features", batch.features)):
            rows = [item.get(key) for item in good]
            padded = _pad_present(_one_side(rows) if key == "video" else rows)
            if padded is not None:
                into[stream] = padded
    return batch


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar duration (less padding), in a shuffled order fixed by ``seed`` and epoch.

    ``skip`` batches at the start of the epoch are left out, for an exact resume. With ``world``
    processes, the batches are global batches of ``world * batch_size`` and each rank takes every
    ``world``-th item of each (balanced lengths); together the ranks see what one process would."""

    def __init__(self, durations: Sequence[float], batch_size: int, seed: int, shuffle: bool = True,
                 bucket_batches: int = 50, rank: int = 0, world: int = 1):
        self.durations = list(durations)
        self.rank, self.world = rank, world
        self.batch_size = batch_size * world
        self.seed = seed
        self.shuffle = shuffle
        self.bucket = self.batch_size * bucket_batches
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def batches(self) -> list[list[int]]:
        order = list(range(len(self.durations)))
        rng = random.Random(self.seed * 100_003 + self.epoch)
        if self.shuffle:
            rng.shuffle(order)
        batches = []
        for start in range(0, len(order), self.bucket):
            bucket = sorted(order[start:start + self.bucket], key=lambda i: self.durations[i])
            batches.extend(bucket[i:i + self.batch_size] for i in range(0, len(bucket), self.batch_size))
        if self.shuffle:
            rng.shuffle(batches)
        if self.world > 1:  # every rank needs an item in every batch, or the gradient all-reduce would wait
            batches = [batch[self.rank::self.world] for batch in batches if len(batch) >= self.world]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches()[self.skip:])

    def __len__(self) -> int:
        return len(self.batches()) - self.skip
