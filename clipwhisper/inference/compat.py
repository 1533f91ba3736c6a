"""Which modalities a checkpoint can serve."""

from __future__ import annotations

from ..errors import ConfigError


def servable(trained: str) -> tuple[str, ...]:
    """A ``both`` model serves each stream alone as well (it was trained with modality dropout)."""
    return ("audio", "video", "both") if trained == "both" else (trained,)


def check_modality(requested: str | None, trained: str, checkpoint) -> str:
    modality = requested or trained
    if modality not in servable(trained):
        raise ConfigError(str(checkpoint), [f"trained for modality '{trained}', cannot serve '{modality}'"])
    return modality
