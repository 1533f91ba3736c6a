"""WER and CER per (modality, SNR) cell, from hyps.jsonl records."""

from __future__ import annotations

from rich.table import Table


def _snr_value(snr) -> float:
    return float("inf") if snr == "clean" else float(snr)


def summarise(records: list[dict]) -> dict:
    cells: dict[tuple[str, str], dict] = {}
    for record in records:
        cell = cells.setdefault((record["modality"], str(record["snr"])), {
            "modality": record["modality"], "snr": record["snr"], "utterances": 0, "errors": 0, "ref_words": 0,
            "char_errors": 0, "ref_chars": 0, "substitutions": 0, "deletions": 0, "insertions": 0, "failed": [],
        })
        cell["utterances"] += 1
        for key in ("errors", "ref_words", "char_errors", "ref_chars", "substitutions", "deletions", "insertions"):
            cell[key] += record[key]
        if record["error"]:
            cell["failed"].append({"id": record["id"], "error": record["error"]})
    ordered = sorted(cells.values(), key=lambda c: (c["modality"], -_snr_value(c["snr"])))  # clean first
    for cell in ordered:
        cell["wer"] = cell["errors"] / cell["ref_words"] if cell["ref_words"] else 0.0
        cell["cer"] = cell["char_errors"] / cell["ref_chars"] if cell["ref_chars"] else 0.0
    return {"cells": ordered, "failed_utterances": sum(len(c["failed"]) for c in ordered)}


def summary_table(summary: dict, title: str = "Word error rate") -> Table:
    table = Table(title=title)
    for column in ("modality", "SNR (dB)", "WER", "CER", "utterances", "failed"):
        table.add_column(column, justify="left" if column == "modality" else "right")
    for cell in summary["cells"]:
        table.add_row(cell["modality"], str(cell["snr"]), f"{100 * cell['wer']:.2f}%", f"{100 * cell['cer']:.2f}%",
                      str(cell["utterances"]), str(len(cell["failed"])))
    return table
