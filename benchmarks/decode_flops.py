"""The FLOPs a greedy decode needs per utterance, by part, and what each of docs/performance.md's decode targets
asks of the GPU: the target's utterances/s times those FLOPs, against the GPU's bf16 matmul rate.

    python benchmarks/decode_flops.py --peak 795   # anywhere: the counts do not depend on the device
    python benchmarks/decode_flops.py --models both112 --utterances 4

The model of `speed.py` at the reference sizes (random weights), LRS3-like utterances (`speed.lrs3_durations`, the
video as 96-px mouth crops) at evenly spaced quantiles of their distribution, each decoded alone (no padding),
greedy with `--new-tokens` (24) new tokens, transformers' dynamic cache (the FLOPs of the work itself: the static
path's padding to fixed shapes is left out). Counted by torch's FlopCounterMode with every kernel launched on its
own (`speed.count_flops_of`): CLIP, Whisper, and the LLM with the connectors and the fusion, split into the prompt
with the first token and the further one-token steps (`generate` of 1 token against `generate` of all).
On the CPU it computes in fp32 and takes minutes. ``--peak``: the bf16 matmul rate in TFLOP/s (`speed.py` prints
it in its first line on a GPU); measured here when on a GPU and not given.
"""

from __future__ import annotations

import argparse
import random

import speed
import torch

from clipwhisper.model.precision import for_inference
from clipwhisper.model.tokenizer import train_tokenizer
from clipwhisper.synth.grammar import sample_sentence

# name: (modality, CLIP's input size, the greedy target in utt/s from issue 20 / docs/performance.md)
MODELS = {"audio": ("audio", None, 400.0), "both112": ("both", 112, 250.0), "both224": ("both", 224, 70.0)}


def flops_per_utterance(model, batches: list, new_tokens: int) -> dict[str, float]:
    """GFLOP per utterance of greedy decoding, by part, the mean over ``batches`` (one utterance each: no padding)."""
    def generate(tokens):
        return lambda rows: model.generate(rows, max_new_tokens=tokens, static=False)

    total: dict[str, float] = {}
    for batch in batches:
        whole = speed.count_flops_of(model, generate(new_tokens), batch)
        first = speed.count_flops_of(model, generate(1), batch)
        parts = {"CLIP": whole["CLIP"], "Whisper": whole["Whisper"],
                 "LLM prompt and first token": first["LLM and the rest"],
                 f"LLM's {new_tokens - 1} further steps": whole["LLM and the rest"] - first["LLM and the rest"],
                 "all": whole["all"]}
        total = {part: total.get(part, 0.0) + flops for part, flops in parts.items()}
    count = sum(len(batch) for batch in batches)
    return {part: flops / count / 1e9 for part, flops in total.items()}


def typical_durations(count: int, rng: random.Random) -> list[float]:
    """``count`` LRS3-like durations at evenly spaced quantiles of many draws: their mean is the distribution's."""
    draws = sorted(speed.lrs3_durations(100 * count, rng))
    return [draws[int((i + 0.5) * 100)] for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--utterances", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--peak", type=float, default=None, help="bf16 matmul TFLOP/s of the GPU the targets are for")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else None
    peak = args.peak * 1e12 if args.peak else None
    if peak is None and device.type == "cuda":
        peak = speed.matmul_peak(device, False)
    rng = random.Random(0)
    torch.manual_seed(0)
    tokenizer = train_tokenizer([sample_sentence(rng) for _ in range(500)])
    durations = typical_durations(args.utterances, rng)
    print(f"{args.utterances} utterances, {sum(durations) / len(durations):.2f} s on average; greedy, "
          f"{args.new_tokens} new tokens; {device}", flush=True)
    for name in args.models.split(","):
        modality, image, target = MODELS[name]
        streams = ("audio", "video") if modality == "both" else ("audio",)
        model = speed.build(speed.model_config(speed.REFERENCE, modality, False, image), tokenizer, device, dtype)
        for_inference(model, "bf16" if dtype else "fp32")
        batches = [speed.to_device(speed.make_batch([d], rng, image or 224, streams), device) for d in durations]
        with torch.inference_mode():
            gflop = flops_per_utterance(model, batches, args.new_tokens)
        needed = target * gflop["all"] / 1e3
        share = f" = {needed * 1e12 / peak:.2f} of {peak / 1e12:.1f}" if peak else ""
        print(f"{name}: GFLOP per utterance {gflop['all']:.1f} ("
              + ", ".join(f"{part} {value:.1f}" for part, value in gflop.items() if part != "all")
              + f"); the target {target:.0f} utt/s needs {needed:.1f} TFLOP/s{share}", flush=True)
        model = None


if __name__ == "__main__":
    main()
