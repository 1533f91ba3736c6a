"""The bad-input matrix of docs/reliability.md: each row's message, exit code and what is kept.

Rows marked there as covered elsewhere are tested in test_media, test_manifest, test_config, test_cli
and test_decode; this file holds the rest, end to end through the command line.
"""

import errno
import json
import shutil

import numpy as np
import pytest
from conftest import make_media
from typer.testing import CliRunner

from clipwhisper.cli import app
from clipwhisper.data.manifest import read_manifest, write_manifest
from clipwhisper.data.media import write_wav

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [*map(str, args)])


def transcribe(checkpoint, path):
    return cli("transcribe", path, "--model-path", checkpoint, "--format", "json")


def nan_wav(path):
    """A float32 WAV with a NaN and an Inf among its samples (ffmpeg passes them through)."""
    samples = np.zeros(1600, dtype=np.float32)
    samples[10], samples[20] = np.nan, np.inf
    header = b"RIFF" + (36 + samples.nbytes).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    header += (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + (16000).to_bytes(4, "little")
    header += (64000).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
    path.write_bytes(header + b"data" + samples.nbytes.to_bytes(4, "little") + samples.tobytes())
    return path


def corrupt_header_wav(path):
    write_wav(path, np.zeros(16000, dtype=np.float32))
    data = bytearray(path.read_bytes())
    data[0:4], data[20:22] = b"RIFX", b"\x99\x99"  # wrong magic and an unknown sample format
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("name, make, message", [
    ("missing", lambda p: p, "file not found"),
    ("empty", lambda p: p.write_bytes(b"") or p, "empty file"),
    ("corrupt_header", corrupt_header_wav, "corrupt.wav"),
    ("nan_inf", nan_wav, "NaN or infinite samples"),
])
def test_unreadable_audio_is_one_line_and_exit_1(checkpoint, tmp_path, name, make, message):
    path = make(tmp_path / ("corrupt.wav" if name == "corrupt_header" else f"{name}.wav"))
    result = transcribe(checkpoint, path)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and str(path) in result.stderr and message in result.stderr


@pytest.mark.parametrize("name, options, seconds", [
    ("stereo_44k.wav", {"video": False, "rate": 44100, "channels": 2}, 1.0),
    ("ntsc_29.97.mp4", {"fps": "30000/1001"}, 1.0),
    ("exact_30.mp4", {"fps": 30}, 1.0),
    ("tiny_16x16.mp4", {"size": "16x16"}, 1.0),
    ("portrait.mp4", {"size": "48x96"}, 1.0),
    ("short_0.1s.mp4", {}, 0.1),
    ("long_90s.wav", {"video": False}, 90.0),
])
def test_unusual_but_valid_media_are_transcribed(checkpoint, tmp_path, name, options, seconds):
    path = make_media(tmp_path / name, seconds=seconds, **options)
    result = transcribe(checkpoint, path)
    assert result.exit_code == 0, result.stderr
    [record] = json.loads(result.stdout)
    assert record["duration_s"] == pytest.approx(seconds, abs=0.1)
    assert record["segments"] == (4 if seconds == 90 else 1)  # 30-s windows overlapping by 5 s
    assert record["modality"] == ("audio" if name.endswith(".wav") else "both")


def a_test_set(corpus, folder, count=4, edit=None):
    utterances = read_manifest(corpus / "test.tsv")[:count]
    if edit:
        utterances = edit(utterances)
    write_manifest(folder / "t.tsv", folder, utterances, wrd=folder / "t.wrd")
    return folder / "t.tsv"


def replace_media(utterance, video, audio):
    return type(utterance)(utterance.id, video, audio, utterance.n_video_frames, utterance.n_audio_samples,
                           utterance.text)


@pytest.mark.parametrize("modality, make, message", [
    ("both", lambda p: make_media(p / "silent.mp4", audio=False), "no audio stream"),
    ("video", lambda p: make_media(p / "sound.wav", video=False), "no video stream"),
])
def test_a_missing_stream_fails_that_utterance_only(checkpoint, synth_corpus, tmp_path, modality, make, message):
    bad = make(tmp_path)
    tsv = a_test_set(synth_corpus, tmp_path, edit=lambda us: [us[0], replace_media(us[1], bad, None), *us[2:]])
    result = cli("decode", "--model-path", checkpoint, "--test-tsv", tsv, "--modality", modality,
                 "--output-dir", tmp_path / "out", "--max-new-tokens", "4")
    assert result.exit_code == 1 and "1 utterances failed" in result.stdout
    records = [json.loads(line) for line in (tmp_path / "out" / "hyps.jsonl").read_text().splitlines()]
    assert len(records) == 4 and message in records[1]["error"] and str(bad) in records[1]["error"]
    assert all(r["error"] is None for r in records[::2])


def test_an_empty_transcript_is_scored_as_insertions(checkpoint, synth_corpus, tmp_path):
    tsv = a_test_set(synth_corpus, tmp_path)
    lines = (tmp_path / "t.wrd").read_text().splitlines()
    (tmp_path / "t.wrd").write_text("\n".join(["", *lines[1:]]) + "\n")
    result = cli("decode", "--model-path", checkpoint, "--test-tsv", tsv, "--output-dir", tmp_path / "out",
                 "--max-new-tokens", "4")
    assert result.exit_code == 0, result.stderr
    first = json.loads((tmp_path / "out" / "hyps.jsonl").read_text().splitlines()[0])
    assert first["ref_words"] == 0 and first["errors"] == first["insertions"]


def test_a_corrupt_checkpoint_weights_file(checkpoint, synth_corpus, tmp_path):
    broken = tmp_path / "ck"
    shutil.copytree(checkpoint, broken)
    (broken / "model.safetensors").write_bytes((broken / "model.safetensors").read_bytes()[:100])
    result = cli("decode", "--model-path", broken, "--test-tsv", synth_corpus / "test.tsv",
                 "--output-dir", tmp_path / "out")
    assert result.exit_code == 1 and "model.safetensors: its SHA-256 differs" in result.stderr
    config = json.loads((broken / "config.json").read_text())
    del config["sha256"]  # a checkpoint from before digests: the reader still names the damage
    (broken / "config.json").write_text(json.dumps(config))
    result = cli("decode", "--model-path", broken, "--test-tsv", synth_corpus / "test.tsv",
                 "--output-dir", tmp_path / "out2")
    assert result.exit_code == 1 and "model.safetensors: corrupt safetensors file" in result.stderr


def test_an_unwritable_run_folder_is_a_usage_error(synth_corpus, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = cli("train", "-c", "tiny", "--data-path", synth_corpus, "--output-path", blocker / "run",
                 "--max-steps", "1")
    assert result.exit_code == 2 and "a_file/run: cannot write the folder: Not a directory" in result.stderr


def test_a_full_disk_during_a_save_keeps_earlier_checkpoints(synth_corpus, tmp_path, monkeypatch):
    import clipwhisper.model.checkpoint as checkpoint_module

    real_save, saves = checkpoint_module.save_file, []

    def fills_up(tensors, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 3:  # the third checkpoint (step 6) meets a full disk half-way
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module, "save_file", fills_up)
    run = tmp_path / "run"
    result = cli("train", "-c", "tiny", "--data-path", synth_corpus, "--output-path", run, "--max-steps", "8",
                 "--save-steps", "2")
    assert result.exit_code == 1
    assert "step-000006: could not write the checkpoint (No space left on device)" in result.stderr
    names = sorted(p.name for p in run.iterdir())
    assert "step-000002" in names and "step-000004" in names and not [n for n in names if n.startswith(".")]


@pytest.mark.parametrize("output_format", ["text", "json"])
def test_transcribe_keeps_every_result_when_one_file_fails(checkpoint, tmp_path, output_format):
    """good, bad, good: both good files are transcribed and printed, the bad one named with its reason,
    exit 1 (issue 18, item 10)."""
    good = [make_media(tmp_path / f"good{i}.wav", video=False) for i in (1, 2)]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"")
    result = cli("transcribe", good[0], bad, good[1], "--model-path", checkpoint, "--format", output_format)
    assert result.exit_code == 1
    assert "1 of 3 files failed (first: " in result.stderr and "empty file" in result.stderr
    if output_format == "json":
        records = json.loads(result.stdout)
        assert [r["file"] for r in records] == [str(good[0]), str(bad), str(good[1])]
        assert "text" in records[0] and "text" in records[2] and "empty file" in records[1]["error"]
    else:
        lines = result.stdout.splitlines()
        assert [line.split("\t")[0] for line in lines] == [str(good[0]), str(good[1])]
