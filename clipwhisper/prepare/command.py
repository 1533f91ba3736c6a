"""The ``prepare`` command's run: progress bar, manifest, summary of failures, exit code."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import ClipWhisperError
from ..runtime.folder_claim import output_folder
from ..runtime.report import console, status
from .inputs import find_videos, read_transcripts
from .run import Options, gap_manifest, lost_text, prepare, write_split


class PrepareFailed(ClipWhisperError):
    """Some videos could not be prepared (the others are in the manifest)."""


def run_prepare(inputs: list[Path], out: Path, transcripts: Path | None, options: Options, split: str,
                workers: int) -> Path:
    videos = find_videos(inputs, out)
    texts = read_transcripts(transcripts) if transcripts else None
    with output_folder(options.out, {"written_by": "prepare", **options.identity()},
                       ours=("prepare_failures.jsonl",)):  # a folder an older clipwhisper prepared
        return _run(videos, options, transcripts, texts, split, workers)


def _run(videos: dict[str, Path], options: Options, transcripts: Path | None, texts: dict[str, str] | None,
         split: str, workers: int) -> Path:
    columns = (TextColumn("preparing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=status, transient=True) as bar:
        task = bar.add_task("prepare", total=len(videos))
        outcome = prepare(videos, options, workers or os.cpu_count() or 1, lambda: bar.advance(task))
    missing = write_split(options.out, split, outcome, videos, texts)
    failures = {**outcome.failures, **{uid: f"{videos[uid]}: no transcript in {transcripts}" for uid in missing}}
    records = [record for uid, record in outcome.prepared.items() if uid not in missing]
    crops = [crop for record in records for crop in record["crops"]]
    gapped = {crop["id"]: crop["lost_frames"] for crop in crops if crop["lost_frames"]}
    faces = sum(record["faces"] for record in outcome.prepared.values())
    interpolated = sum(crop["interpolated"] for crop in crops)
    _summary(options, split, (len(videos), faces, len(crops) - len(gapped), len(gapped), outcome.skipped,
                              interpolated), failures)
    _report_gaps(options.out / f"{gap_manifest(split)}.tsv", gapped)
    if failures:
        raise PrepareFailed(f"{len(failures)} of {len(videos)} videos not in the manifest; listed in "
                            f"{options.out / 'prepare_failures.jsonl'}")
    return options.out / f"{split}.tsv"


def _summary(options: Options, split: str, counts: tuple[int, ...], failures: dict[str, str]) -> None:
    """``counts``: videos, faces found in those prepared, crops in the manifest, crops in the gaps manifest,
    videos done before, frames without a face found (interpolated)."""
    size = f"{options.centre} px centre of {options.size}" if options.centre else f"{options.size} px"
    table = Table(title=escape(f"prepare → {options.out / split}.tsv ({options.crop} crops, {size}, "
                               f"{options.cropping.detector})"))
    for column in ("videos", "faces found", "in the manifest", "face lost > 1 s", "done before", "frames interpolated",
                   "failed"):
        table.add_column(column, justify="right")
    table.add_row(*map(str, counts), str(len(failures)))
    console.print(table)
    if options.preview:
        console.print(f"contact sheets: {escape(str(options.out / 'preview'))}/<id>.png")
    path = options.out / "prepare_failures.jsonl"
    path.write_text("".join(json.dumps({"id": uid, "error": error}) + "\n" for uid, error in failures.items()),
                    encoding="utf-8")
    for uid, error in failures.items():
        status.print(f"[yellow]{escape(uid)}: {escape(error)}[/yellow]", soft_wrap=True)


def _report_gaps(manifest: Path, gapped: dict[str, list[list[int]]]) -> None:
    """One line per crop whose face was lost too long to interpolate: where, and the manifest that holds it."""
    for name, lost in gapped.items():
        status.print(f"[yellow]{escape(name)}: {lost_text(lost)}: those crops are black; listed in "
                     f"{escape(str(manifest))}, not in the manifest[/yellow]", soft_wrap=True)
