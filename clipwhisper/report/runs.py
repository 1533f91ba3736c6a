"""Decode folders as the report reads them: ``summary.json`` for the figures, ``hyps.jsonl`` for the rest.

The two must agree (the summary is made from the records); a folder whose decode is still running, or whose
files were edited, is refused rather than shown with figures the page cannot back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..inference.records import read_hyps
from ..inference.summary import COUNTS, summarise


@dataclass
class DecodeRun:
    label: str
    folder: Path
    summary: dict
    records: list[dict]


def load_runs(folders: list[Path]) -> list[DecodeRun]:
    """Each folder's run, labelled by its folder name (with enough of its parents to tell them apart)."""
    labels = _labels([Path(f) for f in folders])
    return [_load(Path(folder), label) for folder, label in zip(folders, labels)]


def _labels(folders: list[Path]) -> list[str]:
    depth = 1
    while True:
        labels = ["/".join(folder.resolve().parts[-depth:]) for folder in folders]
        if len(set(labels)) == len(labels) or depth > max(len(f.resolve().parts) for f in folders):
            return labels
        depth += 1


def _load(folder: Path, label: str) -> DecodeRun:
    summary_path, hyps_path = folder / "summary.json", folder / "hyps.jsonl"
    for path in (summary_path, hyps_path):
        if not path.is_file():
            raise ConfigError(str(path), ["not found: a decode folder holds summary.json and hyps.jsonl"])
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        cells = summary["cells"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(str(summary_path), [f"not a decode summary ({exc})"]) from None
    records, dropped, _ = read_hyps(hyps_path)
    if dropped:
        raise ConfigError(str(hyps_path), [f"{dropped} lines are not whole records (a decode still running or "
                                           "killed): rerun the decode into this folder to finish it"])
    _check_agreement(summary_path, cells, records)
    return DecodeRun(label, folder, summary, records)


def _check_agreement(summary_path: Path, cells: list[dict], records: list[dict]) -> None:
    """The summary's counts are those ``summarise`` makes from the records beside it."""
    totals = {(c["modality"], str(c["snr"])): c for c in summarise(records)["cells"]}
    for cell in cells:
        key = (cell["modality"], str(cell["snr"]))
        if any(totals.get(key, {}).get(name) != cell.get(name) for name in ("utterances", *COUNTS)):
            raise ConfigError(str(summary_path), [f"cell {key[0]} at {key[1]} does not match hyps.jsonl beside it "
                                                  "(a decode still running, or an edited file)"])
    if len(totals) != len(cells):
        raise ConfigError(str(summary_path), ["hyps.jsonl has cells the summary lacks (a decode still running)"])
