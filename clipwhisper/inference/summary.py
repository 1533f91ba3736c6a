"""WER and CER per (modality, SNR) cell, from hyps.jsonl records, with the decoding speed where recorded."""

from __future__ import annotations

from rich.table import Table

COUNTS = ("errors", "ref_words", "char_errors", "ref_chars", "substitutions", "deletions", "insertions")


def _snr_value(snr) -> float:
    return float("inf") if snr == "clean" else float(snr)


def summarise(records: list[dict]) -> dict:
    cells: dict[tuple[str, str], dict] = {}
    for record in records:
        cell = cells.setdefault((record["modality"], str(record["snr"])), {
            "modality": record["modality"], "snr": record["snr"], "utterances": 0, **dict.fromkeys(COUNTS, 0),
            "failed": [], "media_s": 0.0, "decode_s": 0.0, "timed": 0,
        })
        cell["utterances"] += 1
        for key in COUNTS:
            cell[key] += record[key]
        if record["error"]:
            cell["failed"].append({"id": record["id"], "error": record["error"]})
        if "decode_s" in record:  # records written before decoding was timed have no speed
            cell["media_s"] += record["media_s"]
            cell["decode_s"] += record["decode_s"]
            cell["timed"] += 1
    ordered = sorted(cells.values(), key=lambda c: (c["modality"], -_snr_value(c["snr"])))  # clean first
    for cell in ordered:
        cell["wer"] = cell["errors"] / cell["ref_words"] if cell["ref_words"] else 0.0
        cell["cer"] = cell["char_errors"] / cell["ref_chars"] if cell["ref_chars"] else 0.0
        _speed(cell)
    return {"cells": ordered, "failed_utterances": sum(len(c["failed"]) for c in ordered)}


def _speed(cell: dict) -> None:
    """The real-time factor (media seconds per wall second: RTFx, as the Open ASR Leaderboard reports it) and
    utterances per second, where every record was timed. Under torchrun the wall seconds add up over the
    ranks, so both are per process."""
    timed = cell.pop("timed") == cell["utterances"] and cell["decode_s"] > 0
    cell["rtfx"] = cell["media_s"] / cell["decode_s"] if timed else None
    cell["utterances_per_s"] = cell["utterances"] / cell["decode_s"] if timed else None


def summary_table(summary: dict, title: str = "Word error rate") -> Table:
    table = Table(title=title)
    for column in ("modality", "SNR (dB)", "WER", "CER", "utterances", "failed", "RTFx", "utt/s"):
        table.add_column(column, justify="left" if column == "modality" else "right")
    for cell in summary["cells"]:
        table.add_row(cell["modality"], str(cell["snr"]), f"{100 * cell['wer']:.2f}%", f"{100 * cell['cer']:.2f}%",
                      str(cell["utterances"]), str(len(cell["failed"])), _rate(cell.get("rtfx")),
                      _rate(cell.get("utterances_per_s")))
    return table


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
