"""Two models timed in turns on the same batches, so that drift of the machine shows as a spread across
rounds rather than as a gain (compile_ab.py, packing_ab.py)."""

from __future__ import annotations

import argparse
import random
import time

import speed
import torch

from clipwhisper.model.tokenizer import train_tokenizer
from clipwhisper.synth.grammar import sample_sentence


def parser(doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny dimensions on the CPU")
    parser.add_argument("--rounds", type=int, default=3)
    return parser


def arguments(doc: str) -> argparse.Namespace:
    return parser(doc).parse_args()


def reference(quick: bool, image_size: int | None = None):
    """Device, configuration, autocast dtype, tokenizer and bucketed batches of 16 for modality ``both``, with
    frames of ``image_size`` (the configuration's own by default)."""
    device = torch.device("cpu" if quick or not torch.cuda.is_available() else "cuda")
    base, fast = (speed.QUICK, None) if quick else (speed.REFERENCE, torch.bfloat16)
    rng = random.Random(0)
    torch.manual_seed(0)
    tokenizer = train_tokenizer([sample_sentence(rng) for _ in range(500)])
    image = image_size or base["video_encoder"]["vision_cfg"]["image_size"]
    durations = speed.lrs3_durations(16 * 6, rng)
    batches = [speed.to_device(b, device) for b in speed.make_batches(durations, 16, rng, image, ("audio", "video"),
                                                                       True)]
    return device, base, fast, tokenizer, batches


def warm_up(model, datasets: dict[str, list], device, fast) -> None:
    """One step on every batch: a compiled model compiles for each shape here, not while timed."""
    for data in datasets.values():
        speed.train_rate(model, data, device, fast, 0, count_flops=False)


def in_turns(models: dict, datasets: dict[str, list], device, fast, rounds: int, select=None) -> None:
    """Training utterances/s of each model on each dataset, ``rounds`` times in turns; prints the two
    models' rates and their ratio (second over first) per dataset. ``select(name)``, if given, runs before
    each model's turn (two settings of one model)."""
    select = select or (lambda name: None)
    started = time.perf_counter()
    for name, model in models.items():
        select(name)
        warm_up(model, datasets, device, fast)
    print(f"warm-up: {time.perf_counter() - started:.0f} s")
    rates = {(name, kind): [] for name in models for kind in datasets}
    for _ in range(rounds):
        for kind, data in datasets.items():
            for name, model in models.items():
                select(name)
                rates[name, kind].append(speed.train_rate(model, data, device, fast, 12, count_flops=False)["utt_s"])
    first, second = models
    for kind in datasets:
        ratios = [b / a for a, b in zip(rates[first, kind], rates[second, kind])]
        print(f"train utt/s from {kind:6s}: " + "; ".join(
            f"{name} {' '.join(f'{r:.1f}' for r in rates[name, kind])}" for name in models)
            + f"; ratio {min(ratios):.2f}-{max(ratios):.2f}")
