"""Lines of our JSONL files (``hyps.jsonl``, ``train_log.jsonl``) read back: a line that is not a JSON object
(torn by a crash or power loss, or someone else's) is no record."""

from __future__ import annotations

import json


def json_object(line: bytes) -> dict | None:
    """The JSON object on ``line``, or None if there is none."""
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None
