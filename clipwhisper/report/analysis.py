"""What the report computes from the records: confidence intervals, the audio+video against audio comparison,
word alignments, the most frequent errors and WER by utterance length.

Everything is computed on the normalised texts the WER was scored on (``ref_normalized``, ``hyp_normalized``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

# jiwer's alignment chunks, one letter per word: equal, substitution, deletion, insertion
OP_LETTERS = {"equal": "=", "substitute": "S", "delete": "D", "insert": "I"}
LENGTH_BINS = ((1, 5), (6, 10), (11, 20), (21, 40), (41, None))


def bootstrap_wer_interval(errors: np.ndarray, ref_words: np.ndarray, seed: int = 0, resamples: int = 1000,
                           level: float = 0.95) -> tuple[float, float] | None:
    """A percentile bootstrap interval of the WER (total errors / total reference words) over utterances,
    resampled with replacement; None for an empty cell."""
    count = len(errors)
    if count == 0 or ref_words.sum() == 0:
        return None
    rng = np.random.default_rng(seed)
    rates = []
    for start in range(0, resamples, 100):  # 100 resamples at a time: 20,000 utterances stay in memory
        picks = rng.integers(0, count, size=(min(100, resamples - start), count))
        words = ref_words[picks].sum(axis=1)
        rates.append(errors[picks].sum(axis=1) / np.maximum(words, 1))
    low, high = np.quantile(np.concatenate(rates), [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def alignment_ops(reference: str, hypothesis: str) -> str:
    """One letter per aligned word (``=`` ``S`` ``D`` ``I``), from jiwer's alignment; the words themselves come
    from splitting the two texts, in order."""
    import jiwer

    ref_words, hyp_words = reference.split(), hypothesis.split()
    if not ref_words or not hyp_words:  # jiwer refuses empty strings
        return "D" * len(ref_words) + "I" * len(hyp_words)
    chunks = jiwer.process_words(reference, hypothesis).alignments[0]
    return "".join(OP_LETTERS[c.type] * max(c.ref_end_idx - c.ref_start_idx, c.hyp_end_idx - c.hyp_start_idx)
                   for c in chunks)


def aligned_pairs(reference: str, hypothesis: str, ops: str) -> Iterable[tuple[str, str | None, str | None]]:
    """``(op, ref_word, hyp_word)`` per aligned position (None where a side has no word)."""
    ref_words, hyp_words = iter(reference.split()), iter(hypothesis.split())
    for op in ops:
        ref = next(ref_words) if op in "=SD" else None
        hyp = next(hyp_words) if op in "=SI" else None
        yield op, ref, hyp


def frequent_errors(records: list[dict], ops: list[str], top: int = 15) -> dict[str, list[tuple[str, int]]]:
    """The most frequent substitutions (``ref → hyp``), deletions and insertions over ``records``."""
    counts = {"substitutions": Counter(), "deletions": Counter(), "insertions": Counter()}
    for record, record_ops in zip(records, ops):
        for op, ref, hyp in aligned_pairs(record["ref_normalized"], record["hyp_normalized"], record_ops):
            if op == "S":
                counts["substitutions"][f"{ref} → {hyp}"] += 1
            elif op == "D":
                counts["deletions"][ref] += 1
            elif op == "I":
                counts["insertions"][hyp] += 1
    return {kind: counter.most_common(top) for kind, counter in counts.items()}


def length_bin(words: int) -> str | None:
    for low, high in LENGTH_BINS:
        if words >= low and (high is None or words <= high):
            return f"{low}–{high}" if high else f"{low}+"
    return None  # an empty reference


def wer_by_length(records: list[dict]) -> dict[str, dict]:
    """Per reference-length bin (in words): utterances, WER."""
    bins: dict[str, dict] = {}
    for record in records:
        name = length_bin(record["ref_words"])
        if name is None:
            continue
        cell = bins.setdefault(name, {"utterances": 0, "errors": 0, "ref_words": 0})
        cell["utterances"] += 1
        cell["errors"] += record["errors"]
        cell["ref_words"] += record["ref_words"]
    order = [length_bin(low) for low, _ in LENGTH_BINS]
    return {name: {**bins[name], "wer": bins[name]["errors"] / bins[name]["ref_words"]}
            for name in order if name in bins}


def modality_changes(records: list[dict]) -> list[dict]:
    """Utterances decoded both with audio alone and with audio+video at the same SNR whose word errors differ:
    ``audio_errors``, ``both_errors`` and ``change`` (negative: the video fixed errors)."""
    audio = {(r["id"], str(r["snr"])): r for r in records if r["modality"] == "audio"}
    changes = []
    for record in records:
        alone = audio.get((record["id"], str(record["snr"])))
        if record["modality"] != "both" or alone is None or alone["errors"] == record["errors"]:
            continue
        changes.append({"id": record["id"], "snr": str(record["snr"]), "audio_errors": alone["errors"],
                        "both_errors": record["errors"], "change": record["errors"] - alone["errors"]})
    return changes


def change_counts(changes: list[dict], snrs: list[str]) -> list[dict]:
    """Per SNR: how many utterances audio+video fixed (fewer errors than audio alone) and broke (more)."""
    return [{"snr": snr, "fixed": sum(1 for c in changes if c["snr"] == snr and c["change"] < 0),
             "broken": sum(1 for c in changes if c["snr"] == snr and c["change"] > 0)} for snr in snrs]
