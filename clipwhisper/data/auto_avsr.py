"""auto_avsr's label CSV: ``dataset,relative_path,n_video_frames,token_ids``, one utterance per line.

Paths are relative to ``ROOT/dataset``, where ROOT is the folder that holds the
``labels/`` folder the CSV sits in (auto_avsr's layout), else the CSV's own
folder. Audio is the ``.wav`` beside the video when there is one, else the
video's own soundtrack; auto_avsr cuts 640 samples per frame, so the sample
count is the frame count × 640. Transcripts come from the text files
auto_avsr's preparation writes (``dataset_text_segNs/...txt``, the twin of
``dataset_video_segNs/...mp4``, or a ``.txt`` beside the video); without them,
the token ids are turned back into text with auto_avsr's SentencePiece units
file (``unigram5000_units.txt``: one ``piece id`` per line).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from ..errors import ConfigError, ManifestError
from .utterance import Utterance, decoded_lines

SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps
COLUMNS = ("dataset", "path", "n_video_frames", "token_ids")
WORD_START = "\u2581"  # SentencePiece's word-boundary mark


def csv_root(path: Path) -> Path:
    path = Path(path).resolve()
    return path.parent.parent if path.parent.name == "labels" else path.parent


def _text_file(root: Path, dataset: str, relative: str) -> Path | None:
    twin = re.sub(rf"^{re.escape(dataset)}_video_seg", f"{dataset}_text_seg", relative)
    for candidate in (root / dataset / twin, root / dataset / relative):
        text = candidate.with_suffix(".txt")
        if text.is_file():
            return text
    return None


class Units:
    """auto_avsr's token ids <-> SentencePiece pieces, from its units file; encoding needs the model too."""

    def __init__(self, units_file: Path, model_file: Path | None = None):
        self.path = Path(units_file)
        self.ids: dict[str, int] = {}
        for number, line in enumerate(decoded_lines(self.path), start=1):
            piece, _, value = line.rpartition(" ")
            if not piece or not value.isdigit():
                raise ManifestError(self.path, number, "expected 'piece id'")
            self.ids[piece] = int(value)
        self.pieces = {value: piece for piece, value in self.ids.items()}
        self.model_file = model_file

    @classmethod
    def beside(cls, model_file: Path) -> Units:
        """The units file auto_avsr ships next to its model: ``NAME.model`` -> ``NAME_units.txt``."""
        model_file = Path(model_file)
        units = model_file.with_name(f"{model_file.stem}_units.txt")
        if not units.is_file():
            raise ConfigError(str(model_file), [f"no units file {units.name} beside the SentencePiece model"])
        return cls(units, model_file)

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces.get(i, "") for i in ids).replace(WORD_START, " ").strip()

    def encode(self, text: str) -> list[int]:
        try:
            import sentencepiece
        except ImportError:
            raise ConfigError("--spm", ["writing auto_avsr token ids needs the sentencepiece package"]) from None
        model = sentencepiece.SentencePieceProcessor(model_file=str(self.model_file))
        unknown = self.ids.get("<unk>", 1)
        return [self.ids.get(piece, unknown) for piece in model.encode(text, out_type=str)]


def _ids(path: Path, number: int, value: str) -> list[int]:
    try:
        return [int(token) for token in value.split()]
    except ValueError:
        raise ManifestError(path, number, f"token_ids must be integers separated by spaces, got {value!r}") from None


def read_csv(path: Path, units: Units | None = None) -> list[Utterance]:
    path = Path(path)
    root = csv_root(path)
    utterances, seen = [], {}
    for number, row in enumerate(csv.reader(decoded_lines(path)), start=1):
        if len(row) != len(COLUMNS):
            raise ManifestError(path, number, f"expected {len(COLUMNS)} comma-separated columns ({', '.join(COLUMNS)}),"
                                              f" found {len(row)}")
        dataset, relative, frames, token_ids = row
        if not frames.isdigit():
            raise ManifestError(path, number, f"n_video_frames must be a non-negative integer, got {frames!r}")
        uid = os.path.splitext(relative)[0]
        if uid in seen:
            raise ManifestError(path, number, f"duplicate path {relative!r} (first on line {seen[uid]})")
        seen[uid] = number
        video = root / dataset / relative
        wav = video.with_suffix(".wav")
        text_file = _text_file(root, dataset, relative)
        if text_file is not None:
            text = " ".join(" ".join(decoded_lines(text_file)).split())
        elif units is not None:
            text = units.decode(_ids(path, number, token_ids))
        else:
            raise ManifestError(path, number, f"no transcript: no text file for {relative} (auto_avsr writes them to "
                                              f"{dataset}_text_segNs/); `manifest convert --spm` decodes the token ids")
        utterances.append(Utterance(uid, video, wav if wav.is_file() else None, int(frames),
                                    int(frames) * SAMPLES_PER_FRAME, text))
    return utterances


def write_csv(path: Path, utterances: list[Utterance], units: Units, dataset: str = "data") -> None:
    """auto_avsr label lines; media paths relative to ``ROOT/dataset`` (ROOT as ``csv_root`` finds it)."""
    base = csv_root(path) / dataset
    lines = []
    for u in utterances:
        if u.video is None:
            raise ManifestError(path, None, f"{u.id}: auto_avsr's CSV needs a video for every utterance")
        ids = " ".join(map(str, units.encode(u.text or "")))
        lines.append([dataset, os.path.relpath(Path(u.video).resolve(), base), str(u.n_video_frames), ids])
    with open(path, "w", encoding="utf-8", newline="") as out:
        csv.writer(out, lineterminator="\n").writerows(lines)
