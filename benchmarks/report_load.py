"""The report on a big test set: 20,000 utterances x 15 cells (3 modalities x 5 SNRs) in one decode folder.

Prints the time `clipwhisper report` takes, the page's size, and in headless Chromium (Playwright) the time to
load it and to apply a filter, a search and a page turn. The records are made by the real `make_record` (so
jiwer scores them) from GRID-style sentences with random word errors at rates that grow with the noise.

    python benchmarks/report_load.py                    # 20,000 utterances
    python benchmarks/report_load.py --utterances 2000  # a quick look
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

from clipwhisper.inference.decode import finish
from clipwhisper.inference.records import HypsFile, make_record
from clipwhisper.report.command import run_report
from clipwhisper.synth.grammar import sample_sentence

CELLS = [(m, snr) for m in ("audio", "video", "both") for snr in ("clean", 10.0, 5.0, 0.0, -5.0)]
ERROR_RATE = {"clean": 0.05, 10.0: 0.15, 5.0: 0.25, 0.0: 0.4, -5.0: 0.55}


def garble(sentence: str, rate: float, rng: random.Random) -> str:
    words = []
    for word in sentence.split():
        roll = rng.random()
        if roll < rate / 3:
            continue  # a deletion
        words.append(rng.choice(["bin", "lay", "set", "place", "x", "q"]) if roll < rate else word)
        if rng.random() < rate / 6:
            words.append("now")  # an insertion
    return " ".join(words)


def make_folder(folder: Path, utterances: int) -> int:
    rng = random.Random(0)
    sentences = [sample_sentence(rng) for _ in range(utterances)]
    hyps = HypsFile(folder / "hyps.jsonl")
    for modality, snr in CELLS:
        rate = ERROR_RATE["clean" if modality == "video" else snr] + (0.3 if modality == "video" else 0)
        hyps.append([make_record(f"spk{i % 40:02d}_{i:06d}", modality, snr, text, garble(text, rate, rng), "basic",
                                 timing=(2.0, 0.01)) for i, text in enumerate(sentences)])
    finish(folder, hyps.records)
    return len(hyps.records)


def browse(page_path: Path, chromium: str) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    timings = {}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        started = time.perf_counter()
        page.goto(page_path.as_uri(), wait_until="load")
        page.wait_for_selector("#utt-list .utt")
        timings["load, s"] = time.perf_counter() - started

        def timed(name: str, action, expect_change: str = "#utt-count") -> None:
            before = page.inner_text(expect_change)
            started = time.perf_counter()
            action()
            page.wait_for_function(f"document.querySelector('{expect_change}').textContent !== {before!r}")
            timings[name] = time.perf_counter() - started
        timed("filter modality=both, s", lambda: page.select_option("#f-modality", "both"))
        timed("errors only, s", lambda: page.check("#f-errors"))
        timed("search a word, s", lambda: page.fill("#f-search", "green"))
        timed("next page, s", lambda: page.click("#utt-next"))
        timed("changes: fixed only, s", lambda: page.select_option("#change-kind", "fixed"), "#change-count")
        browser.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=20_000)
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "decode"
        folder.mkdir()
        started = time.perf_counter()
        records = make_folder(folder, args.utterances)
        print(f"decode folder: {records} records in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        page = run_report([folder], Path(scratch) / "report.html")
        print(f"clipwhisper report: {time.perf_counter() - started:.1f} s, {page.stat().st_size / 1e6:.1f} MB")
        if not args.chromium:
            print("no Chromium: the browser timings are skipped")
            return
        for name, seconds in browse(page, args.chromium).items():
            print(f"browser {name}: {seconds:.2f}")


if __name__ == "__main__":
    main()
