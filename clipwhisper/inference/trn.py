"""Scores in NIST SCTK's formats, as ESPnet and NeMo users compare systems: per (modality, SNR) cell a
reference and a hypothesis ``trn`` file (``text (utterance-id)`` per line, the normalised texts our WER
scores, so ``sclite -r REF trn -h HYP trn -i wsj`` gives the same counts), and ``scores.txt``, a table in
sclite's summary layout (percentages of the reference words; S.Err the share of utterances with an error).
"""

from __future__ import annotations

from pathlib import Path


def cell_stem(modality: str, snr) -> str:
    return f"{modality}_{'clean' if snr == 'clean' else f'{float(snr):g}dB'}"


def _cells(records: list[dict]) -> dict[str, list[dict]]:
    cells: dict[str, list[dict]] = {}
    for record in records:
        cells.setdefault(cell_stem(record["modality"], record["snr"]), []).append(record)
    return cells


def write_trn(output: Path, records: list[dict], summary: dict) -> None:
    """``trn/<cell>.ref.trn`` and ``trn/<cell>.hyp.trn`` for every cell, and ``scores.txt`` from ``summary``
    (what ``summary.summarise`` made of the same records)."""
    folder = output / "trn"
    folder.mkdir(exist_ok=True)
    cells = _cells(records)
    for stem, rows in cells.items():
        for side in ("ref", "hyp"):
            text = "".join(f"{r[f'{side}_normalized']} ({r['id']})\n" for r in rows)
            (folder / f"{stem}.{side}.trn").write_text(text, encoding="utf-8")
    wrong = {stem: sum(r["errors"] > 0 for r in rows) for stem, rows in cells.items()}
    (output / "scores.txt").write_text(sclite_table(summary["cells"], wrong), encoding="utf-8")


def sclite_table(cells: list[dict], wrong: dict[str, int]) -> str:
    """The summary's cells in sclite's layout; ``wrong``: per cell, the utterances with an error."""
    lines = ["| cell             | # Snt  # Wrd | Corr    Sub    Del    Ins    Err  S.Err |"]
    for cell in cells:
        stem, words = cell_stem(cell["modality"], cell["snr"]), cell["ref_words"]
        shares = [100 * count / max(words, 1) for count in (
            words - cell["substitutions"] - cell["deletions"], cell["substitutions"], cell["deletions"],
            cell["insertions"], cell["errors"])]
        shares.append(100 * wrong[stem] / cell["utterances"])
        lines.append(f"| {stem:16s} | {cell['utterances']:5d} {words:6d} | "
                     + "  ".join(f"{v:5.1f}" for v in shares) + " |")
    return "\n".join(lines) + "\n"
