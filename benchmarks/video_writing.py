"""Writing a synthetic corpus clip: `media.write_video` (PyAV, in-process) against the ffmpeg program with the
same settings (libx264 crf 18 veryfast yuv420p, AAC audio), in turns.

The clip is the demo's kind: 48x48 frames rendered by the synthesiser for a 2-s sentence at 25 fps, and its
16-kHz wav. Prints ms per clip for each way (median of the rounds) and the ratio.

    python benchmarks/video_writing.py [--clips 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import ffmpeg
import numpy as np

from clipwhisper.data.media import SAMPLE_RATE, VIDEO_FPS, ffmpeg_binary, local, write_video, write_wav
from clipwhisper.synth.corpus import _appearance, make_jobs, speak
from clipwhisper.synth.mouth import render_video
from clipwhisper.synth.visemes import mouth_track


def with_the_program(path: Path, frames: np.ndarray, audio: Path) -> None:
    """The way the corpus was written before: frames piped to an ffmpeg process, which muxes the wav in."""
    height, width = frames.shape[1:3]
    video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=VIDEO_FPS)
    graph = ffmpeg.output(video, ffmpeg.input(local(audio)), local(path), vcodec="libx264", pix_fmt="yuv420p",
                          crf=18, preset="veryfast", threads=1, acodec="aac").overwrite_output()
    graph.run(cmd=ffmpeg_binary(), input=frames.tobytes(), capture_stdout=True, capture_stderr=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    job = make_jobs(1, seed=0, prefix="")[0]
    audio, phonemes = speak(job)
    frames = render_video(mouth_track(phonemes, len(audio) / SAMPLE_RATE, VIDEO_FPS), _appearance(job), 48,
                          np.random.default_rng(0))
    ways = {"PyAV in-process": write_video, "ffmpeg program": with_the_program}
    times = {name: [] for name in ways}
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "clip.wav"
        write_wav(wav, audio)
        for _ in range(args.rounds):
            for name, write in ways.items():
                start = time.perf_counter()
                for index in range(args.clips):
                    write(Path(folder) / f"{index}.mp4", frames, audio=wav)
                times[name].append((time.perf_counter() - start) / args.clips)
    print(f"a {len(frames)}-frame 48x48 clip with {len(audio) / SAMPLE_RATE:.1f} s of audio, "
          f"{args.clips} clips x {args.rounds} rounds")
    medians = {name: 1000 * statistics.median(values) for name, values in times.items()}
    for name, ms in medians.items():
        print(f"{name:16s} {ms:6.1f} ms per clip")
    print(f"ffmpeg program / PyAV: {medians['ffmpeg program'] / medians['PyAV in-process']:.2f}x")


if __name__ == "__main__":
    main()
