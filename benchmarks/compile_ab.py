"""``--compile`` against eager training, two models side by side in one process, measured in turns.

    python benchmarks/compile_ab.py        # the reference configuration of speed.py, modality both

Each round times the eager model and the compiled one on the same bucketed batches, from media and from
cached encoder features.
"""

from __future__ import annotations

import speed
import turns

from clipwhisper.model.compiled import compile_llm_layers


def main() -> None:
    args = turns.arguments(__doc__)
    device, base, fast, tokenizer, batches = turns.reference(args.quick)
    models = {name: speed.build(speed.model_config(base, "both", False), tokenizer, device, fast)
              for name in ("eager", "compiled")}
    compile_llm_layers(models["compiled"].llm)
    cached = speed.cached_batches(models["eager"], batches, device, fast)
    turns.in_turns(models, {"media": batches, "cached": cached}, device, fast, args.rounds)


if __name__ == "__main__":
    main()
