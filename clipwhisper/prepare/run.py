"""``clipwhisper prepare``: raw videos -> 25 fps crop videos, 16 kHz wav and a TSV/WRD manifest.

Outputs are written under temporary names and renamed, and a small JSON record
per video marks it done, so a rerun skips finished videos and a killed run loses
only the videos in flight. Videos are prepared in parallel processes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from ..data.manifest import write_manifest
from ..data.media import load_audio, write_wav
from ..data.utterance import Utterance
from ..errors import ClipWhisperError, ConfigError
from .cropping import track, write_crops
from .preview import ContactSheet

CROPS = ("mouth", "face")


@dataclass(frozen=True)
class Options:
    out: Path
    crop: str = "mouth"
    size: int = 96
    preview: bool = False  # a contact sheet per video: preview/<id>.png

    def __post_init__(self):
        if self.crop not in CROPS:
            raise ConfigError("crop", [f"must be mouth or face, not {self.crop!r}"])


def prepare_one(uid: str, source: Path, options: Options) -> dict:
    """Crop video and 16 kHz wav of one source video; its record (also written as the done marker)."""
    video, audio = options.out / "video" / f"{uid}.mp4", options.out / "audio" / f"{uid}.wav"
    for folder in (video.parent, audio.parent, _done_file(options.out, uid).parent):
        folder.mkdir(parents=True, exist_ok=True)
    audio_samples = load_audio(source)  # first: a video without sound fails before the slow part
    regions, interpolated = track(source, options.crop)
    tmp_video, tmp_audio = video.with_name(f".{uid}.tmp.mp4"), audio.with_name(f".{uid}.tmp.wav")
    sheet = ContactSheet(regions) if options.preview else None
    frames = write_crops(source, regions, options.size, tmp_video, sheet.see if sheet else None)
    if sheet is not None:
        sheet.write(preview_file(options.out, uid))
    write_wav(tmp_audio, audio_samples)
    os.replace(tmp_video, video)
    os.replace(tmp_audio, audio)
    record = {"id": uid, "source": str(source), "video": str(video), "audio": str(audio), "frames": frames,
              "samples": len(audio_samples), "crop": options.crop, "size": options.size,
              "interpolated": interpolated}
    _done_file(options.out, uid).write_text(json.dumps(record), encoding="utf-8")
    return record


def _done_file(out: Path, uid: str) -> Path:
    return out / ".prepared" / f"{uid}.json"


def preview_file(out: Path, uid: str) -> Path:
    return out / "preview" / f"{uid}.png"


def _finished(out: Path, uid: str, source: Path, options: Options) -> dict | None:
    try:
        record = json.loads(_done_file(out, uid).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = (record.get("source"), record.get("crop"), record.get("size")) == (str(source), options.crop, options.size)
    wanted = [Path(record["video"]), Path(record["audio"])] + ([preview_file(out, uid)] if options.preview else [])
    return record if same and all(path.is_file() for path in wanted) else None


def _attempt(uid: str, source: Path, options: Options) -> tuple[str, dict | None, str | None]:
    """Runs in a worker: a failure comes back as its message, never lost in the pool."""
    try:
        return uid, prepare_one(uid, source, options), None
    except ClipWhisperError as exc:
        return uid, None, str(exc)
    except OSError as exc:  # writing its outputs failed, e.g. a full disk
        return uid, None, f"{source}: cannot write its outputs ({exc.strerror or exc})"


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

