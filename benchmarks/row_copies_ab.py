"""How a decode's batches are filled, in turns: each row copied by torch (the loader before 2026-12-05) or as bytes by
numpy (``data.dataset.pad_stack``), the items handed over by the loader's workers as torch tensors in shared memory
(before 2026-12-05) or as read, their arrays pickled (``inference.batching.media_items``); with the CPU time the
decode's own process spends per utterance.

    python benchmarks/row_copies_ab.py --manifest CORPUS/train4.tsv [--image-size 112]   # GPU
    python benchmarks/row_copies_ab.py --manifest CORPUS/test.tsv --batch-size 8 --num-workers 2   # CPU

The model of `speed.py` (random weights at real sizes; tiny dimensions on the CPU) and `decode`'s loop from disk, as
`decode_e2e.py` runs them. A torch copy of a row wakes every intra-op thread of the process, which spin after it:
beside a GPU that CPU is taken from the loader's workers. Prints, per variant and round, the loader alone and the
decode from disk (utt/s, and the process's CPU ms per utterance), against `generate` on the same batches in memory.
The first two variants hand the items over as torch tensors, the third as read (the library's way).
"""

from __future__ import annotations

import argparse
import functools
import random
import time
from pathlib import Path

import torch
from decode_e2e import loader, print_split, timed, where_disk_time_goes
from speed import QUICK, REFERENCE, build, model_config
from torch.utils.data import DataLoader

import clipwhisper.data.dataset as dataset
import clipwhisper.inference.batching as batching
from clipwhisper.config import DecodeConfig, nested, resolve
from clipwhisper.data.manifest import read_manifest
from clipwhisper.inference.decode import ModelToLoad
from clipwhisper.model.precision import for_inference
from clipwhisper.model.tokenizer import train_tokenizer
from clipwhisper.synth.grammar import sample_sentence


def torch_copies(arrays, pin: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``pad_stack`` as it was: each row and its padding written by torch."""
    tensors = [torch.as_tensor(a) for a in arrays]
    lengths = [len(t) for t in tensors]
    out = torch.empty((len(tensors), max(lengths), *tensors[0].shape[1:]), dtype=tensors[0].dtype, pin_memory=pin)
    for row, tensor in enumerate(tensors):
        out[row, : len(tensor)] = tensor
        out[row, len(tensor):] = 0
    return out, torch.tensor(lengths)


def handing_over(collate_fn):
    """DataLoader with ``collate_fn`` in place of the one the library asks for (None: torch's default, tensors)."""
    return lambda *args, **kwargs: DataLoader(*args, **{**kwargs, "collate_fn": collate_fn})


def cpu_and_wall(work) -> tuple[float, float]:
    """The process's CPU seconds (all its threads, not its loader workers) and wall seconds of ``work()``."""
    start = time.process_time()
    wall = work()
    return time.process_time() - start, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--image-size", type=int, default=None, help="CLIP's input size (224)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    rng = random.Random(0)
    torch.manual_seed(0)
    tokenizer = train_tokenizer([sample_sentence(rng) for _ in range(500)])
    model = build(model_config(REFERENCE if gpu else QUICK, "both", False, args.image_size), tokenizer, device,
                  torch.bfloat16 if gpu else None)
    for_inference(model, "bf16" if gpu else "fp32")
    config = resolve(DecodeConfig, None, nested({"batch_size": args.batch_size, "num_workers": args.num_workers,
                                                 "max_new_tokens": 24}))
    utterances = read_manifest(args.manifest)
    count = len(utterances)
    print(f"device {torch.cuda.get_device_name() if gpu else 'cpu'}; {count} utterances; batch {args.batch_size}; "
          f"{torch.get_num_threads()} intra-op threads", flush=True)
    with torch.inference_mode():
        batches = list(loader(utterances, "both", config, model))
        generate = functools.partial(model.generate, modality="both", max_new_tokens=24, rows=args.batch_size)
        timed(lambda: [generate(b) for b in batches], device)  # compiles each shape on a GPU
        memory_s = timed(lambda: [generate(b) for b in batches], device)
        print(f"from memory (model.generate): {count / memory_s:.1f} utt/s", flush=True)
        where_disk_time_goes(ModelToLoad.ready(model), utterances, config, device)  # the disk path's first run
        numpy_copies, as_read = dataset.pad_stack, batching.as_read
        variants = {"torch copies, shared tensors": (torch_copies, None),
                    "numpy copies, shared tensors": (numpy_copies, None),
                    "numpy copies, as read": (numpy_copies, as_read)}
        try:
            for round_ in range(args.rounds):
                for name, (pad_stack, handed_over) in variants.items():
                    dataset.pad_stack = pad_stack
                    batching.DataLoader = handing_over(handed_over)
                    cpu, wall = cpu_and_wall(lambda: timed(lambda: list(loader(utterances, "both", config, model)),
                                                           device))
                    print(f"round {round_}, {name}: loader alone {count / wall:.1f} utt/s, {cpu / count * 1e3:.2f} ms "
                          f"of CPU per utterance", flush=True)
                    cpu, split = cpu_and_wall(lambda: where_disk_time_goes(ModelToLoad.ready(model), utterances,
                                                                           config, device))
                    print(f"round {round_}, {name}: from disk {count / split['wall']:.1f} utt/s = "
                          f"{memory_s / split['wall']:.1%} of memory, {cpu / count * 1e3:.2f} ms of CPU per utterance",
                          flush=True)
                    print_split(name, split)
        finally:
            dataset.pad_stack, batching.DataLoader = numpy_copies, DataLoader


if __name__ == "__main__":
    main()
