"""`clipwhisper prepare` and `transcribe --prepare` on drawn face videos that both detectors find (landmarks by
default; the roll test uses the Haar cascades)."""

import json

import numpy as np
import pytest
from conftest import make_media, summary_row
from faces import as_shown, face_video, lips_angle, lips_centre
from typer.testing import CliRunner

from clipwhisper.cli import app
from clipwhisper.data.manifest import read_manifest
from clipwhisper.data.media import load_video


@pytest.fixture(scope="module")
def raw_videos(tmp_path_factory):
    """Two faces (landscape and portrait, 2 s), a video with no face and a face without sound."""
    folder = tmp_path_factory.mktemp("raw")
    (folder / "nested").mkdir()
    mouths = {"landscape": face_video(folder / "landscape.mp4"),
              "portrait": face_video(folder / "nested" / "portrait.mov", width=240, height=320)}
    make_media(folder / "noface.mp4")  # the synthetic corpus's mouth-only frames: no face to find
    face_video(folder / "silent.mp4", sound=False)
    transcripts = folder / "text"
    transcripts.write_text("landscape bin blue at f two now\nportrait lay red by g nine soon\n"
                           "noface place white\nsilent set green\n", encoding="utf-8")
    return folder, transcripts, mouths


def run_prepare(raw_videos, out, *args):
    folder, transcripts, _ = raw_videos
    return CliRunner().invoke(app, ["prepare", str(folder), "--out", str(out), "--transcripts", str(transcripts),
                                    "--workers", "2", *args])


def test_prepare_crops_the_mouth_and_lists_failures(raw_videos, tmp_path):
    result = run_prepare(raw_videos, tmp_path)
    assert result.exit_code == 1  # two videos failed; the rest is written
    assert "2 of 4 videos not in the manifest" in result.stderr
    failures = {r["id"]: r["error"] for r in map(json.loads, (tmp_path / "prepare_failures.jsonl").open())}
    assert "no face found in 25 frames" in failures["noface"] and "noface.mp4" in failures["noface"]
    assert "no audio stream" in failures["silent"]
    utterances = read_manifest(tmp_path / "test.tsv")
    assert [(u.id, u.text) for u in utterances] == [("landscape", "bin blue at f two now"),
                                                    ("portrait", "lay red by g nine soon")]
    for utterance in utterances:
        assert (utterance.n_video_frames, utterance.n_audio_samples) == (50, 32000)  # 2 s at 25 fps, 16 kHz
        crops = load_video(utterance.video, 96)
        assert crops.shape == (50, 96, 96, 3)
        centres = np.array([lips_centre(frame) for frame in crops])
        assert np.abs(centres - 48).max() < 10  # the mouth within 10% of the crop's centre in every frame


def test_prepare_resumes_and_crops_faces(raw_videos, tmp_path):
    run_prepare(raw_videos, tmp_path)
    crop = tmp_path / "video" / "landscape.mp4"
    written = crop.stat().st_mtime_ns
    again = run_prepare(raw_videos, tmp_path)
    assert crop.stat().st_mtime_ns == written  # done videos are skipped
    # videos, faces found, listed, listed apart for a face lost > 1 s, done before, frames interpolated (the
    # drawn face is found in every frame), failed
    assert summary_row(again.stdout) == ["4", "2", "2", "0", "2", "0", "2"]
    faces = run_prepare(raw_videos, tmp_path / "faces", "--crop", "face", "--size", "64")
    assert faces.exit_code == 1
    for utterance in read_manifest(tmp_path / "faces" / "test.tsv"):
        centres = np.array([lips_centre(frame) for frame in load_video(utterance.video, 64)])
        assert np.abs(centres[:, 0] - 32).max() < 8 and (centres[:, 1] > 35).all()  # mouth in the lower half


def test_a_centre_crop_is_the_middle_of_the_whole_crop(raw_videos, tmp_path):
    """``--centre 88``: the 88 x 88 middle of each 96-px crop (auto_avsr's and AV-HuBERT's lip input), cut at the
    same scale; its folder is not mixed with whole crops."""
    run_prepare(raw_videos, tmp_path / "whole")
    middle = run_prepare(raw_videos, tmp_path / "middle", "--centre", "88")
    assert "88 px centre of 96" in middle.stdout
    for whole, centre in zip(read_manifest(tmp_path / "whole" / "test.tsv"),
                             read_manifest(tmp_path / "middle" / "test.tsv"), strict=True):
        expected = load_video(whole.video, 96)[:, 4:92, 4:92].astype(float)
        got = load_video(centre.video, 88)
        assert got.shape == (50, 88, 88, 3) and np.abs(got - expected).mean() < 3  # two H.264 encodes apart
        assert np.abs(got - load_video(whole.video, 88)).mean() > 2 * np.abs(got - expected).mean()  # not resized
    mixed = run_prepare(raw_videos, tmp_path / "middle")
    assert mixed.exit_code == 2 and "centre: 88 there, null now" in mixed.stderr
    too_big = run_prepare(raw_videos, tmp_path / "big", "--centre", "100")
    assert too_big.exit_code == 2 and "--centre: must be 8 to --size (96) pixels, not 100" in too_big.stderr


def test_an_output_folder_inside_the_input_folder_is_not_read_as_input(raw_videos, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    face_video(folder / "one.mp4")
    for _ in range(2):  # the second run finds the first run's crops under videos/out/ and must ignore them
        result = CliRunner().invoke(app, ["prepare", str(folder), "--out", str(folder / "out"), "--workers", "1"])
        assert result.exit_code == 0, result.output
    assert [u.id for u in read_manifest(folder / "out" / "test.tsv")] == ["one"]


def test_prepare_refuses_bad_options(raw_videos, tmp_path, checkpoint):
    assert run_prepare(raw_videos, tmp_path, "--crop", "nose").exit_code == 2
    nose = CliRunner().invoke(app, ["transcribe", str(raw_videos[0] / "landscape.mp4"), "--model-path",
                                    str(checkpoint), "--prepare", "nose"])
    assert nose.exit_code == 2 and "must be mouth or face, not 'nose'" in nose.stderr
    missing = CliRunner().invoke(app, ["prepare", str(tmp_path / "nothing"), "--out", str(tmp_path)])
    assert missing.exit_code == 2 and "no such file or folder" in missing.stderr
    (tmp_path / "file").write_text("not a folder")
    unwritable = CliRunner().invoke(app, ["prepare", str(raw_videos[0]), "--out", str(tmp_path / "file" / "out")])
    assert unwritable.exit_code == 2 and f"{tmp_path / 'file' / 'out'}: cannot write the folder" in \
        unwritable.stderr
    latin = tmp_path / "latin1.txt"
    latin.write_bytes(b"landscape caf\xe9\n")
    bad_text = CliRunner().invoke(app, ["prepare", str(raw_videos[0]), "--out", str(tmp_path / "o"),
                                        "--transcripts", str(latin)])
    assert bad_text.exit_code == 2 and f"{latin}:1: not UTF-8 text" in bad_text.stderr


def test_transcribe_prepare_crops_a_raw_video(raw_videos, checkpoint, tmp_path):
    folder = raw_videos[0]
    result = CliRunner().invoke(app, ["transcribe", str(folder / "landscape.mp4"), "--model-path", str(checkpoint),
                                      "--prepare", "mouth", "--format", "json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)[0]
    assert record["modality"] == "both" and record["duration_s"] == 2.0
    face_video(tmp_path / "away.mp4", seconds=3.0, absent=range(20, 60))  # the face gone 1.6 s: said, not fatal
    away = CliRunner().invoke(app, ["transcribe", str(tmp_path / "away.mp4"), "--model-path", str(checkpoint),
                                    "--prepare", "mouth", "--format", "json"])
    assert away.exit_code == 0, away.output
    assert "no face in frames 20-59 (1.6 s)" in " ".join(away.stderr.split())
    assert json.loads(away.stdout)[0]["duration_s"] == 3.0


def test_a_rolled_head_is_levelled(tmp_path):
    """Haar cascades, head rolled 12 degrees: the eyes give the roll, so the crop is levelled and still centred on
    the mouth (test_landmarks.py: the same for landmarks, on real faces)."""
    from clipwhisper.prepare.run import Cropping, Options, prepare_one

    (tmp_path / "raw").mkdir()
    face_video(tmp_path / "raw" / "rolled.mp4", roll=12)
    face_video(tmp_path / "raw" / "level.mp4")
    for name in ("rolled", "level"):
        haar = Options(tmp_path / "out", Cropping(detector="haar"))
        record = prepare_one(name, tmp_path / "raw" / f"{name}.mp4", haar)
        crops = as_shown(record["crops"][0]["video"])
        assert crops.shape[1:] == (96, 96, 3)
        assert max(abs(lips_angle(frame)) for frame in crops) < 4, name
        assert np.abs(np.array([lips_centre(frame) for frame in crops]) - 48).max() < 10, name


def test_preview_draws_each_crop_where_the_mouth_is(tmp_path):
    """--preview: a contact sheet per video whose drawn squares sit on the true mouth of the sampled frames,
    with each crop beside its frame; a rerun asking for previews makes the ones missing."""
    import cv2

    from clipwhisper.prepare.preview import BOX, COLUMNS, THUMB, sample_indices, thumb_scale, tile_origin

    (tmp_path / "raw").mkdir()
    mouths = face_video(tmp_path / "raw" / "drift.mp4", width=320, height=240)
    out = tmp_path / "out"
    first = CliRunner().invoke(app, ["prepare", str(tmp_path / "raw"), "--out", str(out), "--workers", "1"])
    assert first.exit_code == 0, first.output
    assert not (out / "preview").exists()
    again = CliRunner().invoke(app, ["prepare", str(tmp_path / "raw"), "--out", str(out), "--workers", "1",
                                     "--preview"])
    assert again.exit_code == 0, again.output
    sheet = cv2.cvtColor(cv2.imread(str(out / "preview" / "drift.png")), cv2.COLOR_BGR2RGB)
    shown = sample_indices(len(mouths))
    assert len(shown) == 12 and sheet.shape == (-(-len(shown) // COLUMNS) * THUMB, COLUMNS * 2 * THUMB, 3)
    scale = thumb_scale(320, 240)
    for tile, frame in enumerate(shown):
        x, y = tile_origin(tile)
        square = np.argwhere((sheet[y:y + THUMB, x:x + THUMB] == BOX).all(-1))
        low, high = square[:, ::-1].min(0), square[:, ::-1].max(0)  # (x, y) bounds of the drawn square
        side = (high - low).mean()
        assert 20 < side < THUMB / 2  # the mouth crop's square, not the whole face
        # on the mouth within a tenth of the crop's side (the crops' own check) and a pixel of rasterising
        assert np.abs((low + high) / 2 - np.array(mouths[frame]) * scale).max() < 0.1 * side + 1, (tile, low, high)
        crop = sheet[y:y + THUMB, x + THUMB:x + 2 * THUMB]
        assert np.abs(np.array(lips_centre(crop)) - THUMB / 2).max() < 0.1 * THUMB  # the crop beside it


def test_a_face_lost_briefly_is_interpolated_and_lost_longer_is_kept_apart_with_black_frames(tmp_path):
    """Gone for 0.4 s: those frames are counted and their crops placed from the neighbours, still on the mouth.
    Gone for 1.6 s: the video is prepared with those crops black, reported with the frames, and listed in
    test.gaps.tsv instead of the manifest; a rerun keeps both as they are."""
    (tmp_path / "raw").mkdir()
    face_video(tmp_path / "raw" / "blink.mp4", absent=range(20, 30))
    face_video(tmp_path / "raw" / "away.mp4", seconds=3.0, absent=range(20, 60))
    args = ["prepare", str(tmp_path / "raw"), "--out", str(tmp_path / "out"), "--workers", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "away: no face in frames 20-59 (1.6 s)" in " ".join(result.stderr.split())
    assert not (tmp_path / "out" / "prepare_failures.jsonl").read_text()
    assert [u.id for u in read_manifest(tmp_path / "out" / "test.tsv")] == ["blink"]
    [away] = read_manifest(tmp_path / "out" / "test.gaps.tsv")
    assert away.id == "away" and away.n_video_frames == 75
    # videos, faces found, in the manifest, face lost > 1 s, done before, frames interpolated, failed
    assert summary_row(result.stdout)[2:] == ["1", "1", "0", "10", "0"]
    record = json.loads((tmp_path / "out" / ".prepared" / "blink.json").read_text())
    assert record["crops"][0]["interpolated"] == 10 and record["crops"][0]["lost_frames"] == []
    crops = load_video(record["crops"][0]["video"], 96)
    assert np.abs(np.array([lips_centre(crops[t]) for t in (5, 40)]) - 48).max() < 10  # around the gap
    record = json.loads((tmp_path / "out" / ".prepared" / "away.json").read_text())
    assert record["crops"][0]["lost_frames"] == [[20, 59]] and record["crops"][0]["interpolated"] == 0
    crops = load_video(away.video, 96)
    assert crops[20:60].max() < 16  # black (x264's rounding aside)
    assert np.abs(np.array([lips_centre(crops[t]) for t in (5, 70)]) - 48).max() < 10  # the face either side
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and summary_row(again.stdout)[2:] == ["1", "1", "2", "10", "0"]
    assert [u.id for u in read_manifest(tmp_path / "out" / "test.gaps.tsv")] == ["away"]


def test_a_video_whose_outputs_cannot_be_written_is_a_listed_failure(raw_videos, tmp_path, monkeypatch):
    """A full disk (simulated: writing the wav raises ENOSPC) fails that video with its name; no traceback."""
    import errno

    from clipwhisper.prepare import run

    def full_disk(path, samples):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run, "write_wav", full_disk)
    source = raw_videos[0] / "landscape.mp4"
    uid, record, error = run._attempt("landscape", source, run.Options(tmp_path))
    assert record is None and error == f"{source}: cannot write its outputs (No space left on device)"


def test_the_tiny_preset_trains_and_decodes_from_prepares_output(tmp_path):
    """End to end: raw face videos -> prepare (train and valid splits into one folder) -> train the tiny preset
    a few steps -> decode the valid split; every prepared utterance is trained on and decoded."""
    for split, names in (("train", ("a", "b", "c")), ("valid", ("d",))):
        folder = tmp_path / "raw" / split
        folder.mkdir(parents=True)
        for name in names:
            face_video(folder / f"{name}.mp4", seconds=1.2)
        (folder / "text").write_text("".join(f"{n} bin blue at {n} two now\n" for n in names), encoding="utf-8")
        result = CliRunner().invoke(app, ["prepare", str(folder), "--out", str(tmp_path / "data"), "--transcripts",
                                          str(folder / "text"), "--split", split, "--workers", "2"])
        assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    trained = CliRunner().invoke(app, ["train", "-c", "tiny", "--data-path", str(tmp_path / "data"),
                                       "--output-path", str(run), "--max-steps", "3", "--batch-size", "2"])
    assert trained.exit_code == 0, trained.output
    steps = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert max(record.get("step", 0) for record in steps) == 3
    decoded = CliRunner().invoke(app, ["decode", "--model-path", str(run / "final"), "--test-tsv",
                                       str(tmp_path / "data" / "valid.tsv"), "--output-dir", str(tmp_path / "dec")])
    assert decoded.exit_code == 0, decoded.output
    summary = json.loads((tmp_path / "dec" / "summary.json").read_text())
    assert [(cell["modality"], cell["utterances"]) for cell in summary["cells"]] == [("both", 1)]
