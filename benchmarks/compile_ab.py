"""``--compile`` against eager training, two models side by side in one process, measured in turns.

    python benchmarks/compile_ab.py        # the reference configuration of speed.py, modality both

Each round times the eager model and the compiled one on the same bucketed batches, from media and from
cached encoder features, so drift of the machine shows as a spread across rounds rather than as a gain.
"""

from __future__ import annotations

import argparse
import random
import time

import speed
import torch

from clipwhisper.model.compiled import compile_llm_layers
from clipwhisper.model.tokenizer import train_tokenizer
from clipwhisper.synth.grammar import sample_sentence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny dimensions on the CPU")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cpu" if args.quick or not torch.cuda.is_available() else "cuda")
    base, fast = (speed.QUICK, None) if args.quick else (speed.REFERENCE, torch.bfloat16)
    rng = random.Random(0)
    torch.manual_seed(0)
    tokenizer = train_tokenizer([sample_sentence(rng) for _ in range(500)])
    image = base["video_encoder"]["vision_cfg"]["image_size"]
    durations = speed.lrs3_durations(16 * 6, rng)
    batches = [speed.to_device(b, device) for b in speed.make_batches(durations, 16, rng, image, ("audio", "video"),
                                                                       True)]
    models = {"eager": speed.build(speed.model_config(base, "both", False), tokenizer, device, fast)}
    models["compiled"] = speed.build(speed.model_config(base, "both", False), tokenizer, device, fast)
    compile_llm_layers(models["compiled"].llm)
    cached = speed.cached_batches(models["eager"], batches, device, fast)
    started = time.perf_counter()
    for data in (batches, cached):  # compile and warm up on every batch shape
        speed.train_rate(models["compiled"], data, device, fast, 0, warmup=len(data), count_flops=False)
    print(f"compile and warm-up: {time.perf_counter() - started:.0f} s")
    rates = {(name, kind): [] for name in models for kind in ("media", "cached")}
    for _ in range(args.rounds):
        for kind, data in (("media", batches), ("cached", cached)):
            for name, model in models.items():
                rates[name, kind].append(speed.train_rate(model, data, device, fast, 12, count_flops=False)["utt_s"])
    for kind in ("media", "cached"):
        eager, compiled = rates["eager", kind], rates["compiled", kind]
        ratios = [c / e for c, e in zip(compiled, eager)]
        print(f"train utt/s from {kind:6s}: eager {' '.join(f'{r:.1f}' for r in eager)}; compiled "
              f"{' '.join(f'{r:.1f}' for r in compiled)}; ratio {min(ratios):.2f}-{max(ratios):.2f}")


if __name__ == "__main__":
    main()
