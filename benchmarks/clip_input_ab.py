"""CLIP's input (the loader's YUV frames made RGB, scaled and normalised) compiled, as the library runs it on a GPU,
against the same arithmetic run eagerly, in a whole greedy `both` decode: the same model, the two in turns, two
rounds, each size in turn.

    python3 benchmarks/clip_input_ab.py                       # 224 px at batch 128, then 112 px at batch 256
    python3 benchmarks/clip_input_ab.py --sizes 112:256

The model of `speed.py` (random weights at the reference sizes, bf16), two batches at LRS3-like lengths, the
static-cache path `decode` takes; each variant replays its own CUDA graphs. Prints how far the compiled input is
from the eager one (in levels of 0-255, over one batch's frames), then per round and variant utt/s of the prefix
alone (encoders, connectors) and of `generate` (24 new tokens), and the share of hypotheses identical to the
eager variant's first (warm-up) pass, which the eager variant's own later passes set in scale.
"""

from __future__ import annotations

import argparse
import random
import time

import speed
import torch
from decode_breakdown import build

import clipwhisper.model.video_encoder as video_encoder
from clipwhisper.model.graphs import ShapeGraphs
from clipwhisper.model.tokenizer import train_tokenizer
from clipwhisper.synth.grammar import sample_sentence

COMPILED = video_encoder.compiled_clip_input


def timed(work):
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = work()
    torch.cuda.synchronize()
    return time.perf_counter() - start, result


def input_difference(clip, frames: torch.Tensor) -> str:
    """The compiled input against the eager one for ``frames``, in levels of 0-255 (fp32, before the cast)."""
    args = (clip.image_size, clip.mean, clip.std, torch.float32)
    eager, compiled = video_encoder.clip_input(frames, *args), COMPILED()(frames, *args)
    levels = ((compiled - eager) * clip.std * 255).abs()
    return f"max {levels.max().item():.3f} levels, {(levels > 0.5).float().mean().item():.2e} of values a level off"


def compare(image_size: int, size: int, tokenizer, device, rng) -> None:
    model = build("both", image_size, tokenizer, device)
    batches = [speed.to_device(b, device) for b in speed.make_batches(
        speed.lrs3_durations(size * 2, rng), size, rng, image_size, ("audio", "video"), True)]
    count, seconds = sum(len(b) for b in batches), sum(b.seconds for b in batches)
    clip = model.video_encoder
    video = batches[0].media["video"].values
    print(f"{image_size} px, batch {size}, {count} utterances; compiled input against eager over "
          f"{video.shape[0] * video.shape[1]} frames: {input_difference(clip, video.flatten(0, 1))}", flush=True)
    variants = {"eager input": (lambda: video_encoder.clip_input, ShapeGraphs(clip._embed, clip)),
                "compiled input": (COMPILED, clip.graphs)}
    hypotheses = {}
    with torch.inference_mode():
        for round_ in range(3):  # the first warms each variant up (captures its graphs; the first compiles)
            for name, (prepare, graphs) in variants.items():
                video_encoder.compiled_clip_input, clip.graphs = prepare, graphs
                prefix_s, _ = timed(lambda: [model.generation_prefix(b) for b in batches])
                whole_s, texts = timed(lambda: [t for b in batches
                                                for t in model.generate(b, max_new_tokens=24, rows=size)])
                hypotheses.setdefault(name, texts)
                if round_:
                    same = sum(a == b for a, b in zip(texts, hypotheses["eager input"])) / count
                    print(f"  round {round_}, {name}: prefix {count / prefix_s:.1f} utt/s; generate 24 "
                          f"{count / whole_s:.1f} utt/s (RTFx {seconds / whole_s:.0f}); hypotheses identical to "
                          f"the eager variant's first pass {same:.1%}", flush=True)
    video_encoder.compiled_clip_input = COMPILED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="224:128,112:256", help="image size:batch size, comma-separated")
    args = parser.parse_args()
    rng = random.Random(0)
    torch.manual_seed(0)
    tokenizer = train_tokenizer([sample_sentence(rng) for _ in range(500)])
    for pair in args.sizes.split(","):
        image_size, size = map(int, pair.split(":"))
        compare(image_size, size, tokenizer, torch.device("cuda"), rng)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
