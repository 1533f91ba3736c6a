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
from collections.abc import Sequence
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
from ..modality import streams_of
from ..model.avsr import AVSRModel
from ..model.precision import for_inference
from ..runtime.distributed import Distributed
from ..runtime.folder_claim import claimed
from ..runtime.report import console, status
from .batching import decode_batches
from .compat import check_modality
from .decode_folder import settle_decode_folder
from .plot import plot_wer_vs_snr
from .records import HypsFile, make_record
from .sharding import merge, rank_hyps
from .summary import summarise, summary_table
from .trn import write_trn


def decode_cells(model: AVSRModel, utterances: list[Utterance], modality: str, snrs: Sequence, config: DecodeConfig,
                 hyps: HypsFile, noise=None) -> None:
    """Decode every utterance in ``modality`` at each of ``snrs`` that ``hyps`` lacks, a batch of utterances at a
    time: their media are read once for every SNR, and audio+video encodes a batch's video once (babble reaches
    the audio alone). A modality without audio decodes the first SNR and copies its records to the others."""
    from rich.progress import Progress

    computed = list(snrs) if "audio" in streams_of(modality) else list(snrs[:1])
    pending = {str(snr): {u.id for u in utterances if (u.id, modality, str(snr)) not in hyps.done} for snr in computed}
    todo = [u for u in utterances if any(u.id in ids for ids in pending.values())]
    if todo:
        with Progress(console=status, transient=True, disable=not status.is_terminal) as bar:
            task = bar.add_task(f"decode {modality}", total=sum(len(ids) for ids in pending.values()))
            for records in _decode_batches(model, todo, modality, computed, pending, config, noise):
                hyps.append(records)
                bar.advance(task, len(records))
                if config.verbose:
                    _print_records(records)
    _copy_first_snr(utterances, modality, snrs[len(computed):], snrs[0], hyps)


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


def _decode_batches(model: AVSRModel, todo: list[Utterance], modality: str, snrs: list, pending: dict[str, set[str]],
                    config: DecodeConfig, noise):
    """Records for ``todo`` at each SNR where ``pending`` lists them, a batch of utterances at a time, longest
    first (similar lengths share a batch: less padding), each record with its share of its batch's wall time."""
    image_size = model.video_encoder.image_size if model.video_encoder else None
    todo = sorted(todo, key=duration_s, reverse=True)
    dataset = AVDataset(todo, streams_of(modality), image_size)
    references = {u.id: u.text or "" for u in todo}
    durations = {u.id: duration_s(u) for u in todo}
    started = time.perf_counter()
    try:
        for cells in decode_batches(dataset, config, model.device, noise, snrs, pending):
            video = EncodedOnce("video") if len(cells) > 1 else None
            model.feature_sink = video.keep if video else None
            for snr, batch in cells:
                hypotheses = {}
                if batch.ids:
                    texts = model.generate(video.stand_in(batch) if video else batch, modality=modality,
                                           beam_size=config.beam_size, max_new_tokens=config.max_new_tokens,
                                           rows=config.batch_size)
                    hypotheses = dict(zip(batch.ids, texts))
                errors = dict(batch.bad)
                seconds, started = (time.perf_counter() - started) / len(batch.order), time.perf_counter()
                yield [make_record(uid, modality, snr, references[uid], hypotheses.get(uid, ""), config.normalizer,
                                   errors.get(uid), timing=(durations[uid], seconds)) for uid in batch.order]
    finally:
        model.feature_sink = None


class EncodedOnce:
    """One batch of utterances at several SNRs: what the frozen encoder of ``stream`` computed for the first
    (the model hands it to ``keep`` as its ``feature_sink``) stands in for that stream's media in the later
    ones, which noise does not change."""

    def __init__(self, stream: str):
        self.stream, self.kept = stream, None

    def keep(self, stream: str, ids: list[str], features: torch.Tensor, mask: torch.Tensor) -> None:
        if stream == self.stream and self.kept is None:
            self.kept = ({uid: row for row, uid in enumerate(ids)}, features)

    def stand_in(self, batch: Batch) -> Batch:
        """``batch`` with the kept features in place of its media, if every row has them. The rows' lengths
        are the media's, on the host: nothing waits for the GPU."""
        if self.kept is None or self.stream not in batch.media:
            return batch
        row_of, features = self.kept
        if any(uid not in row_of for uid in batch.ids):
            return batch
        lengths = batch.media[self.stream].lengths
        rows = torch.tensor([row_of[uid] for uid in batch.ids], device=features.device)
        media = {name: padded for name, padded in batch.media.items() if name != self.stream}
        kept = Padded(features[rows, : int(lengths.max())], lengths)
        return dataclasses.replace(batch, media=media, features={**batch.features, self.stream: kept})


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
    modality = check_modality(config.modality, trained, config.model_path)
    utterances = read_manifest(config.test_tsv, config.test_wrd)
    if any(u.text is None for u in utterances):
        raise ConfigError(str(config.test_tsv), ["no transcripts to score against: no .wrd beside it; pass --test-wrd "
                                                 "(or use transcribe for files without references)"])
    noise = load_audio(config.noise) if config.noise else None
    output = Path(config.output_dir)
    with Distributed.from_env(config.device).closing() as dist:  # under torchrun: every N-th utterance per rank
        return decode_shards(config, utterances, modality, noise, output, dist)


def decode_shards(config: DecodeConfig, utterances, modality: str, noise, output: Path, dist: Distributed) -> int:
    """This rank's share of every SNR cell; rank 0 merges the shards, scores them and says the exit code."""
    with claimed(output) if dist.is_main else contextlib.nullcontext():  # one writer per folder
        if dist.is_main:
            settle_decode_folder(config, output)
        dist.barrier()  # the other ranks open their files once rank 0 has settled the folder
        hyps = rank_hyps(output, dist.rank) if dist.world > 1 else HypsFile(output / "hyps.jsonl")
        if hyps.dropped:
            status.print(f"[yellow]{escape(str(hyps.path))}: {hyps.dropped} lines were not whole records (a crash "
                         "mid-write, or foreign lines) and were dropped; their utterances are decoded again[/yellow]")
        return _decode_all(config, utterances, modality, noise, output, dist, hyps)


def _decode_all(config: DecodeConfig, utterances, modality: str, noise, output: Path, dist: Distributed,
                hyps: HypsFile) -> int:
    from ..model.checkpoint import load_checkpoint

    model = for_inference(load_checkpoint(config.model_path, dist.device(config.device)), config.precision)
    model.use_cuda_graphs(config.cuda_graphs)
    with torch.inference_mode():
        decode_cells(model, utterances[dist.rank::dist.world], modality, config.snr_db, config, hyps, noise)
    dist.barrier()
    code = finish(output, merge(output, dist.world, utterances)) if dist.is_main else 0
    return int(dist.broadcast(code))


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
