"""Validation: loss and greedy-decoding WER and CER on the valid split."""

from __future__ import annotations

import torch

from ..data.metrics import char_errors, error_rate, normalizer, word_errors


@torch.no_grad()
def evaluate(model, loader, device_type: str, autocast_dtype) -> dict:
    """Mean valid loss, greedy WER and CER; generation may run 8 tokens past the longest reference, with the
    dynamic KV cache (a training model's shapes change every evaluation: nothing to compile for)."""
    was_training = model.training
    model.eval()
    normalise = normalizer("whisper")
    losses, counts, chars = [], [], []
    for batch in loader:
        if not batch.ids:
            continue
        with torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            losses.append(float(model(batch)))
            longest = max(len(ids) for ids in model.target_ids(batch.texts))
            hypotheses = model.generate(batch, max_new_tokens=longest + 8, static=False)
        pairs = [(normalise(ref), normalise(hyp)) for ref, hyp in zip(batch.texts, hypotheses)]
        counts += [word_errors(ref, hyp) for ref, hyp in pairs]
        chars += [char_errors(ref, hyp) for ref, hyp in pairs]
    model.train(was_training)
    return {"valid_loss": sum(losses) / max(1, len(losses)), "valid_wer": error_rate(counts),
            "valid_cer": error_rate(chars), "valid_utterances": len(counts)}
