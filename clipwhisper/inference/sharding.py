"""Decoding under torchrun: each rank decodes every N-th utterance into its own file; rank 0 merges.

``hyps.rank<R>.jsonl`` is resumable like ``hyps.jsonl``; the merge writes
``hyps.jsonl`` in manifest order (cells in ``--snr-db`` order), exactly as a
single process would, and removes the rank files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..data.utterance import Utterance
from .records import HypsFile, record_key


def rank_file(output: Path, rank: int) -> Path:
    return output / f"hyps.rank{rank}.jsonl"


def rank_hyps(output: Path, rank: int) -> HypsFile:
    """This rank's file, counting as done what an earlier merged ``hyps.jsonl`` already holds."""
    hyps = HypsFile(rank_file(output, rank))
    if (output / "hyps.jsonl").exists():
        hyps.done |= HypsFile(output / "hyps.jsonl").done
    return hyps


def merge(output: Path, world: int, utterances: list[Utterance], modality: str, cells: list) -> list[dict]:
    """All ranks' records (and an earlier ``hyps.jsonl``'s) into ``hyps.jsonl``, in single-process order."""
    sources = [output / "hyps.jsonl", *(rank_file(output, rank) for rank in range(world))]
    found = {record_key(r): r for path in sources if path.exists() for r in HypsFile(path).records}
    order = [(u.id, modality, str(snr)) for snr in cells for u in utterances]
    records = [found[key] for key in order if key in found]
    tmp = output / f".hyps.jsonl.tmp-{os.getpid()}"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, output / "hyps.jsonl")
    for rank in range(world):
        rank_file(output, rank).unlink(missing_ok=True)
    return records
