"""``clipwhisper manifest from-folder``: a manifest from a folder of audio files and one transcript file.

Transcript files in the common forms, one utterance a line:
- ``id text`` (Kaldi's ``text``), or ``id: text`` (the colon is dropped);
- a ``.csv`` with a header naming an id column (``id``, ``file``, ``path``, ...) and a text column
  (``text``, ``transcript``, ``sentence``, ...).
Blank lines and lines starting with ``;`` or ``#`` are comments. An id names a file under the folder by its
relative path, with or without its suffix (``digits/0`` finds ``digits/0.wav``). Audio is counted at 16 kHz
(the loader resamples any rate). Ids with no audio file, and transcripts with no words outside square
brackets (``[beep]``), are left out and counted in a warning, never silently.
"""

from __future__ import annotations

import csv
import random
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .data.manifest import write_manifest
from .data.manifest_check import _audio_samples
from .data.utterance import Utterance
from .errors import ManifestError
from .runtime.folder_claim import output_folder

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4", ".mkv", ".webm", ".avi", ".mov"}
ID_COLUMNS = ("id", "file", "filename", "file_name", "path", "audio", "utt_id", "utterance_id", "key")
TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence", "normalized_text", "words", "label")
ANNOTATION = re.compile(r"\[[^\]]*\]")


@dataclass
class Built:
    splits: dict[str, int]
    missing: list[str] = field(default_factory=list)  # ids with no audio file
    non_speech: list[str] = field(default_factory=list)  # transcripts with no words


def read_transcripts(path: Path) -> list[tuple[int, str, str]]:
    """``(line number, id, text)`` for every utterance line of ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ManifestError(path, None, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(path, None, f"not UTF-8 text (byte {exc.start})") from None
    rows = _csv_rows(path, text) if Path(path).suffix.lower() == ".csv" else _line_rows(path, text)
    seen: dict[str, int] = {}
    for number, key, _ in rows:
        if key in seen:
            raise ManifestError(path, number, f"id {key!r} again (first on line {seen[key]})")
        seen[key] = number
    if not rows:
        raise ManifestError(path, None, "no transcript lines")
    return rows


def _line_rows(path: Path, text: str) -> list[tuple[int, str, str]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith((";", "#")):
            continue
        key, _, words = line.partition(":") if re.match(r"^[^\s:]+:", line) else line.partition(" ")
        if not words.strip():
            raise ManifestError(path, number, f"id {key!r} has no transcript (expected 'id text' or 'id: text')")
        rows.append((number, key.strip(), " ".join(words.split())))
    return rows


def _csv_rows(path: Path, text: str) -> list[tuple[int, str, str]]:
    reader = csv.reader(text.splitlines())
    header = [name.strip().lower() for name in next(reader, [])]
    id_column = next((header.index(c) for c in ID_COLUMNS if c in header), None)
    text_column = next((header.index(c) for c in TEXT_COLUMNS if c in header), None)
    if id_column is None or text_column is None:
        raise ManifestError(path, 1, f"the header needs an id column ({', '.join(ID_COLUMNS)}) and a text "
                                     f"column ({', '.join(TEXT_COLUMNS)}); it has {', '.join(header) or 'none'}")
    rows = []
    for number, row in enumerate(reader, 2):
        if not row:
            continue
        if len(row) <= max(id_column, text_column):
            raise ManifestError(path, number, f"{len(row)} columns, the header has {len(header)}")
        rows.append((number, row[id_column].strip(), " ".join(row[text_column].split())))
    return rows


def audio_files(folder: Path) -> dict[str, Path]:
    """Every media file under ``folder`` by its relative path, with and without its suffix."""
    found = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES:
            relative = path.relative_to(folder).as_posix()
            found[relative] = path
            found.setdefault(relative[: -len(path.suffix)], path)
    return found


def split_ids(ids: list[str], valid: int, test: int, seed: int) -> dict[str, list[str]]:
    """A seeded split: ``test`` and ``valid`` utterances drawn at random, the rest for training."""
    if valid + test >= len(ids):
        raise ManifestError("--valid/--test", None, f"{valid} + {test} leaves nothing of {len(ids)} to train on")
    shuffled = list(ids)
    random.Random(seed).shuffle(shuffled)
    chosen = {"test": shuffled[:test], "valid": shuffled[test:test + valid], "train": shuffled[test + valid:]}
    order = {key: index for index, key in enumerate(ids)}  # each split in the transcript file's order
    return {name: sorted(keys, key=order.__getitem__) for name, keys in chosen.items() if keys}


def build(folder: Path, transcripts: Path, out: Path, valid: int = 0, test: int = 0, seed: int = 0,
          workers: int = 1) -> Built:
    """Write ``out/{train,valid,test}.tsv`` and ``.wrd`` (only ``train`` when no split is asked for)."""
    if not Path(folder).is_dir():
        raise ManifestError(folder, None, "not a folder")
    rows = read_transcripts(transcripts)
    files = audio_files(folder)
    built = Built({})
    kept: dict[str, tuple[Path, str]] = {}
    for _, key, text in rows:
        if key not in files:
            built.missing.append(key)
        elif not ANNOTATION.sub(" ", text).strip():
            built.non_speech.append(key)
        else:
            kept[key] = (files[key], text)
    if not kept:
        raise ManifestError(transcripts, None, f"no id names an audio file under {folder} "
                                               f"(first id: {rows[0][1]!r})")
    with ProcessPoolExecutor(max(1, workers)) as pool:
        samples = dict(zip(kept, pool.map(_audio_samples, [path for path, _ in kept.values()], chunksize=16)))
    with output_folder(out, {"written_by": "manifest from-folder"}):  # reruns replace only our manifests
        for split, keys in split_ids(list(kept), valid, test, seed).items():
            utterances = [Utterance(key, None, kept[key][0], 0, samples[key], kept[key][1]) for key in keys]
            write_manifest(Path(out) / f"{split}.tsv", folder, utterances, wrd=Path(out) / f"{split}.wrd")
            built.splits[split] = len(utterances)
    return built
