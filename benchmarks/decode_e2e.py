"""Decoding from disk against decoding from memory, and the whole SNR grid against one clean decode.

The model of `speed.py` (random weights at real sizes; `--quick`: tiny dimensions on the CPU) decodes a corpus's
manifest through `decode`'s own loop (`inference.decode.decode_cells`: media read in `--num-workers` loader
processes, longest first, greedy, the static KV cache on a GPU) and, on the same batches already decoded
into memory, through `model.generate` alone (the benchmark's rate). Also timed: the loader alone (the media
rate), and the 3 modalities x 5 SNRs grid as `clipwhisper decode --modality all` runs it for a `both` model (in
one pass: a batch's media read once, its video encoded once and its audio once per SNR for every cell; video
alone decoded at the first SNR), against one clean `both` decode; and where one decode from disk spends its wall
time (waiting for the loader's first batch and for the later ones, `generate`, the records), with the model in
memory and as `clipwhisper decode` runs it: the model saved as a checkpoint and loaded while the loader reads;
and `clipwhisper decode` itself on that checkpoint in fresh processes, torch's compile cache empty, then warm
(where the manifest's `.wrd` gives the transcripts).

    python benchmarks/decode_e2e.py --manifest CORPUS/train.tsv --batch-size 64            # GPU
    python benchmarks/decode_e2e.py --manifest CORPUS/test.tsv --quick --batch-size 8     # CPU
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import functools
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from speed import QUICK, REFERENCE, build, model_config, sync
from torch.utils.data import DataLoader

from clipwhisper.config import DecodeConfig, nested, resolve
from clipwhisper.data.dataset import AVDataset
from clipwhisper.data.manifest import read_manifest
from clipwhisper.data.utterance import duration_s
from clipwhisper.inference.batching import as_made, decode_batches, loader_workers
from clipwhisper.inference.decode import ModelToLoad, checkpoint_to_load, decode_cells
from clipwhisper.inference.records import HypsFile, read_hyps
from clipwhisper.modality import MODALITIES, streams_of
from clipwhisper.model.checkpoint import save_checkpoint
from clipwhisper.model.precision import for_inference
from clipwhisper.model.tokenizer import train_tokenizer
from clipwhisper.synth.grammar import sample_sentence

SNRS = ["clean", 10.0, 5.0, 0.0, -5.0]


def loader(utterances, modality: str, config: DecodeConfig, model, noise=None, snr="clean"):
    """The batches `decode` makes for a cell (same order, batch size, workers, pinned on a GPU)."""
    todo = sorted(utterances, key=duration_s, reverse=True)
    dataset = AVDataset(todo, streams_of(modality), model.video_encoder.image_size if model.video_encoder else None)
    with decode_batches(dataset, config, model.device, noise, (snr,)) as made:
        yield from (batch for cells in made for _, batch in cells)


def timed(work, device) -> float:
    sync(device)
    start = time.perf_counter()
    work()
    sync(device)
    return time.perf_counter() - start


def from_disk(model, utterances, modalities, config: DecodeConfig, snrs=("clean",), noise=None) -> list[dict]:
    """`decode`'s loop over ``snrs`` into a fresh hyps file; the records."""
    with tempfile.TemporaryDirectory() as folder:
        hyps = HypsFile(Path(folder) / "hyps.jsonl")
        decode_cells(model, utterances, modalities, snrs, config, hyps, noise)
        return hyps.records


def where_disk_time_goes(source: ModelToLoad, utterances, config: DecodeConfig, device) -> dict[str, float]:
    """Seconds of one decode from disk spent loading the model (``source``: a checkpoint to load, or a model
    in memory), starting the loader (its workers), then waiting for its batches (the first one apart), in
    ``generate`` (synchronised), and the rest (records, hyps file)."""
    import clipwhisper.inference.decode as decoding

    spent = {"model load": 0.0, "loader start": 0.0, "first batch": 0.0, "later batches": 0.0, "generate": 0.0}
    batches = decoding.decode_batches
    timed_models = []

    @contextlib.contextmanager
    def waited(*args, **kwargs):
        def taken(made):
            for index in itertools.count():
                start = time.perf_counter()
                cells = next(made, None)
                spent["first batch" if index == 0 else "later batches"] += time.perf_counter() - start
                if cells is None:
                    return
                yield cells

        start = time.perf_counter()
        with batches(*args, **kwargs) as made:
            spent["loader start"] += time.perf_counter() - start
            yield taken(made)

    def loaded():
        start = time.perf_counter()
        model = source.load()
        spent["model load"] += time.perf_counter() - start
        generate = model.generate

        def generated(*args, **kwargs):
            start = time.perf_counter()
            texts = generate(*args, **kwargs)
            sync(device)
            spent["generate"] += time.perf_counter() - start
            return texts

        model.generate = generated
        timed_models.append(model)
        return model

    decoding.decode_batches = waited
    try:
        spent["wall"] = timed(lambda: from_disk(dataclasses.replace(source, load=loaded), utterances, "both", config),
                              device)
    finally:
        decoding.decode_batches = batches
        for model in timed_models:  # a model in memory is timed again afterwards, by its own `generate`
            del model.generate
    return spent


def fresh_decodes(checkpoint: Path, args, precision: str, folder: Path) -> list[str]:
    """`clipwhisper decode` of the manifest from ``checkpoint`` in a fresh process, twice: torch's compile cache
    empty, then holding what the first filled. Each process's wall time and its summary's rate (from the
    checkpoint's load on: compiling included). Needs the manifest's transcripts (a ``.wrd`` beside it)."""
    if not args.manifest.with_suffix(".wrd").exists():
        return [f"no fresh `clipwhisper decode` processes: {args.manifest.with_suffix('.wrd')} does not exist"]
    lines = []
    for run, cache in enumerate(("empty", "warm")):
        output = folder / f"decode{run}"
        command = [sys.executable, "-m", "clipwhisper", "decode", "--model-path", str(checkpoint), "--test-tsv",
                   str(args.manifest), "--output-dir", str(output), "--batch-size", str(args.batch_size),
                   "--max-new-tokens", str(args.new_tokens), "--precision", precision]
        command += ["--num-workers", str(args.num_workers)] if args.num_workers is not None else []
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(folder / "compile-cache")})
        wall = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"clipwhisper decode exited with {done.returncode}:\n{done.stderr[-3000:]}")
        cell = json.loads((output / "summary.json").read_text())["cells"][0]
        walls = batch_walls(output)
        typical = statistics.median(walls)
        slow = [seconds for seconds in walls if seconds > 2 * typical]
        lines.append(f"a fresh `clipwhisper decode` process, torch's compile cache {cache}: {wall:.1f} s in all; "
                     f"its summary: {cell['utterances_per_s']:.1f} utt/s, RTFx {cell['rtfx']:.1f} (compiling "
                     f"included); {len(slow)} of its {len(walls)} batches took over twice the median batch's "
                     f"{typical:.2f} s, {sum(slow) - len(slow) * typical:.1f} s longer in all")
    return lines


def batch_walls(output: Path) -> list[float]:
    """The wall seconds of each batch a decode's folder records: a batch's records share its time equally."""
    records, _, _ = read_hyps(output / "hyps.jsonl")
    return [share * count for share, count in collections.Counter(r["decode_s"] for r in records).items()]


def print_split(name: str, split: dict[str, float]) -> None:
    rest = split["wall"] - sum(seconds for part, seconds in split.items() if part != "wall")
    print(f"a decode from disk, {name}, {split['wall']:.2f} s: model load {split['model load']:.2f} s, loader "
          f"start {split['loader start']:.2f} s, then waiting for the first batch {split['first batch']:.2f} s, "
          f"for the later ones {split['later batches']:.2f} s; generate {split['generate']:.2f} s; the rest "
          f"(records, hyps file) {rest:.2f} s")


def items_one_at_a_time(dataset: AVDataset, config: DecodeConfig, workers: int) -> DataLoader:
    """The loader until 2026-12-05, the baseline of `batch_forming_ab.py` and `generate_beside_loader.py`: the
    dataset's items handed over one at a time, as read (pickled through the workers' pipe), two batches' worth
    in flight."""
    ahead = {"prefetch_factor": -(-2 * config.batch_size // workers)} if workers else {}
    return DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=as_made, **ahead)


def loader_benchmark_setup(description: str):
    """What the loader benchmarks share (`batch_forming_ab.py`, `generate_beside_loader.py`): their options, and
    the model of `speed.py` ready for inference (real sizes in bf16 on a GPU, tiny dimensions in fp32 on the CPU)
    with the decode's settings (greedy, 24 new tokens)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    return args, device, model, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--noise", type=Path, default=None, help="babble for the grid (default: the corpus's)")
    parser.add_argument("--quick", action="store_true", help="tiny dimensions on the CPU")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--image-size", type=int, default=None, help="CLIP's input size (224)")
    parser.add_argument("--skip-grid", action="store_true")
    args = parser.parse_args()
    device = torch.device("cpu" if args.quick or not torch.cuda.is_available() else "cuda")
    rng = random.Random(0)
    torch.manual_seed(0)
    np.random.seed(0)
    tokenizer = train_tokenizer([sample_sentence(rng) for _ in range(500)])
    base = QUICK if args.quick else REFERENCE
    fast = torch.bfloat16 if device.type == "cuda" else None
    model = build(model_config(base, "both", False, args.image_size), tokenizer, device, fast)
    precision = "bf16" if fast else "fp32"
    for_inference(model, precision)
    config = resolve(DecodeConfig, None, nested({"batch_size": args.batch_size, "num_workers": args.num_workers,
                                                 "max_new_tokens": args.new_tokens}))
    utterances = read_manifest(args.manifest)
    seconds = sum(duration_s(u) for u in utterances)
    workers = loader_workers(config, device)
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; {len(utterances)} utterances, "
          f"{seconds:.0f} s of speech; batch {args.batch_size}; {workers} loader workers; "
          f"CLIP at {model.video_encoder.image_size} px; {args.new_tokens} new tokens")
    # The passes from disk come before the batches are held in memory, which `clipwhisper decode` never holds: a
    # process holding gigabytes forks its loader's workers slower (2.2 GB of arrays: 8 forks 0.27 s, against 0.01).
    with torch.inference_mode():
        media_s = timed(lambda: [None for _ in loader(utterances, "both", config, model)], device)
        first = timed(lambda: from_disk(model, utterances, "both", config), device)  # compiles each shape on a GPU
        disk_s = timed(lambda: from_disk(model, utterances, "both", config), device)
        disk = from_disk(model, utterances, "both", config)
        split = where_disk_time_goes(ModelToLoad.ready(model), utterances, config, device)
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(model, Path(folder) / "model")
            checkpoint = config.model_copy(update={"model_path": Path(folder) / "model", "precision": precision})
            from_checkpoint = where_disk_time_goes(checkpoint_to_load(checkpoint, device), utterances, config, device)
            fresh = fresh_decodes(checkpoint.model_path, args, precision, Path(folder))
        batches = list(loader(utterances, "both", config, model))
        generate = functools.partial(model.generate, modality="both", max_new_tokens=args.new_tokens,
                                     rows=args.batch_size)
        memory_s = timed(lambda: [generate(b) for b in batches], device)
        memory_hyps = [text for b in batches for text in generate(b)]
    order = [uid for b in batches for uid in b.ids]
    same = np.mean([a == b for a, b in zip(memory_hyps, [{r["id"]: r["hyp"] for r in disk}[uid] for uid in order])])
    count = len(utterances)
    for name, wall in (("media alone (loader, no model)", media_s), ("from memory (model.generate)", memory_s),
                       ("from disk (decode's loop)", disk_s)):
        print(f"both clean, {name:32s}: {count / wall:8.1f} utt/s  RTFx {seconds / wall:8.1f}")
    print(f"first pass from disk (compiling): {first:.1f} s; from disk / from memory: {memory_s / disk_s:.1%}; "
          f"identical hypotheses: {same:.1%}")
    print_split("the model in memory", split)
    print_split("as `clipwhisper decode` runs it (the loader reads while the checkpoint loads)", from_checkpoint)
    after_load = from_checkpoint["wall"] - from_checkpoint["model load"]
    print(f"`clipwhisper decode`'s path after the checkpoint has loaded: {count / after_load:.1f} utt/s = "
          f"{memory_s / after_load:.1%} of the rate from memory")
    for line in fresh:
        print(line)
    if args.skip_grid:
        return
    from clipwhisper.data.media import load_audio

    noise = load_audio(args.noise or args.manifest.parent / "noise" / "babble.wav")

    def grid() -> None:
        from_disk(model, utterances, MODALITIES, config, SNRS, noise)

    with torch.inference_mode():  # the first pass compiles the audio-only and video-only shapes, as the clean
        first_s = timed(grid, device)  # both decode's shapes were compiled before it was timed
        grid_s = timed(grid, device)
    print(f"grid, 3 modalities x {len(SNRS)} SNRs from disk: {grid_s:.1f} s = {grid_s / disk_s:.2f}x the clean both "
          f"decode ({count * 15 / grid_s:.1f} cell-utterances/s); first pass, compiling: {first_s:.1f} s")


if __name__ == "__main__":
    main()
