"""Training and decoding throughput against the naive way, in one process.

    python benchmarks/speed.py            # the reference configuration on a GPU
    python benchmarks/speed.py --quick    # tiny dimensions on the CPU, same lines

Reference configuration, random weights at real sizes: Whisper `medium` encoder dimensions, CLIP ViT-B-16 at
224 px, a Llama with Llama-3.2-1B dimensions and LoRA r16 on q/k/v/o, encoders frozen. Batches shaped like
LRS3: 1-12 s (mean about 4.5 s), 25 fps, 16 kHz, about 3 words a second, the video 96-px mouth crops as the
loader carries them (YUV 4:2:0, made RGB at CLIP's size on the device).
Naive baseline (built here too): Whisper padded to 30 s, fp32, CLIP one frame at a time, decoding batch 1.
MFU = useful model FLOPs per second / a bf16 matmul measured in the same run; the FLOPs of a training
utterance are counted by torch's FlopCounterMode on our configuration (the naive run's padding is not useful).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import random
import tempfile
import time
import types
import unittest.mock
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clipwhisper.config import ModelConfig
from clipwhisper.data.batch import Batch, Padded
from clipwhisper.data.features import FeatureCache
from clipwhisper.data.frames import carried_side
from clipwhisper.data.utterance import Utterance
from clipwhisper.model.avsr import AVSRModel, packing_order
from clipwhisper.model.compiled import compile_llm_layers
from clipwhisper.model.graphs import graphs_of
from clipwhisper.model.llm import apply_finetuning, build_base_llm, decoder_of
from clipwhisper.model.precision import cast_frozen, configure_kernels, for_inference
from clipwhisper.model.tokenizer import train_tokenizer
from clipwhisper.synth.grammar import sample_sentence

REFERENCE = {
    "audio_encoder": {"name": None, "dims": {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 1024,
                                             "n_audio_head": 16, "n_audio_layer": 24}},
    "video_encoder": {"name": None, "pretrained": None, "embed_dim": 512,
                      "vision_cfg": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16}},
    "llm": {"name": None, "finetune": "lora", "config": {
        "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
        "max_position_embeddings": 4096, "rope_theta": 500000.0}},
}
QUICK = {
    "audio_encoder": {"name": None, "dims": {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 64,
                                             "n_audio_head": 4, "n_audio_layer": 2}},
    "video_encoder": {"name": None, "pretrained": None, "embed_dim": 64,
                      "vision_cfg": {"image_size": 48, "layers": 2, "width": 64, "patch_size": 12, "head_width": 32}},
    "llm": {"name": None, "finetune": "lora", "config": {
        "model_type": "llama", "hidden_size": 96, "intermediate_size": 192, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 1024}},
}


def model_config(base: dict, modality: str, naive: bool, image_size: int | None = None) -> ModelConfig:
    settings = {k: dict(v) for k, v in base.items()}
    settings["audio_encoder"]["pad_to_30s"] = naive
    settings["video_encoder"]["chunk_frames"] = 1 if naive else 512
    settings["video_encoder"]["image_size"] = image_size  # as --video-image-size sets it
    return ModelConfig.model_validate({"modality": modality, **settings})


def build(config: ModelConfig, tokenizer, device, dtype) -> AVSRModel:
    """As ``clipwhisper train`` builds it: frozen parts cast to the autocast dtype, the same kernel choices."""
    configure_kernels()
    with torch.device(device):  # initialise in place: a 1B model is slow to initialise on the CPU
        llm = apply_finetuning(build_base_llm(config.llm, tokenizer), config.llm)
        model = AVSRModel.build(config, tokenizer, llm)
    return cast_frozen(model, dtype).to(device)


def lrs3_durations(count: int, rng: random.Random) -> list[float]:
    """LRS3-like clip lengths: 1-12 s, mean about 4.5 s."""
    return [min(12.0, max(1.0, rng.gammavariate(4.0, 4.5 / 4.0))) for _ in range(count)]


@dataclass
class TimedBatch(Batch):
    seconds: float = 0.0  # of speech in the batch, for audio-seconds per second


MOUTH_CROP = 96  # px: LRS3's mouth crops as auto_avsr and AV-HuBERT prepare them


def make_batch(durations: list[float], rng: random.Random, image_size: int, streams) -> TimedBatch:
    size = len(durations)
    batch = TimedBatch([f"u{i}" for i in range(size)],
                       [" ".join(sample_sentence(rng) for _ in range(max(1, round(3 * d / 6)))) for d in durations],
                       seconds=sum(durations))
    if "audio" in streams:
        lengths = [int(d * 16000) for d in durations]
        audio = torch.zeros(size, max(lengths))
        for row, n in enumerate(lengths):
            audio[row, :n] = torch.randn(n) * 0.1
        batch.media["audio"] = Padded(audio, torch.tensor(lengths))
    if "video" in streams:  # as the loader carries LRS3's 96-px mouth crops: YUV 4:2:0, made RGB on the device
        lengths = [int(d * 25) for d in durations]
        side = carried_side(MOUTH_CROP, MOUTH_CROP, image_size)
        video = torch.randint(0, 256, (size, max(lengths), side * 3 // 2, side), dtype=torch.uint8)
        batch.media["video"] = Padded(video, torch.tensor(lengths))
    return batch


def make_batches(durations: list[float], size: int, rng: random.Random, image_size: int, streams,
                 bucketed: bool) -> list[TimedBatch]:
    """Batches of ``durations``: in drawn order (naive) or sorted by length, as the bucket sampler does."""
    order = sorted(durations) if bucketed else list(durations)
    return [make_batch(order[i:i + size], rng, image_size, streams) for i in range(0, len(order), size)]


def padding_fraction(batches: list[TimedBatch]) -> float:
    stream = "audio" if "audio" in batches[0].media else "video"
    real = sum(int(b.media[stream].lengths.sum()) for b in batches)
    padded = sum(len(b) * int(b.media[stream].lengths.max()) for b in batches)
    return 1 - real / padded


def to_device(batch: TimedBatch, device) -> TimedBatch:
    """Media on the device; lengths stay on the host, as the data loader delivers them."""
    return dataclasses.replace(batch, media={stream: Padded(p.values.to(device, non_blocking=True), p.lengths)
                                             for stream, p in batch.media.items()})


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device, quick: bool) -> float:
    n = 1024 if quick else 8192
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start, reps = time.perf_counter(), 5 if quick else 20
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def _with_query_heads(query, key, value):
    """Key and value shapes with the query's head count: grouped-query attention does the same matmuls."""
    heads = query[1]
    return (*key[:1], heads, *key[2:]), (*value[:1], heads, *value[2:])


def _gqa_attention_flops():
    """FLOP formulas for SDPA that accept fewer key/value heads than query heads (torch 2.11's assert)."""
    from torch.utils import flop_counter

    aten = torch.ops.aten

    def forward(query, key, value, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_flop_count(query, *_with_query_heads(query, key, value))

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_backward_flop_count(grad_out, query, *_with_query_heads(query, key, value))

    kinds = ("efficient", "flash", "cudnn", "flash_attention_for_cpu")  # the CPU's kernel is not in torch's table
    names = [f"_scaled_dot_product_{k}" + ("" if k.endswith("cpu") else "_attention") for k in kinds]
    return {**{getattr(aten, name): forward for name in names},
            **{getattr(aten, f"{name}_backward"): backward for name in names}}


GQA_ATTENTION_FLOPS = _gqa_attention_flops()


def train_rate(model, batches, device, dtype, steps: int, count_flops: bool = True) -> dict:
    """Training utterances/s after a step on every batch: compiled layers compile and CUDA graphs are
    captured once per batch shape, not while timed."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                  fused=device.type == "cuda")

    def step(batch):
        train_step(model, optimizer, batch, device, dtype)

    for batch in batches:
        step(batch)
    flops_per_utt, parts = float("nan"), {}
    if count_flops:  # the mean over the batches the timed steps run: short and long ones alike
        timed = [i % len(batches) for i in range(steps)]
        counts = [count_flops_of(model, step, batch) for batch in batches]
        utts = sum(len(batches[i]) for i in timed)
        parts = {part: sum(counts[i][part] for i in timed) / utts for part in counts[0]}
        flops_per_utt = parts.pop("all")
    syncs = count_syncs(step, batches[0]) if device.type == "cuda" else []
    if device.type == "cuda":  # what the timed steps hold, not what earlier work left cached
        torch.cuda.empty_cache()
        step(batches[0])  # the allocator takes back what a step needs before the clock starts
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    utts = seconds = 0
    for i in range(steps):
        batch = batches[i % len(batches)]
        step(batch)
        utts += len(batch)
        seconds += batch.seconds
    sync(device)
    elapsed = time.perf_counter() - start
    # Reserved, not allocated: a replayed CUDA graph works in its pool's memory without allocating it.
    peak = torch.cuda.max_memory_reserved() / 2**30 if device.type == "cuda" else float("nan")
    return {"utt_s": utts / elapsed, "audio_s_s": seconds / elapsed, "peak_gib": peak,
            "flops_per_utt": flops_per_utt, "flops_by_part": parts, "syncs": syncs}


def count_flops_of(model, step, batch) -> dict[str, int]:
    """Model FLOPs of one training step (or any ``step`` of the model), in all and per component.

    Every kernel launched one by one: FlopCounterMode sees neither a replayed graph's kernels nor those
    inside nn.MultiheadAttention's inference fast path (one opaque op holding CLIP's q/k/v and output
    projections and its attention: a third of CLIP's FLOPs, uncounted before 2026-11-27)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=GQA_ATTENTION_FLOPS)
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with counter, graphs_off(model):
            step(batch)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
    by_module, total = counter.get_flop_counts(), counter.get_total_flops()
    # a part is named from the model where the model's forward ran it (training), by its own class where a
    # method of the model called it (generate)
    parts = {part: sum(by_module.get(f"{type(model).__name__}.{name}", by_module.get(
                 type(getattr(model, name, None)).__name__, {})).values())
             for name, part in (("video_encoder", "CLIP"), ("audio_encoder", "Whisper"))}
    return {"all": total, **parts, "LLM and the rest": total - sum(parts.values())}


@contextlib.contextmanager
def graphs_off(model):
    """The encoders and the LLM launching their kernels one by one, unpadded: FLOP counting sees no kernel of a
    replayed graph."""
    graphs = graphs_of(model)
    enabled = [graph.enabled for graph in graphs]
    for graph in graphs:
        graph.enabled = False
    try:
        yield
    finally:
        for graph, state in zip(graphs, enabled):
            graph.enabled = state


def count_syncs(step, batch) -> list[str]:
    """The operations of one training step that make the host wait for the GPU (torch's sync debug mode)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step(batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [f"{Path(w.filename).parent.name}/{Path(w.filename).name}:{w.lineno}" for w in caught
            if "synchroniz" in str(w.message)]


def decode_batches(batches, batch_size: int):
    """The training batches cut into decode batches of ``batch_size`` rows (the last of each may be shorter)."""
    for batch in batches:
        for start in range(0, len(batch), batch_size):
            yield batch.take(list(range(start, min(start + batch_size, len(batch)))))


def decode_rate(model, batches, device, beam: int, batch_size: int, new_tokens: int, static: bool | None) -> dict:
    """Utterances/s and RTFx (speech seconds per wall second) of ``model.generate`` at ``batch_size``, as
    ``clipwhisper decode`` calls it (``static``: None is the GPU's static cache and compiled step), in the
    second of two passes; the first, which compiles each shape, is reported apart."""
    model.eval()

    def one_pass() -> float:
        sync(device)
        start = time.perf_counter()
        for rows in decode_batches(batches, batch_size):
            model.generate(rows, beam_size=beam, max_new_tokens=new_tokens, rows=batch_size, static=static)
        sync(device)
        return time.perf_counter() - start
    first, second = one_pass(), one_pass()
    return {"utt_s": sum(len(b) for b in batches) / second, "rtfx": sum(b.seconds for b in batches) / second,
            "first_pass_s": first}


def cached_batches(model, batches, device, dtype) -> list[TimedBatch]:
    """The batches as the feature cache serves them: encoder outputs instead of media, on the device."""
    out = []
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for batch in batches:
            cached = TimedBatch(batch.ids, batch.texts, seconds=batch.seconds)
            for stream in model.streams:
                features, mask = model._features(stream, batch)
                cached.features[stream] = Padded(features, mask.sum(1))
            out.append(cached)
    return out


def cache_read_rate(batch: TimedBatch, streams, repeats: int = 5) -> float:
    """Utterances per second one core reads from a FeatureCache on local disk (page cache warm)."""
    with tempfile.TemporaryDirectory() as tmp:
        utterances = [Utterance(uid, Path(tmp) / f"{uid}.mp4", None) for uid in batch.ids]
        cache = FeatureCache(Path(tmp), {stream: "bench" for stream in streams}, utterances)
        for stream in streams:
            features, lengths = batch.features[stream]
            cache.put(stream, batch.ids, features, torch.arange(features.shape[1], device=features.device)[None]
                      < lengths[:, None])
        start = time.perf_counter()
        for _ in range(repeats):
            items = [{s: cache.get(s, u) for s in streams} for u in utterances]
        assert all(v is not None for item in items for v in item.values())
        return repeats * len(utterances) / (time.perf_counter() - start)


def profile(name: str, work, device) -> None:
    """Where ``work()`` spends its time: the top operators by device time and by host time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    work()  # warm-up
    sync(device)
    with torch_profile(activities=activities) as prof:
        work()
        sync(device)
    for key in ("cuda_time_total" if device.type == "cuda" else "cpu_time_total", "self_cpu_time_total"):
        print(f"--- profile: {name}, by {key} ---")
        print(prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=50))


def train_step(model, optimizer, batch, device, dtype) -> None:
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        loss = model(batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def identical_share(model, batches, batch_size: int, new_tokens: int, beam: int = 1) -> float:
    """The share of hypotheses the fixed-shape path (greedy: the static cache's compiled step; beam search: the
    layers replayed as a CUDA graph) and the dynamic cache agree on."""
    same = total = 0
    for rows in decode_batches(batches, batch_size):
        static = model.generate(rows, beam_size=beam, max_new_tokens=new_tokens, rows=batch_size)
        dynamic = model.generate(rows, beam_size=beam, max_new_tokens=new_tokens, static=False)
        same += sum(a == b for a, b in zip(static, dynamic))
        total += len(rows)
    return same / total


@torch.no_grad()
def beam_prefix_once(model, batches, device, batch_size: int, new_tokens: int) -> dict:
    """Beam 5 as ``generate`` runs it (the prefix's KV cache computed once per row and held once for the row's
    beams) against the cache copied per beam (``generate`` before shared_prefix.py) and against transformers'
    beam search given the whole prefix (run once per beam), batch by batch in turns after one batch of each:
    seconds of each and the shares of hypotheses identical to transformers'."""
    tokenizer, total = model.tokenizer, 0
    seconds = {"once per row": 0.0, "copied per beam": 0.0, "once per beam": 0.0}
    same = dict.fromkeys(seconds, 0)

    def once_per_beam(rows):
        prefix, mask = model.generation_prefix(rows)
        output = model.llm.generate(inputs_embeds=prefix, attention_mask=mask.long(), num_beams=5, do_sample=False,
                                    max_new_tokens=new_tokens, eos_token_id=tokenizer.eos_token_id,
                                    pad_token_id=tokenizer.pad_token_id)
        return [text.strip() for text in tokenizer.batch_decode(output, skip_special_tokens=True)]

    def once_per_row(rows):
        return model.generate(rows, beam_size=5, max_new_tokens=new_tokens, static=False)

    @contextlib.contextmanager
    def not_shared(llm, layers, cache, max_new=None):
        yield False

    def copied_per_beam(rows):
        with unittest.mock.patch("clipwhisper.model.llm.shared_prefix", not_shared):
            return once_per_row(rows)

    arms = {"once per row": once_per_row, "copied per beam": copied_per_beam,
            "once per beam": once_per_beam}
    for run in arms.values():
        run(next(decode_batches(batches, batch_size)))
    for rows in decode_batches(batches, batch_size):
        texts = {}
        for name, run in arms.items():
            sync(device)
            start = time.perf_counter()
            texts[name] = run(rows)
            sync(device)
            seconds[name] += time.perf_counter() - start
        for name in arms:
            same[name] += sum(a == b for a, b in zip(texts[name], texts["once per beam"]))
        total += len(rows)
    return {"seconds": seconds, "identical": {name: count / total for name, count in same.items()}}


def decode_rates(model, batches, device, batch_size: int, new_tokens: int, static: bool | None = None) -> dict:
    rates = {}
    for beam, key in ((1, "greedy"), (5, "beam5")):
        rate = decode_rate(model, batches, device, beam, batch_size, new_tokens, static)
        rates |= {key: rate["utt_s"], f"{key}_rtfx": rate["rtfx"], f"{key}_first_s": rate["first_pass_s"]}
    return rates


LINES = (("utt_s", "train utt/s", ".1f"), ("audio_s_s", "train audio-s/s", ".1f"),
         ("peak_gib", "train peak GiB", ".1f"), ("mfu", "train MFU", ".3f"),
         ("greedy", "decode greedy utt/s", ".1f"), ("greedy_rtfx", "decode greedy RTFx", ".1f"),
         ("beam5", "decode beam5 utt/s", ".1f"), ("beam5_rtfx", "decode beam5 RTFx", ".1f"))


def report(modality: str, results: dict, peak: float) -> None:
    nan = float("nan")
    ours, naive = results["ours"], results["naive"]
    useful = ours.get("flops_per_utt", nan)  # FLOPs the work needs; the naive run's padding is not useful work
    for result in results.values():
        result["mfu"] = result.get("utt_s", nan) * result.get("useful_flops", useful) / peak
    parts = ", ".join(f"{part} {flops / 1e9:.1f}" for part, flops in ours.get("flops_by_part", {}).items() if flops)
    print(f"{modality:5s} model GFLOP per training utterance: ours {useful / 1e9:.1f} ({parts}), "
          f"naive {naive.get('flops_per_utt', nan) / 1e9:.1f}; padding ours {ours['padding']:.1%}, "
          f"naive {naive.get('padding', nan):.1%}")
    for key, label, fmt in LINES:
        mine, theirs = ours.get(key, nan), naive.get(key, nan)
        ratio = mine / theirs if theirs and theirs == theirs else nan
        print(f"{modality:5s} {label:22s} ours {mine:{fmt}}  naive {theirs:{fmt}}  ratio {ratio:.2f}")
    for name, result in results.items():
        if result.get("syncs"):
            print(f"{modality:5s} {name:14s} host waits for the GPU {len(result['syncs'])}x per training step, at "
                  + ", ".join(sorted(set(result["syncs"]))))
        if "greedy" in result and name not in ("ours", "naive"):
            print(f"{modality:5s} {name:14s} decode greedy utt/s {result['greedy']:.1f} RTFx "
                  f"{result['greedy_rtfx']:.1f} (first pass {result['greedy_first_s']:.1f} s), beam5 utt/s "
                  f"{result['beam5']:.1f} RTFx {result['beam5_rtfx']:.1f} (first pass {result['beam5_first_s']:.1f} s)")
        if name not in ("ours", "naive") and "utt_s" in result:
            print(f"{modality:5s} {name:14s} train utt/s {result['utt_s']:.1f}  peak GiB {result['peak_gib']:.1f}  "
                  f"MFU {result['mfu']:.3f}" + (f"  read utt/s/core {result['read']:.0f}" if "read" in result else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny dimensions on the CPU")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=None, help="distinct batches per modality (bucketing pool)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--modalities", default="audio,video,both")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens generated per utterance (24; 12 quick)")
    parser.add_argument("--small-image", type=int, default=None, help="also train with CLIP at this size (112)")
    parser.add_argument("--image-size", type=int, default=None, help="CLIP's input size for every row (224)")
    parser.add_argument("--profile", action="store_true", help="print a profile of the first modality")
    parser.add_argument("--compile", action="store_true", help="also train with torch.compile'd LLM layers")
    parser.add_argument("--skip", default="", help="parts to leave out, comma-separated: naive, decode, train")
    args = parser.parse_args()
    device = torch.device("cpu" if args.quick or not torch.cuda.is_available() else "cuda")
    base = QUICK if args.quick else REFERENCE
    steps = args.steps or (2 if args.quick else 12)
    args.batches = args.batches or (3 if args.quick else 6)
    args.new_tokens = args.new_tokens or (12 if args.quick else 24)
    rng = random.Random(0)
    torch.manual_seed(0)
    np.random.seed(0)
    tokenizer = train_tokenizer([sample_sentence(rng) for _ in range(500)])
    peak = matmul_peak(device, args.quick)
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; torch {torch.__version__}; "
          f"matmul {'bf16' if device.type == 'cuda' else 'fp32'} {peak / 1e12:.1f} TFLOP/s")
    fast = torch.bfloat16 if device.type == "cuda" else None
    image = args.image_size or base["video_encoder"]["vision_cfg"]["image_size"]
    for modality in args.modalities.split(","):
        streams = ("audio", "video") if modality == "both" else (modality,)
        durations = lrs3_durations(args.batch_size * args.batches, rng)
        bucketed = [to_device(b, device) for b in make_batches(durations, args.batch_size, rng, image, streams, True)]
        drawn = [to_device(b, device) for b in make_batches(durations, args.batch_size, rng, image, streams, False)]
        results = {}
        model = build(model_config(base, modality, False, args.image_size), tokenizer, device, fast)
        results["ours"] = {}
        if "train" not in args.skip:
            results["ours"] = train_rate(model, bucketed, device, fast, steps)
            cached = cached_batches(model, bucketed, device, fast)
            result = train_rate(model, cached, device, fast, steps)
            results["cached"] = {**result, "useful_flops": result["flops_per_utt"],
                                 "read": cache_read_rate(cached[0], streams)}
            cached = None
        middle = bucketed[len(bucketed) // 2]
        if args.profile:
            optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
            profile(f"{modality} training step, {len(middle)} utterances",
                    functools.partial(train_step, model, optimizer, middle, device, fast), device)
        for_inference(model, "bf16" if fast else "fp32")  # as clipwhisper decode prepares a checkpoint
        if "decode" not in args.skip:
            results["ours"].update(decode_rates(model, bucketed, device, args.batch_size, args.new_tokens))
            if device.type == "cuda":  # the baseline: transformers' dynamic KV cache, step by step
                results["dynamic cache"] = decode_rates(model, bucketed, device, args.batch_size, args.new_tokens,
                                                        static=False)
                shares = [identical_share(model, bucketed, args.batch_size, args.new_tokens, beam) for beam in (1, 5)]
                print(f"{modality:5s} hypotheses identical, static against dynamic cache: greedy {shares[0]:.1%}, "
                      f"beam 5 {shares[1]:.1%}")
            beam = beam_prefix_once(model, bucketed, device, args.batch_size, args.new_tokens)
            print(f"{modality:5s} beam 5 in turns, seconds (hypotheses identical to transformers' own): "
                  + ", ".join(f"{name} {beam['seconds'][name]:.2f} ({beam['identical'][name]:.1%})"
                              for name in beam["seconds"]))
        if args.profile:
            profile(f"{modality} beam-5 decode, {len(middle)} utterances",
                    functools.partial(model.generate, middle, beam_size=5, max_new_tokens=args.new_tokens), device)
        model = free(device)
        results["ours"]["padding"] = padding_fraction(bucketed)
        results["naive"] = {} if "naive" in args.skip else naive_rates(base, modality, tokenizer, drawn, device,
                                                                       steps, args)
        if args.compile:  # a fresh model: compiled layers would recompile after decoding merges LoRA into them
            model = build(model_config(base, modality, False, args.image_size), tokenizer, device, fast)
            compile_llm_layers(model.llm)
            started = time.perf_counter()
            result = train_rate(model, bucketed, device, fast, steps, count_flops=False)
            print(f"{modality:5s} compile and warm-up over {len(bucketed)} batch shapes: "
                  f"{time.perf_counter() - started:.0f} s in all")
            results["ours+compile"] = result
            cached = cached_batches(model, bucketed, device, fast)
            results["cached+compile"] = {**train_rate(model, cached, device, fast, steps, count_flops=False),
                                         "useful_flops": results["cached"]["useful_flops"]}
            cached = model = free(device)
        if args.small_image and "video" in streams:
            small = make_batches(durations, args.batch_size, rng, args.small_image, streams, True)
            model = build(model_config(base, modality, False, args.small_image), tokenizer, device, fast)
            small = [to_device(b, device) for b in small]
            result = train_rate(model, small, device, fast, steps)
            results[f"clip@{args.small_image}px"] = {**result, "useful_flops": result["flops_per_utt"]}
            if args.compile:  # a fresh model: its LLM graphs, captured uncompiled, would replay uncompiled layers
                model = free(device)
                model = build(model_config(base, modality, False, args.small_image), tokenizer, device, fast)
                compile_llm_layers(model.llm)
                results[f"clip@{args.small_image}+compile"] = {
                    **train_rate(model, small, device, fast, steps, count_flops=False),
                    "useful_flops": result["flops_per_utt"]}
            model = free(device)
        report(modality, results, peak)


def masked_hidden(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The LLM over the holed sequence with its mask, then the hidden states put in packed order."""
    positions = (mask.long().cumsum(-1) - 1).masked_fill(~mask, 0)
    hidden = decoder_of(self.llm)(inputs_embeds=embeds, attention_mask=mask.long(), position_ids=positions,
                                    use_cache=False).last_hidden_state
    return hidden.gather(1, packing_order(mask)[..., None].expand(-1, -1, hidden.shape[-1]))


def hand_llm_the_mask(model: AVSRModel) -> AVSRModel:
    """Training as it was before rows were packed: the LLM gets the holed sequence, its mask and positions
    (in fp32 SDPA then takes its memory-efficient kernel; packed and maskless it would take the math one)."""
    model._llm_hidden = types.MethodType(masked_hidden, model)
    return model


def naive_rates(base: dict, modality: str, tokenizer, drawn: list[dict], device, steps: int, args) -> dict:
    """The original's way: 30-s Whisper input, fp32, CLIP frame by frame, batches in drawn order."""
    model = hand_llm_the_mask(build(model_config(base, modality, True, args.image_size), tokenizer, device, None))
    result = train_rate(model, drawn[:2], device, None, max(2, steps // 4))
    if "decode" not in args.skip:
        result.update(decode_rates(model.eval(), drawn[:1], device, 1, args.new_tokens, static=False))
    model = free(device)
    return {**result, "padding": padding_fraction(drawn)}


def free(device) -> None:
    """Return GPU memory once the caller has dropped its model (assign the None this returns)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
