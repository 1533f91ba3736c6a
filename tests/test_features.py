"""The encoder-feature cache: reuse, exactness, invalidation; batch-independent audio features; padded batches."""

import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_train import log_records, tiny

from clipwhisper.config import AudioEncoderConfig
from clipwhisper.data.dataset import collate, pad_stack
from clipwhisper.data.features import FeatureCache, build_feature_cache
from clipwhisper.data.manifest import read_manifest
from clipwhisper.model.audio_encoder import WhisperAudioEncoder
from clipwhisper.training.loop import Trainer

FROZEN = {"model.audio_encoder.trainable": False, "model.video_encoder.trainable": False}
TINY_WHISPER = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 64, "n_audio_head": 4, "n_audio_layer": 2}


def test_audio_features_do_not_depend_on_the_batch():
    torch.manual_seed(0)
    encoder = WhisperAudioEncoder.build(AudioEncoderConfig(name=None, dims=TINY_WHISPER)).eval()
    lengths = torch.tensor([32000, 16000, 15_901])
    audio = torch.randn(3, 32000) * 0.1 * (torch.arange(32000)[None, :] < lengths[:, None])
    with torch.no_grad():
        batched, mask = encoder(audio, lengths)
        for row in (1, 2):
            alone, alone_mask = encoder(audio[row:row + 1, : lengths[row]], lengths[row:row + 1])
            assert int(mask[row].sum()) == int(alone_mask.sum()) == 50
            torch.testing.assert_close(batched[row, :50], alone[0], atol=1e-5, rtol=1e-5)


def test_a_batch_log_mel_is_each_clip_s_own_log_mel():
    """One STFT for the batch, each clip reflected at its own ends and normalised by its own peak, equals
    Whisper's log-mel of the clip alone (zero-padded to a whole encoder frame), and zeros after it."""
    from clipwhisper.model.audio_encoder import FRAME, HOP_LENGTH

    encoder = WhisperAudioEncoder.build(AudioEncoderConfig(name=None, dims=TINY_WHISPER))
    lengths = torch.tensor([16_000, 7, 321, 320, 12_345, 48_000])
    audio = torch.randn(len(lengths), 48_000, generator=torch.Generator().manual_seed(0)) * 0.1
    batch = encoder._own_length_mels(audio, lengths)
    for row, n in enumerate(lengths.tolist()):
        size = max(1, -(-n // FRAME)) * FRAME
        padded = torch.nn.functional.pad(audio[row, :n], (0, size - n))
        alone = encoder.log_mel(padded[None])[0, :, : size // HOP_LENGTH]
        torch.testing.assert_close(batch[row, :, : alone.shape[-1]], alone, atol=1e-6, rtol=0)
        assert not batch[row, :, alone.shape[-1]:].any()


@pytest.fixture(scope="module")
def cached_runs(synth_corpus, tmp_path_factory):
    """Three runs of 2 epochs: filling the cache, without it, and reusing it."""
    root = tmp_path_factory.mktemp("cache")
    cache, runs, trainers = root / "features", {}, {}
    for name, feature_cache in (("fill", cache), ("plain", None), ("reuse", cache)):
        trainer = Trainer(tiny(synth_corpus, root / name, max_epochs=2, eval_steps=100, feature_cache=feature_cache,
                               **FROZEN))
        trainer.fit()
        runs[name], trainers[name] = root / name, trainer
    return cache, runs, trainers


def test_cached_training_equals_uncached_training(cached_runs):
    _, runs, _ = cached_runs
    losses = {name: [r["loss"] for r in log_records(run)] for name, run in runs.items()}
    assert len(losses["plain"]) == 24  # 96 training utterances, batch 8, 2 epochs
    for name in ("fill", "reuse"):
        assert losses[name] == pytest.approx(losses["plain"], rel=1e-4)


def test_a_second_run_reads_every_feature_and_encodes_nothing(cached_runs, synth_corpus):
    cache, _, trainers = cached_runs
    utterances = len(read_manifest(synth_corpus / "train.tsv")) + len(read_manifest(synth_corpus / "valid.tsv"))
    files = {folder.name.split("-")[0]: len(list(folder.glob("*.safetensors"))) for folder in cache.iterdir()}
    assert files == {"audio": utterances, "video": utterances}
    assert trainers["fill"].features.writes >= 2 * utterances
    assert trainers["reuse"].features.writes == 0
    assert trainers["plain"].features is None


def test_a_partly_cached_batch_encodes_the_rest_and_matches(cached_runs, synth_corpus, tmp_path):
    cache, _, trainers = cached_runs
    model = trainers["plain"].model.eval()
    partial = tmp_path / "partial"
    shutil.copytree(cache, partial)
    utterances = read_manifest(synth_corpus / "valid.tsv")[:4]
    features, _ = build_feature_cache(partial, model, utterances, 25.0, None, audio_augmented=False)
    for utterance in utterances[::2]:  # rows 0 and 2 must be encoded again
        for stream in ("audio", "video"):
            os.remove(features._file(stream, utterance))
    fresh = trainers["plain"].valid_set
    cached = type(fresh)(utterances, fresh.streams, fresh.image_size, features=features)
    plain_batch = collate([fresh[i] for i in range(4)])
    mixed_batch = collate([cached[i] for i in range(4)])
    assert mixed_batch.media["audio"].lengths.tolist()[1::2] == [0, 0]
    with torch.no_grad():
        for stream in ("audio", "video"):
            want, want_mask = model._features(stream, plain_batch)
            got, got_mask = model._features(stream, mixed_batch)
            assert torch.equal(want_mask, got_mask)
            torch.testing.assert_close(got * got_mask[..., None], want * want_mask[..., None], atol=1e-5, rtol=1e-5)


def test_an_edited_media_file_or_other_settings_miss_the_cache(cached_runs, synth_corpus, tmp_path):
    cache, _, trainers = cached_runs
    model = trainers["plain"].model
    utterances = read_manifest(synth_corpus / "valid.tsv")[:1]
    features, notes = build_feature_cache(cache, model, utterances, 25.0, None, audio_augmented=False)
    assert notes == [] and features.get("audio", utterances[0]) is not None
    stored = load_file(features._file("audio", utterances[0]))["features"]
    assert stored.shape[1] == model.audio_encoder.output_size
    media = tmp_path / "copy.wav"
    shutil.copy(utterances[0].audio, media)
    moved = type(utterances[0])(utterances[0].id, utterances[0].video, media)
    assert FeatureCache(cache, {"audio": next(iter(features.folders.values())).name.split("-")[1]},
                        [moved]).get("audio", moved) is None
    other_rate, _ = build_feature_cache(cache, model, utterances, 30.0, None, audio_augmented=False)
    assert other_rate.folders["video"] != features.folders["video"]
    assert other_rate.folders["audio"] == features.folders["audio"]
    augmented, notes = build_feature_cache(cache, model, utterances, 25.0, None, audio_augmented=True)
    assert augmented.streams == ("video",) and "noise augmentation" in notes[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.uint8, torch.bool, torch.int64])
def test_pad_stack_copies_rows_of_every_dtype_and_zeroes_the_padding(dtype):
    """Rows move as bytes (numpy, not torch's threads): the values of a bf16 feature row, a 1-D audio row, an empty
    row and a row that is a strided view all come back exact."""
    rows = [torch.randn(5, 3).to(dtype), torch.randn(6, 6)[:2, ::2].to(dtype), torch.zeros(0, 3, dtype=dtype)]
    out, lengths = pad_stack(rows)
    assert out.dtype == dtype and out.shape == (3, 5, 3) and lengths.tolist() == [5, 2, 0]
    assert torch.equal(out[0], rows[0]) and torch.equal(out[1, :2], rows[1])
    assert not out[1, 2:].any() and not out[2].any()
    audio, lengths = pad_stack([np.arange(4, dtype=np.float32), np.arange(1, 3, dtype=np.float32)])
    assert audio.tolist() == [[0, 1, 2, 3], [1, 2, 0, 0]] and lengths.tolist() == [4, 2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="page-locked memory needs CUDA")
def test_a_batch_pinned_for_the_gpu_keeps_its_values():
    """``Batch.pin_memory`` (training's loader and a decode's) copies bytes with numpy: exact values, pinned; a
    decode's cells pin the video they share once."""
    from clipwhisper.data.batch import Batch, Padded

    features = torch.randn(2, 3, 4).to(torch.bfloat16)
    batch = Batch(["a", "b"], ["x", "y"], {"audio": Padded(torch.randn(2, 7), torch.tensor([7, 5]))},
                  {"video": Padded(features[:, ::2], torch.tensor([2, 1]))})
    pinned = batch.pin_memory()
    for ours, theirs in ((pinned.media["audio"], batch.media["audio"]), (pinned.features["video"],
                                                                       batch.features["video"])):
        assert all(t.is_pinned() for t in ours) and all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert pinned.ids == batch.ids and pinned.texts == batch.texts
    from clipwhisper.inference.batching import Cells

    noisy = Batch(["a", "b"], ["x", "y"], {"audio": Padded(torch.randn(2, 7), torch.tensor([7, 5])),
                                           "video": batch.features["video"]})
    cells = Cells([("clean", Batch(["a", "b"], ["x", "y"], {"video": batch.features["video"]})), (0.0, noisy)])
    pinned = cells.pin_memory()
    assert pinned[0][1].media["video"] is pinned[1][1].media["video"]  # a tensor the cells share is pinned once
    assert pinned[1][1].media["video"].values.is_pinned() and [snr for snr, _ in pinned] == ["clean", 0.0]
