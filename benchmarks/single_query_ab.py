"""Greedy decoding's static-cache path with the one-token steps on `single_query.py`'s attention against SDPA's,
in turns in one process (GPU only).

The model of `speed.py` (random weights at the reference sizes, bf16), two length-sorted batches of LRS3-like
utterances per configuration, 24 new tokens; three rounds of each way, the first compiling, rates from the
median of the other two. Prints utt/s and RTFx per way, and how many hypotheses the two ways agree on.

    python3 benchmarks/single_query_ab.py
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time

import speed
import torch

import clipwhisper.model.avsr as avsr
from clipwhisper.model.precision import for_inference
from clipwhisper.model.single_query import single_query_steps
from clipwhisper.model.tokenizer import train_tokenizer
from clipwhisper.synth.grammar import sample_sentence

CONFIGURATIONS = [("audio", None, 256), ("both", 224, 128), ("audio", None, 64)]  # modality, image size, batch


def main() -> None:
    rng = random.Random(0)
    torch.manual_seed(0)
    device = torch.device("cuda")
    tokenizer = train_tokenizer([sample_sentence(rng) for _ in range(500)])
    ways = {"single-query": single_query_steps, "sdpa": lambda llm: contextlib.nullcontext()}
    for modality, image, size in CONFIGURATIONS:
        streams = ("audio", "video") if modality == "both" else ("audio",)
        model = speed.build(speed.model_config(speed.REFERENCE, modality, False, image), tokenizer, device,
                            torch.bfloat16)
        for_inference(model, "bf16")
        batches = [speed.to_device(b, device) for b in speed.make_batches(
            speed.lrs3_durations(size * 2, rng), size, rng, image or 224, streams, True)]
        count, seconds = sum(len(b) for b in batches), sum(b.seconds for b in batches)
        times, outputs = {way: [] for way in ways}, {}
        with torch.inference_mode():
            for _ in range(3):
                for way, steps in ways.items():
                    avsr.single_query_steps = steps  # what AVSRModel.generate enters around transformers' generate
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                    outputs[way] = [model.generate(b, max_new_tokens=24, rows=size) for b in batches]
                    torch.cuda.synchronize()
                    times[way].append(time.perf_counter() - start)
        same = sum(a == b for x, y in zip(outputs["single-query"], outputs["sdpa"]) for a, b in zip(x, y))
        rates = {way: f"{count / statistics.median(t[1:]):.1f} utt/s (RTFx {seconds / statistics.median(t[1:]):.0f})"
                 for way, t in times.items()}
        print(modality, image, size, rates, f"identical {same}/{count}", flush=True)
        model = None
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
