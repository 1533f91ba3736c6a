"""auto_avsr CSV manifests (read wherever a manifest is taken, converted both ways) and `manifest check`."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from clipwhisper.cli import app
from clipwhisper.data.manifest import read_manifest, write_manifest


def sentencepiece_model(texts, folder):
    """A unigram SentencePiece model and its units file, made as auto_avsr makes them (sorted pieces, ids from 1)."""
    import sentencepiece

    corpus = folder / "text.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    sentencepiece.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "unigram"),
                                             vocab_size=40, model_type="unigram", minloglevel=2)
    model = sentencepiece.SentencePieceProcessor(model_file=str(folder / "unigram.model"))
    pieces = sorted({piece for text in texts for piece in model.encode(text, out_type=str)})
    lines = ["<unk> 1"] + [f"{piece} {index}" for index, piece in enumerate(pieces, start=2)]
    (folder / "unigram_units.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    units = {piece: index for index, piece in enumerate(pieces, start=2)}
    return folder / "unigram.model", lambda text: " ".join(str(units[p]) for p in model.encode(text, out_type=str))


@pytest.fixture(scope="module")
def auto_avsr_set(synth_corpus, tmp_path_factory):
    """The session corpus's test and valid splits in auto_avsr's layout: ROOT/labels/SPLIT.csv,
    ROOT/lrs3/lrs3_video_seg24s/SPLIT/ID.mp4 with ID.wav beside, ROOT/lrs3/lrs3_text_seg24s/SPLIT/ID.txt."""
    root = tmp_path_factory.mktemp("auto_avsr")
    splits = {split: read_manifest(synth_corpus / f"{split}.tsv") for split in ("test", "valid")}
    spm, token_ids = sentencepiece_model([u.text for us in splits.values() for u in us], root)
    (root / "labels").mkdir()
    for split, utterances in splits.items():
        videos, texts = root / "lrs3" / "lrs3_video_seg24s" / split, root / "lrs3" / "lrs3_text_seg24s" / split
        videos.mkdir(parents=True)
        texts.mkdir(parents=True)
        lines = []
        for u in utterances:
            shutil.copy(u.video, videos / f"{u.id}.mp4")
            shutil.copy(u.audio, videos / f"{u.id}.wav")
            (texts / f"{u.id}.txt").write_text(u.text, encoding="utf-8")
            lines.append(f"lrs3,lrs3_video_seg24s/{split}/{u.id}.mp4,{u.n_video_frames},{token_ids(u.text)}\n")
        (root / "labels" / f"{split}.csv").write_text("".join(lines), encoding="utf-8")
    return root, spm, splits


def test_a_csv_reads_as_its_tsv(auto_avsr_set):
    root, _, splits = auto_avsr_set
    read = read_manifest(root / "labels" / "test.csv")
    assert [(u.text, u.n_video_frames, u.video.name, u.audio.name) for u in read] == \
           [(u.text, u.n_video_frames, f"{u.id}.mp4", f"{u.id}.wav") for u in splits["test"]]
    assert [u.id for u in read] == [f"lrs3_video_seg24s/test/{u.id}" for u in splits["test"]]
    assert all(u.n_audio_samples == 640 * u.n_video_frames for u in read)  # auto_avsr cuts 640 samples a frame


def test_convert_round_trips(auto_avsr_set, tmp_path):
    """CSV -> TSV -> CSV gives the same bytes; without the text files the token ids give the same transcripts."""
    root, spm, splits = auto_avsr_set
    original = root / "labels" / "test.csv"
    runner = CliRunner()
    assert runner.invoke(app, ["manifest", "convert", str(original), str(tmp_path / "test.tsv")]).exit_code == 0
    assert [u.text for u in read_manifest(tmp_path / "test.tsv")] == [u.text for u in splits["test"]]
    again = root / "labels" / "again.csv"
    result = runner.invoke(app, ["manifest", "convert", str(tmp_path / "test.tsv"), str(again), "--spm", str(spm),
                                 "--dataset", "lrs3"])
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == original.read_bytes()
    without_text = tmp_path / "bare" / "labels"
    without_text.mkdir(parents=True)
    shutil.copy(original, without_text / "test.csv")
    (without_text.parent / "lrs3").mkdir()
    (without_text.parent / "lrs3" / "lrs3_video_seg24s").symlink_to(root / "lrs3" / "lrs3_video_seg24s")
    refused = runner.invoke(app, ["manifest", "convert", str(without_text / "test.csv"), str(tmp_path / "b.tsv")])
    assert refused.exit_code == 2 and "test.csv:1: no transcript" in refused.stderr
    decoded = runner.invoke(app, ["manifest", "convert", str(without_text / "test.csv"), str(tmp_path / "b.tsv"),
                                  "--spm", str(spm)])
    assert decoded.exit_code == 0, decoded.output
    assert [u.text for u in read_manifest(tmp_path / "b.tsv")] == [u.text for u in splits["test"]]


def test_decode_and_train_take_a_csv(auto_avsr_set, checkpoint, tmp_path):
    root = auto_avsr_set[0]
    runner = CliRunner()
    decoded = runner.invoke(app, ["decode", "--model-path", str(checkpoint), "--test-tsv",
                                  str(root / "labels" / "test.csv"), "--output-dir", str(tmp_path / "decode")])
    assert decoded.exit_code == 0, decoded.output
    assert json.loads((tmp_path / "decode" / "summary.json").read_text())["cells"][0]["utterances"] == 12
    shutil.copy(root / "labels" / "test.csv", root / "labels" / "train.csv")
    trained = runner.invoke(app, ["train", "-c", "tiny", "--data-path", str(root / "labels"), "--max-steps", "2",
                                  "--output-path", str(tmp_path / "run")])
    assert trained.exit_code == 0, trained.output


def test_manifest_check_counts_and_finds_problems(synth_corpus, tmp_path):
    runner = CliRunner()
    good = runner.invoke(app, ["manifest", "check", str(synth_corpus / "test.tsv"), "--workers", "2"])
    assert good.exit_code == 0, good.output
    assert "│ utterances │ 12" in good.stdout and "1–2 s    │         12 │" in good.stdout
    utterances = read_manifest(synth_corpus / "test.tsv")
    wrong, gone = utterances[3], utterances[7]
    utterances[3] = type(wrong)(**{**wrong.__dict__, "n_video_frames": wrong.n_video_frames + 5})
    utterances[7] = type(gone)(**{**gone.__dict__, "audio": tmp_path / "gone.wav"})
    write_manifest(tmp_path / "bad.tsv", synth_corpus, utterances, wrd=tmp_path / "bad.wrd")
    bad = runner.invoke(app, ["manifest", "check", str(tmp_path / "bad.tsv")])
    assert bad.exit_code == 1 and "bad.tsv: 2 problems" in bad.stderr
    assert f"{wrong.id}: {wrong.video} has {wrong.n_video_frames} video frames, the manifest says " \
           f"{wrong.n_video_frames + 5}" in bad.stderr
    assert f"{gone.id}: {tmp_path / 'gone.wav'} not found" in bad.stderr
    quick = runner.invoke(app, ["manifest", "check", str(tmp_path / "bad.tsv"), "--files-only"])
    assert quick.exit_code == 1 and "1 problems" in quick.stderr


def test_a_csv_transcript_that_is_not_utf8_is_named(tmp_path):
    texts = tmp_path / "lrs3" / "lrs3_text_seg24s" / "test"
    texts.mkdir(parents=True)
    (texts / "a.txt").write_bytes(b"caf\xe9\n")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "test.csv").write_text("lrs3,lrs3_video_seg24s/test/a.mp4,10,5 6\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["manifest", "check", str(tmp_path / "labels" / "test.csv")])
    assert result.exit_code == 2 and f"{texts / 'a.txt'}:1: not UTF-8 text" in result.stderr
