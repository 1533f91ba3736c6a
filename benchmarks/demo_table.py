"""Rerun ``clipwhisper demo`` for several seeds and write its WER table: mean and range over the seeds, with the
date, the commit, the machine and each run's wall and CPU time. The README's table comes from here.

    python benchmarks/demo_table.py --out /tmp/demos                   # seeds 0 1 2, the full demo
    python benchmarks/demo_table.py --out /tmp/demos --readme README.md  # and replace the README's table

The corpus is synthesised once (it is the same for every seed) and shared by hard links. Runs go one after
another, so the times are those of the machine alone (if it is otherwise idle: its load is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from clipwhisper.demo import SNRS, source_revision, wer_table

START, END = "<!-- demo-table:start -->", "<!-- demo-table:end -->"


def run(out: Path, seed: int, quick: bool, corpus: Path | None) -> dict:
    folder = out / f"seed-{seed}"
    if corpus is not None and not (folder / "corpus").exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copytree(corpus, folder / "corpus", copy_function=os.link)
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([sys.executable, "-m", "clipwhisper", "demo", "--out", str(folder), "--seed", str(seed),
                    *(["--quick"] if quick else [])], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    summary = json.loads((folder / "decode" / "summary.json").read_text())
    wer = {(c["modality"], str(c["snr"])): 100 * c["wer"] for c in summary["cells"]}
    return {"seed": seed, "wall_s": time.perf_counter() - started, "cpu_s": cpu, "wer": wer,
            "utterances": summary["cells"][0]["utterances"], "corpus": folder / "corpus"}


def table(runs: list[dict]) -> str:
    def cell(modality: str, snr: str) -> str:
        values = [r["wer"][modality, snr] for r in runs]
        mean = sum(values) / len(values)
        return f"{mean:.1f} ({min(values):.1f}–{max(values):.1f})" if len(values) > 1 else f"{mean:.1f}"
    return wer_table(cell)


def targets(runs: list[dict]) -> list[str]:
    """The demo's targets, checked for each seed."""
    lines = []
    for r in runs:
        wer = r["wer"]
        below = all(wer["both", str(s)] < wer["audio", str(s)] for s in SNRS)
        gap = wer[("audio", "0.0")] - wer[("both", "0.0")]
        lines.append(f"seed {r['seed']}: audio clean {wer[('audio', 'clean')]:.1f} (<= 10), video clean "
                     f"{wer[('video', 'clean')]:.1f} (<= 55), both below audio at every SNR: {below}, "
                     f"gain at 0 dB {gap:.1f} points (>= 3); {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU")
    return lines


def report(runs: list[dict], quick: bool, load: float) -> str:
    seeds = ", ".join(str(r["seed"]) for r in runs)
    walls = ", ".join(f"{r['wall_s']:.0f} s" for r in runs)
    what = "`clipwhisper demo --quick`" if quick else "`clipwhisper demo`"
    return (f"{what}, seeds {seeds}: test WER % over {runs[0]['utterances']} utterances per cell, mean (lowest–"
            f"highest) over the seeds. {datetime.now(timezone.utc):%Y-%m-%d}, clipwhisper {source_revision()}, "
            f"{platform.machine()} with {os.cpu_count()} cores (load {load:.1f} at the start); wall time per run "
            f"{walls} (the first synthesises the corpus). Regenerate: `python benchmarks/demo_table.py "
            f"--out /tmp/demos{' --quick' if quick else ''} --readme README.md`.\n\n{table(runs)}\n")


def replace_in(readme: Path, text: str) -> None:
    content = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(content):
        sys.exit(f"{readme}: no {START} ... {END} block to replace")
    readme.write_text(pattern.sub(lambda _: f"{START}\n{text}{END}", content), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--readme", type=Path, help="replace the table between the demo-table markers here")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    runs, corpus = [], None
    for seed in args.seeds:
        runs.append(run(args.out, seed, args.quick, corpus))
        corpus = runs[0]["corpus"]
    text = report(runs, args.quick, load)
    (args.out / "table.md").write_text(text, encoding="utf-8")
    print(text)
    print("\n".join(targets(runs)))
    if args.readme:
        replace_in(args.readme, text)


if __name__ == "__main__":
    main()
