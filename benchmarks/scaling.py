"""Training and decoding across the processes torchrun starts: throughput, memory, and whether the results
match one process's (issue 9's measurements).

    torchrun --nproc-per-node 1 benchmarks/scaling.py --out one.json
    torchrun --nproc-per-node 2 benchmarks/scaling.py --out two.json
    torchrun --nproc-per-node 2 benchmarks/scaling.py --strategy fsdp --llm 8b --out fsdp8b.json
    torchrun --nproc-per-node 2 benchmarks/scaling.py --strategy ddp --llm 8b --out ddp8b.json
    python benchmarks/scaling.py --compare one.json two.json
    add --quick for tiny dimensions on the CPU (gloo)

The model is speed.py's reference configuration (``--llm 8b``: a Llama with Llama-3.1-8B dimensions), built
with the same seed on every rank and wrapped as ``clipwhisper train`` wraps it (DDP, or FSDP2 through
``clipwhisper.model.fsdp``). Every run draws the same global batches (LRS3-like, ``--global-batch``
utterances, sorted by length as the bucket sampler sorts them) and each rank takes every N-th item; the loss is
the mean over the global batch's target tokens, as in ``clipwhisper train``, so the loss curves of different
process counts should match within bf16 noise (dropout is off to make them comparable). Decoding (DDP runs)
gives each rank every N-th batch of the test draw, greedy, and rank 0 collects the hypotheses in order.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import speed
import torch
import torch.distributed as dist

from clipwhisper.data.batch import Batch
from clipwhisper.model.compiled import compile_llm_layers
from clipwhisper.model.tokenizer import train_tokenizer
from clipwhisper.runtime.distributed import Distributed
from clipwhisper.synth.grammar import sample_sentence

LLAMA_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192}


def config_for(args):
    base = {k: {**v} for k, v in (speed.QUICK if args.quick else speed.REFERENCE).items()}
    if args.llm == "8b" and not args.quick:
        base["llm"]["config"] = {**base["llm"]["config"], **LLAMA_8B}
    config = speed.model_config(base, "both", False)
    config.fusion.audio_drop = config.fusion.video_drop = 0.0  # comparable curves: no random draws per rank
    config.llm.lora.dropout = 0.0
    return config


def rows(batch: Batch, rank: int, world: int) -> Batch:
    """This rank's share of a global batch: every ``world``-th item, as the bucket sampler deals them (without
    the padding the other ranks' items needed)."""
    return batch.take(list(range(rank, len(batch), world)))


def train(model, wrapped, batches, device, dtype, steps: int, warmup: int, world: int):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                  fused=device.type == "cuda")
    losses, utts, elapsed = [], 0, 0.0
    for step in range(warmup + steps):
        if step == warmup:
            speed.sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
        batch, global_size = batches[step % len(batches)]
        tokens = torch.tensor(float(model.target_tokens(batch.texts)), device=device)
        if world > 1:
            dist.all_reduce(tokens)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = wrapped(batch, reduction="sum") * (world / tokens)  # DDP and FSDP average over ranks
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total = loss.detach() / world
        if world > 1:
            dist.all_reduce(total)
        losses.append(float(total))
        if step >= warmup:
            utts += global_size
    speed.sync(device)
    elapsed = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return losses, utts / elapsed, peak


def decode(model, batches, device, rank: int, world: int, new_tokens: int):
    """Each rank decodes every ``world``-th batch; rank 0 gets all hypotheses in the draw's order."""
    model.eval()
    mine = {}
    speed.sync(device)
    started = time.perf_counter()
    with torch.no_grad():
        for index in range(rank, len(batches), world):
            mine[index] = model.generate(batches[index], max_new_tokens=new_tokens)
    speed.sync(device)
    elapsed = time.perf_counter() - started
    parts = [None] * world
    if world > 1:
        dist.all_gather_object(parts, (mine, elapsed))
    else:
        parts = [(mine, elapsed)]
    hyps = {index: texts for part, _ in parts for index, texts in part.items()}
    utts = sum(len(texts) for texts in hyps.values())
    return [hyp for index in sorted(hyps) for hyp in hyps[index]], utts / max(seconds for _, seconds in parts)


def run(args) -> None:
    with Distributed.from_env("cpu" if args.quick else "auto").closing() as cluster:
        measure(args, cluster)


def measure(args, cluster: Distributed) -> None:
    device = torch.device("cpu") if args.quick else cluster.device("auto")
    dtype = None if device.type == "cpu" else torch.bfloat16
    rng = random.Random(0)
    torch.manual_seed(0)
    tokenizer = train_tokenizer([sample_sentence(rng) for _ in range(500)])
    config = config_for(args)
    image = config.video_encoder.vision_cfg["image_size"]
    draws = [speed.make_batches(speed.lrs3_durations(args.global_batch * args.batches, rng), args.global_batch, rng,
                                image, ("audio", "video"), True) for _ in range(2)]
    train_batches = [(speed.to_device(rows(b, cluster.rank, cluster.world), device), len(b)) for b in draws[0]]
    test_batches = draws[1]
    torch.manual_seed(0)
    model = speed.build(config, tokenizer, device, dtype)
    if args.compile:
        compile_llm_layers(model.llm)
    wrapped = model
    if cluster.world > 1 and args.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    elif cluster.world > 1:
        from clipwhisper.model.fsdp import shard_model

        wrapped = model = shard_model(model, device)
    model.train()
    losses, rate, peak = train(model, wrapped, train_batches, device, dtype, args.steps, args.warmup, cluster.world)
    peaks = [peak] * cluster.world
    if cluster.world > 1:
        dist.all_gather_object(peaks, peak)
    result = {"world": cluster.world, "strategy": args.strategy, "llm": args.llm, "global_batch": args.global_batch,
              "train_utt_s": rate, "peak_gib_per_rank": peaks, "losses": losses}
    if args.strategy == "ddp":
        test = [speed.to_device(b, device) for b in test_batches]
        result["hyps"], result["decode_utt_s"] = decode(model, test, device, cluster.rank, cluster.world,
                                                        args.new_tokens)
    if cluster.is_main:
        Path(args.out).write_text(json.dumps(result), encoding="utf-8")
        print(f"{cluster.world} ranks, {args.strategy}, LLM {args.llm}: train {rate:.1f} utt/s, peak GiB per rank "
              f"{', '.join(f'{p:.1f}' for p in peaks)}" +
              (f", decode {result['decode_utt_s']:.1f} utt/s" if "decode_utt_s" in result else ""))


def compare(one: Path, many: Path) -> None:
    a, b = (json.loads(Path(p).read_text(encoding="utf-8")) for p in (one, many))
    efficiency = b["train_utt_s"] / (a["train_utt_s"] * b["world"] / a["world"])
    gaps = [abs(x - y) / abs(x) for x, y in zip(a["losses"], b["losses"])]
    print(f"train utt/s: {a['world']} ranks {a['train_utt_s']:.1f}, {b['world']} ranks {b['train_utt_s']:.1f}; "
          f"scaling efficiency {efficiency:.3f}")
    print(f"losses over {len(gaps)} steps: largest relative difference {max(gaps):.2e}")
    for step, (x, y) in enumerate(zip(a["losses"], b["losses"])):
        print(f"  step {step:3d}  {x:.5f}  {y:.5f}")
    if "hyps" in a and "hyps" in b:
        same = sum(x == y for x, y in zip(a["hyps"], b["hyps"]))
        print(f"decode utt/s: {a['decode_utt_s']:.1f} and {b['decode_utt_s']:.1f}; identical hypotheses {same} of "
              f"{len(a['hyps'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny dimensions on the CPU, gloo")
    parser.add_argument("--strategy", choices=("ddp", "fsdp"), default="ddp")
    parser.add_argument("--llm", choices=("1b", "8b"), default="1b")
    parser.add_argument("--compile", action="store_true", help="compile the LLM's layers, as train does on a GPU")
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=4, help="distinct global batches, used in turn")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--out", default="scaling.json")
    parser.add_argument("--compare", nargs=2, metavar=("ONE", "MANY"), help="compare two --out files")
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
    else:
        run(args)


if __name__ == "__main__":
    main()
