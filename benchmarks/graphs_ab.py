"""CUDA graphs (the frozen encoders' forwards, the LoRA LLM's forward and backward) against the same model
launching kernel by kernel, in turns.

    python benchmarks/graphs_ab.py                 # the reference configuration of speed.py, modality both
    python benchmarks/graphs_ab.py --profile       # and where a graphed step at 112 px spends its time

One model with compiled LLM layers, as ``clipwhisper train`` runs it on a GPU, timed with its graphs
(model/graphs.py) switched off and on in turns, on the same bucketed batches: from media with CLIP at 112
and at 224 px, and at 224 px from the feature cache (encoder outputs, as epochs after the first). The
weights and the compiled code are the same on both sides.
"""

from __future__ import annotations

import functools

import speed
import torch
import turns

from clipwhisper.model.compiled import compile_llm_layers


def largest_difference(model, batch: dict) -> dict[str, float]:
    """Per stream, the largest difference between graphed and eager encoder features, relative to their scale."""
    out = {}
    with torch.no_grad():
        for stream in ("audio", "video"):
            with speed.graphs_off(model):
                eager, mask = model._features(stream, batch)
            graphed, _ = model._features(stream, batch)
            eager, graphed = eager[mask].float(), graphed[mask].float()
            out[stream] = float((eager - graphed).abs().max() / eager.abs().max())
    return out


def compare(image: int, args, profile: bool, cached: bool) -> None:
    device, base, fast, tokenizer, batches = turns.reference(args.quick, image)
    model = speed.build(speed.model_config(base, "both", False, image), tokenizer, device, fast)
    compile_llm_layers(model.llm)
    print(f"{image} px: encoder features, graphed against eager, largest relative difference "
          + ", ".join(f"{s} {d:.1e}" for s, d in largest_difference(model, batches[0]).items()))
    datasets = {f"{image}px": batches}
    if cached:
        datasets["cached"] = speed.cached_batches(model, batches, device, fast)
    turns.in_turns({"eager": model, "graphed": model}, datasets, device, fast, args.rounds,
                   select=lambda name: model.use_cuda_graphs(name == "graphed"))
    if profile:
        model.use_cuda_graphs(True)
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
        compare(image, args, args.profile and image < full, cached=image == full)
        speed.free(torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu"))


if __name__ == "__main__":
    main()
