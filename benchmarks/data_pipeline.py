"""What the data loader costs per utterance on one CPU core, and how many workers a GPU needs.

    python benchmarks/data_pipeline.py [--clips 24] [--train-rate 48]

Makes LRS3-like clips with ffmpeg (96x96 mouth crops at 25 fps, h264 + AAC in mp4, 4.5 s), then decodes
them as training does (``AVDataset`` item + ``collate``) at CLIP sizes 224 and 112, and reads cached
features. The baseline beside each row, what the loader did before: the audio read by the ffmpeg program and the
frames made RGB at CLIP's size by libswscale in the loader (now ``data/audio_in_process.py`` and
``data/frames.py``), then the same collation; and what making the carried frames RGB costs on this CPU (a GPU
does it beside CLIP). CPU time is counted for this process and its ffmpeg children
together, so the figure is core-seconds per utterance whatever threads ffmpeg uses. Workers needed = training
rate x core-seconds.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import ffmpeg
import torch

from clipwhisper.data.dataset import AVDataset, collate
from clipwhisper.data.features import FeatureCache
from clipwhisper.data.frames import to_rgb
from clipwhisper.data.media import ffmpeg_audio, ffmpeg_binary, local
from clipwhisper.data.utterance import Utterance
from clipwhisper.data.video_in_process import read_frames

SECONDS = 4.5


def make_clip(path: Path, seed: int) -> Path:
    video = ffmpeg.input(f"testsrc2=size=96x96:rate=25:duration={SECONDS}", f="lavfi")
    audio = ffmpeg.input(f"anoisesrc=color=pink:sample_rate=16000:duration={SECONDS}:seed={seed}", f="lavfi")
    ffmpeg.output(video, audio, str(path), vcodec="libx264", acodec="aac", pix_fmt="yuv420p").overwrite_output() \
        .run(cmd=ffmpeg_binary(), quiet=True)
    return path


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def per_utterance(work, count: int) -> tuple[float, float]:
    """(core-seconds, wall seconds) per utterance of ``work()`` over ``count`` utterances."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    work()
    return (cpu_seconds() - cpu) / count, (time.perf_counter() - wall) / count


def before(utt: Utterance, size: int | None) -> dict:
    """The baseline item: the audio by the ffmpeg program; RGB frames at CLIP's ``size`` (None: no video), scaled
    (area) and converted by libswscale in the loader."""
    item = {"id": utt.id, "text": utt.text, "audio": ffmpeg_audio(utt.audio)}
    if size:
        chain = [("fps", "25.0"), ("scale", f"{size}:{size}:force_original_aspect_ratio=increase:flags=area"),
                 ("crop", f"{size}:{size}"), ("format", "rgb24")]
        item["video"] = read_frames(local(utt.video), lambda first: chain)
    return item


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--train-rate", type=float, nargs="*", default=[48.1, 82.3, 150.6],
                        help="utterances/s of training to feed (defaults: docs/performance.md, H100)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clips = [make_clip(root / f"u{i}.mp4", i) for i in range(args.clips)]
        utterances = [Utterance(f"u{i}", clip, clip, int(SECONDS * 25), int(SECONDS * 16000), "a b c")
                      for i, clip in enumerate(clips)]
        rows = []
        for size in (224, 112):
            data = AVDataset(utterances, ("audio", "video"), size)
            batches = []
            rows.append((f"audio + video at {size} px", *per_utterance(
                lambda data=data, batches=batches: batches.extend(collate([data[i]]) for i in range(len(data))),
                len(data))))
            rows.append(("  before", *per_utterance(
                lambda size=size: [collate([before(u, size)]) for u in utterances], len(utterances))))
            rows.append(("  its RGB on this CPU", *per_utterance(
                lambda size=size, batches=batches: [to_rgb(b.media["video"].values[0], size) for b in batches],
                len(batches))))
        audio_only = AVDataset(utterances, ("audio",), None)
        rows.append(("audio only", *per_utterance(lambda: [collate([audio_only[i]]) for i in range(len(clips))],
                                                  len(clips))))
        rows.append(("  before", *per_utterance(lambda: [collate([before(u, None)]) for u in utterances],
                                                len(utterances))))
        cache = FeatureCache(root / "cache", {"audio": "a", "video": "v"}, utterances)
        for utt in utterances:  # Whisper-medium and ViT-B-16 widths at 50 and 25 Hz
            for stream, steps, width in (("audio", 225, 1024), ("video", 112, 512)):
                features = torch.randn(1, steps, width, dtype=torch.bfloat16)
                cache.put(stream, [utt.id], features, torch.ones(1, steps, dtype=torch.bool))
        cached = AVDataset(utterances, ("audio", "video"), 224, features=cache)
        rows.append(("cached features", *per_utterance(lambda: [collate([cached[i]]) for i in range(len(clips))],
                                                       len(clips))))
    print(f"{len(clips)} clips of {SECONDS} s, 96x96 h264 + AAC; one core, torch threads 1")
    for name, cpu, wall in rows:
        workers = ", ".join(f"{rate:g} utt/s: {rate * cpu:.1f}" for rate in args.train_rate)
        print(f"{name:26s} {cpu * 1000:7.1f} ms CPU/utt ({1 / cpu:6.1f} utt/s per core; wall {wall * 1000:.1f} ms)"
              f"  workers for {workers}")


if __name__ == "__main__":
    main()
