"""Mix noise into speech at a given SNR, reproducibly.

The noise segment's offset is drawn from a generator seeded by the utterance id
and the SNR (not Python's salted ``hash``), so a rerun gives identical audio.
"""

from __future__ import annotations

import zlib

import numpy as np


def noise_offset(utterance_id: str, snr_db: float, noise_length: int) -> int:
    seed = zlib.crc32(f"{utterance_id}|{snr_db:g}".encode())
    return int(np.random.default_rng(seed).integers(0, max(1, noise_length)))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, utterance_id: str) -> np.ndarray:
    """``speech + g * noise_segment`` with g set so that 10·log10(P_speech / P_noise) = ``snr_db``."""
    if len(noise) == 0:
        raise ValueError("empty noise signal")
    start = noise_offset(utterance_id, snr_db, len(noise))
    reps = -(-(start + len(speech)) // len(noise))
    segment = np.tile(noise, reps)[start:start + len(speech)]
    speech_power = float(np.mean(speech.astype(np.float64) ** 2))
    noise_power = float(np.mean(segment.astype(np.float64) ** 2)) + 1e-12
    gain = np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    return (speech + gain * segment).astype(np.float32)


class NoiseAugmentation:
    """Training-time noise: from epoch ``from_epoch`` on, each item, with probability ``prob``, gets ``noise``
    at an SNR drawn uniformly from ``snr_range``. The draw depends only on (seed, epoch, utterance id), so an
    epoch is the same however it is split by workers or a resume."""

    def __init__(self, noise: np.ndarray, prob: float, snr_range: tuple[float, float], seed: int,
                 from_epoch: int = 0):
        self.noise, self.prob, self.snr_range, self.seed, self.from_epoch = noise, prob, snr_range, seed, from_epoch

    def __call__(self, audio: np.ndarray, utterance_id: str, epoch: int) -> np.ndarray:
        if epoch < self.from_epoch:
            return audio
        rng = np.random.default_rng(zlib.crc32(f"{self.seed}|{epoch}|{utterance_id}".encode()))
        if rng.random() >= self.prob:
            return audio
        snr = float(rng.uniform(*self.snr_range))
        return mix_at_snr(audio, self.noise, snr, f"{utterance_id}|{epoch}")
