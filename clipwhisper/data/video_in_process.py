"""Video frames decoded inside the process by PyAV (FFmpeg's libraries), without starting an ffmpeg program.

The same filter chain as ``media.load_frames``'s ffmpeg command gives the same frames, byte for byte
(tests/test_media.py checks it), in a fraction of the time: a short clip costs ~30 ms to start ffmpeg and ~10 ms
to decode. Anything out of the ordinary (a decoding error, a corrupt packet, a rotated phone video, no frames, PyAV
missing) returns None, and ``load_frames`` asks the ffmpeg program, whose errors and handling of such files are
the reference.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .libav_checks import decoded, read_stream

Filters = Callable[[object], list[tuple[str, str]]]  # the first decoded frame -> libavfilter names and arguments


def read_frames(source: str, filters: Filters) -> np.ndarray | None:
    """Frames of the first video stream of ``source`` through the chain ``filters`` picks for its first frame
    (``(T, H, W, 3)`` for rgb24, ``(T, 3H/2, W)`` for yuv420p), or None where the ffmpeg program should decide.
    ``source`` names a local file as ``media.local`` does (``file:PATH``): FFmpeg's libraries, like its program,
    would read ``concat:a.mp4|b.mp4`` or ``http://…`` as a protocol."""
    frames = read_stream(source, "video", lambda container, stream: _decode(container, stream, filters))
    return np.stack(frames) if frames else None


def first_frame(source: str):
    """The first decoded frame of ``source``'s first video stream (its size, pixel format and colours), or None."""
    return read_stream(source, "video", lambda container, stream: next(container.decode(stream), None))


def _decode(container, stream, filters: Filters) -> list[np.ndarray] | None:
    import av

    stream.thread_type = "NONE"  # one core per loader worker; frames are small
    graph = None
    frames: list[np.ndarray] = []

    def drain() -> None:
        while True:
            try:
                frames.append(graph.pull().to_ndarray())
            except (av.error.BlockingIOError, av.error.EOFError):
                return
    for frame in decoded(container, stream):
        if getattr(frame, "rotation", 0):
            return None  # the ffmpeg program turns it upright (autorotate); leave that to it
        if graph is None:
            graph = av.filter.Graph()
            graph.link_nodes(graph.add_buffer(template=stream), *(graph.add(name, args) for name, args in
                                                                 filters(frame)), graph.add("buffersink")).configure()
        graph.push(frame)
        drain()
    if graph is None:
        return None
    graph.push(None)
    drain()
    return frames
