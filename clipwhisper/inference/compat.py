"""Which modalities a checkpoint can serve."""

from __future__ import annotations

from ..errors import ConfigError
from ..modality import servable


def check_modality(requested: str | None, trained: str, checkpoint) -> str:
    modality = requested or trained
    if modality not in servable(trained):
        raise ConfigError(str(checkpoint), [f"trained for modality '{trained}', cannot serve '{modality}'"])
    return modality
