"""The run folder: config.yaml, train_log.jsonl, bad_samples.jsonl, step-NNNNNN/, best/, final/."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from ..runtime.jsonl import json_object

STEP_PATTERN = re.compile(r"^step-(\d{6,})$")


TMP_PATTERN = re.compile(r"^\.(.+)\.(tmp|old|del)-\d+$")  # save_checkpoint's before its renames; prune's


class RunFolder:
    def __init__(self, path: Path, writable: bool = True):
        """``writable=False`` for the ranks other than 0 of a distributed run: they read, never write."""
        self.path = Path(path)
        self.writable = writable
        if writable:
            self.path.mkdir(parents=True, exist_ok=True)  # preflight (checks.py) reported any failure already
            self.recover()

    def recover(self) -> None:
        """Tidy after a killed run: a half-written ``.X.tmp-PID`` or half-deleted ``.X.del-PID`` is removed; a
        ``.X.old-PID`` left between the two renames of a replacement (``best/``, ``final/``) is put back if ``X``
        is missing; a ``step-N/`` without its ``config.json`` (a save renames a step folder into place whole,
        so that is one half deleted by a version that pruned in place) is removed."""
        for child in self.path.iterdir():
            match = TMP_PATTERN.match(child.name)
            if not match:
                continue
            target = self.path / match.group(1)
            if match.group(2) == "old" and not target.exists():
                child.rename(target)
            else:
                shutil.rmtree(child, ignore_errors=True)
        for child in self.path.iterdir():
            if STEP_PATTERN.match(child.name) and not (child / "config.json").is_file():
                shutil.rmtree(child, ignore_errors=True)

    def step_dir(self, step: int) -> Path:
        return self.path / f"step-{step:06d}"

    def complete_steps(self) -> list[Path]:
        """Step checkpoints with their config.json (written last), oldest first."""
        found = []
        for child in self.path.iterdir():
            match = STEP_PATTERN.match(child.name)
            if match and (child / "config.json").is_file() and (child / "train_state").is_dir():
                found.append((int(match.group(1)), child))
        return [path for _, path in sorted(found)]

    def latest(self) -> Path | None:
        steps = self.complete_steps()
        return steps[-1] if steps else None

    def prune(self, keep_last: int) -> None:
        if not self.writable:
            return
        for old in self.complete_steps()[:-keep_last]:
            doomed = old.with_name(f".{old.name}.del-{os.getpid()}")  # gone from the steps at once, in one rename
            old.rename(doomed)
            shutil.rmtree(doomed, ignore_errors=True)

    observer = None  # called with every train_log record, e.g. tracking.Trackers.observe

    def log(self, record: dict, name: str = "train_log.jsonl") -> None:
        if not self.writable:
            return
        with open(self.path / name, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        if self.observer is not None and name == "train_log.jsonl":
            self.observer(record)

    def truncate_log_after(self, step: int, name: str = "train_log.jsonl") -> int:
        """Drop records written after the step this run starts from, so the log reads as one straight run, and
        lines that are not whole records (a torn last line after a power loss). Returns how many of those."""
        path = self.path / name
        if not self.writable or not path.exists():
            return 0
        records = [_record(line) for line in path.read_bytes().split(b"\n") if line.strip()]
        kept = [r for r in records if r is not None and r.get("step", 0) <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        return records.count(None)


def _record(line: bytes) -> dict | None:
    record = json_object(line)
    return record if record is not None and isinstance(record.get("step", 0), int) else None
