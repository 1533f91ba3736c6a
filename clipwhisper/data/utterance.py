"""One utterance of a manifest, its length, and the text lines of a manifest file: what every format shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ManifestError
from .media import SAMPLE_RATE


@dataclass(frozen=True)
class Utterance:
    id: str
    video: Path | None
    audio: Path | None
    n_video_frames: int = 0
    n_audio_samples: int = 0
    text: str | None = None

    def media(self, stream: str) -> Path | None:
        """The file a stream comes from: a video file's soundtrack serves as audio when there is no wav."""
        return (self.audio or self.video) if stream == "audio" else self.video


def duration_s(utterance: Utterance, fps: float = 25.0) -> float:
    """Its length from the manifest's counts: the audio's when it has one, else the video's at ``fps``."""
    if utterance.n_audio_samples:
        return utterance.n_audio_samples / SAMPLE_RATE
    return utterance.n_video_frames / fps


def decoded_lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(path, None, f"cannot read: {exc.strerror or exc}") from exc
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # the BOM some editors (Notepad, Excel) write first
    lines = []
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ManifestError(path, number, f"not UTF-8 text (byte {exc.start} of the line)") from exc
    return lines
