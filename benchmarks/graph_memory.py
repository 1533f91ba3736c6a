"""Where a graphed training run's GPU memory goes: per memory pool, after each new batch shape.

    python benchmarks/graph_memory.py 224 112     # CLIP at 224 px, then a fresh model at 112 px

speed.py's reference configuration, modality ``both``, compiled LLM layers, one step on each of the six
bucketed batches (shortest first, so every step brings a larger shape). After each step: memory allocated,
memory reserved by the caching allocator, and the reserved memory of each pool: ``(0, 0)`` is the default
pool, the others belong to the CUDA graphs of one module each (model/graphs.py). A graph's pool memory is
not "allocated" between replays, so only the reserved figures show it.
"""

from __future__ import annotations

import collections
import gc
import sys

import speed
import torch
import turns

from clipwhisper.model.compiled import compile_llm_layers
from clipwhisper.model.graphs import graphs_of


def pools() -> dict[str, float]:
    """GiB reserved per memory pool."""
    sizes = collections.Counter()
    for segment in torch.cuda.memory_snapshot():
        sizes[str(segment.get("segment_pool_id", "?"))] += segment["total_size"]
    return {pool: round(size / 2**30, 1) for pool, size in sizes.items()}


def gib(value: int) -> str:
    return f"{value / 2**30:.1f}"


def measure(image: int) -> None:
    device, base, fast, tokenizer, batches = turns.reference(False, image)
    model = speed.build(speed.model_config(base, "both", False, image), tokenizer, device, fast)
    compile_llm_layers(model.llm)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    for index, batch in enumerate(batches):
        speed.train_step(model, optimizer, batch, device, fast)
        torch.cuda.synchronize()
        graphs = ", ".join(f"{type(g.module).__name__} {len(g.graphs)} graphs pool {g.pool}" for g in graphs_of(model))
        print(f"{image}px batch {index} ({sum(batch.media['video'].lengths.tolist())} frames): allocated "
              f"{gib(torch.cuda.memory_allocated())} reserved {gib(torch.cuda.memory_reserved())} GiB; "
              f"pools {pools()}; {graphs}", flush=True)
    torch.cuda.empty_cache()
    print(f"{image}px after empty_cache: reserved {gib(torch.cuda.memory_reserved())} GiB; pools {pools()}", flush=True)


def main() -> None:
    for image in (int(argument) for argument in sys.argv[1:] or ["224"]):
        measure(image)
        gc.collect()
        torch.cuda.empty_cache()
        print(f"after freeing the model: reserved {gib(torch.cuda.memory_reserved())} GiB", flush=True)


if __name__ == "__main__":
    main()
