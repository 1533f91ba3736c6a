"""CLIP's patch embedding as one matmul (the library's) against open_clip's convolution, in a whole greedy
`both` decode at 224 px: the same model, the two embeddings in turns, two rounds.

    python3 benchmarks/patch_embedding_ab.py

The model of `speed.py` (random weights at the reference sizes, bf16), three batches of 128 at LRS3-like
lengths, the static-cache path `decode` takes. Prints utt/s of the prefix alone (encoders, connectors) and of
`generate` (24 new tokens), and the share of hypotheses identical to the convolution's in bf16.
"""

from __future__ import annotations

import random

import speed
import torch
from clip_chunk import open_clip_conv
from decode_breakdown import build, three_times

from clipwhisper.model.graphs import ShapeGraphs
from clipwhisper.model.tokenizer import train_tokenizer
from clipwhisper.synth.grammar import sample_sentence

SIZE = 128


def main() -> None:
    rng = random.Random(0)
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = build("both", 224, train_tokenizer([sample_sentence(rng) for _ in range(500)]), device)
    batches = [speed.to_device(b, device) for b in speed.make_batches(
        speed.lrs3_durations(SIZE * 3, rng), SIZE, rng, 224, ("audio", "video"), True)]
    count, seconds = sum(len(b) for b in batches), sum(b.seconds for b in batches)
    clip = model.video_encoder
    # each embedding replays its own CUDA graphs: a graph captured with one would replay it for the other
    variants = {"open_clip's convolution": (open_clip_conv(clip.visual.conv1), ShapeGraphs(clip._embed, clip)),
                "patch matmul": (clip.visual.conv1, clip.graphs)}
    hypotheses = {}
    for _ in range(2):
        for name, (embedding, graphs) in variants.items():
            clip.visual.conv1, clip.graphs = embedding, graphs
            prefix, whole, _ = three_times(model, batches, SIZE)
            with torch.inference_mode():
                hypotheses[name] = [text for b in batches for text in model.generate(b, max_new_tokens=24, rows=SIZE)]
            same = sum(a == b for a, b in zip(hypotheses[name], next(iter(hypotheses.values())))) / count
            print(f"{name}: prefix {count / prefix:.1f} utt/s; generate 24 {count / whole:.1f} utt/s (RTFx "
                  f"{seconds / whole:.0f}); hypotheses identical to the convolution's {same:.1%}", flush=True)


if __name__ == "__main__":
    main()
