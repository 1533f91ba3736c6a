"""PyAV's decoding held to what the ffmpeg program enforces as ``load_audio``/``load_frames`` run it (``-v error
-xerror``): a message at error level, or a packet the demuxer marked corrupt (a truncated file), means the file
goes to the program, whose error then names it. PyAV's own logging is off by default, so the level is raised
while a file is read and the messages of this thread captured."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class Damaged(Exception):
    """The demuxer marked a packet corrupt."""


@contextmanager
def ffmpeg_errors() -> Iterator[list]:
    """FFmpeg's error messages logged by this thread inside the block, ``(level, name, message)`` each."""
    import av

    previous = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=True) as logs:
            yield logs
    finally:
        av.logging.set_level(previous)


def decoded(container, stream) -> Iterator:
    """``stream``'s frames, as ``container.decode(stream)``; raises ``Damaged`` at a corrupt packet."""
    for packet in container.demux(stream):
        if packet.is_corrupt:
            raise Damaged
        yield from packet.decode()


def read_stream(source: str, kind: str, work: Callable[[object, object], T | None]) -> T | None:
    """``work(container, stream)`` on the first ``kind`` (``"audio"`` or ``"video"``) stream of ``source``, or None
    where the ffmpeg program should decide: PyAV missing, no such stream, an error raised or logged by FFmpeg, a
    corrupt packet, or ``work`` finding nothing."""
    try:
        import av
    except ImportError:
        return None
    try:
        with ffmpeg_errors() as logs, av.open(source, "r") as container:
            streams = getattr(container.streams, kind)
            result = work(container, streams[0]) if streams else None
    except (av.error.FFmpegError, ValueError, OSError, Damaged):
        return None
    return None if logs else result
