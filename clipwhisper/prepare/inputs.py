"""What ``prepare`` is given: videos (files, or folders searched for them) and Kaldi-style transcripts."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..data.utterance import decoded_lines
from ..errors import ConfigError

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".mpg", ".mpeg", ".flv"}


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
    for number, line in enumerate(decoded_lines(path), start=1):
        if line.strip():
            uid, _, text = line.strip().partition(" ")
            if uid in texts:
                raise ConfigError(f"{path}:{number}", [f"duplicate id {uid!r}"])
            texts[uid] = text.strip()
    return texts
