"""Decode media with ffmpeg: audio to 16 kHz mono float32, video to YUV 4:2:0 frames (``frames.py``) or RGB.

The ffmpeg binary is found through ``CLIPWHISPER_FFMPEG``, then ``PATH``, then
the one the ``imageio-ffmpeg`` wheel ships, so ``pip install`` is enough.
ffmpeg is always run with an argument list (ffmpeg-python), never a shell.
"""

from __future__ import annotations

import fractions
import functools
import os
import re
import shutil
import wave
from pathlib import Path

import ffmpeg
import numpy as np
import torch

from ..errors import MediaError
from .audio_in_process import read_audio
from .frames import carried_side, to_rgb
from .video_in_process import first_frame, read_frames

SAMPLE_RATE = 16_000
MAX_AUDIO_SAMPLES = 30 * SAMPLE_RATE  # Whisper's window: every Whisper encoder reads at most 30 s
VIDEO_FPS = 25.0


@functools.cache
def ffmpeg_binary() -> str:
    configured = os.environ.get("CLIPWHISPER_FFMPEG")
    if configured:
        if not (shutil.which(configured) or Path(configured).is_file()):
            raise MediaError(configured, "CLIPWHISPER_FFMPEG does not point to an executable")
        return configured
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


_LOG_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")
_NO_STREAM = ("matches no streams", "does not contain any stream")


def _error_summary(stderr: bytes, stream_kind: str) -> str:
    """The root cause from ffmpeg's log: its first line, without the ``[demuxer @ 0x..]`` prefixes."""
    text = stderr.decode("utf-8", "replace")
    if any(marker in text for marker in _NO_STREAM):
        return f"no {stream_kind} stream"
    lines = [_LOG_PREFIX.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    return lines[0] if lines else "ffmpeg failed without a message"


def _run(path: Path, stream, stream_kind: str, may_be_empty: bool = False) -> bytes:
    """Run an ffmpeg graph to stdout; decoding errors (corrupt or truncated data) fail loudly."""
    if not path.is_file():
        raise MediaError(path, "file not found")
    if path.stat().st_size == 0:
        raise MediaError(path, "empty file")
    try:
        out, err = (
            stream.global_args("-nostdin", "-hide_banner", "-v", "error", "-xerror")
            .run(cmd=ffmpeg_binary(), capture_stdout=True, capture_stderr=True)
        )
    except ffmpeg.Error as exc:
        raise MediaError(path, _error_summary(exc.stderr, stream_kind)) from None
    if err.strip():  # at -v error, anything printed is damage ffmpeg chose to decode past
        raise MediaError(path, f"damaged {stream_kind}: {_error_summary(err, stream_kind)}")
    if not out and not may_be_empty:
        raise MediaError(path, f"zero-length {stream_kind}")
    return out


def local(path: Path | str) -> str:
    """``path`` as a local file to ffmpeg: without ``file:`` a name like ``concat:a.wav|b.wav`` or
    ``http://…`` would be read as a protocol (files joined, a network fetched)."""
    return f"file:{path}"


def _input(path: Path, span: tuple[float, float] | None):
    """The file as ffmpeg's input; ``span`` ``(start_s, length_s)`` reads only that part (a seek, then a limit)."""
    return ffmpeg.input(local(path), **({"ss": f"{span[0]:.3f}", "t": f"{span[1]:.3f}"} if span else {}))


def load_audio(path: Path | str, sample_rate: int = SAMPLE_RATE,
               span: tuple[float, float] | None = None) -> np.ndarray:
    """Mono float32 samples at ``sample_rate`` from any file ffmpeg reads (first audio stream); ``span``
    ``(start_s, length_s)``: that part only (empty past the end). A whole file is read in-process where it can be
    (a plain wav, or by PyAV: ``audio_in_process``), with the samples the ffmpeg program gives."""
    path = Path(path)
    if span is None and path.is_file():
        fast = _plain_wav(path, sample_rate)
        fast = read_audio(local(path), sample_rate) if fast is None else fast
        if fast is not None and np.isfinite(fast).all():
            return fast
    return ffmpeg_audio(path, sample_rate, span)


def ffmpeg_audio(path: Path, sample_rate: int = SAMPLE_RATE, span: tuple[float, float] | None = None) -> np.ndarray:
    """``load_audio`` by the ffmpeg program."""
    graph = _input(path, span).output("pipe:", map="0:a:0", format="f32le", acodec="pcm_f32le", ac=1,
                                      ar=sample_rate)
    samples = np.frombuffer(_run(path, graph, "audio", may_be_empty=bool(span and span[0])), dtype=np.float32)
    if not np.isfinite(samples).all():
        raise MediaError(path, "audio contains NaN or infinite samples")
    return samples.copy()


def _plain_wav(path: Path, sample_rate: int) -> np.ndarray | None:
    """A whole 16-bit mono PCM wav at ``sample_rate`` read in-process, the samples ffmpeg would give (x / 32768)
    without starting it (a corpus's wavs: 0.1 ms instead of ~40); None for anything else, which ffmpeg reads,
    a truncated or damaged file included, so its errors stay the same."""
    if path.suffix.lower() != ".wav":
        return None
    try:
        with wave.open(str(path), "rb") as source:
            if (source.getnchannels(), source.getsampwidth(), source.getframerate()) != (1, 2, sample_rate):
                return None
            frames = source.getnframes()
            data = source.readframes(frames)
    except (wave.Error, EOFError, OSError):
        return None
    if len(data) != 2 * frames or frames == 0:
        return None
    return np.frombuffer(data, "<i2").astype(np.float32) / np.float32(32768)


def load_frames(path: Path | str, size: int, fps: float = VIDEO_FPS,
                span: tuple[float, float] | None = None) -> np.ndarray:
    """YUV 4:2:0 frames ``(T, 3S/2, S)`` uint8 at ``fps`` as the loader carries them (``frames.py``): centre-cropped
    square at the source's size, or scaled down to ``size`` for CLIP; ``span`` as for ``load_audio``. A whole file is
    read in-process when PyAV can (the same frames, without starting ffmpeg: ``video_in_process``), otherwise, and
    for every error, by the ffmpeg program."""
    path = Path(path)
    if span is None and path.is_file():
        frames = read_frames(local(path), lambda first: video_filters(first, size, fps))
        if frames is not None:
            return frames
    return ffmpeg_frames(path, size, fps, span)


def load_video(path: Path | str, size: int, fps: float = VIDEO_FPS,
               span: tuple[float, float] | None = None) -> np.ndarray:
    """RGB frames ``(T, size, size, 3)`` uint8: ``load_frames`` made RGB as the model makes them."""
    return to_rgb(torch.from_numpy(load_frames(path, size, fps, span)), size).numpy()


_BT601_SPACES = {2, 5, 6}  # FFmpeg's AVColorSpace: unspecified, BT.470BG and SMPTE 170M (both BT.601)
_FULL_RANGE = 2  # FFmpeg's AVCOL_RANGE_JPEG


def video_filters(first, size: int, fps: float) -> list[tuple[str, str]]:
    """The filter chain for a video whose first frame is ``first`` (a PyAV frame, None where unknown): only a crop
    where it is already 4:2:0 BT.601 limited range no larger than ``size`` (a mouth crop), else libswscale's area
    scaling and conversion to that."""
    side = _side(first, size)
    crop = ("crop", f"{side}:{side}")
    if first is not None and min(first.width, first.height) <= size and first.format.name == "yuv420p" \
            and int(first.colorspace) in _BT601_SPACES and int(first.color_range) != _FULL_RANGE:
        return [("fps", f"{fps}"), crop, ("format", "yuv420p")]
    scale = f"{side}:{side}:force_original_aspect_ratio=increase:flags=area:out_color_matrix=bt601:out_range=tv"
    return [("fps", f"{fps}"), ("scale", scale), crop, ("format", "yuv420p")]


def _side(first, size: int) -> int:
    return carried_side(first.width, first.height, size) if first is not None else carried_side(size, size, size)


def ffmpeg_frames(path: Path, size: int, fps: float = VIDEO_FPS,
                  span: tuple[float, float] | None = None) -> np.ndarray:
    """``load_frames`` by the ffmpeg program: the chain for the file's first frame, read by PyAV where it can."""
    first = first_frame(local(path))
    chain = ",".join(f"{name}={args}" for name, args in video_filters(first, size, fps))
    graph = _input(path, span).output("pipe:", map="0:v:0", vf=chain, format="rawvideo", pix_fmt="yuv420p")
    raw = _run(path, graph, "video", may_be_empty=bool(span and span[0]))
    side = _side(first, size)
    frame_bytes = side * side * 3 // 2
    if len(raw) % frame_bytes:
        raise MediaError(path, "video ended inside a frame")
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, side * 3 // 2, side).copy()


def frame_size(path: Path | str) -> tuple[int, int]:
    """``(width, height)`` of the first frame as ffmpeg shows it (rotation applied): from a one-frame PPM."""
    path = Path(path)
    graph = ffmpeg.input(local(path)).output("pipe:", map="0:v:0", frames=1, format="image2pipe", vcodec="ppm")
    header = _run(path, graph, "video").split(maxsplit=3)
    if len(header) < 3 or header[0] != b"P6":
        raise MediaError(path, "no video frame could be decoded")
    return int(header[1]), int(header[2])


def resample(samples: np.ndarray, rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono int16 or float32 samples at ``rate`` to float32 at ``target_rate``: FFmpeg's resampler with the
    ffmpeg program's defaults, run in-process by PyAV (the same samples, byte for byte, as ``ffmpeg -ar``:
    tests/test_media.py; 2 ms for a 2-s utterance against ~20 ms to start the program)."""
    import av

    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples).reshape(1, -1),
                                       format="s16" if samples.dtype == np.int16 else "flt", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target_rate)
    out = [*resampler.resample(frame), *resampler.resample(None)]  # None flushes what the filter holds back
    return np.concatenate([f.to_ndarray().reshape(-1) for f in out]) if out else np.zeros(0, np.float32)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM wav from float32 samples in [-1, 1]."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def write_video(path: Path, frames: np.ndarray, fps: float = VIDEO_FPS, audio: Path | None = None) -> None:
    """H.264 mp4 from ``(T, H, W, 3)`` uint8 frames, muxed with the 16-bit wav ``audio`` (AAC) when given.

    Encoded in-process by PyAV (the settings of ``ffmpeg -c:v libx264 -crf 18 -preset veryfast -pix_fmt yuv420p``
    but mbtree off): starting the ffmpeg program costs more than encoding a short clip (a 48-px demo clip 2.8x
    faster, benchmarks/video_writing.py), and the demo's corpus writes 1,500 of them."""
    import av

    height, width = frames.shape[1:3]
    try:
        with av.open(local(path), "w", format="mp4") as container:
            rate = fractions.Fraction(fps).limit_denominator(1001)
            video = container.add_stream("libx264", rate=rate)
            video.width, video.height, video.pix_fmt, video.thread_count = width, height, "yuv420p", 1
            # without macroblock-tree rate control: with it, PyAV's libx264 encoded the same frames differently
            # from run to run (the ffmpeg program's did not), and a seeded corpus must come out the same
            video.options = {"crf": "18", "preset": "veryfast", "x264-params": "mbtree=0"}
            sound = _wav_frame(audio) if audio else None
            if sound is not None:
                audio_stream = container.add_stream("aac", rate=sound.sample_rate, layout="mono")
            for index, frame in enumerate(frames):
                picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                picture.pts, picture.time_base = index, 1 / rate
                container.mux(video.encode(picture))
            container.mux(video.encode(None))
            if sound is not None:
                container.mux(audio_stream.encode(sound))
                container.mux(audio_stream.encode(None))
    except (av.error.FFmpegError, ValueError) as exc:
        raise MediaError(path, f"cannot write the video: {exc}") from None


def _wav_frame(path: Path):
    """The 16-bit mono wav at ``path`` as one PyAV audio frame; its time stamp lets the encoder's priming
    samples be cut (an edit list), so the audio read back starts where the wav did."""
    import av

    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise MediaError(path, "expected a 16-bit mono wav")
        samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
        rate = wav.getframerate()
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = rate, 0, fractions.Fraction(1, rate)
    return frame
