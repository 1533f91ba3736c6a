"""``clipwhisper export``: a checkpoint that loads on an offline machine.

A checkpoint normally refers to its frozen pretrained parts (``medium.en``,
``ViT-B-16``/``openai``, ``meta-llama/Llama-3.2-1B``) by name or path. The
export loads them once, here, and writes every weight into the new folder: the
encoders into ``model.safetensors`` with their architecture in ``config.json``,
the whole LLM into ``llm/`` (with the adapter beside it, or merged into it).
"""

from __future__ import annotations

from pathlib import Path

from ..model.checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint

KEPT = ("step", "epoch", "best_valid_wer", "valid_wer")


def export_checkpoint(source: Path, target: Path, merge_lora: bool = False) -> Path:
    manifest = read_checkpoint_config(source)
    model = load_checkpoint(source)
    if merge_lora and hasattr(model.llm, "merge_and_unload"):
        model.llm = model.llm.merge_and_unload()
        model.config.llm.finetune = "frozen"  # the adapter is in the weights now
    info = {key: manifest[key] for key in KEPT if key in manifest}
    return save_checkpoint(model, target, info={**info, "exported_from": str(Path(source).resolve())},
                           portable=True)
