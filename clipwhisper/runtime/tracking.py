"""Experiment tracking (``--report-to``): what training logs, sent to TensorBoard, MLflow or Weights & Biases.

Every record of ``train_log.jsonl`` becomes scalars named ``<event>/<field>`` at its step (``train/loss``,
``progress/grad_norm``, ``eval/valid_wer``, ``param_updates/<component>/update_norm``); the resolved settings
go in as hyperparameters, the run's plots as images, and the final summary as text. The libraries are the
optional extra ``clipwhisper[tracking]``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError

PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
NOT_SCALARS = {"step", "epoch", "total_steps", "event"}


def require(names: list[str]) -> None:
    """Fail at once (exit 2), naming the extra, if a tracker's library is missing."""
    missing = []
    for name in names:
        try:
            importlib.import_module(PACKAGES[name])
        except ImportError:
            missing.append(f"--report-to {name} needs the {PACKAGES[name]} package: "
                           "pip install 'clipwhisper[tracking]'")
    if missing:
        raise ConfigError("--report-to", missing)


def scalars(record: dict, prefix: str = "") -> dict[str, float]:
    """A log record's numbers, flattened to ``<event>/<field>`` names."""
    prefix = prefix or f"{record.get('event', 'train')}/"
    out = {}
    for key, value in record.items():
        if key in NOT_SCALARS:
            continue
        if isinstance(value, dict):
            out |= scalars(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


def flat_settings(settings: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out |= flat_settings(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = str(value)[:500]  # older MLflow servers take 500 characters a parameter
    return out


class _TensorBoard:
    def __init__(self, folder: Path, settings: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder / "tensorboard"))
        text = "\n".join(f"    {key}: {value}" for key, value in flat_settings(settings).items())
        self.writer.add_text("settings", text, 0)

    def log(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def image(self, path: Path, step: int) -> None:
        import matplotlib.image

        self.writer.add_image(f"plots/{path.stem}", matplotlib.image.imread(path)[..., :3], step, dataformats="HWC")

    def finish(self, summary: str) -> None:
        self.writer.add_text("summary", summary, 0)
        self.writer.close()


class _MLflow:
    """To ``MLFLOW_TRACKING_URI`` when set (a server, a database), else to ``mlflow.db`` in the run folder."""

    def __init__(self, folder: Path, settings: dict):
        import mlflow

        self.mlflow = mlflow
        configured = os.environ.get("MLFLOW_TRACKING_URI")  # read first: set_tracking_uri sets it
        mlflow.set_tracking_uri(configured or f"sqlite:///{(folder / 'mlflow.db').resolve()}")
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "clipwhisper")
        if mlflow.get_experiment_by_name(name) is None:
            local = None if configured else (folder / "mlflow-artifacts").resolve().as_uri()
            mlflow.create_experiment(name, artifact_location=local)
        mlflow.set_experiment(name)
        self.run = mlflow.start_run(run_name=folder.resolve().name)
        mlflow.log_params(flat_settings(settings))

    def log(self, values: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics(values, step=step)

    def image(self, path: Path, step: int) -> None:
        self.mlflow.log_artifact(str(path), "plots")

    def finish(self, summary: str) -> None:
        self.mlflow.log_text(summary, "summary.md")
        self.mlflow.end_run()


class _Wandb:
    """A run in ``WANDB_PROJECT`` (default clipwhisper), its files under the run folder; ``WANDB_MODE=offline``
    keeps it on disk for ``wandb sync``."""

    def __init__(self, folder: Path, settings: dict):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "clipwhisper"), name=folder.resolve().name,
                              dir=str(folder), config=settings)

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def image(self, path: Path, step: int) -> None:
        self.run.log({f"plots/{path.stem}": self.wandb.Image(str(path))}, step=step)

    def finish(self, summary: str) -> None:
        self.run.summary["summary"] = summary
        self.run.finish()


TRACKERS: dict[str, Callable] = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _Wandb}


class Trackers:
    """The trackers ``names`` asks for, fed the run's log records, plots and final summary."""

    def __init__(self, names: list[str], folder: Path, settings: dict):
        require(names)
        self.trackers = [TRACKERS[name](Path(folder), settings) for name in dict.fromkeys(names)]
        self.step = 0

    def observe(self, record: dict) -> None:
        values = scalars(record)
        self.step = max(self.step, int(record.get("step", self.step)))
        if values:
            for tracker in self.trackers:
                tracker.log(values, self.step)

    def images(self, paths: list[Path]) -> None:
        for tracker in self.trackers:
            for path in paths:
                tracker.image(path, self.step)

    def finish(self, summary: str) -> None:
        for tracker in self.trackers:
            tracker.finish(summary)
