"""Everything that can be checked before a model loads, reported all at once (exit code 2)."""

from __future__ import annotations

from pathlib import Path

from ..config import TrainConfig
from ..data.manifest import read_manifest, split_paths
from ..data.media import MAX_AUDIO_SAMPLES, SAMPLE_RATE
from ..data.utterance import Utterance, duration_s
from ..errors import ClipWhisperError, ConfigError
from ..modality import streams_of

SHOWN_MISSING = 3
WHISPER_WINDOW_S = MAX_AUDIO_SAMPLES / SAMPLE_RATE


def _at_most(tsv: Path, utterances: list[Utterance], limit_s: float, fps: float, what: str) -> list[Utterance]:
    """The utterances of at most ``limit_s``; the longer ones are left out of training with a warning."""
    from rich.markup import escape

    from ..runtime.report import status

    kept = [u for u in utterances if duration_s(u, fps) <= limit_s]
    if len(kept) < len(utterances):
        first = next(u.id for u in utterances if duration_s(u, fps) > limit_s)
        status.print(f"[yellow]{escape(str(tsv))}: left out {len(utterances) - len(kept)} utterances longer than "
                     f"{what} (first: {escape(first)})[/yellow]", soft_wrap=True)
    return kept


def _stream_problems(split: str, utterances: list[Utterance], streams: tuple[str, ...]) -> list[str]:
    problems = []
    for stream in streams:
        lacking = [u.id for u in utterances if u.media(stream) is None]
        if lacking:
            problems.append(f"{split}: {len(lacking)} utterances have no {stream} path (first: {lacking[0]}) "
                            f"but modality needs {stream}")
    used = {str(path) for u in utterances for stream in streams if (path := u.media(stream)) is not None}
    missing = sorted(path for path in used if not Path(path).exists())
    if missing:
        shown = ", ".join(missing[:SHOWN_MISSING]) + (", ..." if len(missing) > SHOWN_MISSING else "")
        problems.append(f"{split}: {len(missing)} media files not found ({shown})")
    return problems


def load_splits(config: TrainConfig) -> dict[str, list[Utterance]]:
    """Parse train and valid manifests and check them against the requested modality."""
    problems: list[str] = []
    splits: dict[str, list[Utterance]] = {}
    if config.data.path is None:
        raise ConfigError("train", ["data.path (--data-path) is required"])
    if not Path(config.data.path).is_dir():
        raise ConfigError("train", [f"data.path {config.data.path} is not a folder"])
    streams = streams_of(config.model.modality)
    for split in (config.data.train_split, config.data.valid_split):
        tsv, wrd = split_paths(config.data.path, split)
        if not tsv.is_file() or (wrd is not None and not wrd.is_file()):
            problems.append(f"{split}: needs {split}.tsv and {split}.wrd (or auto_avsr's {split}.csv) in "
                            f"{config.data.path}")
            continue
        try:
            splits[split] = read_manifest(tsv, wrd)
        except ClipWhisperError as exc:
            problems.append(str(exc))
            continue
        if not splits[split]:
            problems.append(f"{tsv}: no utterances")
        problems += _stream_problems(split, splits[split], streams)
        if "audio" in streams:  # Whisper reads at most 30 s; a cut would not match the transcript
            splits[split] = _at_most(tsv, splits[split], WHISPER_WINDOW_S, config.data.fps, "Whisper's 30-s window")
        if split == config.data.train_split and config.data.max_duration_s:
            splits[split] = _at_most(tsv, splits[split], config.data.max_duration_s, config.data.fps,
                                     f"data.max_duration_s ({config.data.max_duration_s:g} s)")
    noise = config.data.noise_file()
    if noise is not None and not noise.is_file():
        problems.append(f"data.noise {noise} not found")
    if config.resume not in (None, "auto"):
        problems += _resume_problems(Path(config.resume), config)
    try:
        Path(config.output_path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problems.append(f"output_path {config.output_path}: cannot create ({exc.strerror})")
    if problems:
        raise ConfigError("train", problems)
    return splits


def _resume_problems(path: Path, config: TrainConfig) -> list[str]:
    from ..model.checkpoint import read_header

    try:
        header = read_header(path)
    except ClipWhisperError as exc:
        return [f"resume: {exc}"]
    problems = []
    if not (path / "train_state").is_dir():
        problems.append(f"resume: {path} has no train_state/ (a weights-only checkpoint)")
    trained = header.model.modality
    if trained != config.model.modality:
        problems.append(f"resume: {path} was trained for modality {trained}, not {config.model.modality}")
    return problems
