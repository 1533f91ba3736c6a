"""``clipwhisper export``: a checkpoint that loads on an offline machine.

A checkpoint normally refers to its frozen pretrained parts (``medium.en``,
``ViT-B-16``/``openai``, ``meta-llama/Llama-3.2-1B``) by name or path. The
export loads them once, here, and writes every weight into the new folder: the
encoders into ``model.safetensors`` with their architecture in ``config.json``,
the whole LLM into ``llm/`` (with the adapter beside it, or merged into it).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ClipWhisperError, ConfigError
from ..model.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    read_checkpoint_config,
    read_header,
    save_checkpoint,
)

KEPT = ("step", "epoch", "best_valid_wer", "valid_wer")
CHECKPOINT_ENTRIES = {CONFIG_FILE, WEIGHTS_FILE, "adapter", "llm", "tokenizer", "train_state"}


def check_target(target: Path, overwrite: bool) -> None:
    """Never delete what we did not write: an existing ``target`` must be empty, or, with ``overwrite``, a
    checkpoint folder holding nothing but a checkpoint's entries."""
    target = Path(target)
    if not target.exists() and not target.is_symlink():
        return
    if not target.is_dir() or target.is_symlink():
        raise ConfigError(str(target), ["exists and is not a folder; export writes a new folder"])
    entries = {entry.name for entry in target.iterdir()}
    if not entries:
        return
    if not overwrite:
        raise ConfigError(str(target), ["exists and is not empty; pass --overwrite to replace a checkpoint "
                                        "exported there before"])
    try:
        read_checkpoint_config(target)
    except ClipWhisperError:
        raise ConfigError(str(target), ["is not a clipwhisper checkpoint: --overwrite replaces only those"]) from None
    foreign = sorted(entries - CHECKPOINT_ENTRIES)
    if foreign:
        raise ConfigError(str(target), [f"holds {foreign[0]}, which no checkpoint holds: not replacing it"])


def export_checkpoint(source: Path, target: Path, merge_lora: bool = False, overwrite: bool = False) -> Path:
    check_target(target, overwrite)
    recorded = read_header(source).model_extra or {}
    model = load_checkpoint(source)
    if merge_lora and hasattr(model.llm, "merge_and_unload"):
        model.llm = model.llm.merge_and_unload()
        model.config.llm.finetune = "frozen"  # the adapter is in the weights now
    info = {key: recorded[key] for key in KEPT if key in recorded}
    return save_checkpoint(model, target, info={**info, "exported_from": str(Path(source).resolve())},
                           portable=True)
