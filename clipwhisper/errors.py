"""Errors the CLI turns into one line on stderr and a documented exit code.

Exit codes: 2 for usage and configuration problems (fix the command or the
config and run again), 1 for runtime problems (bad media, a broken checkpoint,
a failed utterance), 130 and 143 for training stopped by SIGINT and SIGTERM
after saving a checkpoint. Anything else is a bug and shows its traceback.
"""

from __future__ import annotations

EXIT_RUNTIME = 1
EXIT_USAGE = 2


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (a library's multi-line error), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ClipWhisperError(Exception):
    """Base class: a problem the user can act on, described in one line."""

    exit_code = EXIT_RUNTIME


class ConfigError(ClipWhisperError):
    """Invalid settings: unknown keys, values out of range, inconsistent options."""

    exit_code = EXIT_USAGE

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        detail = "; ".join(problems)
        super().__init__(f"{source}: {detail}" if source else detail)


class ManifestError(ClipWhisperError):
    """A TSV/WRD manifest that cannot be used; names the file and line."""

    exit_code = EXIT_USAGE

    def __init__(self, path, line: int | None, message: str):
        self.path, self.line = path, line
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")


class MediaError(ClipWhisperError):
    """A media file that cannot be decoded; names the file."""

    def __init__(self, path, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


class CheckpointError(ClipWhisperError):
    """A checkpoint folder that is missing, partial, corrupt or incompatible."""

    def __init__(self, path, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


class Interrupted(ClipWhisperError):
    """Stopped by SIGINT (Ctrl-C) or SIGTERM after saving; exit 128 + the signal number, as shells report."""

    def __init__(self, signal_number: int, message: str):
        self.exit_code = 128 + signal_number
        super().__init__(message)
