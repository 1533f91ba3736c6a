"""What training shows a person: parameter tables, progress, evaluation tables."""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

console = Console()
status = Console(stderr=True)


def quiet_unless(main: bool) -> None:
    """In a distributed run only rank 0 prints."""
    console.quiet = status.quiet = not main


def parameter_table(rows: list[dict]) -> Table:
    table = Table(title="Model components")
    for column in ("component", "parameters", "trainable", "dtype", "device"):
        table.add_column(column, justify="right" if column in ("parameters", "trainable") else "left")
    for row in rows:
        table.add_row(row["component"], f"{row['parameters']:,}", f"{row['trainable']:,}", row["dtype"],
                      row["device"])
    total = sum(r["parameters"] for r in rows)
    trainable = sum(r["trainable"] for r in rows)
    table.add_row("total", f"{total:,}", f"{trainable:,}", "", "", style="bold")
    return table


def evaluation_table(step: int, epoch: int, train_loss: float, metrics: dict) -> Table:
    table = Table(title=f"Evaluation at step {step} (epoch {epoch + 1})")
    for column in ("train loss", "valid loss", "valid WER", "utterances"):
        table.add_column(column, justify="right")
    table.add_row(f"{train_loss:.4f}", f"{metrics['valid_loss']:.4f}", f"{100 * metrics['valid_wer']:.2f}%",
                  str(metrics["valid_utterances"]))
    return table


def update_table(step: int, updates: dict) -> Table:
    table = Table(title=f"Parameter updates since last log (step {step})")
    for column in ("component", "update norm", "tensors changed"):
        table.add_column(column, justify="left" if column == "component" else "right")
    for name, row in updates.items():
        table.add_row(name, f"{row['update_norm']:.3e}", f"{row['tensors_changed']}/{row['tensors']}")
    return table


class _TrainProgress:
    """A rich progress bar with loss, learning rate and utterances/s; silent when stderr is not a terminal."""

    def __init__(self, total: int, done: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            TextColumn("{task.fields[info]}"), console=status, disable=not status.is_terminal)
        self.task = self.bar.add_task("train", total=total, completed=done, info="")
        self.last = None

    def __enter__(self):
        self.bar.__enter__()
        self.last = time.perf_counter()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def advance(self, loss: float, lr: float, utterances: int) -> None:
        now = time.perf_counter()
        rate = utterances / max(now - self.last, 1e-9)
        self.last = now
        self.bar.update(self.task, advance=1, info=f"loss {loss:.3f}  lr {lr:.2e}  {rate:.1f} utt/s")


def make_progress(total: int, done: int) -> _TrainProgress:
    return _TrainProgress(total, done)
