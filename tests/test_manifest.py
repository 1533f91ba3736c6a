from pathlib import Path

import pytest

from clipwhisper.data.manifest import read_manifest, read_tsv, write_manifest
from clipwhisper.data.utterance import Utterance
from clipwhisper.errors import ManifestError


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_round_trip(tmp_path):
    utts = [
        Utterance("a", tmp_path / "v/a.mp4", tmp_path / "w/a.wav", 50, 32000, "bin blue at f two now"),
        Utterance("b", None, tmp_path / "w/b.wav", 0, 16000, "set red by a one soon"),
    ]
    write_manifest(tmp_path / "x.tsv", tmp_path, utts, wrd=tmp_path / "x.wrd")
    assert (tmp_path / "x.tsv").read_text().splitlines()[1] == "a\tv/a.mp4\tw/a.wav\t50\t32000"
    assert read_manifest(tmp_path / "x.tsv") == [
        Utterance(u.id, u.video and u.video.resolve(), u.audio.resolve(), u.n_video_frames, u.n_audio_samples, u.text)
        for u in utts
    ]


def test_relative_root_is_joined_to_the_tsv_folder(tmp_path):
    write(tmp_path / "t.tsv", ".\nid1\tv.mp4\t\t10\t\n")
    [utt] = read_tsv(tmp_path / "t.tsv")
    assert utt.video == tmp_path / "v.mp4" and utt.audio is None and utt.n_audio_samples == 0


def test_a_byte_order_mark_is_not_part_of_the_root_or_the_first_transcript(tmp_path):
    """Notepad and Excel write a UTF-8 BOM first; it made every path 'not found'."""
    write(tmp_path / "t.tsv", b"\xef\xbb\xbf.\nid1\tv.mp4\t\t10\t\n")
    write(tmp_path / "t.wrd", b"\xef\xbb\xbfbin blue\n")
    [utt] = read_manifest(tmp_path / "t.tsv")
    assert utt.video == tmp_path / "v.mp4" and utt.text == "bin blue"


def test_absolute_root(tmp_path):
    write(tmp_path / "t.tsv", "/data/root\nid1\t\taudio/x.wav\t\t16000\n")
    assert read_tsv(tmp_path / "t.tsv")[0].audio == Path("/data/root/audio/x.wav")


@pytest.mark.parametrize(
    "tsv, wrd, where, message",
    [
        ("/r\nid1\tv.mp4\ta.wav\t10\n", None, "t.tsv:2", "expected 5 tab-separated columns"),
        ("/r\nid1\tv.mp4\ta.wav\tten\t100\n", None, "t.tsv:2", "n_video_frames must be an integer, got 'ten'"),
        ("/r\nid1\tv.mp4\ta.wav\t10\t1.5\n", None, "t.tsv:2", "n_audio_samples must be an integer"),
        ("/r\nx\tv.mp4\ta.wav\t1\t1\nx\tv.mp4\ta.wav\t1\t1\n", None, "t.tsv:3", "duplicate id 'x' (first on line 2)"),
        ("/r\nx\t\t\t1\t1\n", None, "t.tsv:2", "neither a video nor an audio path"),
        ("", None, "t.tsv:1", "first line must be the root"),
        (b"/r\nx\tv\xff.mp4\ta.wav\t1\t1\n", None, "t.tsv:2", "not UTF-8"),
        ("/r\nx\tv.mp4\ta.wav\t1\t1\n", b"caf\xe9\n", "t.wrd:1", "not UTF-8"),
        ("/r\nx\tv.mp4\ta.wav\t1\t1\ny\tv.mp4\ta.wav\t1\t1\n", "one\n", "t.wrd", "has 1 transcripts but"),
    ],
)
def test_errors_name_file_and_line(tmp_path, tsv, wrd, where, message):
    write(tmp_path / "t.tsv", tsv)
    if wrd is not None:
        write(tmp_path / "t.wrd", wrd)
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path / "t.tsv")
    text = str(info.value)
    assert text.startswith(str(tmp_path / where)) and message in text
    assert "\n" not in text


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="cannot read"):
        read_manifest(tmp_path / "absent.tsv")
