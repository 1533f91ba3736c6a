"""``clipwhisper manifest convert`` and ``check``: the work behind the two commands, and their tables."""

from __future__ import annotations

import os
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from .data.auto_avsr import Units, read_csv, write_csv
from .data.manifest import read_manifest, write_manifest
from .data.manifest_check import check
from .errors import ClipWhisperError, ConfigError
from .runtime.report import console, status


class ManifestProblems(ClipWhisperError):
    """``manifest check`` found problems (listed above the message)."""


def convert(source: Path, target: Path, spm: Path | None, dataset: str) -> int:
    """TSV(+WRD) -> auto_avsr CSV (token ids need auto_avsr's SentencePiece model), or CSV -> TSV+WRD."""
    kinds = (source.suffix.lower(), target.suffix.lower())
    units = Units.beside(spm) if spm else None
    if kinds == (".tsv", ".csv"):
        if units is None:
            raise ConfigError("--spm", ["writing auto_avsr's CSV needs its SentencePiece model for the token ids"])
        utterances = read_manifest(source)
        if any(u.text is None for u in utterances):
            raise ConfigError(str(source), ["no transcripts: a .wrd beside it is needed for the token ids"])
        write_csv(target, utterances, units, dataset)
    elif kinds == (".csv", ".tsv"):
        utterances = read_csv(source, units)
        write_manifest(target, target.parent, utterances, wrd=target.with_suffix(".wrd"))
    else:
        raise ConfigError(f"{source} -> {target}", ["convert .tsv to .csv or .csv to .tsv"])
    return len(utterances)


def run_check(manifest: Path, wrd: Path | None, decode: bool, workers: int) -> None:
    utterances = read_manifest(manifest, wrd)
    report = check(utterances, decode, workers or os.cpu_count() or 1)
    summary = Table(title=escape(str(manifest)), show_header=False)
    rows = {"utterances": f"{report.utterances:,}", "hours": f"{report.seconds / 3600:.2f} ({report.seconds:,.0f} s)",
            "words": f"{report.words:,}", "vocabulary": f"{report.vocabulary:,}",
            "media": "decoded and counted" if decode else "existence only"}
    for label, value in rows.items():
        summary.add_row(label, value)
    console.print(summary)
    console.print(histogram_table(report.histogram))
    for problem in report.problems[:20]:
        status.print(f"[yellow]{escape(problem)}[/yellow]", soft_wrap=True)
    if report.problems:
        more = " (first 20 shown)" if len(report.problems) > 20 else ""
        raise ManifestProblems(f"{manifest}: {len(report.problems)} problems{more}")


def histogram_table(histogram: list[tuple[str, int]], width: int = 40) -> Table:
    table = Table(title="duration")
    table.add_column("duration")
    table.add_column("utterances", justify="right")
    table.add_column("")
    top = max((n for _, n in histogram), default=0) or 1
    for label, count in histogram:
        table.add_row(label, f"{count:,}", "█" * round(width * count / top))
    return table
