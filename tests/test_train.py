"""Training on the tiny preset, on CPU, through the same code paths as real checkpoints."""

import json
import os
import shutil
import signal

import open_clip
import pytest
import torch
from conftest import make_media
from safetensors import safe_open
from typer.testing import CliRunner

from clipwhisper.cli import app
from clipwhisper.config import TrainConfig, nested, packaged_config, resolve
from clipwhisper.data.dataset import AVDataset, collate
from clipwhisper.data.manifest import read_manifest, write_manifest
from clipwhisper.errors import ConfigError, Interrupted
from clipwhisper.model.checkpoint import load_checkpoint
from clipwhisper.training.loop import Trainer, build_model, run_training
from clipwhisper.training.run_folder import RunFolder


def tiny(corpus, out, **flat):
    settings = {"data.path": corpus, "output_path": out, "learning_rate": 3e-3, "warmup_steps": 3,
                "log_every": 1, "seed": 1, **flat}
    return resolve(TrainConfig, packaged_config("tiny"), nested(settings))


def log_records(run, event="train"):
    lines = (run / "train_log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == event]


def test_off_a_terminal_training_prints_plain_progress_lines(synth_corpus, tmp_path, capsys):
    """A batch job's log (stderr not a terminal) gets a line per progress_every_s, with the same fields in
    train_log.jsonl; the last step always has one."""
    run_training(tiny(synth_corpus, tmp_path, max_steps=4, progress_every_s=1e-6))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert all(" epoch 1 loss " in line and " grad-norm " in line and " utt/s ETA " in line for line in lines)
    records = log_records(tmp_path, "progress")
    assert [r["step"] for r in records] == [1, 2, 3, 4] and records[-1]["eta_s"] == 0
    assert all(r["grad_norm"] > 0 and r["utterances_per_s"] > 0 and r["lr"] > 0 for r in records)
    assert [r["loss"] for r in records] == [r["loss"] for r in log_records(tmp_path)]  # log_every 1


def a_batch(corpus, model, n=4):
    streams = [s for s in ("audio", "video") if s in model.streams]
    size = model.video_encoder.image_size if model.video_encoder else None
    data = AVDataset(read_manifest(corpus / "valid.tsv")[:n], streams, size)
    return collate([data[i] for i in range(n)])


@pytest.fixture(scope="module")
def both_run(synth_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("both")
    run_training(tiny(synth_corpus, out, max_steps=30, save_steps=10, keep_last=2, eval_steps=15))
    return out


def test_training_lowers_the_loss_and_writes_the_run_folder(both_run):
    losses = [r["loss"] for r in log_records(both_run)]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:3]) / 3
    names = {p.name for p in both_run.iterdir()}
    # saved every 10 steps and at each epoch's end (12 batches); keep_last=2
    assert {"config.yaml", "train_log.jsonl", "best", "final", "step-000024", "step-000030"} <= names
    assert not names & {"step-000010", "step-000012", "step-000020"}
    for folder in ("final", "best", "step-000030"):
        files = {p.name for p in (both_run / folder).iterdir()}
        assert {"config.json", "model.safetensors", "llm", "tokenizer"} <= files
    assert (both_run / "step-000030" / "train_state" / "tensors.safetensors").is_file()
    assert len(log_records(both_run, "eval")) == 2


@pytest.mark.parametrize("modality", ["audio", "video"])
def test_single_modality_training(synth_corpus, tmp_path, modality):
    run_training(tiny(synth_corpus, tmp_path, max_steps=25, **{"model.modality": modality}))
    losses = [r["loss"] for r in log_records(tmp_path)]
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:3]) / 3
    config = json.loads((tmp_path / "final" / "config.json").read_text())
    assert config["model"]["modality"] == modality
    model = load_checkpoint(tmp_path / "final")
    assert model.streams == (modality,)
    assert (model.audio_encoder is None) == (modality == "video")


def test_checkpoint_loads_back_to_identical_outputs(both_run, synth_corpus):
    trainer_model = load_checkpoint(both_run / "step-000030")
    final = load_checkpoint(both_run / "final")
    batch = a_batch(synth_corpus, final)
    with torch.no_grad():
        assert trainer_model(batch).item() == final(batch).item()
    assert trainer_model.generate(batch, max_new_tokens=12) == final.generate(batch, max_new_tokens=12)


def all_records(run):
    """The log but its progress lines, whose speeds and times are the wall clock's."""
    lines = (run / "train_log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") != "progress"]


def same_weights(a_folder, b_folder) -> bool:
    with safe_open(a_folder / "model.safetensors", "pt") as a, safe_open(b_folder / "model.safetensors", "pt") as b:
        return a.keys() == b.keys() and all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())


def sixteen_steps(corpus, out, **flat):
    """A checkpoint every 8 steps, an evaluation every 4, logging every 3 (a resume at 8 lands inside a window)."""
    return tiny(corpus, out, max_steps=16, save_steps=8, keep_last=5, log_every=3, eval_steps=4, **flat)


@pytest.fixture(scope="module")
def straight16(synth_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight16")
    run_training(sixteen_steps(synth_corpus, out))
    return out


def test_resume_is_exact(synth_corpus, straight16, tmp_path):
    """Weights and the whole log (losses, averages over the resume, evaluations) equal the straight run's, also
    when the log ends in a torn line."""
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(straight16 / "step-000008", resumed / "step-000008")
    shutil.copy(straight16 / "train_log.jsonl", resumed / "train_log.jsonl")
    with open(resumed / "train_log.jsonl", "a") as log:
        log.write('{"event": "train", "st')  # the torn last line a power loss leaves
    run_training(sixteen_steps(synth_corpus, resumed, resume="auto"))
    assert all_records(resumed) == all_records(straight16)
    assert same_weights(straight16 / "final", resumed / "final")


def test_a_kill_between_the_last_step_save_and_final_logs_no_evaluation_twice(synth_corpus, straight16, tmp_path):
    """Killed after step-16/ was saved and before final/: each rerun used to evaluate step 16 again and log it."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(straight16 / "step-000016", run / "step-000016")
    shutil.copy(straight16 / "train_log.jsonl", run / "train_log.jsonl")
    for _ in range(2):
        run_training(sixteen_steps(synth_corpus, run, resume="auto"))
        shutil.rmtree(run / "final")
    assert all_records(run) == all_records(straight16)


@pytest.mark.parametrize("moment", ["_evaluate", "_save_step"])
def test_a_signal_during_evaluation_or_saving_stops_there(synth_corpus, straight16, tmp_path, moment):
    """SIGTERM arriving while the run evaluates or saves: exit 143's error, a `stopped` record, no final/ from the
    unfinished run; `--resume auto` then finishes with the straight run's log and weights."""
    run = tmp_path / "run"
    trainer = Trainer(sixteen_steps(synth_corpus, run))
    original = getattr(trainer, moment)

    def signalled(*args):
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the trainer: a stop request, like a cluster's preemption
        return original(*args)

    setattr(trainer, moment, signalled)
    with pytest.raises(Interrupted) as stopped:
        trainer.fit()
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert not (run / "final").exists()
    records = all_records(run)
    assert records[-1]["event"] == "stopped" and records[-1]["step"] < 16
    assert RunFolder(run).latest().name == f"step-{records[-1]['step']:06d}"
    run_training(sixteen_steps(synth_corpus, run, resume="auto"))
    assert [r for r in all_records(run) if r["event"] != "stopped"] == all_records(straight16)
    assert same_weights(straight16 / "final", run / "final")


@pytest.fixture(scope="module")
def local_pretrained(tmp_path_factory, synth_corpus):
    """Pretrained parts in each real on-disk format, made here: whisper .pt, open_clip file, HF folder."""
    import whisper
    from transformers import LlamaConfig, LlamaForCausalLM

    from clipwhisper.model.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("pretrained")
    dims = whisper.ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=32, n_audio_head=2, n_audio_layer=1,
                                   n_vocab=64, n_text_ctx=16, n_text_state=32, n_text_head=2, n_text_layer=1)
    torch.save({"dims": dims.__dict__, "model_state_dict": whisper.model.Whisper(dims).state_dict()},
               root / "whisper-tiny-test.pt")

    (root / "clip_cfg").mkdir()
    clip_cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 48, "layers": 1, "width": 32, "patch_size": 16,
                                                "head_width": 16},
                "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}}
    (root / "clip_cfg" / "cw-test-vit.json").write_text(json.dumps(clip_cfg))
    open_clip.add_model_config(root / "clip_cfg")
    torch.save(open_clip.create_model("cw-test-vit").state_dict(), root / "clip.pt")

    tokenizer = train_tokenizer([u.text for u in read_manifest(synth_corpus / "train.tsv")])
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    llm.save_pretrained(root / "llm")
    tokenizer.save_pretrained(root / "llm")
    return root


def test_frozen_pretrained_parts_and_lora(synth_corpus, tmp_path, local_pretrained):
    config = tiny(synth_corpus, tmp_path, max_steps=6, log_param_updates=True, log_every=3, **{
        "model.audio_encoder": {"name": str(local_pretrained / "whisper-tiny-test.pt"), "dims": None,
                                "trainable": False},
        "model.video_encoder": {"name": "cw-test-vit", "pretrained": str(local_pretrained / "clip.pt"),
                                "vision_cfg": None, "trainable": False},
        "model.llm": {"name": str(local_pretrained / "llm"), "config": None, "finetune": "lora",
                      "lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "gradient_checkpointing": True},
    })
    trainer = Trainer(config)
    llm = trainer.model.llm
    assert getattr(llm, "is_activation_checkpointing", None) or llm.is_gradient_checkpointing
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "connector" in n or "fusion" in n for n in trainable)
    for name, value in after.items():
        if name in trainable:
            assert not torch.equal(before[name], value), name
        else:
            assert torch.equal(before[name], value), name
    updates = [r["components"] for r in log_records(tmp_path, "param_updates")]
    assert len(updates) == 2
    for report in updates:
        assert report["whisper"]["tensors_changed"] == 0 and report["whisper"]["update_norm"] == 0
        assert report["clip"]["tensors_changed"] == 0 and report["clip"]["update_norm"] == 0
        assert report["audio connector"]["update_norm"] > 0 and report["llm"]["tensors_changed"] > 0
    final = tmp_path / "final"
    files = {p.name for p in final.iterdir()}
    assert "adapter" in files and "llm" not in files  # adapter only; the base is referenced
    saved = json.loads((final / "config.json").read_text())["model"]
    assert saved["llm"]["name"] == str(local_pretrained / "llm")
    assert saved["audio_encoder"]["name"].endswith("whisper-tiny-test.pt")
    with safe_open(final / "model.safetensors", "pt") as weights:
        assert not any(k.startswith(("whisper.", "clip.")) for k in weights.keys())  # frozen: referenced
    reloaded = load_checkpoint(final)
    batch = a_batch(synth_corpus, reloaded)
    with torch.no_grad():
        assert abs(reloaded(batch).item() - trainer.model.eval()(batch).item()) < 1e-5


def test_original_flag_spellings_drive_a_run(synth_corpus, tmp_path):
    result = CliRunner().invoke(app, [
        "train", "-c", "tiny", "--data_path", str(synth_corpus), "--output_path", str(tmp_path),
        "--modality", "audio", "--batch_size", "16", "--max_epochs", "1", "--save_steps", "3",
        "--log_param_updates", "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "step-000003" / "config.json").is_file()
    assert log_records(tmp_path, "param_updates")
    assert json.loads((tmp_path / "final" / "config.json").read_text())["model"]["modality"] == "audio"


def test_checks_before_loading_report_every_problem(synth_corpus, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.tsv").write_text(f"{synth_corpus}\nx\t\taudio/missing.wav\t0\t16000\n")
    (data / "train.wrd").write_text("bin blue\n")
    result = CliRunner().invoke(app, ["train", "-c", "tiny", "--data-path", str(data), "--output-path",
                                      str(tmp_path / "out"), "--modality", "both"])
    assert result.exit_code == 2
    message = result.stderr
    assert "no video path" in message and "media files not found" in message and "valid.tsv" in message


def test_noise_augmentation_depends_only_on_seed_epoch_and_id(synth_corpus):
    import numpy as np

    from clipwhisper.data.media import load_audio
    from clipwhisper.data.noise import NoiseAugmentation

    speech = load_audio(read_manifest(synth_corpus / "train.tsv")[0].audio)
    noise = load_audio(synth_corpus / "noise" / "babble.wav")
    augment = NoiseAugmentation(noise, prob=0.5, snr_range=(-5, 20), seed=3)
    outputs = [augment(speech, f"u{i}", epoch=0) for i in range(40)]
    noisy = sum(not np.array_equal(out, speech) for out in outputs)
    assert 10 < noisy < 30  # about half
    assert all(np.array_equal(a, augment(speech, f"u{i}", epoch=0)) for i, a in enumerate(outputs))
    assert any(not np.array_equal(a, augment(speech, f"u{i}", epoch=1)) for i, a in enumerate(outputs))
    late = NoiseAugmentation(noise, prob=0.5, snr_range=(-5, 20), seed=3, from_epoch=2)
    assert all(np.array_equal(late(speech, f"u{i}", epoch=epoch), speech) for i in range(40) for epoch in (0, 1))
    assert all(np.array_equal(late(speech, f"u{i}", epoch=2), augment(speech, f"u{i}", epoch=2)) for i in range(40))


def test_an_item_made_noisy_keeps_its_video_whatever_modality_dropout_draws(synth_corpus):
    """The dataset marks the items its noise augmentation changed; in training, modality dropout that would drop
    every item's video (video_drop 1) keeps it for those, and drops it for the clean ones."""
    from clipwhisper.data.media import load_audio
    from clipwhisper.data.noise import NoiseAugmentation

    utterances = read_manifest(synth_corpus / "valid.tsv")[:8]
    model = build_model(resolve(TrainConfig, packaged_config("tiny"), nested({
        "data.path": synth_corpus, "model.fusion.audio_drop": 0.0, "model.fusion.video_drop": 1.0})),
        [u.text for u in utterances]).train()
    noise = load_audio(synth_corpus / "noise" / "babble.wav")
    data = AVDataset(utterances, model.streams, model.video_encoder.image_size,
                     augment=NoiseAugmentation(noise, prob=0.5, snr_range=(0, 5), seed=1))
    batch = collate([data[i] for i in range(8)])
    assert 0 < sum(batch.noisy) < 8  # some of each
    assert batch.take([0, 1]).noisy == batch.noisy[:2]
    assert model._keep(batch, "both")["video"].tolist() == batch.noisy
    assert model.eval()._keep(batch, "both")["video"].all()  # no dropout outside training


def test_non_finite_losses_stop_training_with_a_checkpoint(synth_corpus, tmp_path):
    """A learning rate of 1e8 blows the weights up within a few steps."""
    result = CliRunner().invoke(app, ["train", "-c", "tiny", "--data-path", str(synth_corpus), "--output-path",
                                      str(tmp_path), "--learning-rate", "1e8", "--max-steps", "40"],
                                env={"CLIPWHISPER_GRAD_CLIP": "1e30", "CLIPWHISPER_WARMUP_STEPS": "0",
                                     "CLIPWHISPER_MAX_BAD_STEPS": "2"})
    assert result.exit_code == 1, result.output
    assert "not finite for 2 steps in a row" in result.stderr
    skipped = log_records(tmp_path, "skipped_step")
    assert len(skipped) == 2
    assert (tmp_path / f"step-{skipped[-1]['step']:06d}" / "config.json").is_file()


def test_whisper_encodes_short_clips_at_their_length_or_padded_to_30s():
    from clipwhisper.config import AudioEncoderConfig
    from clipwhisper.model.audio_encoder import WhisperAudioEncoder

    dims = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 32, "n_audio_head": 2, "n_audio_layer": 1}
    short = WhisperAudioEncoder.build(AudioEncoderConfig(name=None, dims=dims))
    padded = WhisperAudioEncoder.build(AudioEncoderConfig(name=None, dims=dims, pad_to_30s=True))
    padded.load_state_dict(short.state_dict())
    audio = torch.randn(2, 32000) * 0.1
    lengths = torch.tensor([32000, 16000])
    features, mask = short(audio, lengths)
    assert features.shape == (2, 100, 32) and mask.sum(1).tolist() == [100, 50]
    full, full_mask = padded(audio, lengths)
    assert full.shape == (2, 1500, 32) and full_mask.sum(1).tolist() == [100, 50]


@pytest.mark.parametrize("gate", ["learned", "fixed"])
def test_sum_fusion_trains_and_reloads(synth_corpus, tmp_path, gate):
    run_training(tiny(synth_corpus, tmp_path, max_steps=4, **{"model.fusion.kind": "sum", "model.fusion.gate": gate,
                                                              "model.fusion.fusion_scale": 0.7}))
    model = load_checkpoint(tmp_path / "final")
    weight = float(model.fusion.audio_weight().detach())
    assert weight == pytest.approx(0.7) if gate == "fixed" else 0.0 < weight < 1.0
    batch = a_batch(synth_corpus, model)
    prefix, mask = model.prefix(batch)
    audio_tokens = model._stream_tokens("audio", batch)[0].shape[1]
    video_tokens = model._stream_tokens("video", batch)[0].shape[1]
    assert prefix.shape[1] == len(model.prompt_ids) + max(audio_tokens, video_tokens)  # one block, not two
    assert len(model.generate(batch, max_new_tokens=4)) == len(batch)
    for stream in ("audio", "video"):  # one stream alone: audio-first training, a single-modality decode
        alone = batch.only(stream)
        tokens, token_mask = model._stream_tokens(stream, alone)
        prefix, mask = model.prefix(alone, stream)
        assert prefix.shape[1] == len(model.prompt_ids) + tokens.shape[1]
        assert torch.equal(mask[:, len(model.prompt_ids):], token_mask)
        assert len(model.generate(alone, modality=stream, max_new_tokens=4)) == len(batch)


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """What transformers' ``generate`` uses: the count of attended tokens before each one."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


def test_labels_cover_only_the_transcript_and_eos(both_run, synth_corpus):
    """The loss equals cross-entropy over transcript+EOS tokens predicted from everything before them, one
    row at a time with the masked modality block in place (training packs rows and runs without a mask)."""
    model = load_checkpoint(both_run / "final")
    model.config.video_connector.ctc_weight = 0.0  # the auxiliary CTC term has tests of its own (test_ctc.py)
    batch = a_batch(synth_corpus, model, n=4)
    with torch.no_grad():
        loss = model(batch)
        prefix, prefix_mask = model.prefix(batch)
        total, count = 0.0, 0
        for row, target in enumerate(model.target_ids(batch.texts)):
            ids = torch.tensor(target)
            embeds = torch.cat([prefix[row], model.llm.get_input_embeddings()(ids)])[None]
            mask = torch.cat([prefix_mask[row], torch.ones(len(ids), dtype=torch.bool)])[None]
            logits = model.llm(inputs_embeds=embeds, attention_mask=mask.long(),
                               position_ids=positions_from_mask(mask)).logits[0]
            start = prefix.shape[1]
            predicted = logits[start - 1:start - 1 + len(ids)]
            total += torch.nn.functional.cross_entropy(predicted, ids, reduction="sum").item()
            count += len(ids)
    assert target[-1] == model.tokenizer.eos_token_id
    assert loss.item() == pytest.approx(total / count, rel=1e-4)


def broken_corpus(synth_corpus, tmp_path):
    """The session corpus with 5 of its 96 training files (5%) broken in five ways: (folder, {id: file})."""
    data = tmp_path / "data"
    data.mkdir()
    train = read_manifest(synth_corpus / "train.tsv")
    assert len(train) == 96
    kinds = {"empty.mp4": b"", "garbage.mp4": b"RIFF" + b"\x00" * 100,
             "truncated.mp4": train[0].video.read_bytes()[:2000], "header_only.mp4": train[0].video.read_bytes()[:48]}
    broken = {}
    for row, (name, content) in zip((5, 20, 41, 66), kinds.items()):
        (tmp_path / name).write_bytes(content)
        broken[row] = tmp_path / name
    broken[90] = make_media(tmp_path / "sound_only.mp4", video=False)  # no video stream for `both`
    for row, path in broken.items():
        train[row] = type(train[row])(train[row].id, path, path, train[row].n_video_frames,
                                      train[row].n_audio_samples, train[row].text)
    write_manifest(data / "train.tsv", tmp_path, train, wrd=data / "train.wrd")
    shutil.copy(synth_corpus / "valid.tsv", data / "valid.tsv")
    shutil.copy(synth_corpus / "valid.wrd", data / "valid.wrd")
    return data, {train[row].id: path for row, path in broken.items()}


def bad_sample_records(run):
    return [json.loads(line) for line in (run / "bad_samples.jsonl").read_text().splitlines()]


def test_bad_samples_are_skipped_and_listed_or_fail_the_run(synth_corpus, tmp_path):
    """One epoch over a corpus with 5% broken files completes and lists exactly those."""
    data, broken = broken_corpus(synth_corpus, tmp_path)
    args = ["train", "-c", "tiny", "--data-path", str(data), "--max-epochs", "1", "--output-path"]
    result = CliRunner().invoke(app, [*args, str(tmp_path / "skip")])
    assert result.exit_code == 0, result.output
    bad = bad_sample_records(tmp_path / "skip")
    assert sorted(b["id"] for b in bad) == sorted(broken)
    assert all(str(broken[record["id"]]) in record["error"] for record in bad)
    assert "5 bad samples skipped" in result.stderr
    assert json.loads((tmp_path / "skip" / "final" / "config.json").read_text())["step"] == 12  # every batch
    failed = CliRunner().invoke(app, [*args, str(tmp_path / "fail"), "--on-bad-sample", "fail"])
    assert failed.exit_code == 1 and any(str(p) in failed.stderr for p in broken.values())


def test_video_image_size_interpolates_pretrained_positions(local_pretrained):
    """--video-image-size on a pretrained open_clip file: 48 px weights run at 32 px (patch 16: 3x3 -> 2x2)."""
    from clipwhisper.config import VideoEncoderConfig
    from clipwhisper.model.video_encoder import ClipVideoEncoder

    settings = {"name": "cw-test-vit", "pretrained": str(local_pretrained / "clip.pt"), "vision_cfg": None}
    full = ClipVideoEncoder.build(VideoEncoderConfig(**settings))
    small = ClipVideoEncoder.build(VideoEncoderConfig(**settings, image_size=32))
    assert (full.image_size, small.image_size) == (48, 32)
    assert small.visual.positional_embedding.shape[0] == 1 + 2 * 2
    torch.testing.assert_close(small.visual.conv1.weight, full.visual.conv1.weight)  # the same pretrained weights
    frames = torch.randint(0, 256, (1, 3, 32, 32, 3), dtype=torch.uint8)
    features, mask = small.eval()(frames, torch.tensor([3]))
    assert features.shape == (1, 3, small.output_size) and mask.all()


def test_compiled_llm_layers_train_as_eager_ones(synth_corpus, tmp_path):
    """--compile (the default on a GPU): the same losses as eager within float noise, and a plain checkpoint.
    Validation in between generates through the same compiled layers with a mask (training runs them
    maskless, model/causal.py), and the step after it still matches."""
    runs = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        config = tiny(synth_corpus, tmp_path / name, max_steps=3, compile=compiled, eval_steps=2,
                      **{"model.fusion.audio_drop": 0, "model.fusion.video_drop": 0})
        runs[name] = run_training(config).parent
    compiled_losses = [r["loss"] for r in log_records(runs["compiled"])]
    assert compiled_losses == pytest.approx([r["loss"] for r in log_records(runs["eager"])], rel=1e-4)
    assert [r["step"] for r in log_records(runs["compiled"], "eval")][:1] == [2]
    assert load_checkpoint(runs["compiled"] / "final") is not None


@pytest.mark.parametrize("modality", ["audio", "video", "both"])
def test_generation_starts_where_training_predicts_the_first_token(both_run, synth_corpus, modality):
    """Generation's first logits equal training's at the first target, for every modality of a `both` model.
    A video-only prefix ends in the hidden audio block: generation once started from that empty token, and a
    `both` model decoded with video alone read no lips at all (issue 24)."""
    model = load_checkpoint(both_run / "final")
    batch = a_batch(synth_corpus, model, n=4)
    with torch.no_grad():
        prefix, mask = model.prefix(batch, modality)
        hidden = model._llm_hidden(prefix, mask)  # training's packed rows
        last = mask.sum(1) - 1
        trained = model.llm.get_output_embeddings()(hidden[torch.arange(len(last)), last])
        embeds, attention = model.generation_prefix(batch, modality)
        generated = model.llm.generate(inputs_embeds=embeds, attention_mask=attention.long(), max_new_tokens=1,
                                       do_sample=False, output_logits=True, return_dict_in_generate=True,
                                       pad_token_id=model.tokenizer.pad_token_id).logits[0]
    assert torch.allclose(generated, trained, atol=1e-4), (generated - trained).abs().max()


def test_training_leaves_out_utterances_beyond_whispers_window_and_max_duration(synth_corpus, tmp_path):
    import dataclasses

    from clipwhisper.data.manifest import read_manifest, write_manifest
    from clipwhisper.data.utterance import duration_s
    from clipwhisper.training.checks import load_splits
    from clipwhisper.training.run_identity import run_identity

    train, valid = read_manifest(synth_corpus / "train.tsv"), read_manifest(synth_corpus / "valid.tsv")
    train[0] = dataclasses.replace(train[0], n_audio_samples=31 * 16000)  # as a 31-s recording's row says
    valid[0] = dataclasses.replace(valid[0], n_audio_samples=31 * 16000)
    for split, utterances in (("train", train), ("valid", valid)):
        write_manifest(tmp_path / f"{split}.tsv", synth_corpus, utterances, wrd=tmp_path / f"{split}.wrd")
    limit = sorted(duration_s(u) for u in train[1:])[len(train) // 2]
    config = resolve(TrainConfig, packaged_config("tiny"), nested({
        "data.path": tmp_path, "data.max_duration_s": limit, "output_path": tmp_path / "run"}))
    splits = load_splits(config)
    assert [u.id for u in splits["train"]] == [u.id for u in train[1:] if duration_s(u) <= limit]
    assert len(train) // 3 < len(splits["train"]) < len(train) - 1
    assert [u.id for u in splits["valid"]] == [u.id for u in valid[1:]]  # max_duration_s leaves validation whole
    assert run_identity(config)["data"]["max_duration_s"] == limit  # a resume with another limit is refused
    assert "max_duration_s" not in run_identity(config.model_copy(update={"data": config.data.model_copy(
        update={"max_duration_s": None})}))["data"]


def test_audio_first_epochs_train_the_audio_alone_then_both(synth_corpus, tmp_path):
    """audio_first_epochs 1 of 2: the first epoch's steps never run the lip encoder (nor dropout's draws), the
    second's run both encoders on every batch; a model without both streams refuses the setting."""
    from clipwhisper.model.audio_encoder import WhisperAudioEncoder
    from clipwhisper.model.video_encoder import ClipVideoEncoder

    calls = {"audio": 0, "video": 0}

    def count(module, args, output):
        if module.training:  # training steps; evaluation runs in eval mode
            calls["audio" if isinstance(module, WhisperAudioEncoder) else "video"] += 1

    config = tiny(synth_corpus, tmp_path, max_epochs=2, audio_first_epochs=1, batch_size=16, eval_steps=10_000)
    batches = -(-len(read_manifest(synth_corpus / "train.tsv")) // 16)
    hooks = [torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, output: count(module, args, output)
        if isinstance(module, (WhisperAudioEncoder, ClipVideoEncoder)) else None)]
    try:
        run_training(config)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == {"audio": 2 * batches, "video": batches}
    with pytest.raises(ConfigError, match="audio_first_epochs trains a both model"):
        tiny(synth_corpus, tmp_path, audio_first_epochs=1, **{"model.modality": "audio"})
    with pytest.raises(ConfigError, match="leaves no epoch"):
        tiny(synth_corpus, tmp_path, audio_first_epochs=2, max_epochs=2)
