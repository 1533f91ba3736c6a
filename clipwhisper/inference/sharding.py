"""Decoding under torchrun: each rank decodes every N-th utterance into its own file; rank 0 merges.

``hyps.rank<R>.jsonl`` is resumable like ``hyps.jsonl``; the merge writes
``hyps.jsonl`` cell by cell (in the order they were first decoded), each in
manifest order, and removes the rank files. A single process, which decodes
the longest utterances first, merges its own file the same way.
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


def merge(output: Path, world: int, utterances: list[Utterance]) -> list[dict]:
    """All ranks' records and an earlier ``hyps.jsonl``'s (every cell it holds) into ``hyps.jsonl``."""
    sources = [output / "hyps.jsonl", *(rank_file(output, rank) for rank in range(world))]
    found = {record_key(r): r for path in sources if path.exists() for r in HypsFile(path).records}
    cells = {cell: index for index, cell in enumerate(dict.fromkeys(key[1:] for key in found))}
    position = {u.id: index for index, u in enumerate(utterances)}
    records = sorted(found.values(), key=lambda r: (cells[record_key(r)[1:]], position.get(r["id"], len(position))))
    tmp = output / f".hyps.jsonl.tmp-{os.getpid()}"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, output / "hyps.jsonl")
    for rank in range(world):
        rank_file(output, rank).unlink(missing_ok=True)
    return records
