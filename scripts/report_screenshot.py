"""Screenshots of a report page in headless Chromium, for docs/report.md:

    clipwhisper report demo/decode --manifest demo/corpus/test.tsv --out /tmp/report/report.html
    python scripts/report_screenshot.py /tmp/report/report.html docs/images
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def main(page_path: Path, out: Path) -> None:
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 820})
        page.goto(page_path.resolve().as_uri())
        page.screenshot(path=out / "report-overview.png")
        page.select_option("#f-modality", "both")
        page.select_option("#f-snr", "0.0")
        page.check("#f-errors")
        page.evaluate("document.getElementById('utterances').scrollIntoView()")
        page.screenshot(path=out / "report-utterances.png")
        page.evaluate("document.getElementById('modalities').scrollIntoView()")
        page.screenshot(path=out / "report-modalities.png")
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
