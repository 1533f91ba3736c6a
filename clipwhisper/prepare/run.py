"""``clipwhisper prepare``: raw videos -> 25 fps crop videos, 16 kHz wav and a TSV/WRD manifest.

Each video is read twice with ffmpeg, never whole in memory: once small and grey
to track the face, once at full size to cut the crops, which stream into the
encoder. Outputs are written under temporary names and renamed, and a small JSON
record per video marks it done, so a rerun skips finished videos and a killed
run loses only the videos in flight. Videos are prepared in parallel processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from ..errors import ClipWhisperError, ConfigError, MediaError
from ..manifest import Utterance, write_manifest
from ..media import VIDEO_FPS, ffmpeg_binary, frame_size, load_audio, write_wav
from . import tracking

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".mpg", ".mpeg", ".flv"}


@dataclass(frozen=True)
class Options:
    out: Path
    crop: str = "mouth"
    size: int = 96


def find_videos(inputs: Iterable[Path], out: Path) -> dict[str, Path]:
    """``{id: file}``: the files given, and the videos under the folders given (but not in ``out``, which may
    lie inside one); the id is the file's stem."""
    videos: dict[str, Path] = {}
    out = Path(out).resolve()
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                           and not p.resolve().is_relative_to(out))
        elif item.is_file():
            files = [item]
        else:
            raise ConfigError(str(item), ["no such file or folder"])
        for file in files:
            if file.stem in videos and videos[file.stem] != file:
                raise ConfigError(str(file), [f"same name as {videos[file.stem]}: ids come from file names"])
            videos[file.stem] = file
    if not videos:
        raise ConfigError(", ".join(map(str, inputs)), ["no video files found"])
    return videos


def read_transcripts(path: Path) -> dict[str, str]:
    """Kaldi-style ``id text`` lines (the id is the video's file name without its extension)."""
    texts = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read transcripts: {exc}"]) from None
    for number, line in enumerate(lines, start=1):
        if line.strip():
            uid, _, text = line.strip().partition(" ")
            if uid in texts:
                raise ConfigError(f"{path}:{number}", [f"duplicate id {uid!r}"])
            texts[uid] = text.strip()
    return texts


def _frames(path: Path, width: int, height: int, grey_width: int | None = None):
    """Frames at 25 fps, one at a time: RGB at full size, or RGB scaled to ``grey_width`` wide."""
    if grey_width:
        height = max(2, round(height * grey_width / width / 2) * 2)
        width = grey_width
    graph = ffmpeg.input(str(path)).output("pipe:", map="0:v:0", vf=f"fps={VIDEO_FPS},scale={width}:{height}",
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


def track(path: Path, crop: str) -> list[tracking.Region]:
    width, height = frame_size(path)
    scale = width / tracking.DETECT_WIDTH
    detections, previous = [], None
    for small in _frames(path, width, height, grey_width=tracking.DETECT_WIDTH):
        found = tracking.detect(small, previous)
        detections.append(None if found is None else found * [scale, scale, scale, scale, 1])
        previous = found if found is not None else previous
    smoothed = tracking.fill_and_smooth(detections)
    if smoothed is None:
        raise MediaError(path, f"no face found in {len(detections)} frames")
    return [tracking.region(row, crop) for row in smoothed]


def write_crops(path: Path, regions: list[tracking.Region], size: int, out: Path) -> int:
    """Cut the crops frame by frame and stream them into an H.264 encoder; the number of frames written."""
    width, height = frame_size(path)
    encoder = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{size}x{size}", framerate=VIDEO_FPS) \
        .output(str(out), vcodec="libx264", pix_fmt="yuv420p", crf=18, preset="veryfast", threads=1, f="mp4") \
        .overwrite_output().global_args("-loglevel", "error") \
        .run_async(cmd=ffmpeg_binary(), pipe_stdin=True, pipe_stderr=True)
    count = 0
    try:
        for frame, where in zip(_frames(path, width, height), regions):
            encoder.stdin.write(np.ascontiguousarray(tracking.cut(frame, where, size)).tobytes())
            count += 1
    finally:
        encoder.stdin.close()
        error = encoder.stderr.read().decode("utf-8", "replace").strip()
        if encoder.wait() != 0:
            raise MediaError(out, error.splitlines()[0] if error else "ffmpeg could not encode the crops")
    return count


def prepare_one(uid: str, source: Path, options: Options) -> dict:
    """Crop video and 16 kHz wav of one source video; its record (also written as the done marker)."""
    video, audio = options.out / "video" / f"{uid}.mp4", options.out / "audio" / f"{uid}.wav"
    for folder in (video.parent, audio.parent, _done_file(options.out, uid).parent):
        folder.mkdir(parents=True, exist_ok=True)
    audio_samples = load_audio(source)  # first: a video without sound fails before the slow part
    regions = track(source, options.crop)
    tmp_video, tmp_audio = video.with_name(f".{uid}.tmp.mp4"), audio.with_name(f".{uid}.tmp.wav")
    frames = write_crops(source, regions, options.size, tmp_video)
    write_wav(tmp_audio, audio_samples)
    os.replace(tmp_video, video)
    os.replace(tmp_audio, audio)
    record = {"id": uid, "source": str(source), "video": str(video), "audio": str(audio), "frames": frames,
              "samples": len(audio_samples), "crop": options.crop, "size": options.size}
    _done_file(options.out, uid).write_text(json.dumps(record), encoding="utf-8")
    return record


def _done_file(out: Path, uid: str) -> Path:
    return out / ".prepared" / f"{uid}.json"


def _finished(out: Path, uid: str, source: Path, options: Options) -> dict | None:
    try:
        record = json.loads(_done_file(out, uid).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = (record.get("source"), record.get("crop"), record.get("size")) == (str(source), options.crop, options.size)
    return record if same and Path(record["video"]).is_file() and Path(record["audio"]).is_file() else None


def _attempt(uid: str, source: Path, options: Options) -> tuple[str, dict | None, str | None]:
    """Runs in a worker: a failure comes back as its message, never lost in the pool."""
    try:
        return uid, prepare_one(uid, source, options), None
    except ClipWhisperError as exc:
        return uid, None, str(exc)


@dataclass
class Outcome:
    prepared: dict[str, dict]  # id -> record, done now or before
    skipped: int  # done by an earlier run
    failures: dict[str, str]  # id -> message


def prepare(videos: dict[str, Path], options: Options, workers: int,
            advance: Callable[[], None] = lambda: None) -> Outcome:
    prepared, failures = {}, {}
    for uid, source in videos.items():
        record = _finished(options.out, uid, source, options)
        if record is not None:
            prepared[uid] = record
            advance()
    skipped = len(prepared)
    todo = {uid: source for uid, source in videos.items() if uid not in prepared}
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        jobs = [pool.submit(_attempt, uid, source, options) for uid, source in todo.items()]
        for job in as_completed(jobs):
            uid, record, error = job.result()
            if record is not None:
                prepared[uid] = record
            else:
                failures[uid] = error
            advance()
    return Outcome(prepared, skipped, failures)


def write_split(out: Path, split: str, outcome: Outcome, videos: dict[str, Path],
                transcripts: dict[str, str] | None) -> list[str]:
    """``split.tsv`` (and ``split.wrd`` with transcripts) over the prepared videos in input order; the ids
    left out for want of a transcript."""
    rows, missing = [], []
    for uid in videos:
        record = outcome.prepared.get(uid)
        if record is None:
            continue
        if transcripts is not None and uid not in transcripts:
            missing.append(uid)
            continue
        rows.append(Utterance(uid, Path(record["video"]), Path(record["audio"]), record["frames"],
                              record["samples"], transcripts.get(uid) if transcripts is not None else None))
    write_manifest(out / f"{split}.tsv", out, rows, wrd=out / f"{split}.wrd" if transcripts is not None else None)
    return missing

