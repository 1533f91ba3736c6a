"""Decoding, transcription and inspection with a checkpoint trained in this test session."""

import dataclasses
import json
import shutil
import subprocess
import time

import jiwer
import numpy as np
import pytest
from conftest import beams_agree, by_id, make_media, read_records, untimed
from typer.testing import CliRunner

import clipwhisper
from clipwhisper.cli import app
from clipwhisper.data.manifest import read_manifest, write_manifest
from clipwhisper.data.media import SAMPLE_RATE, load_audio, write_wav
from clipwhisper.data.metrics import char_errors, word_errors
from clipwhisper.data.noise import mix_at_snr
from clipwhisper.data.utterance import duration_s
from clipwhisper.inference.transcribe import Media, join_overlapping, windows
from clipwhisper.inference.trn import cell_stem
from clipwhisper.modality import MODALITIES

runner = CliRunner()


def decode(*args):
    return runner.invoke(app, ["decode", *map(str, args)])


def test_wer_matches_jiwer_on_known_strings():
    pairs = [("bin blue at f two now", "bin blue at s two"), ("set red by a one soon", "set red by a one soon"),
             ("lay green", "lay green with")]
    for ref, hyp in pairs:
        assert word_errors(ref, hyp).errors / len(ref.split()) == pytest.approx(jiwer.wer(ref, hyp))
        assert char_errors(ref, hyp).errors / len(ref) == pytest.approx(jiwer.cer(ref, hyp))
    assert word_errors("", "extra words").insertions == 2


def test_decode_writes_records_summary_and_resumes(checkpoint, synth_corpus, tmp_path):
    out = tmp_path / "dec"
    args = ["--model-path", checkpoint, "--test-tsv", synth_corpus / "test.tsv", "--output-dir", out,
            "--snr-db", "clean", "--snr-db", "0", "--noise", synth_corpus / "noise" / "babble.wav",
            "--batch-size", "5", "--max-new-tokens", "12"]
    result = decode(*args)
    assert result.exit_code == 0, result.output
    records = read_records(out / "hyps.jsonl")
    assert len(records) == 2 * 12 and {r["snr"] for r in records} == {"clean", 0.0}
    assert [r["id"] for r in records[:12]] == [u.id for u in read_manifest(synth_corpus / "test.tsv")]
    assert {"id", "modality", "ref", "hyp", "ref_normalized", "hyp_normalized", "substitutions", "deletions",
            "insertions", "errors"} <= set(records[0])
    summary = json.loads((out / "summary.json").read_text())
    assert [(c["modality"], c["snr"], c["utterances"]) for c in summary["cells"]] == [("both", "clean", 12),
                                                                                       ("both", 0.0, 12)]
    assert "WER" in result.output and "RTFx" in result.output
    for cell in summary["cells"]:  # speed: media seconds and utterances per wall second of decoding
        assert cell["rtfx"] == pytest.approx(cell["media_s"] / cell["decode_s"]) and cell["utterances_per_s"] > 0
        assert cell["media_s"] == pytest.approx(sum(map(duration_s, read_manifest(synth_corpus / "test.tsv"))),
                                                abs=0.01)
    # an interrupted run: the file cut inside a record; the rerun completes it identically (timings aside)
    full = (out / "hyps.jsonl").read_text()
    (out / "hyps.jsonl").write_text(full[: len(full) // 2])
    assert decode(*args).exit_code == 0
    assert untimed(read_records(out / "hyps.jsonl")) == untimed(records)
    assert untimed(json.loads((out / "summary.json").read_text())["cells"]) == untimed(summary["cells"])


def test_video_alone_is_decoded_once_for_every_snr(checkpoint, synth_corpus, tmp_path):
    """Babble is mixed into the audio alone: video's noisy cells are its clean records, decoded once, and equal
    to what decoding them afresh at that SNR gives."""
    import torch

    from clipwhisper.config import DecodeConfig, resolve
    from clipwhisper.inference.decode import decode_cells
    from clipwhisper.inference.records import HypsFile
    from clipwhisper.model.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint)
    generate, rows = model.generate, []
    model.generate = lambda batch, **options: rows.append(len(batch)) or generate(batch, **options)
    utterances = read_manifest(synth_corpus / "test.tsv")
    noise, config = load_audio(synth_corpus / "noise" / "babble.wav"), resolve(DecodeConfig, None, {})
    grid, afresh = HypsFile(tmp_path / "grid.jsonl"), HypsFile(tmp_path / "afresh.jsonl")
    with torch.inference_mode():
        decode_cells(model, utterances, "video", ("clean", 0.0, -5.0), config, grid, noise)
        assert sum(rows) == len(utterances)
        decode_cells(model, utterances, "video", (-5.0,), config, afresh, noise)
    assert sum(rows) == 2 * len(utterances)
    noisy = [r for r in grid.records if r["snr"] == -5.0]
    assert by_id(untimed(noisy)) == by_id(untimed(afresh.records)) and len(grid.records) == 3 * len(utterances)
    assert [r["hyp"] for r in by_id(noisy)] == [r["hyp"] for r in by_id(grid.records) if r["snr"] == "clean"]


def test_a_grid_decode_equals_each_cell_decoded_alone(untrained_checkpoint, synth_corpus, tmp_path):
    """Every modality at several SNRs in one pass (``--modality all``), a batch at a time with its features
    shared between cells, media read in worker processes: the records equal those of decoding each cell alone,
    in-process."""
    noise = ["--noise", synth_corpus / "noise" / "babble.wav"]
    common = ["--model-path", untrained_checkpoint, "--test-tsv", synth_corpus / "test.tsv", "--max-new-tokens", "10",
              "--batch-size", "4", *noise]
    grid = decode(*common, "--output-dir", tmp_path / "grid", "--modality", "all", "--snr-db", "clean",
                  "--snr-db", "5", "--snr-db", "-5", "--num-workers", "2")
    assert grid.exit_code == 0, grid.output
    together = read_records(tmp_path / "grid" / "hyps.jsonl")
    alone = []
    for modality, snr in [("audio", "clean"), ("audio", "5"), ("audio", "-5"), ("video", "clean"), ("both", "clean"),
                          ("both", "5"), ("both", "-5")]:
        out = tmp_path / f"{modality}{snr}"
        assert decode(*common, "--output-dir", out, "--modality", modality, "--snr-db", snr).exit_code == 0
        alone += read_records(out / "hyps.jsonl")
    video_clean = [r for r in alone if r["modality"] == "video"]
    alone += [{**r, "snr": snr} for snr in (5.0, -5.0) for r in video_clean]  # video's noisy cells: its clean ones
    key = lambda r: (r["modality"], str(r["snr"]), r["id"])  # noqa: E731
    assert sorted(untimed(together), key=key) == sorted(untimed(alone), key=key) and len(together) == 9 * 12
    assert len({r["hyp"] for r in together if r["modality"] == "both"}) > 5  # outputs that depend on the input
    assert (tmp_path / "grid" / "wer_vs_snr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # several SNRs
    assert not (tmp_path / "clean" / "wer_vs_snr.png").exists()  # one SNR: no plot
    check_trn_with_sclite(tmp_path / "grid")


def check_trn_with_sclite(folder):
    """NIST's sclite scores the trn files as our summary does; scores.txt holds the same percentages."""
    cells = json.loads((folder / "summary.json").read_text())["cells"]
    scores = (folder / "scores.txt").read_text()
    sctk = shutil.which("sctk")
    for cell in cells:
        stem = cell_stem(cell["modality"], cell["snr"])
        err = 100 * cell["errors"] / cell["ref_words"]
        assert f"| {stem:16s} | {cell['utterances']:5d} {cell['ref_words']:6d} |" in scores
        assert f"{err:5.1f} " in scores.split(stem)[1].splitlines()[0]
        if sctk is None:
            continue
        trn = folder / "trn" / stem
        out = subprocess.run([sctk, "sclite", "-r", f"{trn}.ref.trn", "trn", "-h", f"{trn}.hyp.trn", "trn", "-i",
                              "wsj", "-o", "sum", "stdout"], capture_output=True, text=True, check=True).stdout
        total = next(line for line in out.splitlines() if "Sum/Avg" in line).replace("|", " ").split()
        snt, wrd, corr, sub, dele, ins, error = (float(v) for v in total[1:8])
        assert (snt, wrd) == (cell["utterances"], cell["ref_words"])
        assert error == pytest.approx(err, abs=0.05) and sub == pytest.approx(
            100 * cell["substitutions"] / cell["ref_words"], abs=0.05)
    if sctk is None:
        pytest.skip("sclite (Debian's sctk package) is not installed: the trn files were not scored by it")


def test_a_grid_reads_each_utterance_once_and_encodes_its_video_once(checkpoint, synth_corpus, tmp_path, monkeypatch):
    """Every modality at three SNRs in one pass: each utterance's media are read once, its video encoded once and
    its audio (which the babble changes) once per SNR for the audio and audio+video cells; a rerun decodes only
    what a cell lacks."""
    import torch

    from clipwhisper.config import DecodeConfig, resolve
    from clipwhisper.data.dataset import AVDataset
    from clipwhisper.inference.decode import decode_cells
    from clipwhisper.inference.records import HypsFile
    from clipwhisper.model.checkpoint import load_checkpoint
    from clipwhisper.model.precision import for_inference

    model = for_inference(load_checkpoint(checkpoint), "fp32")
    reads, encoded = [], {"audio": 0, "video": 0}
    read = AVDataset.__getitem__
    monkeypatch.setattr(AVDataset, "__getitem__", lambda self, index: reads.append(index) or read(self, index))
    for stream in encoded:
        encoder = getattr(model, f"{stream}_encoder")
        forward = encoder.forward
        encoder.forward = lambda media, lengths, forward=forward, stream=stream: (
            encoded.__setitem__(stream, encoded[stream] + len(lengths)) or forward(media, lengths))
    utterances = read_manifest(synth_corpus / "test.tsv")
    noise = load_audio(synth_corpus / "noise" / "babble.wav")
    config = resolve(DecodeConfig, None, {"batch_size": 5, "max_new_tokens": 8})
    hyps = HypsFile(tmp_path / "hyps.jsonl")
    everything = (MODALITIES, ("clean", 5.0, -5.0), config)
    with torch.inference_mode():
        decode_cells(model, utterances, *everything, hyps, noise)
        assert len(reads) == len(utterances) and encoded == {"audio": 3 * len(utterances), "video": len(utterances)}
        assert len(hyps.records) == 9 * len(utterances) and model.feature_sink is None
        lost = [r for r in hyps.records if r["snr"] == 5.0 and r["id"] == utterances[0].id and r["modality"] != "video"]
        (tmp_path / "hyps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in hyps.records if r not in lost))
        again = HypsFile(tmp_path / "hyps.jsonl")
        decode_cells(model, utterances, *everything, again, noise)
    assert len(reads) == len(utterances) + 1 and encoded["audio"] == 3 * len(utterances) + 1
    redone = [r for r in again.records if r["snr"] == 5.0 and r["id"] == utterances[0].id and r["modality"] != "video"]
    assert len(again.records) == 9 * len(utterances) and untimed(redone) == untimed(lost) and len(lost) == 2


def test_decode_reads_media_while_the_checkpoint_loads(checkpoint, synth_corpus, tmp_path, monkeypatch):
    """As `clipwhisper decode` runs it: the loader's worker reads utterances before the model exists (the size
    of its frames from the checkpoint's header), and the records equal a decode of the model already loaded."""
    import torch

    from clipwhisper.config import DecodeConfig, resolve
    from clipwhisper.data.dataset import AVDataset
    from clipwhisper.inference.decode import checkpoint_to_load, decode_cells
    from clipwhisper.inference.records import HypsFile

    log = tmp_path / "read.log"
    read = AVDataset.__getitem__

    def logged(self, index):  # in the loader's worker process (forked: it inherits the patch)
        with log.open("a") as file:
            file.write(f"{index}\n")
        return read(self, index)
    monkeypatch.setattr(AVDataset, "__getitem__", logged)
    utterances = read_manifest(synth_corpus / "test.tsv")
    config = resolve(DecodeConfig, None, {"batch_size": 5, "max_new_tokens": 8, "num_workers": 1,
                                          "model_path": checkpoint})
    source = checkpoint_to_load(config, torch.device("cpu"))
    read_before_load = []

    def load():
        for _ in range(600):  # up to a minute for the worker to start
            if log.exists() and log.read_text():
                break
            time.sleep(0.1)
        read_before_load.append(log.exists() and bool(log.read_text()))
        return source.load()
    with torch.inference_mode():
        decode_cells(dataclasses.replace(source, load=load), utterances, "both", ["clean"], config,
                     overlapped := HypsFile(tmp_path / "overlapped.jsonl"))
        decode_cells(source.get(), utterances, "both", ["clean"], config, loaded := HypsFile(tmp_path / "h.jsonl"))
    assert read_before_load == [True] and source.image_size == 48
    assert untimed(overlapped.records) == untimed(loaded.records) and len(loaded.records) == len(utterances)


def test_batches_made_by_loader_workers_are_the_ones_made_in_process(synth_corpus, monkeypatch):
    """Each batch is made whole by one worker: in order, the same cells (SNRs, rows pending there, noisy audio,
    padded video, shared by cells of the same rows) as without workers; a worker's error reaches the decode."""
    import torch

    from clipwhisper.config import DecodeConfig, resolve
    from clipwhisper.data.dataset import AVDataset
    from clipwhisper.data.media import load_audio
    from clipwhisper.inference.batching import decode_batches

    utterances = read_manifest(synth_corpus / "test.tsv")[:7]
    noise = load_audio(synth_corpus / "noise" / "babble.wav")
    pending = {"clean": {u.id for u in utterances}, "0.0": {u.id for u in utterances[1:6]}}

    def made(workers: int) -> list:
        config = resolve(DecodeConfig, None, {"batch_size": 3, "num_workers": workers})
        dataset = AVDataset(utterances, ("audio", "video"), 48)
        with decode_batches(dataset, config, torch.device("cpu"), noise, ["clean", 0.0], pending) as batches:
            return list(batches)

    def flat(batches: list) -> list:
        return [(snr, batch.ids, {name: (p.values, p.lengths) for name, p in batch.media.items()})
                for cells in batches for snr, batch in cells]
    in_process, workers_made = flat(made(0)), made(2)
    by_workers = flat(workers_made)
    shared = [cells[0][1].media["video"] is cells[1][1].media["video"] for cells in workers_made if len(cells) == 2]
    assert shared == [False, True]  # the second batch's cells have the same rows: one video tensor, pinned once
    assert [(snr, ids) for snr, ids, _ in by_workers] == [(snr, ids) for snr, ids, _ in in_process] == [
        ("clean", [u.id for u in utterances[0:3]]), (0.0, [u.id for u in utterances[1:3]]),
        ("clean", [u.id for u in utterances[3:6]]), (0.0, [u.id for u in utterances[3:6]]),
        ("clean", [utterances[6].id])]
    for (_, _, ours), (_, _, theirs) in zip(by_workers, in_process):
        assert ours.keys() == theirs.keys() == {"audio", "video"}
        assert all(torch.equal(a, b) for name in ours for a, b in zip(ours[name], theirs[name]))
    clean, noisy = by_workers[0][2]["audio"][0][1:3], by_workers[1][2]["audio"][0]
    assert noisy.shape[1] <= clean.shape[1] and not torch.equal(clean[:, : noisy.shape[1]], noisy)  # babble

    def failing(self, index):
        raise RuntimeError(f"no media for item {index}")
    monkeypatch.setattr(AVDataset, "__getitem__", failing)  # the workers are forked: they inherit it
    with pytest.raises(RuntimeError, match="no media for item 0"):
        made(2)


def test_cells_pin_a_video_they_share_once(monkeypatch):
    """``Cells.pin_memory``: a padded video two cells share is copied once and stays shared; every other stream
    gets its own copy. Page-locked memory needs CUDA, so on the CPU a plain copy stands in for ``pinned``."""
    import torch

    import clipwhisper.data.batch as batch_module
    from clipwhisper.data.batch import Batch, Padded
    from clipwhisper.inference.batching import Cells

    copies = []
    monkeypatch.setattr(batch_module, "pinned", lambda tensor: copies.append(tensor) or tensor.clone())
    video = Padded(torch.rand(2, 3, 4), torch.tensor([3, 2]))
    clean, noisy = (Padded(torch.rand(2, 7), torch.tensor([7, 5])) for _ in range(2))
    cells = Cells([("clean", Batch(["a", "b"], ["x", "y"], {"audio": clean, "video": video})),
                   (0.0, Batch(["a", "b"], ["x", "y"], {"audio": noisy, "video": video}))])
    pinned = cells.pin_memory()
    assert isinstance(pinned, Cells) and [snr for snr, _ in pinned] == ["clean", 0.0]
    assert pinned[0][1].media["video"] is pinned[1][1].media["video"]
    assert len(copies) == 6  # video, clean and noisy audio: values and lengths once each
    for (_, ours), (_, theirs) in zip(pinned, cells):
        for name in ("audio", "video"):
            assert all(torch.equal(a, b) for a, b in zip(ours.media[name], theirs.media[name]))


def test_the_image_size_read_from_a_config_is_the_built_encoders():
    from clipwhisper.config import VideoEncoderConfig
    from clipwhisper.model.video_encoder import ClipVideoEncoder, configured_image_size

    tiny = {"embed_dim": 32,
            "vision_cfg": {"image_size": 48, "patch_size": 12, "width": 32, "head_width": 16, "layers": 1}}
    named = VideoEncoderConfig(name="ViT-B-16", pretrained=None)
    for config in (named, named.model_copy(update={"image_size": 112}), VideoEncoderConfig(name=None, **tiny),
                   VideoEncoderConfig(name=None, image_size=24, **tiny)):
        assert configured_image_size(config) == ClipVideoEncoder.build(config).image_size
    assert [configured_image_size(VideoEncoderConfig(name="ViT-B-16", image_size=size)) for size in (None, 112)] \
        == [224, 112]


def test_static_generation_gives_the_same_tokens(untrained_checkpoint, synth_corpus, monkeypatch):
    """Fixed shapes give the tokens of the dynamic cache, for audio+video and for video alone (whose prefix ends
    in a masked audio block): greedy search's static KV cache (the prefix padded on the left to a multiple of
    128 tokens, the batch filled with copies to a fixed size), and beam search's generated tokens in buffers of
    fixed size with the decoder's layers run as one (``step_graph.py``, which on a GPU replays them as a CUDA
    graph), its layers as they were afterwards."""
    import torch

    from clipwhisper.data.dataset import AVDataset, collate
    from clipwhisper.model import step_graph
    from clipwhisper.model.checkpoint import load_checkpoint
    from clipwhisper.model.precision import for_inference

    model = for_inference(load_checkpoint(untrained_checkpoint), "fp32")
    utterances = read_manifest(synth_corpus / "test.tsv")[:5]
    dataset = AVDataset(utterances, model.streams, model.video_encoder.image_size)
    batch = collate([dataset[i] for i in range(len(dataset))])
    layers = model.llm.model.layers
    caches, run = [], step_graph.LayerStack.run

    def stack_run(stack, hidden, kwargs):  # the layers run as one, over the fixed-size cache
        caches.extend(type(value.layers[0]).__name__ for value in kwargs.values() if hasattr(value, "layers"))
        return run(stack, hidden, kwargs)

    monkeypatch.setattr(step_graph.LayerStack, "run", stack_run)
    with torch.inference_mode():
        for modality in ("both", "video"):
            for beam in (1, 5):
                options = {"modality": modality, "beam_size": beam, "max_new_tokens": 10}
                dynamic = model.generate(batch, static=False, **options)
                static = model.generate(batch, static=True, rows=8, **options)
                assert static == dynamic and all(dynamic) and len(set(dynamic)) > 1, (modality, beam)
    assert len(caches) >= 2 * 10 and set(caches) == {"StaticBeamLayer"}
    assert not any("forward" in vars(layer) for layer in layers)


def test_a_fixed_size_beam_cache_stopping_early_gives_the_dynamic_hypotheses(synth_corpus, tmp_path):
    """A model that has learnt to end its transcripts stops its beams long before the buffers of
    ``max_new_tokens`` positions are full: the hypotheses over the partly written buffers are the dynamic
    cache's, in every modality."""
    import torch

    from clipwhisper.config import TrainConfig, nested, packaged_config, resolve
    from clipwhisper.data.dataset import AVDataset, collate
    from clipwhisper.model.checkpoint import load_checkpoint
    from clipwhisper.model.precision import for_inference
    from clipwhisper.training.loop import run_training

    run_training(resolve(TrainConfig, packaged_config("tiny"), nested({
        "data.path": synth_corpus, "output_path": tmp_path, "max_steps": 80, "learning_rate": 3e-3,
        "warmup_steps": 2})))
    model = for_inference(load_checkpoint(tmp_path / "final"), "fp32")
    utterances = read_manifest(synth_corpus / "test.tsv")[:6]
    batch = collate([AVDataset(utterances, model.streams, model.video_encoder.image_size)[i] for i in range(6)])
    with torch.inference_mode():
        for modality in ("both", "video", "audio"):
            options = {"modality": modality, "beam_size": 5, "max_new_tokens": 40}
            dynamic = model.generate(batch, static=False, **options)
            assert model.generate(batch, static=True, **options) == dynamic, modality
            tokens = [len(model.tokenizer(text, add_special_tokens=False).input_ids) for text in dynamic]
            assert all(0 < count < 30 for count in tokens), (modality, tokens)  # ended well inside the buffers


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_beam_search_runs_the_prefix_once_with_the_same_tokens(untrained_checkpoint, synth_corpus, attention):
    """Beam search starts from a KV cache of the prefix computed once per row (``llm.beam_prefix_cache``),
    held once for the row's beams under SDPA (``shared_prefix.py``) and copied per beam under another
    attention: the same tokens as transformers' beam search given the prefix itself, which runs it once per
    beam, for audio+video and for video alone (left padding inside the prefix)."""
    import torch

    from clipwhisper.data.dataset import AVDataset, collate
    from clipwhisper.model.checkpoint import load_checkpoint
    from clipwhisper.model.llm import beam_prefix_cache
    from clipwhisper.model.precision import for_inference

    model = for_inference(load_checkpoint(untrained_checkpoint), "fp32")
    model.llm.config._attn_implementation = attention
    utterances = read_manifest(synth_corpus / "test.tsv")[:5]
    batch = collate([AVDataset(utterances, model.streams, model.video_encoder.image_size)[i] for i in range(5)])
    with torch.inference_mode():
        for modality in ("both", "video"):
            found = beams_agree(model, batch, modality)
            assert all(found) and len(set(found)) > 1, modality
        prefix, mask = model.generation_prefix(batch, "both")
        attention_modules = [layer.self_attn for layer in model.llm.model.layers]
        with beam_prefix_cache(model.llm, prefix, mask, beams=5) as options:
            (cache,) = options.values()
            held = [getattr(module, "shared_prefix", None) for module in attention_modules]
            if attention == "sdpa":  # the prefix once per row on the modules, the cache empty until a beam grows
                assert all(keys.shape[0] == 5 and keys.shape[2] == prefix.shape[1] - 1 for keys, _ in held)
                assert cache.get_seq_length() == prefix.shape[1] - 1 and cache.layers[0].generated() == 0
            else:
                assert held == [None] * len(held) and cache.layers[0].keys.shape[0] == 25
        assert all(getattr(module, "shared_prefix", None) is None for module in attention_modules)


def test_noise_is_reproducible_and_at_the_requested_snr(synth_corpus):
    speech = load_audio(read_manifest(synth_corpus / "test.tsv")[0].audio)
    noise = load_audio(synth_corpus / "noise" / "babble.wav")
    a, b = mix_at_snr(speech, noise, 5.0, "u1"), mix_at_snr(speech, noise, 5.0, "u1")
    assert np.array_equal(a, b) and not np.array_equal(a, mix_at_snr(speech, noise, 5.0, "u2"))
    added = a - speech
    assert 10 * np.log10(np.mean(speech**2) / np.mean(added**2)) == pytest.approx(5.0, abs=0.01)


def test_failed_utterance_is_counted_not_dropped(checkpoint, synth_corpus, tmp_path):
    utts = read_manifest(synth_corpus / "test.tsv")[:4]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(utts[1].video.read_bytes()[:300])
    utts[1] = type(utts[1])(utts[1].id, broken, broken, utts[1].n_video_frames, utts[1].n_audio_samples,
                            utts[1].text)
    write_manifest(tmp_path / "t.tsv", tmp_path, utts, wrd=tmp_path / "t.wrd")
    result = decode("--model-path", checkpoint, "--test-tsv", tmp_path / "t.tsv", "--output-dir", tmp_path / "o",
                    "--max-new-tokens", "8", "--verbose", "--normalizer", "basic")
    assert result.exit_code == 1
    assert result.output.count("REF: ") == 4 and "ERROR: " in result.output
    records = read_records(tmp_path / "o" / "hyps.jsonl")
    assert [r["id"] for r in records] == [u.id for u in utts]
    bad = records[1]
    assert "broken.mp4" in bad["error"] and bad["hyp"] == "" and bad["deletions"] == bad["ref_words"] == 6
    assert records[0]["ref_normalized"] == records[0]["ref"]  # basic: GRID words stay as they are
    cell = json.loads((tmp_path / "o" / "summary.json").read_text())["cells"][0]
    assert cell["utterances"] == 4 and cell["failed"][0]["id"] == utts[1].id
    assert cell["ref_words"] == 24


def test_transcripts_and_names_are_printed_as_written(checkpoint, synth_corpus, tmp_path):
    """Text from data goes through rich unchanged: a `[noise]` tag stays, and `[/x]` is no markup error; the
    same for a folder name in brackets, in decode's and inspect's output."""
    utts = read_manifest(synth_corpus / "test.tsv")[:2]
    utts = [type(u)(u.id, u.video, u.audio, u.n_video_frames, u.n_audio_samples, text)
            for u, text in zip(utts, ["[noise] bin blue at f two now", "lay red [/x] by q"])]
    folder = tmp_path / "[red]runs"
    folder.mkdir()
    write_manifest(folder / "t.tsv", folder, utts, wrd=folder / "t.wrd")
    result = decode("--model-path", checkpoint, "--test-tsv", folder / "t.tsv", "--output-dir", folder / "o",
                    "--max-new-tokens", "4", "--verbose", "--normalizer", "none")
    assert result.exit_code == 0, result.output
    assert "REF: [noise] bin blue at f two now" in result.output and "REF: lay red [/x] by q" in result.output
    shutil.copytree(checkpoint, folder / "final")
    shown = runner.invoke(app, ["inspect", str(folder / "final")])
    assert shown.exit_code == 0, shown.output
    assert "[red]runs" in shown.output.replace("\n", "")


def test_modality_the_checkpoint_cannot_serve(checkpoint, synth_corpus, tmp_path):
    audio_only = tmp_path / "audio_ck"
    shutil.copytree(checkpoint, audio_only)
    config = json.loads((audio_only / "config.json").read_text())
    config["model"]["modality"] = "audio"
    (audio_only / "config.json").write_text(json.dumps(config))
    for asked, why in [("video", "cannot serve 'video'"), ("audio,video", "cannot serve 'video'"),
                       ("audio,lips", "modality.1: Input should be 'audio', 'video', 'both' or 'all'")]:
        result = decode("--model-path", audio_only, "--test-tsv", synth_corpus / "test.tsv", "--modality", asked,
                        "--output-dir", tmp_path / "o")
        assert result.exit_code == 2 and why in result.stderr, asked


def test_decode_usage_errors(checkpoint, synth_corpus, tmp_path):
    assert decode("--test-tsv", synth_corpus / "test.tsv").exit_code == 2
    shutil.copy(synth_corpus / "test.tsv", tmp_path / "only.tsv")
    result = decode("--model-path", checkpoint, "--test-tsv", tmp_path / "only.tsv")
    assert result.exit_code == 2 and "no transcripts" in result.stderr
    result = decode("--model-path", checkpoint, "--test-tsv", synth_corpus / "test.tsv", "--snr-db", "5")
    assert result.exit_code == 2 and "--noise" in result.stderr
    result = decode("--model-path", tmp_path / "nope", "--test-tsv", synth_corpus / "test.tsv")
    assert result.exit_code == 1 and "not a checkpoint folder" in result.stderr


def test_transcribe_wav_mp4_and_a_long_file(checkpoint, synth_corpus, tmp_path):
    utt = read_manifest(synth_corpus / "test.tsv")[0]
    speech = load_audio(utt.audio)
    long_wav = tmp_path / "long.wav"
    pause = np.zeros(SAMPLE_RATE // 2, np.float32)
    write_wav(long_wav, np.tile(np.concatenate([speech, pause]), 60)[: 70 * SAMPLE_RATE])
    result = runner.invoke(app, ["transcribe", str(utt.audio), str(utt.video), str(long_wav), "--model-path",
                                 str(checkpoint), "--format", "json"])
    assert result.exit_code == 0, result.output
    results = json.loads(result.stdout)
    assert [r["modality"] for r in results] == ["audio", "both", "audio"]
    assert results[2]["segments"] == 3 and results[2]["duration_s"] == pytest.approx(70.0)
    for r in results:  # the real-time factor: media seconds per wall second
        assert r["rtfx"] == pytest.approx(r["duration_s"] / r["decode_s"], rel=0.05)
    total = sum(r["duration_s"] for r in results)
    assert f"transcribed 3 file(s), {total:.1f} s of media in " in result.stderr and "RTFx" in result.stderr
    in_memory = clipwhisper.load(checkpoint).transcribe(Media(audio=load_audio(long_wav)))  # read whole, then cut
    assert results[2]["text"] == in_memory  # reading window by window from the file changes nothing
    assert all(isinstance(r["text"], str) for r in results)
    single = runner.invoke(app, ["decode", "--model_path", str(checkpoint), "--single_file", str(utt.audio)])
    assert single.exit_code == 0 and single.stdout.strip() == results[0]["text"]
    model = clipwhisper.load(checkpoint)
    assert model.transcribe(utt.audio) == results[0]["text"]


def test_the_python_api_takes_arrays_batches_and_gives_timed_segments(untrained_checkpoint, synth_corpus, tmp_path):
    """As whisper's transcribe and the Hugging Face pipeline: a numpy array, a list of inputs (their windows
    generated together) and segments with times; each result equals that input transcribed alone."""
    model = clipwhisper.load(untrained_checkpoint, precision="fp32")
    utts = read_manifest(synth_corpus / "test.tsv")[:2]
    speech = load_audio(utts[0].audio)
    long_audio = np.tile(speech, 1 + 64 * SAMPLE_RATE // len(speech))[: 64 * SAMPLE_RATE]
    alone = [model.transcribe(speech), model.transcribe(utts[1].video), model.transcribe(long_audio)]
    assert alone[0] == model.transcribe(utts[0].audio) and all(alone)  # the array reads as the file does
    assert model.transcribe([speech, utts[1].video, long_audio]) == alone
    timed = model.transcribe(long_audio, segments=True)
    spans = windows(64.0, model.window_s)
    assert [(s["start"], s["end"]) for s in timed["segments"]] == [(round(a, 3), round(b, 3)) for a, b in spans]
    assert len(spans) == 3 and spans[-1][1] == 64.0
    assert timed["text"] == alone[2] == join_overlapping([s["text"] for s in timed["segments"]])
    assert timed["duration_s"] == 64.0
    with pytest.raises(clipwhisper.errors.MediaError, match="16-kHz mono float"):
        model.transcribe(np.zeros((2, 16000), np.float32))


def test_transcribe_video_without_audio_uses_video(checkpoint, tmp_path):
    silent = make_media(tmp_path / "silent.mp4", audio=False, seconds=1.0)
    result = runner.invoke(app, ["transcribe", str(silent), "--model-path", str(checkpoint), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["modality"] == "video"
    missing = runner.invoke(app, ["transcribe", str(tmp_path / "none.wav"), "--model-path", str(checkpoint)])
    assert missing.exit_code == 1 and "none.wav: file not found" in missing.stderr


def test_windows_and_joining():
    assert windows(10.0) == [(0.0, 10.0)]
    spans = windows(70.0)
    assert spans == [(0.0, 30.0), (28.0, 58.0), (56.0, 70.0)]
    assert join_overlapping(["bin blue at f", "at f two now"]) == "bin blue at f two now"
    assert join_overlapping(["a b", "c d"]) == "a b c d"


def test_inspect_checkpoint_run_and_corrupt(checkpoint, tmp_path):
    result = runner.invoke(app, ["inspect", str(checkpoint), "--format", "json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["modality"] == "both" and not info["problems"]
    assert info["ctc_weights"] == {"video": 0.5} and info["ctc_units"] == {"video": "characters"}  # the tiny preset's
    text = runner.invoke(app, ["inspect", str(checkpoint)])
    assert "CTC 0.5 on video (characters)" in text.output
    names = {c["component"] for c in info["components"]}
    assert names == {"audio connector", "video connector", "fusion", "whisper", "clip", "llm base"}
    assert info["training"]["step"] == 12 and any(f["path"] == "model.safetensors" for f in info["files"])
    run = runner.invoke(app, ["inspect", str(checkpoint.parent)])
    assert run.exit_code == 0 and "step-000012" in run.output and "final" in run.output

    corrupt = tmp_path / "corrupt"
    shutil.copytree(checkpoint, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\xff" * 64)
    result = runner.invoke(app, ["inspect", str(corrupt)])
    assert result.exit_code == 1 and "corrupt safetensors" in result.stderr
    partial = tmp_path / "partial"
    shutil.copytree(checkpoint, partial)
    (partial / "config.json").unlink()
    result = runner.invoke(app, ["inspect", str(partial)])
    assert result.exit_code == 1 and "no config.json" in result.stderr


def test_the_default_batch_size_follows_the_device():
    """No --batch-size: 64 utterances per batch on a GPU, 8 on the CPU; one asked for is kept on either."""
    import torch

    from clipwhisper.config import DecodeConfig, resolve
    from clipwhisper.inference.batching import with_batch_size

    unset, asked = resolve(DecodeConfig, None, {}), resolve(DecodeConfig, None, {"batch_size": 5})
    assert unset.batch_size is None
    assert [with_batch_size(unset, torch.device(kind)).batch_size for kind in ("cuda", "cpu")] == [64, 8]
    assert [with_batch_size(asked, torch.device(kind)).batch_size for kind in ("cuda", "cpu")] == [5, 5]
