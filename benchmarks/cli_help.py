"""Median wall time of `clipwhisper --help` over N runs (target: <= 0.5 s)."""

import statistics
import subprocess
import sys
import time


def main(runs: int = 10) -> None:
    command = [sys.executable, "-m", "clipwhisper", "--help"]
    subprocess.run(command, check=True, capture_output=True)  # warm the file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    print(f"clipwhisper --help: median {statistics.median(times):.3f} s over {runs} runs "
          f"(min {min(times):.3f}, max {max(times):.3f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
