"""Where greedy decoding's time goes on a GPU: `generation_prefix` alone (encoders, connectors) against the whole
`generate` (24 new tokens) and `generate` of one token, at batches of 64, 128 and 256, for audio, `both` at 112
px and `both` at 224 px; the per-token step from the difference; then a profile of one audio batch of 64.

The model of `speed.py` (random weights at the reference sizes, bf16), the static-cache path `decode` takes;
each time the second of two runs.

    python3 benchmarks/decode_breakdown.py
    python3 benchmarks/decode_breakdown.py --models audio --sizes 256,384,512 --no-profile
"""

from __future__ import annotations

import argparse
import random
import time

import speed
import torch
from torch.profiler import ProfilerActivity, profile

from clipwhisper.model.precision import for_inference
from clipwhisper.model.tokenizer import train_tokenizer
from clipwhisper.synth.grammar import sample_sentence


def timed(work) -> float:
    for _ in range(2):
        torch.cuda.synchronize()
        start = time.perf_counter()
        work()
        torch.cuda.synchronize()
    return time.perf_counter() - start


def three_times(model, batches, size: int) -> tuple[float, float, float]:
    """Seconds for the prefix alone, generating 24 tokens, and generating 1, over ``batches``."""
    with torch.inference_mode():
        return (timed(lambda: [model.generation_prefix(b) for b in batches]),
                timed(lambda: [model.generate(b, max_new_tokens=24, rows=size) for b in batches]),
                timed(lambda: [model.generate(b, max_new_tokens=1, rows=size) for b in batches]))


def build(modality: str, image: int | None, tokenizer, device):
    model = speed.build(speed.model_config(speed.REFERENCE, modality, False, image), tokenizer, device, torch.bfloat16)
    return for_inference(model, "bf16")


MODELS = {"audio": ("audio", None), "both112": ("both", 112), "both224": ("both", 224)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--sizes", default="64,128,256", help="batch sizes, comma-separated")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    rng = random.Random(0)
    torch.manual_seed(0)
    device = torch.device("cuda")
    tokenizer = train_tokenizer([sample_sentence(rng) for _ in range(500)])
    for modality, image in (MODELS[name] for name in args.models.split(",")):
        streams = ("audio", "video") if modality == "both" else ("audio",)
        model = build(modality, image, tokenizer, device)
        for size in map(int, args.sizes.split(",")):
            batches = [speed.to_device(b, device) for b in speed.make_batches(
                speed.lrs3_durations(size * 3, rng), size, rng, image or 224, streams, True)]
            count, seconds = sum(len(b) for b in batches), sum(b.seconds for b in batches)
            prefix, whole, first = three_times(model, batches, size)
            print(f"{modality} {image or 224} px, batch {size}: prefix {count / prefix:.1f} utt/s; generate 24 "
                  f"{count / whole:.1f} utt/s (RTFx {seconds / whole:.0f}); generate 1 {count / first:.1f}; per "
                  f"token step {(whole - first) / 23 / len(batches) * 1000:.2f} ms", flush=True)
        model = None
        torch.cuda.empty_cache()
    if not args.no_profile:
        profile_audio(tokenizer, device, rng)


def profile_audio(tokenizer, device, rng) -> None:
    model = build("audio", None, tokenizer, device)
    batch = speed.to_device(speed.make_batches(speed.lrs3_durations(64, rng), 64, rng, 224, ("audio",), True)[0],
                            device)
    with torch.inference_mode():
        for _ in range(2):
            model.generate(batch, max_new_tokens=24, rows=64)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            model.generate(batch, max_new_tokens=24, rows=64)
            torch.cuda.synchronize()
    for key in ("cuda_time_total", "self_cpu_time_total"):
        print(prof.key_averages().table(sort_by=key, row_limit=20, max_name_column_width=60))


if __name__ == "__main__":
    main()
