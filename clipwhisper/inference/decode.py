"""``clipwhisper decode``: batched generation over a test set, WER per modality and SNR.

Written as it goes (``hyps.jsonl``); a rerun into the same folder resumes. A
failed utterance is recorded with its error, counted as all deletions, listed
in the summary, and makes the exit code 1: nothing vanishes from the WER.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from rich.markup import escape

from ..config import DecodeConfig
from ..data.batch import Batch, Padded
from ..data.dataset import AVDataset
from ..data.manifest import read_manifest
from ..data.media import load_audio
from ..data.utterance import Utterance, duration_s
from ..errors import ConfigError
from ..modality import STREAMS, streams_of
from ..model.avsr import AVSRModel
from ..model.precision import for_inference
from ..runtime.distributed import Distributed
from ..runtime.folder_claim import claimed
from ..runtime.report import console, status
from .batching import decode_batches, with_batch_size
from .compat import check_modalities
from .decode_folder import settle_decode_folder
from .plot import plot_wer_vs_snr
from .records import HypsFile, make_record
from .sharding import merge, rank_hyps
from .summary import summarise, summary_table
from .trn import write_trn


@dataclasses.dataclass(frozen=True)
class ModelToLoad:
    """A model a decode loads once its loader is reading: what the loader needs first (the device, CLIP's input
    size: None where only the built model knows it, and then the model loads first)."""
    load: Callable[[], AVSRModel]
    device: torch.device
    image_size: int | None

    @classmethod
    def ready(cls, model: AVSRModel) -> ModelToLoad:
        return cls(lambda: model, model.device, model.video_encoder.image_size if model.video_encoder else None)

    def get(self) -> AVSRModel:
        with torch.inference_mode(False):  # parameters, not inference tensors, whatever the caller's mode
            return self.load()


def decode_cells(model: AVSRModel | ModelToLoad, utterances: list[Utterance], modalities: Sequence[str] | str,
                 snrs: Sequence, config: DecodeConfig, hyps: HypsFile, noise=None) -> None:
    """Decode every utterance in each of ``modalities`` at each of ``snrs`` where ``hyps`` lacks it, a batch of
    utterances at a time: their media are read once for every cell, a batch's video encoded once for all of
    them (babble reaches the audio alone) and its audio once per SNR for every modality that reads it. A
    modality without audio decodes the first SNR and copies its records to the others."""
    from rich.progress import Progress

    modalities = [modalities] if isinstance(modalities, str) else list(modalities)
    model = model if isinstance(model, ModelToLoad) else ModelToLoad.ready(model)
    config = with_batch_size(config, model.device)
    pending = {(modality, str(snr)): {u.id for u in utterances if (u.id, modality, str(snr)) not in hyps.done}
               for modality in modalities for snr in _computed(modality, snrs)}
    pending = {cell: ids for cell, ids in pending.items() if ids}
    todo = [u for u in utterances if any(u.id in ids for ids in pending.values())]
    if todo:
        with Progress(console=status, transient=True, disable=not status.is_terminal) as bar:
            task = bar.add_task(f"decode {','.join(modalities)}", total=sum(map(len, pending.values())))
            for records in _decode_batches(model, todo, list(snrs), pending, config, noise):
                hyps.append(records)
                bar.advance(task, len(records))
                if config.verbose:
                    _print_records(records)
    for modality in modalities:
        _copy_first_snr(utterances, modality, snrs[len(_computed(modality, snrs)):], snrs[0], hyps)


def _computed(modality: str, snrs: Sequence) -> list:
    """The SNRs decoded in ``modality``: every one where it reads the audio, else the first."""
    return list(snrs) if "audio" in streams_of(modality) else list(snrs[:1])


def _copy_first_snr(utterances: list[Utterance], modality: str, snrs: Sequence, first, hyps: HypsFile) -> None:
    """Babble is mixed into the audio alone, so a modality without audio decodes the same input at every SNR:
    an utterance's record at the ``first`` SNR is its record at ``snrs`` too (the same computation, not a reuse
    of another result)."""
    decoded = {r["id"]: r for r in hyps.records if r["modality"] == modality and str(r["snr"]) == str(first)}
    for snr in snrs:
        copies = [{**decoded[u.id], "snr": snr} for u in utterances
                  if u.id in decoded and (u.id, modality, str(snr)) not in hyps.done]
        if copies:
            hyps.append(copies)


def _print_records(records: list[dict]) -> None:
    for record in records:
        error = f"\n  ERROR: {escape(record['error'])}" if record["error"] else ""
        console.print(f"[bold]{escape(record['id'])}[/bold] ({record['modality']}, {record['snr']})\n"
                      f"  REF: {escape(record['ref'])}\n  HYP: {escape(record['hyp'])}{error}")


def _decode_batches(source: ModelToLoad, todo: list[Utterance], snrs: list, pending: dict[tuple[str, str], set[str]],
                    config: DecodeConfig, noise):
    """Records for ``todo`` in each (modality, SNR) cell where ``pending`` lists them, a batch of utterances at a
    time, longest first (similar lengths share a batch: less padding), each record with its share of its cell's
    wall time. A batch holds the utterances some cell of its SNR lacks; a cell records only those it lacks. The
    model loads while the loader reads the first batch."""
    modalities = list(dict.fromkeys(modality for modality, _ in pending))
    streams = [s for s in STREAMS if any(s in streams_of(m) for m in modalities)]
    model = source.get() if "video" in streams and source.image_size is None else None
    image_size = model.video_encoder.image_size if model is not None else source.image_size
    todo = sorted(todo, key=duration_s, reverse=True)
    dataset = AVDataset(todo, streams, image_size)
    references = {u.id: u.text or "" for u in todo}
    durations = {u.id: duration_s(u) for u in todo}
    by_snr = {str(snr): set().union(*(ids for (_, s), ids in pending.items() if s == str(snr))) for snr in snrs}
    with decode_batches(dataset, config, source.device, noise, snrs, by_snr) as batches:
        if model is None:
            model = source.get()
        yield from _generated(model, batches, modalities, pending, config, references, durations)


def _generated(model: AVSRModel, batches, modalities: list[str], pending: dict[tuple[str, str], set[str]],
               config: DecodeConfig, references: dict[str, str], durations: dict[str, float]):
    started = time.perf_counter()
    try:
        for cells in batches:
            encoded = EncodedOnce()
            model.feature_sink = encoded.keep
            for snr, batch in cells:
                errors = dict(batch.bad)
                for modality in modalities:
                    wanted = pending.get((modality, str(snr)), set())
                    order = [uid for uid in batch.order if uid in wanted]
                    if not order:
                        continue
                    hypotheses = {}
                    if batch.ids:
                        texts = model.generate(encoded.stand_in(_reading(batch, modality), snr), modality=modality,
                                               beam_size=config.beam_size, max_new_tokens=config.max_new_tokens,
                                               rows=config.batch_size)
                        hypotheses = dict(zip(batch.ids, texts))
                    seconds, started = (time.perf_counter() - started) / len(order), time.perf_counter()
                    yield [make_record(uid, modality, snr, references[uid], hypotheses.get(uid, ""),
                                       config.normalizer, errors.get(uid), timing=(durations[uid], seconds))
                           for uid in order]
    finally:
        model.feature_sink = None


def _reading(batch: Batch, modality: str) -> Batch:
    """``batch`` with the streams ``modality`` reads: a single-stream decode sees no media of the other."""
    return batch if modality == "both" else batch.only(modality)


class EncodedOnce:
    """One batch of utterances in several cells: what a frozen encoder computed for the first cell that needed it
    (the model hands it to ``keep`` as its ``feature_sink``) stands in for that stream's media in the later
    ones: the video's in every cell (noise does not change it), the audio's in the cells of the same SNR."""

    def __init__(self):
        self.kept: dict[tuple[str, str], tuple[dict[str, int], torch.Tensor, torch.Tensor]] = {}
        self.snr = None  # the SNR of the cell being decoded: the last one stand_in was asked for

    def _key(self, stream: str, snr) -> tuple[str, str]:
        return stream, "any" if stream == "video" else str(snr)

    def keep(self, stream: str, ids: list[str], features: torch.Tensor, mask: torch.Tensor) -> None:
        rows = {uid: row for row, uid in enumerate(ids)}
        self.kept.setdefault(self._key(stream, self.snr), (rows, features, mask.sum(1)))

    def stand_in(self, batch: Batch, snr) -> Batch:
        """``batch`` with kept features in place of the media of each stream whose every row has them. Their
        lengths stay on the device (the mask's): nothing waits for the GPU. What the encoders compute for the
        batch returned is kept as ``snr``'s."""
        self.snr = snr
        for stream in list(batch.media):
            kept = self.kept.get(self._key(stream, snr))
            if kept is None or any(uid not in kept[0] for uid in batch.ids):
                continue
            row_of, features, lengths = kept
            rows = torch.tensor([row_of[uid] for uid in batch.ids], device=features.device)
            media = {name: padded for name, padded in batch.media.items() if name != stream}
            batch = dataclasses.replace(batch, media=media,
                                        features={**batch.features, stream: Padded(features[rows], lengths[rows])})
        return batch


def _validate(config: DecodeConfig) -> None:
    problems = []
    if config.model_path is None:
        problems.append("--model-path is required")
    if config.test_tsv is None:
        problems.append("--test-tsv is required")
    if any(snr != "clean" for snr in config.snr_db) and config.noise is None:
        problems.append("--snr-db other than clean needs --noise FILE")
    if problems:
        raise ConfigError("decode", problems)


def run_decode(config: DecodeConfig) -> int:
    from ..model.checkpoint import read_header

    _validate(config)
    trained = read_header(config.model_path).model.modality
    modalities = check_modalities(config.modality, trained, config.model_path)
    utterances = read_manifest(config.test_tsv, config.test_wrd)
    if any(u.text is None for u in utterances):
        raise ConfigError(str(config.test_tsv), ["no transcripts to score against: no .wrd beside it; pass --test-wrd "
                                                 "(or use transcribe for files without references)"])
    noise = load_audio(config.noise) if config.noise else None
    output = Path(config.output_dir)
    with Distributed.from_env(config.device).closing() as dist:  # under torchrun: every N-th utterance per rank
        return decode_shards(config, utterances, modalities, noise, output, dist)


def decode_shards(config: DecodeConfig, utterances, modalities: list[str], noise, output: Path,
                  dist: Distributed) -> int:
    """This rank's share of every SNR cell; rank 0 merges the shards, scores them and says the exit code."""
    with claimed(output) if dist.is_main else contextlib.nullcontext():  # one writer per folder
        if dist.is_main:
            settle_decode_folder(config, output)
        dist.barrier()  # the other ranks open their files once rank 0 has settled the folder
        hyps = rank_hyps(output, dist.rank) if dist.world > 1 else HypsFile(output / "hyps.jsonl")
        if hyps.dropped:
            status.print(f"[yellow]{escape(str(hyps.path))}: {hyps.dropped} lines were not whole records (a crash "
                         "mid-write, or foreign lines) and were dropped; their utterances are decoded again[/yellow]")
        return _decode_all(config, utterances, modalities, noise, output, dist, hyps)


def _decode_all(config: DecodeConfig, utterances, modalities: list[str], noise, output: Path, dist: Distributed,
                hyps: HypsFile) -> int:
    with torch.inference_mode():
        decode_cells(checkpoint_to_load(config, dist.device(config.device)), utterances[dist.rank::dist.world],
                     modalities, config.snr_db, config, hyps, noise)
    dist.barrier()
    code = finish(output, merge(output, dist.world, utterances)) if dist.is_main else 0
    return int(dist.broadcast(code))


def checkpoint_to_load(config: DecodeConfig, device: torch.device) -> ModelToLoad:
    """``config.model_path`` ready to load for decoding (on ``device``, in ``config.precision``)."""
    from ..model.checkpoint import load_checkpoint, read_header
    from ..model.video_encoder import configured_image_size

    def load() -> AVSRModel:
        model = for_inference(load_checkpoint(config.model_path, device), config.precision)
        model.use_cuda_graphs(config.cuda_graphs)
        return model

    trained = read_header(config.model_path).model
    reads_video = "video" in streams_of(trained.modality)
    return ModelToLoad(load, device, configured_image_size(trained.video_encoder) if reads_video else None)


def finish(output: Path, records: list[dict]) -> int:
    summary = summarise(records)
    (output / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    write_trn(output, records, summary)
    if len({str(cell["snr"]) for cell in summary["cells"]}) > 1:
        plot_wer_vs_snr(summary, output / "wer_vs_snr.png")
    console.print(summary_table(summary))
    if summary["failed_utterances"]:
        failed = [f["id"] for cell in summary["cells"] for f in cell["failed"]]
        console.print(f"[red]{len(failed)} utterances failed (counted as deletions): {escape(', '.join(failed[:10]))}"
                      f"{' ...' if len(failed) > 10 else ''}; see {escape(str(output / 'hyps.jsonl'))}[/red]")
        return 1
    return 0
