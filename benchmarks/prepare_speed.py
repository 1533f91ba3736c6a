"""`prepare`'s face tracking per frame at 640x360: landmarks (dlib) against the Haar cascades, side by side.

A clip of matplotlib's Grace Hopper photograph turning, growing and drifting (as tests/test_landmarks.py
moves it) is written once; each detector then tracks it in turns (`--rounds`), in this one process (one core
for the detection; ffmpeg decodes in its own process). Prints ms per frame (median of the rounds), and how
many times real time (25 fps) that is per core. Issue 23's target: landmarks at >= 1x real time per core.

    python benchmarks/prepare_speed.py [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
from PIL import Image

from clipwhisper.data.media import SAMPLE_RATE, VIDEO_FPS, write_video, write_wav
from clipwhisper.prepare.cropping import track
from clipwhisper.prepare.run import Cropping

WIDTH, HEIGHT = 640, 360


def clip(folder: Path, seconds: float) -> Path:
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as file:
        photo = np.array(Image.open(file).convert("RGB"))
    count = round(seconds * VIDEO_FPS)
    frames = []
    for index in range(count):
        t = index / max(1, count - 1)
        matrix = cv2.getRotationMatrix2D((photo.shape[1] / 2, photo.shape[0] / 2), -15 + 30 * t, 0.45 + 0.2 * t)
        matrix[:, 2] += (WIDTH / 2 - 60 + 120 * t - photo.shape[1] / 2, HEIGHT / 2 - photo.shape[0] / 2)
        frames.append(cv2.warpAffine(photo, matrix, (WIDTH, HEIGHT)))
    write_wav(folder / "tone.wav", 0.1 * np.sin(np.arange(int(seconds * SAMPLE_RATE)) / 8).astype(np.float32))
    write_video(folder / "clip.mp4", np.stack(frames), audio=folder / "tone.wav")
    return folder / "clip.mp4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as folder:
        video = clip(Path(folder), args.seconds)
        frames = round(args.seconds * VIDEO_FPS)
        times = {"landmarks": [], "haar": []}
        for _ in range(args.rounds):
            for detector in times:
                start = time.perf_counter()
                [face], _ = track(video, Cropping(detector=detector))
                times[detector].append((time.perf_counter() - start) / len(face.regions))
        for detector, spent in times.items():
            per_frame = float(np.median(spent))
            print(f"{detector:9s} {1000 * per_frame:6.1f} ms/frame  {1 / (per_frame * VIDEO_FPS):5.2f}x real time "
                  f"per core ({frames} frames of {WIDTH}x{HEIGHT}, median of {args.rounds})")


if __name__ == "__main__":
    main()
