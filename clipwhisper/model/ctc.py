"""An auxiliary CTC loss on a stream's tokens or frames (hybrid CTC/attention, as auto_avsr and ESPnet train).

The cross-entropy reaches an encoder only through the LLM: while the LLM still ignores a stream whose
features say little (a randomly initialised lip encoder), that stream's encoder gets no useful gradient and
the LLM learns to do without it. CTC scores the stream's own tokens against the transcript, so the encoder
learns from the first step. The output layer is the LLM's input embedding table, where the tokens already
live. Where that table trains with the LLM (a full fine-tune), CTC must not move it: the lip encoder's loss
would pull the LLM's word embeddings towards what the lips can tell apart, and the audio branch, which reads
them, learns slower (the demo: clean audio 17.2% valid WER through the shared table, 9.4% through a copy,
and video 39.2% against 37.0%). So the connector then owns a copy of the table as its CTC output layer
(``Connector.ctc_head``), made when the model is built; a frozen or LoRA-adapted table is used as it is.

With ``ctc_units: characters`` CTC scores each encoder frame, before the connector stacks frames into tokens,
over characters through a small head of the connector's own (``Connector.character_head``), as LipNet reads
lips. Words share characters where they share no token, so a word seen rarely in training still teaches
the encoder through the others: on the demo, the lips' test WER fell from 35.7% to 15.8% (docs/demo.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The character set of ``ctc_units: characters``; the blank is index 0, so character i is label i + 1.
# Anything else in a transcript (spaces, punctuation, letters outside it) is not a label.
CHARACTERS = "abcdefghijklmnopqrstuvwxyz0123456789'"
CHARACTER_BLANK = 0
_LABEL = {character: index + 1 for index, character in enumerate(CHARACTERS)}


def character_targets(texts: list[str]) -> list[list[int]]:
    """Each transcript's characters as CTC labels, lower-cased, without spaces (lips show no word breaks)."""
    return [[_LABEL[c] for c in text.lower() if c in _LABEL] for text in texts]


def ctc_loss(logits: torch.Tensor, mask: torch.Tensor, targets: list[list[int]], blank: int) -> torch.Tensor:
    """Summed CTC loss of the rows that have positions. ``logits (B, T, V)`` with ``mask (B, T)`` (real
    positions first), ``targets`` label ids per row; ``blank`` must be an id no target contains."""
    lengths = mask.sum(1).cpu()  # F.ctc_loss wants them on the host; called after the LLM's forward is queued
    rows = (lengths > 0).nonzero().flatten().tolist()
    if not rows:  # zero, but keeps the stream and its head in the graph (DDP needs every parameter every step)
        return logits.sum() * 0
    log_probs = logits[rows].float().log_softmax(-1).transpose(0, 1)  # (T, B, V), as F.ctc_loss takes them
    wanted = [targets[row] for row in rows]
    flat = torch.tensor([label for target in wanted for label in target], dtype=torch.long, device=log_probs.device)
    # zero_infinity: a row with fewer positions than its transcript needs has no alignment; it adds 0, not inf
    return F.ctc_loss(log_probs, flat, lengths[rows], torch.tensor([len(t) for t in wanted]), blank=blank,
                      reduction="sum", zero_infinity=True)
