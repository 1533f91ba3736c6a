"""``clipwhisper manifest check``: every file there, every count right, and what the set holds.

Counts are checked by decoding each file (wav files by their header), in
parallel; a count may be off by one video frame (640 audio samples), as a
container's last frame or a resampler's rounding makes it.
"""

from __future__ import annotations

import wave
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MediaError
from .media import SAMPLE_RATE, VIDEO_FPS, load_audio, load_frames
from .utterance import Utterance, duration_s

BINS_S = (1, 2, 4, 6, 8, 10, 15, 20, 30)
FRAME_TOLERANCE = 1


@dataclass
class Report:
    utterances: int = 0
    seconds: float = 0.0
    words: int = 0
    vocabulary: int = 0
    histogram: list[tuple[str, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _audio_samples(path: Path) -> int:
    if path.suffix.lower() == ".wav":
        try:
            with wave.open(str(path)) as handle:
                return round(handle.getnframes() * SAMPLE_RATE / handle.getframerate())
        except (wave.Error, EOFError):
            pass  # not PCM (e.g. float): ffmpeg decodes it below
    return len(load_audio(path))


def media_problems(u: Utterance) -> list[str]:
    """What is wrong with one utterance's files (runs in a worker process)."""
    problems = []
    streams = [("video", u.video, u.n_video_frames, 1), ("audio", u.media("audio"), u.n_audio_samples,
                                                          SAMPLE_RATE / VIDEO_FPS)]
    for stream, path, expected, per_frame in streams:
        if path is None or (stream == "audio" and u.audio is None and not expected):
            continue
        try:
            found = len(load_frames(path, 16)) if stream == "video" else _audio_samples(path)
        except MediaError as exc:
            problems.append(f"{u.id}: {exc}")
            continue
        if abs(found - expected) > FRAME_TOLERANCE * per_frame:
            unit = "frames" if stream == "video" else "samples"
            problems.append(f"{u.id}: {path} has {found} {stream} {unit}, the manifest says {expected}")
    return problems


def check(utterances: list[Utterance], decode: bool = True, workers: int = 1) -> Report:
    report = Report(utterances=len(utterances))
    report.seconds = sum(duration_s(u) for u in utterances)
    words = [w for u in utterances for w in (u.text or "").split()]
    report.words, report.vocabulary = len(words), len(set(words))
    edges = (0, *BINS_S)
    counts = [0] * (len(edges))
    for u in utterances:
        counts[sum(duration_s(u) >= edge for edge in edges[1:])] += 1
    report.histogram = [(f"{low}–{high} s", n) for low, high, n in zip(edges, edges[1:], counts)]
    report.histogram.append((f"≥ {edges[-1]} s", counts[-1]))
    if any(u.text is not None for u in utterances):  # a manifest without transcripts serves transcribe
        report.problems = [f"{u.id}: empty transcript" for u in utterances if not (u.text or "").strip()]
    missing = {u.id: p for u in utterances for p in (u.video, u.media("audio")) if p is not None and not p.is_file()}
    report.problems += [f"{uid}: {path} not found" for uid, path in missing.items()]
    if decode:
        present = [u for u in utterances if u.id not in missing]
        with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
            for problems in pool.map(media_problems, present, chunksize=16):
                report.problems += problems
    return report
