"""Which modalities a checkpoint can serve."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from ..modality import servable


def check_modality(requested: str | None, trained: str, checkpoint) -> str:
    modality = requested or trained
    if modality not in servable(trained):
        raise ConfigError(str(checkpoint), [f"trained for modality '{trained}', cannot serve '{modality}'"])
    return modality


def check_modalities(requested: Sequence[str] | None, trained: str, checkpoint) -> list[str]:
    """The modalities a decode asked for, each once, in the order given: by default the checkpoint's own;
    ``all``: every one it serves."""
    names = [name for wanted in (requested or [trained])
             for name in (servable(trained) if wanted == "all" else [wanted])]
    return [check_modality(name, trained, checkpoint) for name in dict.fromkeys(names)]
