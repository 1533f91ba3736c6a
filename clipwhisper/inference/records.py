"""``hyps.jsonl``: one record per (utterance, modality, SNR), appended as decoding goes.

A rerun reads what is there, drops a last line cut short by a crash, and skips
the keys already done, so the file ends up as one uninterrupted run would write it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..data.metrics import char_errors, normalizer, word_errors
from ..runtime.jsonl import json_object


def record_key(record: dict) -> tuple[str, str, str]:
    return record["id"], record["modality"], str(record["snr"])


def make_record(uid: str, modality: str, snr, ref: str, hyp: str, normalise_name: str,
                error: str | None = None, timing: tuple[float, float] | None = None) -> dict:
    """The record of one decoded utterance; ``timing`` is its media's seconds and its share of the wall
    seconds its batch took (from which the summary's real-time factor comes)."""
    normalise = normalizer(normalise_name)
    ref_norm, hyp_norm = normalise(ref), normalise(hyp)
    words, chars = word_errors(ref_norm, hyp_norm), char_errors(ref_norm, hyp_norm)
    return {
        "id": uid, "modality": modality, "snr": snr, "ref": ref, "hyp": hyp,
        "ref_normalized": ref_norm, "hyp_normalized": hyp_norm,
        "substitutions": words.substitutions, "deletions": words.deletions, "insertions": words.insertions,
        "errors": words.errors, "ref_words": words.reference_length,
        "char_errors": chars.errors, "ref_chars": chars.reference_length,
        "error": error,
        **({"media_s": round(timing[0], 3), "decode_s": timing[1]} if timing else {}),
    }


def _record(line: bytes) -> dict | None:
    """A line's record, or None if it is not one of ours (torn, not JSON, or missing the record's keys)."""
    record = json_object(line)
    if record is None or not {"id", "modality", "snr", "errors", "ref_words"} <= record.keys():
        return None
    return record


def read_hyps(path: Path) -> tuple[list[dict], int, bool]:
    """A hyps file's whole records (each key once), how many lines were dropped (torn, foreign or repeated),
    and whether the file is exactly those records, as written; the file is not changed."""
    lines = Path(path).read_bytes().split(b"\n")
    records, seen = [], set()
    for line in lines[:-1]:  # the last element is b"" when the file ends with a newline, else a torn tail
        record = _record(line)
        if record is not None and record_key(record) not in seen:
            seen.add(record_key(record))
            records.append(record)
    dropped = sum(1 for line in lines if line.strip()) - len(records)
    return records, dropped, not lines[-1] and len(records) == len(lines) - 1


class HypsFile:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: list[dict] = []
        self.done: set[tuple[str, str, str]] = set()
        self.dropped = 0
        if self.path.exists():
            self._recover()

    def _recover(self) -> None:
        """Keep every whole record once; a torn line (a crash mid-write) or a foreign one is dropped, counted in
        ``self.dropped``, and its utterance decoded again."""
        self.records, self.dropped, whole = read_hyps(self.path)
        self.done = {record_key(r) for r in self.records}
        if not whole:  # torn tail, duplicates or foreign lines: rewrite
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records), encoding="utf-8")

    def append(self, records: list[dict]) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            out.write("".join(json.dumps(r) + "\n" for r in records))
            out.flush()
            os.fsync(out.fileno())
        for record in records:
            self.done.add(record_key(record))
        self.records.extend(records)
