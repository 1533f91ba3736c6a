"""benchmarks/speed.py's MFU rests on its FLOP count: it must see every matmul of the frozen CLIP tower.

In eval mode without gradients nn.MultiheadAttention takes an inference fast path, one op that torch's
FlopCounterMode cannot look into; before 2026-11-27 that hid a third of CLIP's FLOPs from the count."""

import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import speed  # noqa: E402

from clipwhisper.model.tokenizer import train_tokenizer  # noqa: E402
from clipwhisper.synth.grammar import sample_sentence  # noqa: E402


def clip_forward_flops(vision: dict, embed_dim: int) -> int:
    """A ViT's matmul FLOPs per frame, by hand: patch embedding, per layer q/k/v, attention, output
    projection and the MLP, then the final projection of the class token."""
    width, patch = vision["width"], vision["patch_size"]
    patches = (vision["image_size"] // patch) ** 2
    tokens = patches + 1
    per_layer = 2 * tokens * (4 * width * width + 2 * 4 * width * width) + 2 * 2 * tokens * tokens * width
    return 2 * patches * width * 3 * patch * patch + vision["layers"] * per_layer + 2 * width * embed_dim


def test_flop_count_sees_all_of_clip_in_a_training_step():
    rng = random.Random(0)
    tokenizer = train_tokenizer([sample_sentence(rng) for _ in range(200)])
    device = torch.device("cpu")
    model = speed.build(speed.model_config(speed.QUICK, "both", False), tokenizer, device, None)
    batch = speed.make_batches([1.0, 1.6], 2, rng, 48, ("audio", "video"), True)[0]
    model.train()  # frozen encoders stay in eval mode: the fast path's condition
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    counts = speed.count_flops_of(model, lambda b: speed.train_step(model, optimizer, b, device, None), batch)

    video = speed.QUICK["video_encoder"]
    frames = int(batch.media["video"].lengths.sum())
    assert counts["CLIP"] == frames * clip_forward_flops(video["vision_cfg"], video["embed_dim"])
    assert counts["Whisper"] > 0 and counts["LLM and the rest"] > 0
    assert counts["all"] == counts["CLIP"] + counts["Whisper"] + counts["LLM and the rest"]
    assert torch.backends.mha.get_fastpath_enabled()  # given back as found


def test_decode_flop_count_sees_all_of_clip_and_splits_prompt_from_steps():
    """``generate`` calls the encoders from a method, not from the model's forward: FlopCounterMode names them by
    their own class, and they must still be counted as CLIP and Whisper (benchmarks/decode_flops.py)."""
    import decode_flops

    rng = random.Random(0)
    tokenizer = train_tokenizer([sample_sentence(rng) for _ in range(200)])
    model = speed.build(speed.model_config(speed.QUICK, "both", False), tokenizer, torch.device("cpu"), None).eval()
    batches = [speed.make_batch([seconds], rng, 48, ("audio", "video")) for seconds in (1.0, 1.6)]

    with torch.inference_mode():
        gflop = decode_flops.flops_per_utterance(model, batches, new_tokens=4)

    video = speed.QUICK["video_encoder"]
    frames = sum(int(batch.media["video"].lengths.sum()) for batch in batches)
    assert gflop["CLIP"] == frames * clip_forward_flops(video["vision_cfg"], video["embed_dim"]) / 2 / 1e9
    assert gflop["Whisper"] > 0 and gflop["LLM prompt and first token"] > gflop["LLM's 3 further steps"] > 0
    assert abs(gflop["all"] - sum(v for part, v in gflop.items() if part != "all")) < 1e-9 * gflop["all"]
