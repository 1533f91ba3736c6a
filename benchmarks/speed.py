"""Training and decoding throughput against the naive way, in one process.

    python benchmarks/speed.py            # the reference configuration on a GPU
    python benchmarks/speed.py --quick    # tiny dimensions on the CPU, same lines

Reference configuration, random weights at real sizes: Whisper `medium` encoder dimensions, CLIP ViT-B-16 at
224 px, a Llama with Llama-3.2-1B dimensions and LoRA r16 on q/k/v/o, encoders frozen. Batches shaped like
LRS3: 1-12 s (mean about 4.5 s), 25 fps, 16 kHz, about 3 words a second.
Naive baseline (built here too): Whisper padded to 30 s, fp32, CLIP one frame at a time, decoding batch 1.
MFU = useful model FLOPs per second / a bf16 matmul measured in the same run; the FLOPs of a training
utterance are counted by torch's FlopCounterMode on our configuration (the naive run's padding is not useful).
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch

from clipwhisper.config import ModelConfig
from clipwhisper.model.avsr import AVSRModel
from clipwhisper.model.llm import apply_finetuning, build_base_llm
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


def model_config(base: dict, modality: str, naive: bool) -> ModelConfig:
    settings = {k: dict(v) for k, v in base.items()}
    settings["audio_encoder"]["pad_to_30s"] = naive
    settings["video_encoder"]["chunk_frames"] = 1 if naive else 512
    return ModelConfig.model_validate({"modality": modality, **settings})


def build(config: ModelConfig, tokenizer, device, dtype) -> AVSRModel:
    llm = apply_finetuning(build_base_llm(config.llm, tokenizer), config.llm)
    model = AVSRModel.build(config, tokenizer, llm).to(device)
    if dtype == torch.bfloat16:  # frozen encoders and the LLM base in bf16; whisper's LayerNorms stay fp32
        for encoder in (model.audio_encoder, model.video_encoder):
            if encoder is not None:
                encoder.to(dtype)
                for module in encoder.modules():
                    if isinstance(module, torch.nn.LayerNorm):
                        module.float()
    return model


def make_batch(size: int, rng: random.Random, image_size: int, streams) -> dict:
    durations = [min(12.0, max(1.0, rng.gammavariate(4.0, 4.5 / 4.0))) for _ in range(size)]
    batch = {"ids": [f"u{i}" for i in range(size)],
             "texts": [" ".join(sample_sentence(rng) for _ in range(max(1, round(3 * d / 6)))) for d in durations]}
    if "audio" in streams:
        lengths = [int(d * 16000) for d in durations]
        audio = torch.zeros(size, max(lengths))
        for row, n in enumerate(lengths):
            audio[row, :n] = torch.randn(n) * 0.1
        batch["audio"], batch["audio_lengths"] = audio, torch.tensor(lengths)
    if "video" in streams:
        lengths = [int(d * 25) for d in durations]
        batch["video"] = torch.randint(0, 256, (size, max(lengths), image_size, image_size, 3), dtype=torch.uint8)
        batch["video_lengths"] = torch.tensor(lengths)
    batch["seconds"] = sum(durations)
    return batch


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


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


def train_rate(model, batches, device, dtype, steps: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                  fused=device.type == "cuda")

    def step(batch):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(batches[0])  # warm-up
    counter = FlopCounterMode(display=False)
    with counter:
        step(batches[1 % len(batches)])
    flops_per_utt = counter.get_total_flops() / len(batches[1 % len(batches)]["ids"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    utts = seconds = 0
    for i in range(steps):
        batch = batches[i % len(batches)]
        step(batch)
        utts += len(batch["ids"])
        seconds += batch["seconds"]
    sync(device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"utt_s": utts / elapsed, "audio_s_s": seconds / elapsed, "peak_gib": peak,
            "flops_per_utt": flops_per_utt}


def decode_rate(model, batches, device, dtype, beam: int, batch_size: int, new_tokens: int) -> float:
    model.eval()
    warm = {k: (v[:batch_size] if torch.is_tensor(v) or isinstance(v, list) else v) for k, v in batches[0].items()}
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        model.generate(warm, beam_size=beam, max_new_tokens=2)  # kernel selection and handles, not timed
    utts = 0
    sync(device)
    start = time.perf_counter()
    for batch in batches:
        rows = [{k: (v[i:i + batch_size] if torch.is_tensor(v) or isinstance(v, list) else v)
                 for k, v in batch.items()} for i in range(0, len(batch["ids"]), batch_size)]
        for row in rows:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                model.generate(row, beam_size=beam, max_new_tokens=new_tokens)
            utts += len(row["ids"])
    sync(device)
    return utts / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny dimensions on the CPU")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--modalities", default="audio,video,both")
    parser.add_argument("--new-tokens", type=int, default=24)
    args = parser.parse_args()
    device = torch.device("cpu" if args.quick or not torch.cuda.is_available() else "cuda")
    base = QUICK if args.quick else REFERENCE
    steps = args.steps or (3 if args.quick else 10)
    rng = random.Random(0)
    torch.manual_seed(0)
    np.random.seed(0)
    tokenizer = train_tokenizer([sample_sentence(rng) for _ in range(500)])
    peak = matmul_peak(device, args.quick)
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; torch {torch.__version__}; "
          f"matmul {'bf16' if device.type == 'cuda' else 'fp32'} {peak / 1e12:.1f} TFLOP/s")
    fast_dtype = torch.bfloat16 if device.type == "cuda" else None
    for modality in args.modalities.split(","):
        streams = ("audio", "video") if modality == "both" else (modality,)
        image = base["video_encoder"]["vision_cfg"]["image_size"]
        batches = [make_batch(args.batch_size, rng, image, streams) for _ in range(3)]
        batches = [to_device(b, device) for b in batches]
        results = {}
        for name, naive, dtype in (("ours", False, fast_dtype), ("naive", True, None)):
            model = build(model_config(base, modality, naive), tokenizer, device, dtype)
            train = train_rate(model, batches, device, dtype, max(2, steps // 3) if naive else steps)
            decode_batch = 1 if naive else args.batch_size
            few = batches[:1] if naive else batches
            greedy = decode_rate(model, few, device, dtype, 1, decode_batch, args.new_tokens)
            beam = decode_rate(model, few, device, dtype, 5, decode_batch, args.new_tokens)
            results[name] = {**train, "greedy": greedy, "beam5": beam}
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
        ours, naive = results["ours"], results["naive"]
        useful = ours["flops_per_utt"]  # FLOPs the work needs; the naive run's padding is not useful work
        for result in (ours, naive):
            result["mfu"] = result["utt_s"] * useful / peak
        print(f"{modality:5s} model GFLOP per training utterance: ours {useful / 1e9:.1f}, "
              f"naive {naive['flops_per_utt'] / 1e9:.1f}")
        for key, label, fmt in (("utt_s", "train utt/s", ".1f"), ("audio_s_s", "train audio-s/s", ".1f"),
                                ("peak_gib", "train peak GiB", ".1f"), ("mfu", "train MFU", ".3f"),
                                ("greedy", "decode greedy utt/s", ".1f"), ("beam5", "decode beam5 utt/s", ".1f")):
            ratio = ours[key] / naive[key] if naive[key] and naive[key] == naive[key] else float("nan")
            print(f"{modality:5s} {label:22s} ours {ours[key]:{fmt}}  naive {naive[key]:{fmt}}  ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
