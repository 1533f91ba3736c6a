"""The report page: the figures and tables rendered by a Jinja2 template, the utterances as one JSON block that
the page's script filters and pages through (so 300,000 records stay one file that opens from disk)."""

from __future__ import annotations

import base64
import mimetypes
import os
from datetime import datetime, timezone
from pathlib import Path
from urllib.request import pathname2url

import numpy as np

from ..data.utterance import Utterance
from ..inference.plot import snr_order, wer_vs_snr_svg
from ..modality import MODALITIES
from .analysis import (
    alignment_ops,
    bootstrap_wer_interval,
    change_counts,
    frequent_errors,
    modality_changes,
    wer_by_length,
)
from .runs import DecodeRun

EMBED_LIMIT_BYTES = 2 * 1024 * 1024  # --embed-media inlines clips up to this size; bigger ones stay links


def build_context(runs: list[DecodeRun], out: Path, media: dict[str, Utterance], embed: bool, seed: int,
                  version: str) -> dict:
    """What the template shows; ``media`` maps an utterance id to its manifest entry (for links)."""
    ops = [[alignment_ops(r["ref_normalized"], r["hyp_normalized"]) for r in run.records] for run in runs]
    changes = [modality_changes(run.records) for run in runs]
    return {
        "created": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "version": version, "seed": seed,
        "runs": [_run_view(*parts, seed) for parts in zip(runs, ops, changes)],
        "plot": wer_vs_snr_svg({run.label: run.summary for run in runs}) if _has_snrs(runs) else None,
        "data": _utterance_data(runs, ops, changes, out, media, embed),
    }


def _has_snrs(runs: list[DecodeRun]) -> bool:
    return any(len({str(c["snr"]) for c in run.summary["cells"]}) > 1 for run in runs)


def _run_view(run: DecodeRun, ops: list[str], changes: list[dict], seed: int) -> dict:
    by_cell: dict[tuple[str, str], list[int]] = {}
    for index, record in enumerate(run.records):
        by_cell.setdefault((record["modality"], str(record["snr"])), []).append(index)
    cells = []
    for cell in run.summary["cells"]:
        rows = sorted((run.records[i] for i in by_cell.get((cell["modality"], str(cell["snr"])), [])),
                      key=lambda r: r["id"])  # the same records resample the same way, in any file order
        interval = bootstrap_wer_interval(np.array([r["errors"] for r in rows]),
                                          np.array([r["ref_words"] for r in rows]), seed)
        cells.append({**cell, "interval": interval, "by_length": wer_by_length(rows)})
    snrs = [str(snr) for snr in snr_order(run.summary["cells"])]
    errors = {}
    for modality in MODALITIES:
        picked = [i for i, r in enumerate(run.records) if r["modality"] == modality]
        if picked:
            errors[modality] = frequent_errors([run.records[i] for i in picked], [ops[i] for i in picked])
    return {"label": run.label, "folder": str(run.folder), "cells": cells, "errors": errors,
            "changes": change_counts(changes, snrs) if _both_and_audio(run) else None}


def _both_and_audio(run: DecodeRun) -> bool:
    return {"audio", "both"} <= {c["modality"] for c in run.summary["cells"]}


def _utterance_data(runs: list[DecodeRun], ops: list[list[str]], changes: list[list[dict]], out: Path,
                    media: dict[str, Utterance], embed: bool) -> dict:
    """Compact rows for the page's script: utterances once (id, reference, media links), cells once, then one
    row per record: [utterance, cell, hypothesis, alignment letters, errors, reference words, error message],
    and the audio+video against audio changes: [run, utterance, snr, audio errors, both errors, change]."""
    utterances: dict[tuple[str, str], int] = {}
    utterance_rows, cells, records, change_rows = [], {}, [], []
    for run_index, (run, run_ops, run_changes) in enumerate(zip(runs, ops, changes)):
        for record, record_ops in zip(run.records, run_ops):
            key = (record["id"], record["ref_normalized"])
            if key not in utterances:
                utterances[key] = len(utterance_rows)
                utterance_rows.append([record["id"], record["ref_normalized"], *_links(media.get(record["id"]), out,
                                                                                       embed)])
            cell = cells.setdefault((run_index, record["modality"], str(record["snr"])), len(cells))
            records.append([utterances[key], cell, record["hyp_normalized"], record_ops, record["errors"],
                            record["ref_words"], record["error"]])
        ref_of = {r["id"]: utterances[(r["id"], r["ref_normalized"])] for r in run.records}
        change_rows += [[run_index, ref_of[c["id"]], c["snr"], c["audio_errors"], c["both_errors"], c["change"]]
                        for c in run_changes]
    return {"runs": [run.label for run in runs], "cells": [list(key) for key in cells], "utterances": utterance_rows,
            "records": records, "changes": change_rows}


def _links(utterance: Utterance | None, out: Path, embed: bool) -> list[str | None]:
    """The video and the audio of an utterance as the page links them: relative to the report's folder (it
    opens from disk beside the media), or inlined as data URLs with ``embed`` when small enough."""
    if utterance is None:
        return [None, None]
    links = []
    for stream in ("video", "audio"):
        path = utterance.media(stream)
        if path is None or (stream == "audio" and path == utterance.media("video")):
            links.append(None)  # a video with its sound muxed in is linked once
            continue
        if embed and path.is_file() and path.stat().st_size <= EMBED_LIMIT_BYTES:
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            links.append(f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}")
        else:
            links.append(pathname2url(os.path.relpath(path.resolve(), out.resolve().parent)))
    return links


def render(context: dict) -> str:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    environment = Environment(loader=PackageLoader("clipwhisper.report"), autoescape=True, undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)
    environment.filters["percent"] = lambda value: "–" if value is None else f"{100 * value:.2f}"
    return environment.get_template("report.html.j2").render(**context)
