"""Frozen encoders replayed as CUDA graphs against the same encoders launched kernel by kernel, in turns.

    python benchmarks/graphs_ab.py                 # the reference configuration of speed.py, modality both
    python benchmarks/graphs_ab.py --profile       # and where a graphed step at 112 px spends its time

Two models in one process with compiled LLM layers, as ``clipwhisper train`` runs them on a GPU: one whose
encoders launch their kernels one by one, one whose encoders replay CUDA graphs (model/graphs.py, the
library's way). Each round times both on the same bucketed batches from media, with CLIP at 112 and at 224 px.
"""

from __future__ import annotations

import functools

import speed
import torch
import turns

from clipwhisper.model.compiled import compile_llm_layers


def without_graphs(model):
    for encoder in (model.audio_encoder, model.video_encoder):
        encoder.graphs.enabled = False
    return model


def largest_difference(models: dict, batch: dict) -> dict[str, float]:
    """Per stream, the largest difference between the two models' encoder features, relative to their scale."""
    out = {}
    with torch.no_grad():
        for stream in ("audio", "video"):
            (a, mask), (b, _) = (model._features(stream, batch) for model in models.values())
            a, b = a[mask].float(), b[mask].float()
            out[stream] = float((a - b).abs().max() / a.abs().max())
    return out


def compare(image: int, args, profile: bool) -> None:
    device, base, fast, tokenizer, batches = turns.reference(args.quick, image)
    models = {name: speed.build(speed.model_config(base, "both", False, image), tokenizer, device, fast)
              for name in ("eager", "graphed")}
    models["graphed"].load_state_dict(models["eager"].state_dict())
    without_graphs(models["eager"])
    for model in models.values():
        compile_llm_layers(model.llm)
    print(f"{image} px: encoder features, graphed against eager, largest relative difference "
          + ", ".join(f"{s} {d:.1e}" for s, d in largest_difference(models, batches[0]).items()))
    turns.in_turns(models, {f"{image}px": batches}, device, fast, args.rounds)
    if profile:
        model = models["graphed"]
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                      fused=device.type == "cuda")
        middle = batches[len(batches) // 2]
        speed.profile(f"graphed training step at {image} px, {len(middle['ids'])} utterances",
                      functools.partial(speed.train_step, model, optimizer, middle, device, fast), device)


def main() -> None:
    parser = turns.parser(__doc__)
    parser.add_argument("--profile", action="store_true", help="profile a graphed training step at half size")
    args = parser.parse_args()
    full = (speed.QUICK if args.quick else speed.REFERENCE)["video_encoder"]["vision_cfg"]["image_size"]
    for image in (full // 2, full):
        compare(image, args, args.profile and image < full)
        speed.free(torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu"))


if __name__ == "__main__":
    main()
