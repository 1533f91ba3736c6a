"""One video through ffmpeg, never whole in memory: a small pass to track the face, a full-size pass whose
crops stream into an H.264 encoder."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from ..data.media import VIDEO_FPS, ffmpeg_binary, frame_size, local
from ..errors import MediaError
from . import alignment, landmarks, speaker, tracking


def frames(path: Path, width: int, height: int, scaled_width: int | None = None):
    """RGB frames at 25 fps, one at a time: at full size, or scaled to ``scaled_width`` wide."""
    if scaled_width:
        height = max(2, round(height * scaled_width / width / 2) * 2)
        width = scaled_width
    graph = ffmpeg.input(local(path)).output("pipe:", map="0:v:0", vf=f"fps={VIDEO_FPS},scale={width}:{height}",
                                           format="rawvideo", pix_fmt="rgb24").global_args("-loglevel", "error")
    process = graph.run_async(cmd=ffmpeg_binary(), pipe_stdout=True, pipe_stderr=True)
    size = width * height * 3
    try:
        while chunk := process.stdout.read(size):
            if len(chunk) < size:
                raise MediaError(path, "video ended inside a frame")
            yield np.frombuffer(chunk, np.uint8).reshape(height, width, 3)
    finally:
        process.stdout.close()
        error = process.stderr.read().decode("utf-8", "replace").strip()
        if process.wait() != 0:
            raise MediaError(path, error.splitlines()[0] if error else "ffmpeg could not decode the video")


LANDMARK_WIDTH = 640  # landmarks are found on frames scaled down to this width (never up)


@dataclass(frozen=True)
class FaceCrops:
    """Where one face is cropped in every frame; ``interpolated``: frames without the face placed from their
    neighbours (short gaps); ``lost``: longer gaps, whose crops are written black."""
    regions: list[tracking.Region]
    interpolated: int
    lost: list[range]


def track(path: Path, cropping, sound: np.ndarray | None = None) -> tuple[list[FaceCrops], int]:
    """Per face cropped (one, or with ``--speaker all`` each face seen in half the frames), its crops; and how
    many faces were found (those seen in half the frames; the cascades follow one). ``cropping``: a
    run.Cropping; ``sound`` (16 kHz) tells the speaking face from the others."""
    width, height = frame_size(path)
    small_width = tracking.DETECT_WIDTH if cropping.detector == "haar" else min(width, LANDMARK_WIDTH)
    scale = width / small_width
    small = frames(path, width, height, scaled_width=small_width)
    if cropping.detector == "haar":
        found = [[None if box is None else box * [scale, scale, scale, scale, 1] for box in _haar(small)]]
        faces = int(any(box is not None for box in found[0]))
    else:
        tracks, count = landmarks.face_tracks(small)
        chosen = speaker.choose(tracks, sound, cropping.speaker)
        found = [alignment.drop_jumps([None if p is None else p * scale for p in face.points]) for face in chosen]
        faces = len(speaker.candidates(tracks))
        found = found or [[None] * count]
    if all(d is None for d in found[0]):
        raise MediaError(path, f"no face found in {len(found[0])} frames")
    crops = []
    for detections in found:
        lost = tracking.lost(detections)
        interpolated = sum(d is None for d in detections) - sum(map(len, lost))
        crops.append(FaceCrops(_regions(detections, cropping), interpolated, lost))
    return crops, faces


def _regions(detections: list, cropping) -> list[tracking.Region]:
    if cropping.detector == "haar":
        return [tracking.region(row, cropping.crop) for row in tracking.fill_and_smooth(detections)]
    return alignment.regions(detections, _reference(cropping.mean_face), cropping.crop)


def _haar(frames):
    previous = None
    for small in frames:
        found = tracking.detect(small, previous)
        previous = found if found is not None else previous
        yield found


@functools.cache
def _reference(mean_face: Path | None):
    return alignment.load_reference(mean_face)


def write_crops(path: Path, regions: list[tracking.Region], size: int, out: Path,
                seen: Callable[[int, np.ndarray, np.ndarray], None] | None = None, lost: Sequence[range] = ()) -> int:
    """Cut the crops frame by frame and stream them into an H.264 encoder; the number of frames written.
    ``seen(index, frame, crop)`` is shown each frame and its crop (the preview's contact sheet); the crops of
    the frames in ``lost`` are black."""
    black = {index for gap in lost for index in gap}
    width, height = frame_size(path)
    encoder = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{size}x{size}", framerate=VIDEO_FPS) \
        .output(local(out), vcodec="libx264", pix_fmt="yuv420p", crf=18, preset="veryfast", threads=1, f="mp4") \
        .overwrite_output().global_args("-loglevel", "error") \
        .run_async(cmd=ffmpeg_binary(), pipe_stdin=True, pipe_stderr=True)
    count = 0
    try:
        for frame, where in zip(frames(path, width, height), regions):
            cropped = np.zeros((size, size, 3), np.uint8) if count in black else tracking.cut(frame, where, size)
            encoder.stdin.write(np.ascontiguousarray(cropped).tobytes())
            if seen is not None:
                seen(count, frame, cropped)
            count += 1
    finally:
        encoder.stdin.close()
        error = encoder.stderr.read().decode("utf-8", "replace").strip()
        if encoder.wait() != 0:
            raise MediaError(out, error.splitlines()[0] if error else "ffmpeg could not encode the crops")
    return count
