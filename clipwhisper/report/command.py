"""``clipwhisper report``: decode folders in, one self-contained HTML file out (written whole, atomically)."""

from __future__ import annotations

import os
from pathlib import Path

from rich.markup import escape

from ..data.manifest import read_manifest
from ..errors import ConfigError
from ..runtime.report import console
from .page import build_context, render
from .runs import load_runs


def run_report(folders: list[Path], out: Path, manifest: Path | None = None, embed_media: bool = False,
               seed: int = 0) -> Path:
    from importlib.metadata import version

    if not folders:
        raise ConfigError("report", ["name at least one decode folder"])
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(str(out), ["--out names the HTML file to write (ending in .html)"])
    runs = load_runs(folders)
    media = {u.id: u for u in read_manifest(manifest)} if manifest else {}
    page = render(build_context(runs, out, media, embed_media, seed, version("clipwhisper")))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, out)
    records = sum(len(run.records) for run in runs)
    console.print(f"report: {escape(str(out))} ({len(page) / 1e6:.1f} MB, {len(runs)} decode folders, "
                  f"{records} records)")
    return out
