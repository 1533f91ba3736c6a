"""WER against SNR, one line per modality (and decode folder): what ``decode`` draws beside ``summary.json``
when it ran more than one SNR, the demo's figure and the report's."""

from __future__ import annotations

import io
from pathlib import Path

from ..modality import MODALITIES


def snr_order(cells: list[dict]) -> list:
    """The SNRs of ``cells`` as the x axis reads: clean first, then from the highest SNR down."""
    snrs = {cell["snr"] if cell["snr"] == "clean" else float(cell["snr"]) for cell in cells}
    return sorted(snrs, key=lambda snr: float("-inf") if snr == "clean" else -snr)


def plot_wer_vs_snr(summary: dict, path: Path, title: str = "WER against babble SNR") -> None:
    """Written whole to ``path`` (a PNG)."""
    figure = _figure({"": summary}, title)
    figure.savefig(path)
    _close(figure)


def wer_vs_snr_svg(summaries: dict[str, dict], title: str = "WER against babble SNR") -> str:
    """The plot of several decodes (``{label: summary}``, a line per label and modality) as an SVG element."""
    figure = _figure(summaries, title)
    out = io.StringIO()
    figure.savefig(out, format="svg")
    _close(figure)
    text = out.getvalue()
    return text[text.index("<svg"):]


def _figure(summaries: dict[str, dict], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = snr_order([cell for summary in summaries.values() for cell in summary["cells"]])
    position = {snr: index for index, snr in enumerate(order)}

    def x_of(cell) -> int:
        return position[cell["snr"] if cell["snr"] == "clean" else float(cell["snr"])]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, summary in summaries.items():
        for modality in MODALITIES:
            cells = sorted((c for c in summary["cells"] if c["modality"] == modality), key=x_of)
            if cells:
                ax.plot([x_of(c) for c in cells], [100 * c["wer"] for c in cells], marker="o",
                        label=f"{label} {modality}" if label else modality)
    ax.set_xticks(range(len(order)), ["clean" if snr == "clean" else f"{snr:g}" for snr in order])
    ax.set_xlabel("babble SNR (dB)")
    ax.set_ylabel("WER (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def _close(figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)
