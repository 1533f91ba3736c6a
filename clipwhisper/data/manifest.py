"""AV-HuBERT manifests: a TSV of media paths and counts plus a WRD of transcripts.

TSV: the first line is the root folder; each further line is
``id<TAB>video<TAB>audio<TAB>n_video_frames<TAB>n_audio_samples``. Relative
paths are joined to the root (a relative root to the TSV's folder). A media
column may be empty for a single-modality set. WRD: one transcript per line,
in the TSV's order.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import ManifestError
from .utterance import Utterance, decoded_lines

TSV_COLUMNS = ("id", "video", "audio", "n_video_frames", "n_audio_samples")


def _count(path: Path, number: int, column: str, value: str) -> int:
    if value == "":
        return 0
    try:
        count = int(value)
    except ValueError:
        raise ManifestError(path, number, f"{column} must be an integer, got {value!r}") from None
    if count < 0:
        raise ManifestError(path, number, f"{column} must not be negative, got {count}")
    return count


def _media_path(root: Path, value: str) -> Path | None:
    return (root / value) if value else None


def read_tsv(path: Path) -> list[Utterance]:
    path = Path(path)
    lines = decoded_lines(path)
    if not lines or not lines[0].strip():
        raise ManifestError(path, 1, "the first line must be the root folder")
    root = Path(lines[0].strip())
    if not root.is_absolute():
        root = path.parent / root
    utterances: list[Utterance] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            raise ManifestError(path, number, "empty line")
        fields = line.split("\t")
        if len(fields) != len(TSV_COLUMNS):
            raise ManifestError(
                path, number, f"expected {len(TSV_COLUMNS)} tab-separated columns ({', '.join(TSV_COLUMNS)}), "
                f"found {len(fields)}"
            )
        uid, video, audio, n_video, n_audio = fields
        if not uid:
            raise ManifestError(path, number, "empty id")
        if uid in seen:
            raise ManifestError(path, number, f"duplicate id {uid!r} (first on line {seen[uid]})")
        seen[uid] = number
        if not video and not audio:
            raise ManifestError(path, number, "neither a video nor an audio path")
        utterances.append(
            Utterance(
                id=uid,
                video=_media_path(root, video),
                audio=_media_path(root, audio),
                n_video_frames=_count(path, number, "n_video_frames", n_video),
                n_audio_samples=_count(path, number, "n_audio_samples", n_audio),
            )
        )
    return utterances


def read_wrd(path: Path) -> list[str]:
    return [line.strip() for line in decoded_lines(Path(path))]


def read_manifest(tsv: Path, wrd: Path | None = None) -> list[Utterance]:
    """Utterances of ``tsv`` with transcripts from ``wrd`` (default: the TSV's sibling ``.wrd``, if any);
    an auto_avsr ``.csv`` brings its own transcripts (see ``auto_avsr``)."""
    tsv = Path(tsv)
    if tsv.suffix.lower() == ".csv":
        from .auto_avsr import read_csv

        if wrd is not None:
            raise ManifestError(wrd, None, f"{tsv.name} is an auto_avsr CSV, which brings its own transcripts")
        return read_csv(tsv)
    utterances = read_tsv(tsv)
    if wrd is None:
        wrd = tsv.with_suffix(".wrd")
        if not wrd.exists():
            return utterances
    texts = read_wrd(Path(wrd))
    if len(texts) != len(utterances):
        raise ManifestError(
            wrd, None, f"has {len(texts)} transcripts but {tsv} lists {len(utterances)} utterances"
        )
    return [_with_text(u, t) for u, t in zip(utterances, texts)]


def _with_text(utterance: Utterance, text: str) -> Utterance:
    return Utterance(**{**utterance.__dict__, "text": text})


def split_paths(data_path: Path, split: str) -> tuple[Path, Path | None]:
    """A split's manifest in ``data_path``: ``split.tsv`` and ``split.wrd``, else auto_avsr's ``split.csv``."""
    tsv, csv = Path(data_path) / f"{split}.tsv", Path(data_path) / f"{split}.csv"
    if not tsv.exists() and csv.exists():
        return csv, None
    return tsv, tsv.with_suffix(".wrd")


def _relative(path: Path | None, root: Path) -> str:
    if path is None:
        return ""
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(Path(path).resolve())


def write_manifest(tsv: Path, root: Path, utterances: Iterable[Utterance], wrd: Path | None = None) -> None:
    """Write ``tsv`` (and ``wrd`` when given); media paths are written relative to ``root``."""
    utterances = list(utterances)
    root = Path(root).resolve()
    rows = [str(root)]
    for u in utterances:
        if "\t" in u.id or "\n" in u.id:
            raise ManifestError(tsv, None, f"id {u.id!r} contains a tab or newline")
        video, audio = _relative(u.video, root), _relative(u.audio, root)
        rows.append("\t".join([u.id, video, audio, str(u.n_video_frames), str(u.n_audio_samples)]))
    Path(tsv).write_text("\n".join(rows) + "\n", encoding="utf-8")
    if wrd is not None:
        texts = [(u.text or "").replace("\n", " ") for u in utterances]
        Path(wrd).write_text("".join(t + "\n" for t in texts), encoding="utf-8")
