"""``clipwhisper prepare``: raw videos -> 25 fps crop videos, 16 kHz wav and a TSV/WRD manifest.

Outputs are written under temporary names and renamed, and a small JSON record
per video marks it done, so a rerun skips finished videos and a killed run loses
only the videos in flight. Videos are prepared in parallel processes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from ..data.manifest import write_manifest
from ..data.media import VIDEO_FPS, load_audio, write_wav
from ..data.utterance import Utterance
from ..errors import ClipWhisperError, ConfigError
from . import landmarks
from .alignment import load_reference
from .cropping import track, write_crops
from .preview import ContactSheet
from .speaker import SPEAKERS
from .tracking import MAX_GAP_FRAMES

CROPS = ("mouth", "face")
DETECTORS = ("landmarks", "haar")


@dataclass(frozen=True)
class Cropping:
    """How crops are found and cut: what is cropped, and the face finder (``transcribe --prepare`` takes it too)."""
    crop: str = "mouth"
    detector: str = "landmarks"  # dlib's 68 landmarks aligned to a reference face, or OpenCV's Haar cascades
    mean_face: Path | None = None  # the reference face (68 points) landmarks align to; None: the packaged one
    speaker: str = "active"  # which face, where there are several (speaker.py)

    def __post_init__(self):
        if self.crop not in CROPS:
            raise ConfigError("crop", [f"must be mouth or face, not {self.crop!r}"])
        if self.detector not in DETECTORS:
            raise ConfigError("--detector", [f"must be landmarks or haar, not {self.detector!r}"])
        if self.speaker not in SPEAKERS:
            wanted = f"{', '.join(SPEAKERS[:-1])} or {SPEAKERS[-1]}"
            raise ConfigError("--speaker", [f"must be {wanted}, not {self.speaker!r}"])
        if self.detector != "landmarks" and (self.mean_face is not None or self.speaker != "active"):
            option = "--mean-face" if self.mean_face is not None else "--speaker"
            raise ConfigError(option, ["works on landmarks: it needs --detector landmarks"])
        if self.detector == "landmarks":
            landmarks.check_installed()
            load_reference(self.mean_face)


@dataclass(frozen=True)
class Options:
    out: Path
    cropping: Cropping = Cropping()
    size: int = 96
    preview: bool = False  # a contact sheet per video: preview/<id>.png
    centre: int | None = None  # keep the central centre x centre pixels of each size x size crop

    def __post_init__(self):
        if self.centre is not None and not 8 <= self.centre <= self.size:
            raise ConfigError("--centre", [f"must be 8 to --size ({self.size}) pixels, not {self.centre}"])

    @property
    def crop(self) -> str:
        return self.cropping.crop

    @property
    def written_size(self) -> int:
        """The side of the crop videos written: the centre where one is kept."""
        return self.centre or self.size

    def identity(self) -> dict:
        """What the crops depend on: a folder holds crops made one way, never a mix."""
        mean_face = self.cropping.mean_face
        return {"crop": self.crop, "size": self.size, "centre": self.centre, "detector": self.cropping.detector,
                "mean_face": str(mean_face) if mean_face else None, "speaker": self.cropping.speaker}


def prepare_one(uid: str, source: Path, options: Options) -> dict:
    """Crop video(s) and 16 kHz wav of one source video; its record (also written as the done marker). One crop
    video ``ID.mp4``, or with ``--speaker all`` one per face, ``ID-track0.mp4``, ``ID-track1.mp4``..."""
    audio = options.out / "audio" / f"{uid}.wav"
    for folder in (options.out / "video", audio.parent, _done_file(options.out, uid).parent):
        folder.mkdir(parents=True, exist_ok=True)
    audio_samples = load_audio(source)  # first: a video without sound fails before the slow part
    faces, found = track(source, options.cropping, audio_samples)
    crops, written = [], []
    for index, face in enumerate(faces):
        regions = face.regions
        if options.centre:  # the centre of a size-pixel crop: a smaller square at the same scale
            regions = [dataclasses.replace(r, side=r.side * options.centre / options.size) for r in regions]
        name = f"{uid}-track{index}" if options.cropping.speaker == "all" else uid
        video = options.out / "video" / f"{name}.mp4"
        sheet = ContactSheet(regions) if options.preview else None
        frames = write_crops(source, regions, options.written_size, video.with_name(f".{name}.tmp.mp4"),
                             sheet.see if sheet else None, face.lost)
        if sheet is not None:
            sheet.write(preview_file(options.out, name))
        written.append(video)
        crops.append({"id": name, "video": str(video), "frames": frames, "interpolated": face.interpolated,
                      "lost_frames": [[gap.start, gap.stop - 1] for gap in face.lost]})
    write_wav(audio.with_name(f".{uid}.tmp.wav"), audio_samples)
    for video in written:
        os.replace(video.with_name(f".{video.stem}.tmp.mp4"), video)
    os.replace(audio.with_name(f".{uid}.tmp.wav"), audio)
    record = {"id": uid, "source": str(source), "audio": str(audio), "samples": len(audio_samples),
              **options.identity(), "faces": found, "crops": crops}
    _done_file(options.out, uid).write_text(json.dumps(record), encoding="utf-8")
    return record


def _done_file(out: Path, uid: str) -> Path:
    return out / ".prepared" / f"{uid}.json"


def preview_file(out: Path, name: str) -> Path:
    return out / "preview" / f"{name}.png"


def _finished(out: Path, uid: str, source: Path, options: Options) -> dict | None:
    try:
        record = json.loads(_done_file(out, uid).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = record.get("source") == str(source) and all(record.get(k) == v for k, v in options.identity().items())
    crops = record.get("crops")
    if not same or not isinstance(crops, list) or not isinstance(record.get("faces"), int) \
            or not all("lost_frames" in crop for crop in crops):
        return None  # other settings, or an older clipwhisper's record
    wanted = [Path(record["audio"])] + [Path(crop["video"]) for crop in record["crops"]]
    wanted += [preview_file(out, crop["id"]) for crop in record["crops"]] if options.preview else []
    return record if all(path.is_file() for path in wanted) else None


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
    """``split.tsv`` (and ``split.wrd`` with transcripts) over the prepared videos in input order, and
    ``split.gaps.tsv`` over those whose face was lost too long to interpolate (black frames in the gaps: kept
    apart, so nothing trains or scores on them unasked); the ids left out for want of a transcript."""
    rows, gapped, missing = [], [], []
    for uid in videos:
        record = outcome.prepared.get(uid)
        if record is None:
            continue
        if transcripts is not None and uid not in transcripts:
            missing.append(uid)
            continue
        text = transcripts.get(uid) if transcripts is not None else None
        for crop in record["crops"]:
            utterance = Utterance(crop["id"], Path(crop["video"]), Path(record["audio"]), crop["frames"],
                                  record["samples"], text)
            (gapped if crop["lost_frames"] else rows).append(utterance)
    for name, utterances in ((split, rows), (gap_manifest(split), gapped)):
        tsv = out / f"{name}.tsv"
        if utterances or name == split or tsv.exists():  # an earlier run's gaps manifest is emptied, not left stale
            write_manifest(tsv, out, utterances, wrd=out / f"{name}.wrd" if transcripts is not None else None)
    return missing


def lost_text(lost_frames: list[list[int]]) -> str:
    """A crop's long gaps for people: 'no face in frames 20-59 (1.6 s), longer than 1 s to interpolate'."""
    frames = ", ".join(f"{first}-{last} ({(last - first + 1) / VIDEO_FPS:.1f} s)" for first, last in lost_frames)
    return f"no face in frames {frames}, longer than {MAX_GAP_FRAMES / VIDEO_FPS:g} s to interpolate"


def gap_manifest(split: str) -> str:
    return f"{split}.gaps"
