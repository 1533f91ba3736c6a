"""`clipwhisper manifest from-folder`: a manifest from audio files and a transcript file in the common forms;
and audio beyond Whisper's 30-s window is a failed utterance, not a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_media
from typer.testing import CliRunner

from clipwhisper.cli import app
from clipwhisper.data.dataset import AVDataset
from clipwhisper.data.manifest import read_manifest
from clipwhisper.data.utterance import Utterance

runner = CliRunner()
TEXTS = {"digits/0": "zero", "digits/1": "one", "vm-goodbye": "Goodbye.", "auth-thankyou": "Thank you.",
         "agent-pass": "Please enter your password."}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Five real 8 kHz wav files (ffmpeg's sine source), two in a subfolder, and an mp3 without a transcript."""
    root = tmp_path_factory.mktemp("sounds")
    (root / "digits").mkdir()
    for index, key in enumerate(TEXTS):
        make_media(root / f"{key}.wav", video=False, seconds=0.5 + 0.25 * index, rate=8000)
    make_media(root / "untranscribed.mp3", video=False, seconds=0.5)
    return root


def from_folder(folder: Path, transcripts: Path, out: Path, *options: str):
    return runner.invoke(app, ["manifest", "from-folder", str(folder), str(transcripts), "--out", str(out),
                               *options])


@pytest.mark.parametrize("form", ["kaldi", "colon", "csv"])
def test_each_transcript_form_gives_the_same_manifest(folder, tmp_path, form):
    if form == "csv":
        transcripts = tmp_path / "text.csv"
        rows = [f'{key}.wav,"{text}"' for key, text in TEXTS.items()]
        transcripts.write_text("path,sentence\n" + "\n".join(rows) + "\n")
    else:
        transcripts = tmp_path / "text.txt"
        lines = [f"{key}{':' if form == 'colon' else ''} {text}" for key, text in TEXTS.items()]
        transcripts.write_text("\ufeff; a comment\n\n" + "\n".join(lines) + "\n")  # a BOM, as editors write
    result = from_folder(folder, transcripts, tmp_path / "m")
    assert result.exit_code == 0, result.output
    utterances = read_manifest(tmp_path / "m" / "train.tsv")
    assert [u.id for u in utterances] == [key.removesuffix(".wav") if form != "csv" else f"{key}.wav"
                                          for key in TEXTS]
    assert [u.text for u in utterances] == list(TEXTS.values())
    assert all(u.audio.is_file() and u.video is None for u in utterances)
    # counted at 16 kHz from 8 kHz files: 0.5 s is 8,000 samples
    assert utterances[0].n_audio_samples == 8000 and utterances[2].n_audio_samples == 16000


def test_seeded_split_is_disjoint_and_repeatable(folder, tmp_path):
    transcripts = tmp_path / "text.txt"
    transcripts.write_text("".join(f"{key} {text}\n" for key, text in TEXTS.items()))
    splits = []
    for attempt in ("a", "b"):
        assert from_folder(folder, transcripts, tmp_path / attempt, "--valid", "1", "--test", "2",
                           "--seed", "3").exit_code == 0
        splits.append({name: [u.id for u in read_manifest(tmp_path / attempt / f"{name}.tsv")]
                       for name in ("train", "valid", "test")})
    assert splits[0] == splits[1]
    sizes = {name: len(ids) for name, ids in splits[0].items()}
    assert sizes == {"train": 2, "valid": 1, "test": 2}
    assert sorted(sum(splits[0].values(), [])) == sorted(TEXTS)


def test_missing_audio_and_non_speech_are_left_out_and_said(folder, tmp_path):
    transcripts = tmp_path / "text.txt"
    transcripts.write_text("digits/0 zero\nnot-there hello\nvm-goodbye [beep tone]\nagent-pass Please.\n")
    result = from_folder(folder, transcripts, tmp_path / "m")
    assert result.exit_code == 0
    assert "left out 1 transcripts that have no audio file: not-there" in result.output
    assert "left out 1 transcripts that have no words outside [brackets]: vm-goodbye" in result.output
    assert [u.id for u in read_manifest(tmp_path / "m" / "train.tsv")] == ["digits/0", "agent-pass"]


@pytest.mark.parametrize(("content", "says"), [
    ("digits/0 zero\ndigits/0 again\n", "text.txt:2: id 'digits/0' again (first on line 1)"),
    ("digits/0 zero\nvm-goodbye\n", "text.txt:2: id 'vm-goodbye' has no transcript"),
    ("; only comments\n", "text.txt: no transcript lines"),
])
def test_bad_transcript_files_are_one_line_errors(folder, tmp_path, content, says):
    (tmp_path / "text.txt").write_text(content)
    result = from_folder(folder, tmp_path / "text.txt", tmp_path / "m")
    assert result.exit_code == 2
    assert says in result.output and not (tmp_path / "m" / "train.tsv").exists()


def test_csv_without_known_columns_names_them(folder, tmp_path):
    (tmp_path / "text.csv").write_text("name,words_spoken\nx,y\n")
    result = from_folder(folder, tmp_path / "text.csv", tmp_path / "m")
    assert result.exit_code == 2 and "text.csv:1: the header needs an id column" in result.output


def test_audio_beyond_whispers_window_is_a_failed_utterance(tmp_path):
    long = make_media(tmp_path / "long.wav", video=False, seconds=31.0)
    item = AVDataset([Utterance("long", None, long, 0, 31 * 16000, "a long one")], ("audio",), None)[0]
    assert "31.0 s of audio, longer than Whisper's 30-s window" in item["error"]
