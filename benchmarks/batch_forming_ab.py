"""Where a decode's batches are formed, in turns: from items the loader's workers hand over one at a time (as
read, pickled through their pipe), padded and pinned by a thread beside the model (the loader until
2026-12-05), against whole batches made by the workers and pinned as they arrive (`inference.batching`); with
the CPU time the decode's own process spends per utterance.

    python benchmarks/batch_forming_ab.py --manifest CORPUS/train4.tsv [--image-size 112]            # GPU
    python benchmarks/batch_forming_ab.py --manifest CORPUS/test.tsv --batch-size 8 --num-workers 2   # CPU

The model of `speed.py` (random weights at real sizes; tiny dimensions on the CPU) and `decode`'s loop from disk, as
`decode_e2e.py` runs them. Prints, per variant and round, the loader alone and the decode from disk (utt/s, and
the process's CPU ms per utterance) against `generate` on the same batches in memory, and where the decode's wall
time went: `generate` itself slows down when the process receives every item's arrays (the GIL taken back from
the thread launching the kernels at each read of the pipe).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from queue import Queue

import decode_e2e
import torch
from decode_e2e import items_one_at_a_time, loader, loader_benchmark_setup, print_split, timed, where_disk_time_goes

import clipwhisper.inference.decode as decoding
from clipwhisper.config import DecodeConfig
from clipwhisper.data.manifest import read_manifest
from clipwhisper.inference.batching import DecodeBatches, decode_batches, loader_workers
from clipwhisper.inference.decode import ModelToLoad


@contextlib.contextmanager
def items_handed_over(dataset, config: DecodeConfig, device: torch.device, noise=None, snrs=("clean",),
                      pending=None):
    """`decode_batches` as it was: workers decode an item each at a time, two batches' worth in flight, and a
    thread of this process forms each batch's cells from the items and pins them, two batches ahead."""
    items = iter(items_one_at_a_time(dataset, config, loader_workers(config, device)))
    batches = DecodeBatches(dataset, config.batch_size, noise, snrs, pending)
    made = (batches.cells(group) for group in iter(lambda: [item for _, item in zip(range(config.batch_size), items)],
                                                    []))
    if device.type == "cuda":
        made = (cells.pin_memory() for cells in made)
    yield made_ahead(made, 2)


def made_ahead(made, ahead: int):
    """``made``'s values computed by a thread, ``ahead`` of the caller."""
    queue: Queue = Queue(maxsize=ahead)
    end = object()

    def fill() -> None:
        for value in made:
            queue.put(value)
        queue.put(end)
    threading.Thread(target=fill, daemon=True).start()
    while (value := queue.get()) is not end:
        yield value


def cpu_and_wall(work) -> tuple[float, float]:
    """The process's CPU seconds (all its threads, not its loader workers) and wall seconds of ``work()``."""
    start = time.process_time()
    wall = work()
    return time.process_time() - start, wall


def main() -> None:
    args, device, model, config = loader_benchmark_setup(__doc__)
    gpu = device.type == "cuda"
    utterances = read_manifest(args.manifest)
    count = len(utterances)
    print(f"device {torch.cuda.get_device_name() if gpu else 'cpu'}; {count} utterances; batch {args.batch_size}; "
          f"{loader_workers(config, device)} loader workers", flush=True)
    with torch.inference_mode():
        batches = list(loader(utterances, "both", config, model))
        generate = functools.partial(model.generate, modality="both", max_new_tokens=24, rows=args.batch_size)
        timed(lambda: [generate(b) for b in batches], device)  # compiles each shape on a GPU
        memory_s = timed(lambda: [generate(b) for b in batches], device)
        print(f"from memory (model.generate): {count / memory_s:.1f} utt/s", flush=True)
        where_disk_time_goes(ModelToLoad.ready(model), utterances, config, device)  # the disk path's first run
        variants = {"items handed over, batches formed beside the model": items_handed_over,
                    "whole batches from the workers": decode_batches}
        try:
            for round_ in range(args.rounds):
                for name, batching in variants.items():
                    decode_e2e.decode_batches = decoding.decode_batches = batching
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
            decode_e2e.decode_batches = decoding.decode_batches = decode_batches


if __name__ == "__main__":
    main()
