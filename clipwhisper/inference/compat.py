"""Which modalities a checkpoint can serve."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from ..modality import servable


def check_modalities(requested: Sequence[str] | None, trained: str, checkpoint) -> list[str]:
    """The modalities a decode asked for, each once, in the order given: by default the checkpoint's own;
    ``all``: every one it serves. One it cannot serve is a ConfigError (exit 2)."""
    served = servable(trained)
    names = [name for wanted in (requested or [trained]) for name in (served if wanted == "all" else [wanted])]
    for name in names:
        if name not in served:
            raise ConfigError(str(checkpoint), [f"trained for modality '{trained}', cannot serve '{name}'"])
    return list(dict.fromkeys(names))
