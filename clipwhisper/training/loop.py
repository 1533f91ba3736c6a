"""``clipwhisper train``: setup -> fit -> validate -> save, in one readable loop."""

from __future__ import annotations

import contextlib
import math
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.markup import escape
from torch.utils.data import DataLoader

from ..config import TrainConfig, to_yaml
from ..data.dataset import AVDataset, BucketBatchSampler, collate
from ..data.features import FeatureCache, build_feature_cache
from ..data.media import load_audio
from ..data.noise import NoiseAugmentation
from ..data.utterance import duration_s
from ..errors import CheckpointError, ClipWhisperError, Interrupted, MediaError
from ..modality import streams_of
from ..model.avsr import AVSRModel
from ..model.checkpoint import gather, load_checkpoint, save_checkpoint
from ..model.compiled import compile_llm_layers
from ..model.fsdp import shard_model
from ..model.precision import autocast_dtype, cast_frozen, configure_kernels
from ..runtime import report
from ..runtime.distributed import Distributed
from ..runtime.folder_claim import claimed
from ..runtime.tracking import Trackers
from ..runtime.tracking import require as require_trackers
from .checks import load_splits
from .curves import PLOTS, write_plots
from .evaluate import evaluate
from .optim import clip_gradients, configure_optimizer, configure_scheduler
from .params import UpdateTracker, component_rows
from .run_folder import RunFolder
from .run_identity import settle_run_folder
from .state import capture_train_state, load_train_state, write_train_state
from .stop_signals import stop_requests


class TrainingError(ClipWhisperError):
    """Training cannot go on (e.g. the loss stayed non-finite)."""


@dataclass
class Progress:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    batches_done: int = 0  # batches consumed in the current epoch
    best_wer: float | None = None
    skipped_steps: int = 0
    bad_samples: int = 0
    # what the log's averages are taken over, saved so a resumed run logs what the straight run does
    recent_losses: list[float] = field(default_factory=list)
    last_eval_step: int | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(config: TrainConfig, train_texts: list[str], amp_dtype: torch.dtype | None = None) -> AVSRModel:
    """The model a new run starts from. A frozen LLM base (LoRA, frozen) loads straight in the autocast
    dtype, as ``cast_frozen`` would leave it; trainable LLM weights load in fp32, which the optimizer needs."""
    from ..model.llm import apply_finetuning, build_base_llm, load_tokenizer
    from ..model.tokenizer import train_tokenizer

    llm_config = config.model.llm
    if llm_config.tokenizer or llm_config.name:
        tokenizer = load_tokenizer(llm_config.tokenizer or llm_config.name)
    else:  # an LLM built from a config gets a tokenizer trained on the transcripts
        tokenizer = train_tokenizer([*train_texts, config.model.prompt])
    frozen_base = amp_dtype is not None and llm_config.finetune != "full"
    llm = build_base_llm(llm_config, tokenizer, dtype=amp_dtype if frozen_base else torch.float32)
    llm = apply_finetuning(llm, llm_config)
    return AVSRModel.build(config.model, tokenizer, llm)


class Trainer:
    def __init__(self, config: TrainConfig, dist: Distributed | None = None):
        self.config = config
        self.grad_norm = None  # the last step's, before clipping (a device tensor)
        require_trackers(config.report_to)
        self.splits = load_splits(config)  # every check before any model loads
        self.dist = dist or Distributed.from_env(config.device)
        if self.dist.is_main:  # the others wait: they would read identity.json while rank 0 writes it
            settle_run_folder(config)
        self.dist.barrier()
        report.quiet_unless(self.dist.is_main)
        self.run = RunFolder(config.output_path, writable=self.dist.is_main)
        self.device = self.dist.device(config.device)
        self.sharded = config.strategy == "fsdp" and self.dist.world > 1
        self.amp_dtype = autocast_dtype(config.precision, self.device)
        configure_kernels()
        seed_everything(config.seed)
        self.resume_from = self.dist.broadcast(self._resume_source())
        if self.resume_from:
            self.model = load_checkpoint(self.resume_from, "cpu" if self.sharded else self.device)
        else:
            self.model = build_model(config, [u.text for u in self.splits[config.data.train_split]], self.amp_dtype)
        self.streams = streams_of(config.model.modality)
        train, valid = self.splits[config.data.train_split], self.splits[config.data.valid_split]
        augment = self._augmentation()
        self.features = self._feature_cache([*train, *valid], augmented=augment is not None)
        self.ddp = self._place_model()  # what the training forward calls: the model, or its DDP wrapper
        self.model.feature_sink = self.features.put if self.features else None
        image_size = self.model.video_encoder.image_size if self.model.video_encoder else None
        cache = int(config.data.media_cache_gb * 2**30)
        self.train_set = AVDataset(train, self.streams, image_size, config.data.fps, cache, augment, self.features)
        self.valid_set = AVDataset(valid, self.streams, image_size, config.data.fps, cache, features=self.features)
        self.sampler = BucketBatchSampler([duration_s(u, config.data.fps) for u in train], config.batch_size,
                                          config.seed, rank=self.dist.rank, world=self.dist.world)
        self.batches_per_epoch = len(self.sampler.batches())
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / config.grad_accum)
        self.total_steps = config.max_steps or config.max_epochs * self.steps_per_epoch
        self.optimizer = configure_optimizer(self.model, config, self.device)
        self.scheduler = configure_scheduler(self.optimizer, config, self.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.progress = Progress()
        if self.resume_from:
            saved = load_train_state(self.resume_from / "train_state", optimizer=self.optimizer,
                                     scheduler=self.scheduler, scaler=self.scaler)
            try:
                self.progress = Progress(**saved)
            except TypeError as exc:
                raise CheckpointError(self.resume_from / "train_state" / "state.json",
                                      f"progress of another shape: {exc}") from None
        for log in ("train_log.jsonl", "bad_samples.jsonl"):  # what a killed run logged after its checkpoint
            if dropped := self.run.truncate_log_after(self.progress.step, log):
                report.status.print(f"[yellow]{escape(str(self.run.path / log))}: dropped {dropped} lines that were "
                                    "not whole records (a torn last line after a crash)[/yellow]")

    def _place_model(self):
        """Frozen parts cast, LLM layers compiled (on a GPU by default), the model on this rank's device: whole,
        or sharded (FSDP). Returns what the training forward calls: the model, or its DDP wrapper."""
        cast_frozen(self.model, self.amp_dtype)
        wrapper = "fsdp" if self.sharded else "ddp" if self.dist.world > 1 else None
        self.model.use_cuda_graphs(self.config.cuda_graphs, wrapper)
        if self.config.compile if self.config.compile is not None else self.device.type == "cuda":
            compile_llm_layers(self.model.llm)
        if self.sharded:  # each rank keeps its shards only, on its device
            shard_model(self.model, self.device)
        else:
            self.model.to(self.device)
        self.model.train()
        if self.dist.world == 1 or self.sharded:
            return self.model
        from torch.nn.parallel import DistributedDataParallel  # all-reduces the trainable parameters' gradients

        return DistributedDataParallel(self.model, device_ids=[self.device] if self.device.type == "cuda" else None)

    def _augmentation(self) -> NoiseAugmentation | None:
        noise_file = self.config.data.noise_file()
        if noise_file is None or "audio" not in self.streams:
            return None
        data = self.config.data
        return NoiseAugmentation(load_audio(noise_file), data.noise_prob, data.noise_snr_db, self.config.seed,
                                 data.noise_from_epoch)

    def _feature_cache(self, utterances, augmented: bool) -> FeatureCache | None:
        if self.config.feature_cache is None:
            return None
        cache, notes = build_feature_cache(self.config.feature_cache, self.model, utterances, self.config.data.fps,
                                           self.amp_dtype, augmented)
        for note in notes:
            report.status.print(f"[yellow]feature cache: {note}[/yellow]")
        return cache

    def _resume_source(self) -> Path | None:
        if self.config.resume == "auto":
            return self.run.latest()
        return Path(self.config.resume) if self.config.resume else None

    def _loader(self, dataset, sampler=None) -> DataLoader:
        # A loader's own generator: creating its iterator must not draw from the global RNG,
        # or a resumed run would see a different random stream (modality dropout, LoRA dropout).
        # Pinned batches: a copy from pageable memory makes the host wait for the device (and a batch of
        # 224-px frames is 270 MB).
        options = {"collate_fn": collate, "num_workers": self.config.data.num_workers,
                   "generator": torch.Generator().manual_seed(self.config.seed),
                   "pin_memory": self.device.type == "cuda"}
        if sampler is None:
            return DataLoader(dataset, batch_size=self.config.batch_size, shuffle=False, **options)
        return DataLoader(dataset, batch_sampler=sampler, **options)

    # -- the loop -------------------------------------------------------------------------------
    def fit(self) -> Path:
        with self._tracking():
            return self._fit()

    @contextlib.contextmanager
    def _tracking(self):
        """``--report-to``: rank 0's log records, plots and final summary go to the trackers too."""
        if not (self.dist.is_main and self.config.report_to):
            yield
            return
        trackers = Trackers(self.config.report_to, self.run.path, self.config.model_dump(mode="json"))
        self.run.observer = trackers.observe
        try:
            yield
        finally:
            self.run.observer = None
            trackers.images([path for name in PLOTS if (path := self.run.path / name).exists()])
            best = self.progress.best_wer
            trackers.finish(f"step {self.progress.step}, epoch {self.progress.epoch}, best valid WER "
                            f"{'-' if best is None else f'{100 * best:.2f}%'}")

    def _fit(self) -> Path:
        config, progress = self.config, self.progress
        if self.dist.is_main:
            (self.run.path / "config.yaml").write_text(to_yaml(config), encoding="utf-8")
        report.console.print(report.parameter_table(component_rows(self.model.components())))
        if self.resume_from:
            report.console.print(f"resumed from {escape(str(self.resume_from))} at step {progress.step}")
        tracker = UpdateTracker(self.model.components()) if config.log_param_updates else None
        valid_loader = self._loader(self.valid_set)
        with report.make_progress(self.total_steps, progress.step, config.progress_every_s) as bar, \
                stop_requests() as stop:
            while progress.step < self.total_steps and progress.epoch < config.max_epochs:
                self.sampler.set_epoch(progress.epoch, skip=progress.batches_done)
                self.train_set.epoch = progress.epoch
                stopping = False
                for group in self._accumulation_groups(self._loader(self.train_set, self.sampler)):
                    loss = self._optimizer_step(group)
                    progress.batches_done += len(group)
                    if loss is not None:
                        self._remember(loss)
                        line = bar.advance(loss, self.scheduler.get_last_lr()[0], sum(len(b) for b in group),
                                           progress.epoch, self.grad_norm)
                        if line:
                            self.run.log({"event": "progress", **line})
                        self._after_step(tracker, valid_loader)
                    stopping = self._stopping(stop)
                    if progress.step >= self.total_steps or stopping:
                        break
                if stopping:
                    self._stop(stop.signal_number or signal.SIGTERM)
                if progress.batches_done >= self.batches_per_epoch:
                    progress.epoch += 1
                    progress.batches_done = 0
                    if not config.eval_steps:
                        self._evaluate(valid_loader)
                    self._save_step()
                self._stop_if(stop)  # a signal during the evaluation or the save: stop here, not later
            if progress.last_eval_step != progress.step:
                self._evaluate(valid_loader)
            if not self._saved(progress.step):
                self._save_step()
            self._stop_if(stop)
        final = self._save(self.run.path / "final", info=self._info())
        self._report_bad_samples()
        self._report_feature_cache()
        return final

    def _stopping(self, stop) -> bool:
        """Whether any rank was asked to stop: all ranks must stop at the same step to save together."""
        return self.dist.total(float(bool(stop)), self.device) > 0

    def _stop_if(self, stop) -> None:
        if self._stopping(stop):
            self._stop(stop.signal_number or signal.SIGTERM)

    def _saved(self, step: int) -> bool:
        return (self.run.step_dir(step) / "config.json").exists()

    def _remember(self, loss: float) -> None:
        losses = self.progress.recent_losses
        losses.append(loss)
        del losses[:-max(self.config.log_every, self.steps_per_epoch)]  # what the log's averages reach back to

    def _stop(self, signal_number: int) -> None:
        step = self.progress.step
        folder = self.run.step_dir(step) if self._saved(step) else self._save_step()
        self.run.log({"event": "stopped", "step": self.progress.step, "signal": signal_number})
        raise Interrupted(signal_number, f"stopped by signal {signal_number} at step {self.progress.step}; saved "
                                         f"{folder}; continue with --resume auto")

    def _accumulation_groups(self, loader):
        group = []
        for batch in loader:
            group.append(batch)
            if len(group) == self.config.grad_accum:
                yield group
                group = []
        if group:
            yield group

    def _optimizer_step(self, group: list[dict]) -> float | None:
        """One optimizer step over the group's micro-batches (on every rank); None if skipped (no data or a
        non-finite loss). The loss is the mean over all target tokens of the step, whatever the split into
        micro-batches and ranks, so N ranks at batch b train as one process at batch N*b."""
        group, tokens = self._on_every_rank(group)
        if not group:
            return None
        loss_sum = 0.0
        for index, batch in enumerate(group):
            with self._gradient_sync(last=index == len(group) - 1):
                if self.progress.epoch < self.config.audio_first_epochs:
                    batch, modality = batch.only("audio"), "audio"  # the lip encoder idle: a fast epoch
                else:
                    modality = None  # the model's own
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    loss = self.ddp(batch, modality=modality, reduction="sum") * (self.dist.world / tokens)
                # backward before reading the loss: reading waits for the device, and the host
                # should queue the backward first. A non-finite loss's gradients are discarded below.
                self.scaler.scale(loss).backward()
            loss_sum += float(loss.detach()) / self.dist.world
        loss_sum = self.dist.total(loss_sum, self.device)  # the same on every rank, so all ranks skip together
        if not math.isfinite(loss_sum):
            self.optimizer.zero_grad(set_to_none=True)
            return self._skip_step()
        self.progress.skipped_steps = 0
        if self.config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            self.grad_norm = clip_gradients([p for p in self.model.parameters() if p.requires_grad],
                                            self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.step += 1
        return loss_sum

    def _on_every_rank(self, group: list[dict]) -> tuple[list[dict], float]:
        """The micro-batches with items on every rank, and their target tokens over all ranks; the ranks'
        bad samples are recorded. The ranks must run the same forwards and backwards, so a micro-batch that
        bad samples emptied on some rank is left out on all (and logged). One all-reduce carries the counts;
        the bad samples themselves travel only when there are some."""
        bad = [item for batch in group for item in batch.bad]
        tokens = [self.model.target_tokens(batch.texts) if batch.ids else 0 for batch in group]
        counts = self.dist.totals([len(bad), *(float(bool(batch.ids)) for batch in group), *tokens], self.device)
        if counts[0]:
            self._record_bad(bad)
        filled, tokens = counts[1:len(group) + 1], counts[len(group) + 1:]
        kept = [index for index, ranks in enumerate(filled) if ranks == self.dist.world]
        dropped = sum(0 < ranks < self.dist.world for ranks in filled)
        if dropped:
            self.run.log({"event": "skipped_micro_batches", "step": self.progress.step + 1, "count": dropped,
                          "reason": "only bad samples on some rank"})
        return [group[index] for index in kept], sum(tokens[index] for index in kept)

    def _gradient_sync(self, last: bool):
        """Gradients are all-reduced (DDP) or reduce-scattered (FSDP) at a step's last micro-batch only."""
        if self.sharded:
            self.model.set_requires_gradient_sync(last)
        elif self.ddp is not self.model and not last:
            return self.ddp.no_sync()  # a single-use context manager: entered once
        return contextlib.nullcontext()

    def _skip_step(self) -> None:
        self.progress.skipped_steps += 1
        self.run.log({"event": "skipped_step", "step": self.progress.step, "reason": "non-finite loss"})
        if self.progress.skipped_steps >= self.config.max_bad_steps:
            self._save_step()
            raise TrainingError(f"loss was not finite for {self.progress.skipped_steps} steps in a row at step "
                                f"{self.progress.step}; saved {self.run.step_dir(self.progress.step)}; try a lower "
                                "learning rate or --precision bf16/fp32")
        return None

    def _record_bad(self, bad: list[tuple[str, str]]) -> None:
        """Every rank learns every rank's bad samples: rank 0 logs them all, and all ranks fail together."""
        for uid, error in self.dist.gather_lists(bad):
            if self.config.on_bad_sample == "fail":
                raise MediaError(uid, error)
            self.progress.bad_samples += 1
            # logged under the step being made, so a resume from the step before drops and redoes it
            self.run.log({"id": uid, "error": error, "step": self.progress.step + 1}, name="bad_samples.jsonl")

    def _after_step(self, tracker, valid_loader) -> None:
        config, step = self.config, self.progress.step
        if step % config.log_every == 0 or step == self.total_steps:
            recent = self.progress.recent_losses[-config.log_every:]
            self.run.log({"event": "train", "step": step, "epoch": self.progress.epoch,
                          "loss": sum(recent) / len(recent), "lr": self.scheduler.get_last_lr()[0]})
            if tracker is not None:
                updates = tracker.report()
                self.run.log({"event": "param_updates", "step": step, "components": updates})
                report.console.print(report.update_table(step, updates))
        if config.eval_steps and step % config.eval_steps == 0:
            self._evaluate(valid_loader)
        if config.save_steps and step % config.save_steps == 0:
            self._save_step()

    def _evaluate(self, valid_loader) -> None:
        """Rank 0 evaluates while the others wait; under FSDP every rank runs the same batches (each forward
        gathers shards from all ranks). A new best WER is saved to best/."""
        self.progress.last_eval_step = self.progress.step
        metrics = None
        if self.dist.is_main or self.sharded:
            metrics = evaluate(self.model, valid_loader, self.device.type, self.amp_dtype)
        improved = self.dist.is_main and self._report_evaluation(metrics)
        improved, self.progress.best_wer = self.dist.broadcast((improved, self.progress.best_wer))
        if improved:
            self._save(self.run.path / "best", info=self._info(metrics))

    def _report_evaluation(self, metrics: dict) -> bool:
        """Log and print; whether the WER is the best so far."""
        epoch_losses = self.progress.recent_losses[-self.steps_per_epoch:]
        train_loss = sum(epoch_losses) / max(1, len(epoch_losses))
        self.run.log({"event": "eval", "step": self.progress.step, "epoch": self.progress.epoch,
                      "train_loss": train_loss, **metrics})
        report.console.print(report.evaluation_table(self.progress.step, self.progress.epoch - 1, train_loss,
                                                     metrics))
        write_plots(self.run.path)
        best = self.progress.best_wer
        if best is None or metrics["valid_wer"] < best:
            self.progress.best_wer = metrics["valid_wer"]
            return True
        return False

    def _info(self, metrics: dict | None = None) -> dict:
        return {"step": self.progress.step, "epoch": self.progress.epoch, "best_valid_wer": self.progress.best_wer,
                **({"valid_wer": metrics["valid_wer"]} if metrics else {})}

    def _save_step(self) -> Path:
        folder = self._save(self.run.step_dir(self.progress.step), info=self._info(), with_state=True)
        self.run.prune(self.config.keep_last)
        return folder

    def _save(self, folder: Path, info: dict, with_state: bool = False) -> Path:
        """Rank 0 writes; every rank waits until the folder is complete. Under FSDP every rank first takes
        part in gathering the whole tensors."""
        if not (self.dist.is_main or self.sharded):
            self.dist.barrier()
            return folder
        contents = gather(self.model)
        state = capture_train_state(optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
                                    progress=asdict(self.progress)) if with_state else None
        if self.dist.is_main:
            save_checkpoint(self.model, folder, info=info, contents=contents,
                            write_state=(lambda path: write_train_state(path, state)) if state else None)
        self.dist.barrier()
        return folder

    def _report_feature_cache(self) -> None:
        if self.features is not None and self.features.streams:
            report.status.print(f"feature cache {escape(str(self.features.root))}: {self.features.writes} encoder "
                                f"outputs stored this run ({', '.join(self.features.streams)})")

    def _report_bad_samples(self) -> None:
        if self.progress.bad_samples:
            report.status.print(f"[yellow]{self.progress.bad_samples} bad samples skipped; listed in "
                                f"{escape(str(self.run.path / 'bad_samples.jsonl'))}[/yellow]")


def run_training(config: TrainConfig) -> Path:
    started = time.perf_counter()
    with Distributed.from_env(config.device).closing() as dist:  # also when setting up fails on every rank
        with claimed(config.output_path) if dist.is_main else contextlib.nullcontext():  # one writer per folder
            final = Trainer(config, dist).fit()
    report.console.print(f"training done in {time.perf_counter() - started:.1f} s; final checkpoint: "
                         f"{escape(str(final))}")
    return final
