"""Audio decoded inside the process by PyAV (FFmpeg's libraries), without starting an ffmpeg program.

Decoded and made mono float32 at the wanted rate by FFmpeg's resampler with the program's defaults, it gives the
samples ``ffmpeg -ac 1 -ar RATE -f f32le`` gives, byte for byte (tests/test_media.py), without the ~20 ms of
starting the program: the AAC track of an mp4 costs about 2 ms. As for video (``video_in_process``), anything out
of the ordinary (a decoding error, a corrupt packet, no samples, PyAV missing) returns None, and ``load_audio``
asks the ffmpeg program, whose errors and handling of such files are the reference.
"""

from __future__ import annotations

import numpy as np

from .libav_checks import decoded, read_stream


def read_audio(source: str, sample_rate: int) -> np.ndarray | None:
    """Mono float32 samples at ``sample_rate`` of the first audio stream of ``source`` (``file:PATH``, as for
    ``read_frames``), or None where the ffmpeg program should decide."""
    return read_stream(source, "audio", lambda container, stream: _samples(container, stream, sample_rate))


def _samples(container, stream, sample_rate: int) -> np.ndarray | None:
    import av

    stream.thread_type = "NONE"  # one core per loader worker
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    end = _end(stream)
    frames = (_cut(frame, end) for frame in decoded(container, stream))
    pieces = [piece.to_ndarray().reshape(-1) for frame in frames if frame is not None
              for piece in resampler.resample(frame)]
    pieces += [piece.to_ndarray().reshape(-1) for piece in resampler.resample(None)]  # what it holds back
    samples = np.concatenate(pieces) if pieces else None
    return samples if samples is not None and len(samples) else None


def _end(stream) -> int | None:
    """Where the stream ends in samples, as its container says (an mp4's edit list cuts the AAC encoder's padding
    of the last frame; the ffmpeg program stops there), or None where it does not say."""
    if not stream.duration or stream.time_base is None:
        return None
    start = stream.start_time or 0
    return round((start + stream.duration) * stream.time_base * stream.sample_rate)


def _cut(frame, end: int | None):
    """``frame`` without its samples at or after ``end``; None if none is left."""
    import av

    if end is None or frame.pts is None:
        return frame
    keep = end - round(frame.pts * frame.time_base * frame.sample_rate)
    if keep >= frame.samples:
        return frame
    if keep <= 0:
        return None
    per_sample = 1 if frame.format.is_planar else len(frame.layout.channels)  # packed: channels interleaved
    cut = av.AudioFrame.from_ndarray(np.ascontiguousarray(frame.to_ndarray()[:, :keep * per_sample]),
                                     format=frame.format.name, layout=frame.layout.name)
    cut.sample_rate, cut.pts, cut.time_base = frame.sample_rate, frame.pts, frame.time_base
    return cut
