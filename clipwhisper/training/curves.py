"""Training curves from a run's ``train_log.jsonl``: PNG plots, and sparklines for the terminal."""

from __future__ import annotations

import json
import os
from pathlib import Path

PLOTS = {"loss.png": ("train loss", "valid loss"), "valid_wer.png": ("valid WER (%)",)}
BARS = "▁▂▃▄▅▆▇█"


def read_curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    """``{name: [(step, value), ...]}`` for train loss, valid loss and valid WER (in %)."""
    curves: dict[str, list[tuple[int, float]]] = {"train loss": [], "valid loss": [], "valid WER (%)": []}
    log = Path(run) / "train_log.jsonl"
    if not log.is_file():
        return curves
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed run
        if record.get("event") == "train":
            curves["train loss"].append((record["step"], record["loss"]))
        elif record.get("event") == "eval":
            curves["valid loss"].append((record["step"], record["valid_loss"]))
            curves["valid WER (%)"].append((record["step"], 100 * record["valid_wer"]))
    return curves


def write_plots(run: Path) -> list[Path]:
    """``loss.png`` and ``valid_wer.png`` in the run folder, each replaced whole (written, then renamed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = read_curves(run)
    written = []
    for name, series in PLOTS.items():
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
        for label in series:
            points = curves[label]
            ax.plot([s for s, _ in points], [v for _, v in points], marker="o" if len(points) < 30 else None,
                    markersize=3, label=label)
        ax.set_xlabel("step")
        ax.set_ylabel("WER (%)" if name == "valid_wer.png" else "loss")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = Path(run) / name
        tmp = path.with_name(f".{name}.tmp-{os.getpid()}")
        fig.savefig(tmp, format="png")
        plt.close(fig)
        os.replace(tmp, path)
        written.append(path)
    return written


def sparkline(values: list[float], width: int = 40) -> str:
    """``values`` as bars, averaged into at most ``width`` buckets."""
    if not values:
        return ""
    buckets = min(width, len(values))
    means = [sum(chunk) / len(chunk) for i in range(buckets)
             if (chunk := values[i * len(values) // buckets:(i + 1) * len(values) // buckets])]
    low, high = min(means), max(means)
    scale = (len(BARS) - 1) / (high - low) if high > low else 0
    return "".join(BARS[round((m - low) * scale)] for m in means)
