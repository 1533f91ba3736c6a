"""A run folder's identity: the settings and data its checkpoints depend on.

A rerun into the folder (``--resume auto``) must continue the same training; one with another model, data or
optimiser setting is refused (exit 2) instead of mixing two runs' checkpoints and logs. What may change
between a run and its resumption is left out: where things are (paths, device), how long (epochs, steps),
how often (logging, evaluation, saving), and how (workers, caches, compiling, the distributed strategy).
"""

from __future__ import annotations

from pathlib import Path

from ..config import TrainConfig
from ..data.manifest import split_paths
from ..runtime.digest import file_sha256
from ..runtime.folder_claim import settle_identity

OPTIMISATION = ("seed", "precision", "batch_size", "grad_accum", "learning_rate", "weight_decay", "warmup_steps",
                "grad_clip")
ADVICE = "choose another --output-path (a rerun continues only the same training)"


def run_identity(config: TrainConfig) -> dict:
    data = config.data
    splits = {split: [file_sha256(path) for path in split_paths(data.path, split) if path is not None]
              for split in (data.train_split, data.valid_split)}
    noise = data.noise_file()
    return {"model": config.model.model_dump(mode="json"),
            "data": {"manifests": splits, "fps": data.fps, "noise": file_sha256(noise) if noise else None,
                     "noise_prob": data.noise_prob, "noise_snr_db": list(data.noise_snr_db),
                     **({"max_duration_s": data.max_duration_s} if data.max_duration_s else {})},
            **{name: getattr(config, name) for name in OPTIMISATION}}


def settle_run_folder(config: TrainConfig) -> None:
    settle_identity(Path(config.output_path), run_identity(config), ADVICE,
                    ours=("config.yaml", "train_log.jsonl"))  # a run folder written before identities
