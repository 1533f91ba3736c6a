"""Peak memory of `clipwhisper transcribe` against the length of the file: a 1-minute and a 60-minute file.

    clipwhisper demo --out /tmp/demo                      # or any checkpoint
    python benchmarks/transcribe_memory.py --model-path /tmp/demo/run/final --minutes 1,60

Each length is transcribed in its own process (peak RSS from ``wait4``), streamed as the CLI does (each 30-s
window read from the file on its own, ``WINDOW_BATCH`` windows generated at a time), and, as the baseline, the
whole file read into memory first (``Transcriber.read`` + ``transcribe_batch``, what the Python API does with
an array). The audio is noise: its content does not change the memory.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clipwhisper.data.media import SAMPLE_RATE, write_wav

WHOLE = ("import sys, clipwhisper; t = clipwhisper.load(sys.argv[1], device='cpu'); "
         "media, modality = t.read(sys.argv[2]); t.transcribe_batch([media], modality)")


def peak_kb(command: list[str]) -> tuple[int, float]:
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        sys.exit(f"transcribe_memory: {' '.join(command)} failed: {process.stderr.read().decode()[-500:]}")
    return usage.ru_maxrss, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", type=Path, required=True)
    parser.add_argument("--minutes", default="1,60")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| file | streamed (CLI): peak RSS | wall | whole file in memory: peak RSS | wall |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for minutes in map(float, args.minutes.split(",")):
            audio = Path(folder) / f"{minutes:g}min.wav"
            write_wav(audio, (0.05 * rng.standard_normal(int(minutes * 60 * SAMPLE_RATE))).astype(np.float32))
            streamed = peak_kb([sys.executable, "-m", "clipwhisper", "transcribe", str(audio), "--model-path",
                                str(args.model_path), "--device", "cpu"])
            whole = peak_kb([sys.executable, "-c", WHOLE, str(args.model_path), str(audio)])
            audio.unlink()
            print(f"| {minutes:g} min | {streamed[0]:,} kB | {streamed[1]:.1f} s | {whole[0]:,} kB "
                  f"| {whole[1]:.1f} s |")


if __name__ == "__main__":
    main()
