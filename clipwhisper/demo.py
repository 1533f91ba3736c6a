"""``clipwhisper demo``: the whole pipeline on a laptop, no downloads.

Synthesise a corpus, train the tiny preset (one ``both`` model with modality
dropout), decode the test split for audio, video and both in clean speech and
babble at 10, 5, 0 and -5 dB, and write a WER table, a plot and ``report.md``.
Each stage reuses what an earlier run of the same folder finished; a folder holds one demo (its size and
seed recorded in ``identity.json``). The corpus is the same for every seed (synthesised with seed 0, a fixed
task); ``--seed`` seeds the model's initialisation, the data order and modality dropout.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rich.markup import escape

from .config import DecodeConfig, TrainConfig, nested, packaged_config, resolve
from .inference.plot import plot_wer_vs_snr
from .modality import MODALITIES
from .report.command import run_report
from .runtime.folder_claim import output_folder
from .runtime.report import console

SNRS = ["clean", 10.0, 5.0, 0.0, -5.0]


@dataclass(frozen=True)
class DemoPlan:
    utterances: int
    epochs: int
    audio_first_epochs: int = 0  # of ``epochs``: the audio branch learns the task alone, cheaply, first
    image_size: int = 48


EVAL_EVERY_EPOCHS = 4
# Babble in training teaches the model to turn to the lips when the audio is noisy; mixed in from the start it
# keeps a model learning from scratch on the grammar plateau for longer, so it comes in the second half of the
# audio+video epochs.
NOISE = {"data.noise_prob": 0.3, "data.noise_snr_db": [-5.0, 5.0]}
FULL = DemoPlan(utterances=1500, epochs=15, audio_first_epochs=3)
QUICK = DemoPlan(utterances=320, epochs=8)


def _synth(corpus: Path, plan: DemoPlan) -> None:
    from .synth.corpus import SynthOptions, synthesise

    if (corpus / "test.wrd").exists() and (corpus / "noise" / "babble-train.wav").exists():
        console.print(f"corpus: reusing {escape(str(corpus))}")
        return
    counts = synthesise(corpus, SynthOptions(utterances=plan.utterances, seed=0, image_size=plan.image_size))
    console.print(f"corpus: {escape(str(counts))} utterances in {escape(str(corpus))}")


def training_config(out: Path, plan: DemoPlan, seed: int) -> TrainConfig:
    """The demo's training settings: the tiny preset, the plan's epochs and the noise recipe, which the
    environment may change as for ``train`` (``CLIPWHISPER_DATA__NOISE_PROB=0.5``)."""
    both_epochs = plan.epochs - plan.audio_first_epochs
    recipe = nested({"max_epochs": plan.epochs, "audio_first_epochs": plan.audio_first_epochs, **NOISE,
                     "data.noise_from_epoch": plan.audio_first_epochs + both_epochs // 2})
    return resolve(TrainConfig, packaged_config("tiny"), nested({
        "data.path": out / "corpus", "output_path": out / "run", "keep_last": 1, "seed": seed}), recipe=recipe)


def _train(config: TrainConfig) -> Path:
    from .data.manifest import read_manifest
    from .training.loop import run_training

    run = Path(config.output_path)
    if (run / "final" / "config.json").exists():
        console.print(f"model: reusing {escape(str(run / 'final'))}")
        return run / "final"
    # the report decodes final/: validating every 4th epoch (and at the end) only draws the curves
    steps_per_epoch = -(-len(read_manifest(Path(config.data.path) / "train.tsv")) // config.batch_size)
    run_training(config.model_copy(update={"eval_steps": EVAL_EVERY_EPOCHS * steps_per_epoch}))
    return run / "final"


def decode_grid(checkpoint: Path, corpus: Path, out: Path, modalities=MODALITIES, snrs=SNRS) -> dict:
    """Decode ``corpus``'s test split in each modality at each SNR (its ``noise/babble.wav``); the summary."""
    import torch

    from .data.manifest import read_manifest
    from .data.media import load_audio
    from .inference.decode import decode_cells, finish
    from .inference.records import HypsFile
    from .model.checkpoint import load_checkpoint
    from .model.precision import for_inference

    config = resolve(DecodeConfig, None, nested({"model_path": checkpoint, "output_dir": out, "batch_size": 16}))
    out.mkdir(parents=True, exist_ok=True)
    model = for_inference(load_checkpoint(checkpoint), "fp32")  # frozen as in decode: a batch's video encoded once
    utterances = read_manifest(corpus / "test.tsv")
    noise = load_audio(corpus / "noise" / "babble.wav")
    hyps = HypsFile(out / "hyps.jsonl")
    with torch.inference_mode():
        decode_cells(model, utterances, modalities, snrs, config, hyps, noise)
    finish(out, hyps.records)
    return json.loads((out / "summary.json").read_text())


def wer_table(cell_text: Callable[[str, str], str]) -> str:
    """A markdown table with a row per modality and a column per SNR, filled by ``cell_text(modality, snr)``;
    ``snr`` as ``summary.json`` names a cell's (``clean``, ``10.0``)."""
    header = "| modality | " + " | ".join("clean" if s == "clean" else f"{s:g} dB" for s in SNRS) + " |"
    lines = [header, "|---" * (len(SNRS) + 1) + "|"]
    for modality in MODALITIES:
        lines.append(f"| {modality} | " + " | ".join(cell_text(modality, str(s)) for s in SNRS) + " |")
    return "\n".join(lines)


def markdown_table(summary: dict) -> str:
    wer = {(cell["modality"], str(cell["snr"])): cell["wer"] for cell in summary["cells"]}
    return wer_table(lambda modality, snr: f"{100 * wer[modality, snr]:.1f}" if (modality, snr) in wer else "-")


def source_revision() -> str:
    """The commit this clipwhisper runs from (``+changes`` when its files differ from it), or its version."""
    from importlib.metadata import version

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "."],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return f"version {version('clipwhisper')}"
    if commit.returncode:
        return f"version {version('clipwhisper')}"  # installed from a wheel: no repository around it
    return f"commit {commit.stdout.strip()}{' +changes' if dirty.stdout.strip() else ''}"


def run_demo(out: Path, quick: bool = False, seed: int = 0) -> Path:
    plan, out = QUICK if quick else FULL, Path(out)
    config = training_config(out, plan, seed)
    # the training settings too: a folder trained another way (say, other noise from the environment) is refused
    training = config.model_dump(mode="json", exclude={"output_path": True, "seed": True,
                                                        "data": {"path"}})
    identity = {"written_by": "demo", "utterances": plan.utterances, "seed": seed, "training": training}
    ours = ("report.md", "report.html", "corpus", "run", "decode")  # an older demo's
    with output_folder(out, identity, ours=ours):
        return _run_demo(out, plan, config, quick, seed)


def _epochs_text(config: TrainConfig) -> str:
    both = "on `both` with modality dropout"
    first = config.audio_first_epochs
    return f"the first {first} on the audio alone, then {both}" if first else both


def _run_demo(out: Path, plan: DemoPlan, config: TrainConfig, quick: bool, seed: int) -> Path:
    started = time.perf_counter()
    _synth(out / "corpus", plan)
    checkpoint = _train(config)
    summary = decode_grid(checkpoint, out / "corpus", out / "decode")
    plot_wer_vs_snr(summary, out / "wer_vs_snr.png", "clipwhisper tiny preset on the synthetic corpus")
    run_report([out / "decode"], out / "report.html", manifest=out / "corpus" / "test.tsv")
    elapsed = time.perf_counter() - started
    report = out / "report.md"
    report.write_text(
        f"# clipwhisper demo{' (quick)' if quick else ''}\n\n"
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, clipwhisper {source_revision()}, {platform.machine()}, "
        f"{os.cpu_count()} cores; {plan.utterances} synthetic utterances, tiny preset trained {config.max_epochs} "
        f"epochs ({_epochs_text(config)}), seed {seed}; {elapsed:.0f} s in all.\n\n"
        f"Test WER (%) by modality and babble SNR ({summary['cells'][0]['utterances']} utterances per cell):\n\n"
        f"{markdown_table(summary)}\n\n![WER against SNR](wer_vs_snr.png)\n\nEvery utterance, aligned, and where the "
        f"lips fix or break the audio: [report.html](report.html) (`clipwhisper report`).\n",
        encoding="utf-8",
    )
    console.print(f"demo done in {elapsed:.0f} s: {escape(str(report))}, {escape(str(out / 'wer_vs_snr.png'))}")
    return report
