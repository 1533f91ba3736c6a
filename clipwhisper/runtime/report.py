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
    for column in ("train loss", "valid loss", "valid WER", "valid CER", "utterances"):
        table.add_column(column, justify="right")
    table.add_row(f"{train_loss:.4f}", f"{metrics['valid_loss']:.4f}", f"{100 * metrics['valid_wer']:.2f}%",
                  f"{100 * metrics['valid_cer']:.2f}%", str(metrics["valid_utterances"]))
    return table


def update_table(step: int, updates: dict) -> Table:
    table = Table(title=f"Parameter updates since last log (step {step})")
    for column in ("component", "update norm", "tensors changed"):
        table.add_column(column, justify="left" if column == "component" else "right")
    for name, row in updates.items():
        table.add_row(name, f"{row['update_norm']:.3e}", f"{row['tensors_changed']}/{row['tensors']}")
    return table


class _TrainProgress:
    """A rich progress bar with loss, learning rate and utterances/s on a terminal; elsewhere (a batch job's
    log) a plain line every ``every_s`` seconds: step, epoch, loss, learning rate, gradient norm, utterances/s
    and the time left."""

    def __init__(self, total: int, done: int, every_s: float):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            TextColumn("{task.fields[info]}"), console=status, disable=not status.is_terminal)
        self.task = self.bar.add_task("train", total=total, completed=done, info="")
        self.total, self.step, self.every_s = total, done, every_s
        self.last = self.started = self.printed = None
        self.utterances = 0  # since the last plain line
        self.first_step = done

    def __enter__(self):
        self.bar.__enter__()
        self.last = self.started = self.printed = time.perf_counter()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def advance(self, loss: float, lr: float, utterances: int, epoch: int = 0, grad_norm=None) -> dict | None:
        """One optimiser step; returns the fields of the plain line when one is printed (for the log)."""
        now = time.perf_counter()
        rate = utterances / max(now - self.last, 1e-9)
        self.last, self.step = now, self.step + 1
        self.utterances += utterances
        self.bar.update(self.task, advance=1, info=f"loss {loss:.3f}  lr {lr:.2e}  {rate:.1f} utt/s")
        if status.is_terminal or (now - self.printed < self.every_s and self.step < self.total):
            return None
        line = {"step": self.step, "total_steps": self.total, "epoch": epoch, "loss": loss, "lr": lr,
                "grad_norm": None if grad_norm is None else float(grad_norm),
                "utterances_per_s": self.utterances / max(now - self.printed, 1e-9),
                "eta_s": (self.total - self.step) * (now - self.started) / max(self.step - self.first_step, 1)}
        self.printed, self.utterances = now, 0
        norm = "-" if line["grad_norm"] is None else f"{line['grad_norm']:.3g}"
        status.print(f"step {self.step}/{self.total} epoch {epoch + 1} loss {loss:.4f} lr {lr:.2e} grad-norm {norm} "
                     f"{line['utterances_per_s']:.1f} utt/s ETA {_duration(line['eta_s'])}", markup=False,
                     highlight=False, soft_wrap=True)
        return line


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def make_progress(total: int, done: int, every_s: float = 30.0) -> _TrainProgress:
    return _TrainProgress(total, done, every_s)
