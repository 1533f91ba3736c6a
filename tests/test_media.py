from pathlib import Path

import ffmpeg
import numpy as np
import pytest
from conftest import make_media

from clipwhisper.data.media import SAMPLE_RATE, ffmpeg_binary, load_audio, load_video, write_video, write_wav
from clipwhisper.errors import MediaError


@pytest.mark.parametrize("suffix", ["wav", "flac", "mp3", "m4a"])
def test_audio_containers(tmp_path, suffix):
    samples = load_audio(make_media(tmp_path / f"a.{suffix}", video=False, seconds=1.0, rate=44100))
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - SAMPLE_RATE) < 0.06 * SAMPLE_RATE  # lossy codecs pad a little
    assert 0.1 < np.abs(samples).max() <= 1.0  # lavfi sine peaks at 1/8


@pytest.mark.parametrize("suffix", ["mp4", "mkv", "webm"])
def test_video_containers_give_both_streams(tmp_path, suffix):
    path = make_media(tmp_path / f"v.{suffix}", seconds=2.0)
    assert abs(len(load_audio(path)) - 2 * SAMPLE_RATE) < 0.05 * SAMPLE_RATE
    frames = load_video(path, size=32)
    assert frames.shape == (50, 32, 32, 3) and frames.dtype == np.uint8


def test_stereo_44k_is_downmixed_and_resampled(tmp_path):
    samples = load_audio(make_media(tmp_path / "s.wav", video=False, seconds=2.0, rate=44100, channels=2))
    assert samples.shape == (2 * SAMPLE_RATE,)


def test_a_16k_mono_wav_is_read_in_process_with_ffmpegs_samples(tmp_path, monkeypatch):
    path = make_media(tmp_path / "plain.wav", video=False, seconds=1.5, rate=SAMPLE_RATE)
    through_ffmpeg = load_audio(path, span=(0.0, 60.0))  # a span always goes through ffmpeg
    monkeypatch.setattr("clipwhisper.data.media.ffmpeg_binary", lambda: "/nonexistent/ffmpeg")
    in_process = load_audio(path)  # would fail had it started ffmpeg
    assert in_process.dtype == np.float32 and np.array_equal(in_process, through_ffmpeg)


@pytest.mark.parametrize(("suffix", "rate", "channels", "codec"), [
    ("mp4", 16000, 1, "aac"), ("m4a", 44100, 2, "aac"), ("mkv", 48000, 2, "libopus"), ("webm", 48000, 1, "libvorbis"),
    ("mp3", 22050, 1, "libmp3lame"), ("flac", 44100, 2, "flac"), ("wav", 8000, 1, "pcm_s16le"),
    ("wav", 16000, 2, "pcm_f32le")])
def test_audio_read_in_process_equals_the_ffmpeg_program(tmp_path, suffix, rate, channels, codec):
    """Whole files are decoded, downmixed and resampled in-process by PyAV: the ffmpeg program's samples, byte
    for byte, for every common container and codec, with and without a video stream."""
    from clipwhisper.data.audio_in_process import read_audio
    from clipwhisper.data.media import ffmpeg_audio, local

    path = make_media(tmp_path / f"a.{suffix}", video=suffix in ("mp4", "mkv"), seconds=1.7, rate=rate,
                      channels=channels, acodec=codec)
    fast = read_audio(local(path), SAMPLE_RATE)
    assert fast is not None and fast.dtype == np.float32  # read in-process, not handed to ffmpeg
    assert np.array_equal(fast, ffmpeg_audio(path)) and np.array_equal(load_audio(path), fast)
    assert abs(len(fast) - 1.7 * SAMPLE_RATE) < 0.06 * SAMPLE_RATE


def test_audio_in_process_leaves_damage_to_ffmpeg(tmp_path):
    from clipwhisper.data.audio_in_process import read_audio
    from clipwhisper.data.media import local

    data = bytearray(make_media(tmp_path / "a.mp3", video=False, seconds=2.0, acodec="libmp3lame").read_bytes())
    data[len(data) // 2:len(data) // 2 + 600] = bytes(600)
    (tmp_path / "damaged.mp3").write_bytes(data)
    assert read_audio(local(tmp_path / "damaged.mp3"), SAMPLE_RATE) is None
    assert read_audio(local(make_media(tmp_path / "v.mp4", audio=False)), SAMPLE_RATE) is None  # no audio stream


@pytest.mark.parametrize(("dtype", "rate", "length"), [(np.int16, 22050, 26881), (np.float32, 44100, 1000),
                                                    (np.float32, 8000, 12345)])
def test_resampling_in_process_equals_the_ffmpeg_program(dtype, rate, length):
    """synth resamples eSpeak's speech in-process: the samples the ffmpeg program gives, byte for byte."""
    from clipwhisper.data.media import resample

    rng = np.random.default_rng(length)
    samples = (rng.uniform(-0.5, 0.5, length) * (32767 if dtype == np.int16 else 1)).astype(dtype)
    graph = ffmpeg.input("pipe:", format="s16le" if dtype == np.int16 else "f32le", ar=rate, ac=1).output(
        "pipe:", format="f32le", ar=SAMPLE_RATE, ac=1)
    out, _ = graph.run(cmd=ffmpeg_binary(), input=samples.tobytes(), capture_stdout=True, capture_stderr=True)
    program = np.frombuffer(out, np.float32)
    mine = resample(samples, rate)
    assert mine.dtype == np.float32 and len(program) > 0.9 * length * SAMPLE_RATE / rate
    assert np.array_equal(mine, program)


def test_30fps_is_resampled_to_25fps(tmp_path):
    frames = load_video(make_media(tmp_path / "v30.mp4", audio=False, seconds=2.0, fps=30), size=24)
    assert frames.shape[0] == 50


def test_portrait_video_is_centre_cropped_square(tmp_path):
    frames = load_video(make_media(tmp_path / "p.mp4", audio=False, size="48x96"), size=32)
    assert frames.shape[1:] == (32, 32, 3)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(MediaError, match="file not found"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(MediaError, match="empty file"):
        load_audio(tmp_path / "empty.wav")


def test_truncated_files(tmp_path):
    mp4 = make_media(tmp_path / "full.mp4", seconds=2.0)
    (tmp_path / "cut.mp4").write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    with pytest.raises(MediaError, match="cut.mp4"):
        load_video(tmp_path / "cut.mp4", 32)
    wav = make_media(tmp_path / "full.wav", video=False, seconds=2.0)
    (tmp_path / "cut.wav").write_bytes(wav.read_bytes()[:30001])
    with pytest.raises(MediaError, match="cut.wav"):
        load_audio(tmp_path / "cut.wav")


def test_garbage_is_a_media_error(tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"this is not a video" * 100)
    with pytest.raises(MediaError, match="junk.mp4: "):
        load_video(tmp_path / "junk.mp4", 32)


def test_missing_stream(tmp_path):
    with pytest.raises(MediaError, match="no audio stream"):
        load_audio(make_media(tmp_path / "silent.mp4", audio=False))
    with pytest.raises(MediaError, match="no video stream"):
        load_video(make_media(tmp_path / "a.wav", video=False), 32)


def test_ffmpeg_binary_from_environment(monkeypatch, tmp_path):
    ffmpeg_binary.cache_clear()
    monkeypatch.setenv("CLIPWHISPER_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    try:
        with pytest.raises(MediaError, match="CLIPWHISPER_FFMPEG"):
            ffmpeg_binary()
    finally:
        ffmpeg_binary.cache_clear()


def test_a_file_named_like_an_ffmpeg_protocol_is_read_as_a_file(tmp_path, monkeypatch):
    """`concat:a.wav|b.wav` (a relative name, as a manifest gives it) would make ffmpeg join a.wav and b.wav;
    it must read the file of that name."""
    monkeypatch.chdir(tmp_path)
    tone = (0.1 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    write_wav(Path("a.wav"), tone)
    write_wav(Path("b.wav"), tone)
    named = Path("concat:a.wav|b.wav")
    write_wav(named, tone[:8000])
    assert len(load_audio(named)) == 8000
    for joined in ("x.mp4", "y.mp4"):  # what the protocol would read (and FFmpeg's libraries, in-process, too)
        write_video(Path(joined), np.zeros((12, 16, 16, 3), np.uint8))
    video = Path("concat:x.mp4|y.mp4")
    write_video(video, np.zeros((5, 16, 16, 3), np.uint8), audio=named)
    assert load_video(video, 16).shape[0] == 5


@pytest.mark.parametrize("size, fps, codec, pix_fmt", [
    ("64x48", 25, "libx264", "yuv444p"), ("48x80", 30, "libx264", "yuv420p"), ("96x96", 29.97, "mpeg4", "yuv420p"),
    ("160x90", 12, "libx264", "yuv420p"), ("61x47", 25, "libx264", "yuv444p"), ("64x48", 25, "libx264", "yuvj420p")])
def test_video_read_in_process_equals_the_ffmpeg_program(tmp_path, size, fps, codec, pix_fmt):
    """The frames the loader carries (YUV 4:2:0, data/frames.py), only cropped or scaled and converted, read by
    PyAV and by the ffmpeg program: the same bytes, at the source's even shorter side or the size asked for."""
    from clipwhisper.data.media import ffmpeg_frames, load_frames, local, video_filters
    from clipwhisper.data.video_in_process import read_frames

    clip = make_media(tmp_path / "clip.mp4", audio=False, seconds=1.3, fps=fps, size=size, vcodec=codec,
                      pix_fmt=pix_fmt)
    shorter = min(int(side) for side in size.split("x"))
    for out_size in (32, 88, 112):
        fast = read_frames(local(clip), lambda first, out_size=out_size: video_filters(first, out_size, 25.0))
        assert fast is not None  # read in-process, not handed to ffmpeg
        side = min(shorter, out_size) // 2 * 2
        assert fast.shape[1:] == (side * 3 // 2, side) and fast.dtype == np.uint8
        assert np.array_equal(fast, ffmpeg_frames(clip, out_size))
        assert np.array_equal(load_frames(clip, out_size), fast)
        assert load_video(clip, out_size).shape[1:] == (out_size, out_size, 3)


def test_a_mouth_crop_is_only_decoded(tmp_path):
    """4:2:0 BT.601 limited range no larger than CLIP's size: the chain only crops (no libswscale); other
    sources are scaled and converted to that."""
    from clipwhisper.data.media import video_filters
    from clipwhisper.data.video_in_process import first_frame

    crop = first_frame(f"file:{make_media(tmp_path / 'c.mp4', audio=False, size='96x96', pix_fmt='yuv420p')}")
    assert [name for name, _ in video_filters(crop, 112, 25.0)] == ["fps", "crop", "format"]
    assert "scale" in dict(video_filters(crop, 64, 25.0))  # larger than CLIP's size: scaled down
    full = first_frame(f"file:{make_media(tmp_path / 'j.mp4', audio=False, size='96x96', pix_fmt='yuvj420p')}")
    assert "scale" in dict(video_filters(full, 112, 25.0))  # full range: converted


def test_videos_in_process_leaves_to_ffmpeg(tmp_path):
    """A rotated phone video (ffmpeg turns it upright), a damaged or a truncated file: ffmpeg decides."""
    from clipwhisper.data.media import ffmpeg_binary, ffmpeg_frames, load_frames, local, video_filters
    from clipwhisper.data.video_in_process import read_frames

    clip = make_media(tmp_path / "clip.mp4", audio=False, seconds=1.0, size="64x48")
    rotated = tmp_path / "rotated.mp4"
    ffmpeg.input(str(clip), display_rotation=90).output(str(rotated), c="copy").overwrite_output().run(
        cmd=ffmpeg_binary(), quiet=True)

    def filters(first):
        return video_filters(first, 32, 25.0)
    assert read_frames(local(rotated), filters) is None
    upright = load_frames(rotated, 32)
    assert np.array_equal(upright, ffmpeg_frames(rotated, 32)) and not np.array_equal(upright, load_frames(clip, 32))
    data = bytearray(clip.read_bytes())
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    assert read_frames(local(tmp_path / "cut.mp4"), filters) is None
    middle = len(data) // 2
    data[middle:middle + 400] = bytes(400)  # zeros over part of the coded frames
    (tmp_path / "damaged.mp4").write_bytes(data)
    assert read_frames(local(tmp_path / "damaged.mp4"), filters) is None
    with pytest.raises(MediaError, match="damaged.mp4"):
        load_frames(tmp_path / "damaged.mp4", 32)


def test_written_video_keeps_its_frames_and_the_wavs_samples_in_time(tmp_path):
    """write_video's mp4 (PyAV's encoders) reads back as the frames given and the wav's sound from its first
    sample: the AAC encoder's priming (1,024 samples) must not shift the audio against the lips."""
    frames = np.zeros((30, 32, 32, 3), np.uint8)
    for index in range(30):
        frames[index, :, : index + 2] = 200  # a bar that grows frame by frame
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    tone[:4000] = 0  # the sound starts 0.25 s in
    write_wav(tmp_path / "a.wav", tone)
    write_video(tmp_path / "v.mp4", frames, audio=tmp_path / "a.wav")
    video, audio = load_video(tmp_path / "v.mp4", 32), load_audio(tmp_path / "v.mp4")
    assert video.shape == frames.shape
    assert np.abs(video.astype(int) - frames).mean() < 3
    assert abs(len(audio) - len(tone)) <= 16
    onset = int(np.argmax(np.abs(audio) > 0.05))
    assert 3990 <= onset <= 4030
    assert np.abs(audio[5000:15000] - tone[5000:15000]).max() < 0.02
