"""Encoder-feature cache: a frozen encoder's output, computed once per utterance and reused.

Layout: ``DIR/<stream>-<fingerprint>/<key>.safetensors``, one file per utterance.
The fingerprint covers what decides the features: the encoder's weights, its
settings (image size, mel bins, 30-s padding...), the frame rate and the dtype
they were computed in; change any and a new folder is used. The key covers the
utterance: its id and its media file's path, size and modification time, so an
edited file is encoded again. Files are written atomically (temp file, rename):
a killed run leaves no half-written entry. An entry equals what the encoder
would compute now: the encoders' output does not depend on the batch.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ConfigError
from .frames import PIXELS
from .utterance import Utterance


def encoder_fingerprint(encoder: nn.Module, settings: dict) -> str:
    """A digest of an encoder's weights and of the settings that shape its input and output."""
    digest = hashlib.blake2b(json.dumps(settings, sort_keys=True, default=str).encode(), digest_size=12)
    for name, tensor in sorted(encoder.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


class FeatureCache:
    """Features per (stream, utterance) for the streams given fingerprints."""

    def __init__(self, root: Path, fingerprints: dict[str, str], utterances: Sequence[Utterance]):
        self.root = Path(root)
        self.folders = {stream: self.root / f"{stream}-{print_}" for stream, print_ in fingerprints.items()}
        try:
            for folder in self.folders.values():
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(str(self.root), [f"cannot create the feature cache: {exc.strerror or exc}"]) from None
        self.utterances = {u.id: u for u in utterances}
        self.writes = 0

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self.folders)

    def _file(self, stream: str, utterance: Utterance) -> Path:
        media = utterance.media(stream)
        stat = media.stat() if media is not None and media.exists() else None
        identity = f"{utterance.id}\0{media}\0{stat.st_size if stat else -1}\0{stat.st_mtime_ns if stat else -1}"
        return self.folders[stream] / f"{hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()}.safetensors"

    def get(self, stream: str, utterance: Utterance) -> torch.Tensor | None:
        """The cached ``(T, D)`` features, or None (not cached, or an unreadable entry, which is rewritten)."""
        if stream not in self.folders:
            return None
        path = self._file(stream, utterance)
        try:
            features = load_file(path)["features"]
        except FileNotFoundError:
            return None
        except (OSError, SafetensorError, KeyError):
            return None  # damaged (e.g. a disk error): encoding again replaces the entry
        return features

    def put(self, stream: str, ids: Sequence[str], features: torch.Tensor, mask: torch.Tensor) -> None:
        """Store each row's real frames; called by the model with what it just encoded."""
        if stream not in self.folders:
            return
        lengths = mask.sum(1).tolist()
        rows = features.detach().cpu()
        for uid, row, length in zip(ids, rows, lengths):
            path = self._file(stream, self.utterances[uid])
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            save_file({"features": row[:length].contiguous()}, tmp)
            os.replace(tmp, path)
            self.writes += 1


def _settings(encoder: nn.Module, stream: str, fps: float, dtype: torch.dtype | None) -> dict:
    common = {"stream": stream, "dtype": str(dtype or torch.float32), "class": type(encoder).__name__}
    if stream == "audio":
        return {**common, "dims": encoder.dims, "pad_to_30s": encoder.pad_to_30s}
    return {**common, "image_size": encoder.image_size, "fps": fps, "pixels": PIXELS,
            "mean": encoder.mean.flatten().tolist(), "std": encoder.std.flatten().tolist()}


def build_feature_cache(root: Path, model, utterances: Sequence[Utterance], fps: float, dtype: torch.dtype | None,
                        audio_augmented: bool) -> tuple[FeatureCache, list[str]]:
    """The cache for ``model``'s frozen, unaugmented streams, and a note for each stream left out.

    Call before the frozen weights are cast: the fingerprint hashes them as loaded."""
    fingerprints, notes = {}, []
    for stream in model.streams:
        encoder = model.audio_encoder if stream == "audio" else model.video_encoder
        if not model.encoder_is_frozen(encoder):
            notes.append(f"{stream} not cached: its encoder trains")
        elif stream == "audio" and audio_augmented:
            notes.append("audio not cached: noise augmentation changes it every epoch (data.noise_prob > 0)")
        else:
            fingerprints[stream] = encoder_fingerprint(encoder, _settings(encoder, stream, fps, dtype))
    return FeatureCache(root, fingerprints, utterances), notes
