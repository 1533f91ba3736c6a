"""`generate` on the same in-memory batches alone and beside loader work, in turns: what in a decode's process
slows the thread that launches the kernels.

    python benchmarks/generate_beside_loader.py --manifest CORPUS/train4.tsv [--image-size 112]          # GPU
    python benchmarks/generate_beside_loader.py --manifest CORPUS/test.tsv --batch-size 8 --num-workers 2  # CPU

The model of `speed.py` (random weights at real sizes; tiny dimensions on the CPU). Beside `generate`, in
turns: a thread of the same process receiving the loader workers' items one at a time (their arrays pickled
through the workers' pipe, as the loader handed them over until 2026-12-05); a thread running the library's
loader (whole batches from the workers, pinned on a GPU); the library's loader in another process. Each line
gives `generate`'s rate and how many items or batches this process received meanwhile.
"""

from __future__ import annotations

import functools
import multiprocessing
import threading
import time
from pathlib import Path

import torch
from decode_e2e import items_one_at_a_time, loader, loader_benchmark_setup, timed

from clipwhisper.config import DecodeConfig
from clipwhisper.data.dataset import AVDataset
from clipwhisper.data.manifest import read_manifest
from clipwhisper.data.utterance import duration_s
from clipwhisper.inference.batching import DecodeBatches, batch_loader, loader_workers
from clipwhisper.modality import streams_of


def dataset_of(manifest: Path, image_size: int | None) -> AVDataset:
    """The manifest's utterances as a decode reads them: longest first, audio and video."""
    return AVDataset(sorted(read_manifest(manifest), key=duration_s, reverse=True), streams_of("both"), image_size)


def loader_alone(manifest: str, image_size: int | None, config: DecodeConfig, stop) -> None:
    """The library's loader in this (another) process, without pinning, over and over until ``stop``."""
    while not stop.is_set():
        for _ in batch_loader(DecodeBatches(dataset_of(Path(manifest), image_size), config.batch_size, None,
                                            ("clean",), None), config, torch.device("cpu")):
            if stop.is_set():
                return


def beside(generate_all, background, device) -> tuple[float, int]:
    """``generate_all``'s wall seconds while ``background(stop, received)`` runs in a thread, and what it got."""
    stop, received = threading.Event(), [0]
    worker = threading.Thread(target=background, args=(stop, received), daemon=True)
    worker.start()
    time.sleep(2.0)  # its workers started and reading
    before = received[0]
    wall = timed(generate_all, device)
    got = received[0] - before
    stop.set()
    worker.join(timeout=60)
    return wall, got


def receiving(make):
    """A background that iterates ``make()`` over and over, counting what it receives."""
    def run(stop, received) -> None:
        while not stop.is_set():
            for _ in make():
                received[0] += 1
                if stop.is_set():
                    return
    return run


def in_another_process(manifest: Path, image_size: int | None, config: DecodeConfig):
    def run(stop, received) -> None:
        context = multiprocessing.get_context("spawn")
        flag = context.Event()
        process = context.Process(target=loader_alone, args=(str(manifest), image_size, config, flag))
        process.start()
        stop.wait()
        flag.set()
        process.join(timeout=60)
        if process.is_alive():
            process.kill()
    return run


def main() -> None:
    args, device, model, config = loader_benchmark_setup(__doc__)
    gpu = device.type == "cuda"
    workers = loader_workers(config, device)
    image_size = model.video_encoder.image_size
    utterances = read_manifest(args.manifest)
    count = len(utterances)
    print(f"device {torch.cuda.get_device_name() if gpu else 'cpu'}; {count} utterances at {image_size} px; batch "
          f"{args.batch_size}; {workers} loader workers", flush=True)
    variants = {
        "a thread receiving items one at a time": receiving(
            lambda: items_one_at_a_time(dataset_of(args.manifest, image_size), config, workers)),
        "a thread running the library's loader": receiving(lambda: loader(utterances, "both", config, model)),
        "the library's loader in another process": in_another_process(args.manifest, image_size, config),
    }
    with torch.inference_mode():
        batches = list(loader(utterances, "both", config, model))
        generate = functools.partial(model.generate, modality="both", max_new_tokens=24, rows=args.batch_size)
        generate_all = lambda: [generate(b) for b in batches]  # noqa: E731
        timed(generate_all, device)  # compiles each shape on a GPU
        for round_ in range(args.rounds):
            print(f"round {round_}, alone: {count / timed(generate_all, device):.1f} utt/s", flush=True)
            for name, background in variants.items():
                wall, got = beside(generate_all, background, device)
                print(f"round {round_}, beside {name}: {count / wall:.1f} utt/s (received in this process: {got})",
                      flush=True)


if __name__ == "__main__":
    main()
