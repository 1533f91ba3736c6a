"""What a model reads: the modality names and the media streams each one takes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Modality = Literal["audio", "video", "both"]
MODALITIES: tuple[Modality, ...] = ("audio", "video", "both")
STREAMS = ("video", "audio")  # in the order concat fusion lays them out: [BOV] video [EOV] [BOA] audio [EOA]


def streams_of(modality: str) -> tuple[str, ...]:
    return STREAMS if modality == "both" else (modality,)


def modality_of(streams: Iterable[str]) -> Modality:
    """The modality that reads exactly ``streams`` (one or both)."""
    present = set(streams)
    if present == set(STREAMS):
        return "both"
    if len(present) != 1 or not present <= set(STREAMS):
        raise ValueError(f"no modality reads the streams {sorted(present)}")
    return present.pop()


def servable(trained: str) -> tuple[Modality, ...]:
    """The modalities a model trained on ``trained`` can decode: a ``both`` model serves each stream alone as
    well (it was trained with modality dropout)."""
    return MODALITIES if trained == "both" else (trained,)
