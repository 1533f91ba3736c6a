"""Who writes a run or decode folder: one process at a time, and one configuration for the folder's life.

Two processes writing one folder interleave their records (a decode's ``hyps.jsonl`` holding every utterance
twice, a run whose log and checkpoints come from two configurations). A rerun that resumes must continue the
same work: results made with another checkpoint, manifest or option are never silently reused or mixed.

- ``claimed(folder)`` holds an advisory lock (``flock``) on ``FOLDER/clipwhisper.lock`` for the command's
  life. The kernel drops it when the process ends however it ends, so a lock left by a killed process is no
  lock; a second writer is refused with the holder's PID and host.
- ``settle_identity(folder, identity)`` records what the folder's results depend on (``identity.json``) on the
  first run and refuses a rerun whose identity differs, naming every difference.
- ``output_folder(folder, identity)`` does both for the commands that write a folder of data (``synth``,
  ``prepare``, ``manifest from-folder``, ``demo``).

A refused command leaves the folder as it found it: the lock file (and the folder) it created are removed.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError

LOCK_FILE = "clipwhisper.lock"
IDENTITY_FILE = "identity.json"


@contextmanager
def claimed(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock (creating the folder) until the block ends; ConfigError if another process has it."""
    folder = Path(folder)
    new_folder, new_lock = not folder.exists(), not (folder / LOCK_FILE).exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_FILE, "a+", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(folder), [f"cannot write the folder: {exc.strerror or exc}"]) from None
    with handle:  # closing it releases the lock
        _lock(handle, folder)
        try:
            yield
        except BaseException:
            _tidy(folder, new_folder, new_lock)  # still holding the lock: no other process is inside
            raise


def _lock(handle, folder: Path) -> None:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        raise ConfigError(str(folder), [f"in use by {holder}; wait for it to end or choose another folder"]) \
            from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"PID {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()


def _tidy(folder: Path, new_folder: bool, new_lock: bool) -> None:
    """After a failure: remove the lock file and the folder this process created, if nothing else is there."""
    if new_lock:
        (folder / LOCK_FILE).unlink(missing_ok=True)
    if new_folder and not any(folder.iterdir()):
        folder.rmdir()


def _flat(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}
    return {prefix[:-1]: value}


def differences(recorded: dict, identity: dict) -> list[str]:
    """``key: A there, B now`` for every setting that differs, in dotted form."""
    before, now = _flat(recorded), _flat(identity)
    return [f"{key}: {json.dumps(before.get(key))} there, {json.dumps(now.get(key))} now"
            for key in sorted(before.keys() | now.keys()) if before.get(key) != now.get(key)]


def settle_identity(folder: Path, identity: dict, advice: str, ours: tuple[str, ...] | None = ()) -> None:
    """Check ``identity`` against the one recorded in ``folder`` (ConfigError, exit 2, listing the differences
    and ``advice``), or record it there if there is none.
    A folder with no identity must be empty but for the names in ``ours`` (what an older clipwhisper wrote
    there); ``ours=None`` accepts any contents."""
    path = Path(folder) / IDENTITY_FILE
    identity = json.loads(json.dumps(identity))  # the form it is compared in: JSON's
    if path.exists():
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(str(path), [f"unreadable ({exc}); {advice}"]) from None
        changed = differences(recorded, identity)
        if changed:
            raise ConfigError(str(folder), [f"holds results made with other settings ({'; '.join(changed)}); "
                                            f"{advice}"])
        return
    found = sorted(p.name for p in Path(folder).iterdir() if p.name != LOCK_FILE)
    if ours is not None and found and not set(found) & set(ours):
        raise ConfigError(str(folder), [f"holds files clipwhisper did not write ({', '.join(found[:3])}"
                                        f"{' ...' if len(found) > 3 else ''}); {advice}"])
    tmp = path.with_name(f".{IDENTITY_FILE}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(identity, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # whole or absent, whatever stops the process


@contextmanager
def output_folder(folder: Path, identity: dict, ours: tuple[str, ...] = ()) -> Iterator[Path]:
    """Hold ``folder`` and settle its identity (see ``settle_identity``) for a command that writes data there."""
    with claimed(folder):
        settle_identity(folder, identity, "choose an empty or new folder (a rerun continues only the same work)",
                        ours)
        yield Path(folder)
