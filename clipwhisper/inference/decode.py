"""``clipwhisper decode``: batched generation over a test set, WER per modality and SNR.

Written as it goes (``hyps.jsonl``); a rerun into the same folder resumes. A
failed utterance is recorded with its error, counted as all deletions, listed
in the summary, and makes the exit code 1: nothing vanishes from the WER.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from pathlib import Path

import torch
from rich.markup import escape

from ..config import DecodeConfig
from ..data.dataset import AVDataset
from ..data.features import FeatureCache
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


def decode_cell(model: AVSRModel, utterances: list[Utterance], modality: str, snr, config: DecodeConfig,
                hyps: HypsFile, noise=None, features: FeatureCache | None = None) -> None:
    """Decode every utterance of one (modality, SNR) cell not already in ``hyps``; ``features`` keeps what
    the frozen encoders computed for streams that no SNR changes (video), for the cells after this one."""
    from rich.progress import Progress

    key = str(snr)
    todo = [u for u in utterances if (u.id, modality, key) not in hyps.done]
    if not todo:
        return
    if key != "clean" and "audio" not in streams_of(modality):
        todo = _same_as_clean(todo, modality, snr, hyps)
        if not todo:
            return
    with Progress(console=status, transient=True, disable=not status.is_terminal) as bar:
        task = bar.add_task(f"decode {modality} {snr}", total=len(todo))
        for records in _decode_batches(model, todo, modality, snr, config, noise, features):
            hyps.append(records)
            bar.advance(task, len(records))
            if config.verbose:
                _print_records(records, modality, snr)


def _same_as_clean(todo: list[Utterance], modality: str, snr, hyps: HypsFile) -> list[Utterance]:
    """Babble is mixed into the audio alone, so a modality without audio decodes the same input at every SNR:
    an utterance this folder already decoded clean gets that record at ``snr`` (the same computation, not a
    reuse of another result). Returns the utterances still to decode."""
    clean = {r["id"]: r for r in hyps.records if r["modality"] == modality and str(r["snr"]) == "clean"}
    copies = [{**clean[u.id], "snr": snr} for u in todo if u.id in clean]
    if copies:
        hyps.append(copies)
    return [u for u in todo if u.id not in clean]


def _print_records(records: list[dict], modality: str, snr) -> None:
    for record in records:
        error = f"\n  ERROR: {escape(record['error'])}" if record["error"] else ""
        console.print(f"[bold]{escape(record['id'])}[/bold] ({modality}, {snr})\n  REF: {escape(record['ref'])}\n"
                      f"  HYP: {escape(record['hyp'])}{error}")


def _decode_batches(model: AVSRModel, todo: list[Utterance], modality: str, snr, config: DecodeConfig, noise,
                    features: FeatureCache | None):
    """Records for ``todo``, a batch at a time, longest utterances first (similar lengths share a batch: less
    padding), each with its share of the batch's wall time."""
    image_size = model.video_encoder.image_size if model.video_encoder else None
    todo = sorted(todo, key=duration_s, reverse=True)
    dataset = AVDataset(todo, streams_of(modality), image_size, features=features)
    references = {u.id: u.text or "" for u in todo}
    durations = {u.id: duration_s(u) for u in todo}
    model.feature_sink = features.put if features is not None else None
    started = time.perf_counter()
    for batch in decode_batches(dataset, config, model.device, noise, snr):
        hypotheses = {}
        if batch.ids:
            texts = model.generate(batch, modality=modality, beam_size=config.beam_size,
                                   max_new_tokens=config.max_new_tokens, rows=config.batch_size)
            hypotheses = dict(zip(batch.ids, texts))
        errors = dict(batch.bad)
        seconds, started = (time.perf_counter() - started) / len(batch.order), time.perf_counter()
        yield [make_record(uid, modality, snr, references[uid], hypotheses.get(uid, ""), config.normalizer,
                           errors.get(uid), timing=(durations[uid], seconds)) for uid in batch.order]


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
    with torch.inference_mode(), reused_video(modality, utterances, config) as features:
        for snr in config.snr_db:
            decode_cell(model, utterances[dist.rank::dist.world], modality, snr, config, hyps, noise, features)
    dist.barrier()
    code = finish(output, merge(output, dist.world, utterances)) if dist.is_main else 0
    return int(dist.broadcast(code))


@contextlib.contextmanager
def reused_video(modality: str, utterances: list[Utterance], config: DecodeConfig):
    """Babble changes the audio alone: decoding audio+video at several SNRs, the video encoder's output for
    an utterance is computed once, kept in a temporary feature cache (removed afterwards) and read by the
    later cells. (Video alone copies its clean records: ``_same_as_clean``.) Yields None otherwise."""
    if streams_of(modality) != ("video", "audio") or len(config.snr_db) < 2:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="clipwhisper-video-") as folder:
        yield FeatureCache(Path(folder), {"video": "decode"}, utterances)


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
