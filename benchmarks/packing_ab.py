"""Packed rows without an attention mask (what training does) against the masked sequence, in turns.

    python benchmarks/packing_ab.py        # the reference configuration of speed.py, modality both

Two models in one process, both with compiled LLM layers as ``clipwhisper train`` runs them on a GPU: the
library's, which packs each row's attended tokens to its front and runs the LLM with no mask, and one that
hands the LLM the holed sequence with its mask and positions, as training did before. Each round times both
on the same bucketed batches, from media and from cached encoder features.
"""

from __future__ import annotations

import speed
import turns

from clipwhisper.model.compiled import compile_llm_layers


def main() -> None:
    args = turns.arguments(__doc__)
    device, base, fast, tokenizer, batches = turns.reference(args.quick)
    models = {name: speed.build(speed.model_config(base, "both", False), tokenizer, device, fast)
              for name in ("masked", "packed")}
    speed.hand_llm_the_mask(models["masked"])
    for model in models.values():
        compile_llm_layers(model.llm)
    cached = speed.cached_batches(models["packed"], batches, device, fast)
    turns.in_turns(models, {"media": batches, "cached": cached}, device, fast, args.rounds)


if __name__ == "__main__":
    main()
