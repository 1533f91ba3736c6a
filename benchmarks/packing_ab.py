"""Packed rows without an attention mask (what training does) against the masked sequence, in turns.

    python benchmarks/packing_ab.py        # the reference configuration of speed.py, modality both

Two models in one process, both with compiled LLM layers as ``clipwhisper train`` runs them on a GPU: the
library's, which packs each row's attended tokens to its front and runs the LLM with no mask, and one that
hands the LLM the holed sequence with its mask and positions, as training did before. Each round times both
on the same bucketed batches, from media and from cached encoder features.
"""

from __future__ import annotations

import types

import speed
import torch
import turns

from clipwhisper.model.compiled import compile_llm_layers


def masked_hidden(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The LLM over the holed sequence with its mask, then the hidden states put in packed order."""
    positions = (mask.long().cumsum(-1) - 1).masked_fill(~mask, 0)
    hidden = self.llm.get_decoder()(inputs_embeds=embeds, attention_mask=mask.long(), position_ids=positions,
                                    use_cache=False).last_hidden_state
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices
    return hidden.gather(1, order[..., None].expand(-1, -1, hidden.shape[-1]))


def main() -> None:
    args = turns.arguments(__doc__)
    device, base, fast, tokenizer, batches = turns.reference(args.quick)
    models = {name: speed.build(speed.model_config(base, "both", False), tokenizer, device, fast)
              for name in ("masked", "packed")}
    models["masked"]._llm_hidden = types.MethodType(masked_hidden, models["masked"])
    for model in models.values():
        compile_llm_layers(model.llm)
    cached = speed.cached_batches(models["packed"], batches, device, fast)
    turns.in_turns(models, {"media": batches, "cached": cached}, device, fast, args.rounds)


if __name__ == "__main__":
    main()
