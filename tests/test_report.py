"""`clipwhisper report` over real decode folders: the page's figures equal summary.json, the alignments give the
recorded error counts, the media links resolve, and bad folders are refused with the file named."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clipwhisper.cli import app
from clipwhisper.demo import decode_grid
from clipwhisper.inference.decode import finish
from clipwhisper.inference.records import make_record
from clipwhisper.report.analysis import (
    aligned_pairs,
    alignment_ops,
    bootstrap_wer_interval,
    change_counts,
    modality_changes,
)

SNRS = ["clean", 0.0]


@pytest.fixture(scope="module")
def decode_dir(checkpoint, synth_corpus, tmp_path_factory) -> Path:
    """The session model decoded in every modality, clean and at 0 dB."""
    out = tmp_path_factory.mktemp("report_decode") / "decode"
    decode_grid(checkpoint, synth_corpus, out, snrs=SNRS)
    return out


class _Rows(HTMLParser):
    """The overview rows' data attributes, per decode folder."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[dict]] = {}
        self._run = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "overview" in (attrs.get("class") or ""):
            self._run = attrs["data-run"]
            self.tables[self._run] = []
        elif tag == "tr" and self._run and "data-wer" in attrs:
            self.tables[self._run].append(attrs)

    def handle_endtag(self, tag):
        if tag == "table":
            self._run = None


def _page_data(html: str) -> dict:
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S).group(1)
    return json.loads(block)


def test_the_page_shows_what_summary_json_says(decode_dir, synth_corpus, tmp_path):
    out = tmp_path / "pages" / "report.html"
    result = CliRunner().invoke(app, ["report", str(decode_dir), "--out", str(out),
                                      "--manifest", str(synth_corpus / "test.tsv")])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    parser = _Rows()
    parser.feed(html)
    summary = json.loads((decode_dir / "summary.json").read_text())
    rows = parser.tables["decode"]
    assert len(rows) == len(summary["cells"]) == 6
    for row, cell in zip(rows, summary["cells"]):
        assert (row["data-modality"], row["data-snr"]) == (cell["modality"], str(cell["snr"]))
        assert float(row["data-wer"]) == cell["wer"] and float(row["data-cer"]) == cell["cer"]
        for key in ("utterances", "substitutions", "deletions", "insertions"):
            assert int(row[f"data-{key}"]) == cell[key]
        assert f"<td>{100 * cell['wer']:.2f}</td>" in html
    data = _page_data(html)
    records = [json.loads(line) for line in (decode_dir / "hyps.jsonl").read_text().splitlines()]
    assert len(data["records"]) == len(records)
    # every utterance links its video and audio, relative to the page, and the links lead to the files
    for uid, _, video, audio in data["utterances"]:
        assert (out.parent / video).resolve() == (synth_corpus / "video" / f"{uid}.mp4").resolve()
        assert (out.parent / audio).resolve() == (synth_corpus / "audio" / f"{uid}.wav").resolve()
    assert "<svg" in html  # two SNRs: the WER-against-SNR plot is inline


def test_alignments_give_the_recorded_error_counts(decode_dir):
    records = [json.loads(line) for line in (decode_dir / "hyps.jsonl").read_text().splitlines()]
    assert any(r["errors"] for r in records)
    for record in records:
        ops = alignment_ops(record["ref_normalized"], record["hyp_normalized"])
        assert (ops.count("S"), ops.count("D"), ops.count("I")) == (
            record["substitutions"], record["deletions"], record["insertions"])
        pairs = list(aligned_pairs(record["ref_normalized"], record["hyp_normalized"], ops))
        assert [ref for _, ref, _ in pairs if ref] == record["ref_normalized"].split()
        assert [hyp for _, _, hyp in pairs if hyp] == record["hyp_normalized"].split()


def test_empty_sides_align_as_plain_deletions_and_insertions():
    assert alignment_ops("a b c", "") == "DDD"
    assert alignment_ops("", "x y") == "II"
    assert alignment_ops("a b c d", "a x c") in ("=SD=", "=S=D")  # jiwer picks one of the equal-cost paths


def test_the_bootstrap_interval_is_seeded_and_holds_the_wer():
    rng = np.random.default_rng(3)
    words = rng.integers(3, 12, 400)
    errors = rng.binomial(words, 0.2)
    wer = errors.sum() / words.sum()
    low, high = bootstrap_wer_interval(errors, words, seed=5)
    assert low < wer < high and high - low < 0.1
    assert bootstrap_wer_interval(errors, words, seed=5) == (low, high)
    assert bootstrap_wer_interval(np.array([]), np.array([])) is None


def test_audio_video_fixes_and_breaks_are_counted_per_snr():
    def record(uid, modality, snr, hyp):
        return make_record(uid, modality, snr, "bin blue at f two now", hyp, "basic")
    records = [record("a", "audio", "clean", "bin blue at f two now"),
               record("a", "both", "clean", "bin blue at f two"),
               record("b", "audio", 0.0, "bin glue at s two now"), record("b", "both", 0.0, "bin blue at f two now"),
               record("c", "audio", 0.0, "bin"), record("c", "both", 0.0, "bin blue at"),
               record("d", "audio", 0.0, "x"), record("d", "both", 0.0, "x")]
    changes = modality_changes(records)
    assert sorted((c["id"], c["change"]) for c in changes) == [("a", 1), ("b", -2), ("c", -2)]
    assert change_counts(changes, ["clean", "0.0"]) == [{"snr": "clean", "fixed": 0, "broken": 1},
                                                        {"snr": "0.0", "fixed": 2, "broken": 0}]


def _write_decode(folder: Path, records: list[dict]) -> Path:
    folder.mkdir(parents=True)
    (folder / "hyps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    finish(folder, records)
    return folder


def test_text_from_a_model_cannot_become_markup(tmp_path):
    hostile = "</script><script>alert(1)</script> <img src=x onerror=alert(2)>"
    folder = _write_decode(tmp_path / "d", [make_record("u1", "audio", "clean", "set blue", hostile, "none")])
    out = tmp_path / "r.html"
    assert CliRunner().invoke(app, ["report", str(folder), "--out", str(out)]).exit_code == 0
    html = out.read_text()
    assert "<img src=x" not in html and "<script>alert" not in html
    assert _page_data(html)["records"][0][2] == hostile  # shown as text by the page's script


def test_failed_utterances_are_shown_with_their_errors(tmp_path):
    folder = _write_decode(tmp_path / "d", [
        make_record("u1", "audio", "clean", "set blue", "set blue", "none"),
        make_record("u2", "audio", "clean", "lay red now", "", "none", error="/data/u2.wav: damaged audio: EOF")])
    out = tmp_path / "r.html"
    assert CliRunner().invoke(app, ["report", str(folder), "--out", str(out)]).exit_code == 0
    html = out.read_text()
    assert "1 failed (counted as deletions)" in html and "/data/u2.wav: damaged audio: EOF" in html
    failed = [row for row in _page_data(html)["records"] if row[6]]
    assert len(failed) == 1 and failed[0][3] == "DDD"  # every reference word deleted, as the WER counts it


def test_media_can_be_embedded(decode_dir, synth_corpus, tmp_path):
    out = tmp_path / "embedded.html"
    result = CliRunner().invoke(app, ["report", str(decode_dir), "--out", str(out), "--manifest",
                                      str(synth_corpus / "test.tsv"), "--embed-media"])
    assert result.exit_code == 0, result.output
    video, audio = _page_data(out.read_text())["utterances"][0][2:]
    assert video.startswith("data:video/mp4;base64,") and audio.startswith("data:audio/")


def test_several_folders_are_labelled_apart(decode_dir, tmp_path):
    copy = tmp_path / "other" / "decode"
    copy.mkdir(parents=True)
    for name in ("hyps.jsonl", "summary.json"):
        (copy / name).write_bytes((decode_dir / name).read_bytes())
    out = tmp_path / "two.html"
    assert CliRunner().invoke(app, ["report", str(decode_dir), str(copy), "--out", str(out)]).exit_code == 0
    labels = _page_data(out.read_text())["runs"]
    assert len(set(labels)) == 2 and all(label.endswith("/decode") for label in labels)


@pytest.mark.parametrize("damage, message", [
    ("missing", "summary.json: not found"),
    ("edited", "does not match hyps.jsonl beside it"),
    ("torn", "lines are not whole records"),
])
def test_a_folder_the_page_cannot_back_is_refused(decode_dir, tmp_path, damage, message):
    folder = tmp_path / "d"
    folder.mkdir()
    hyps = (decode_dir / "hyps.jsonl").read_text()
    (folder / "hyps.jsonl").write_text(hyps)
    if damage != "missing":
        (folder / "summary.json").write_text((decode_dir / "summary.json").read_text())
    if damage == "edited":
        lines = hyps.splitlines()
        (folder / "hyps.jsonl").write_text("\n".join(lines[1:]) + "\n")
    if damage == "torn":
        (folder / "hyps.jsonl").write_text(hyps + '{"id": "cut sh')
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(folder), "--out", str(out)])
    assert result.exit_code == 2 and message in result.output and str(folder) in result.output
    assert not out.exists()


def _chromium() -> str:
    """Chromium for the browser tests: CLIPWHISPER_CHROMIUM, else Debian's `chromium` on PATH (.ci/run installs
    it), driven by Playwright's Python package (the dev extra)."""
    import os
    import shutil

    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')")
    found = os.environ.get("CLIPWHISPER_CHROMIUM") or next(
        (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
    if not found:
        pytest.skip("no Chromium on PATH (apt-get install chromium, or set CLIPWHISPER_CHROMIUM)")
    return found


@pytest.fixture()
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.problems = []
        page.on("console", lambda message: page.problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: page.problems.append(str(error)))
        page.on("dialog", lambda dialog: (page.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        yield page
        browser.close()


def _count(page, selector: str) -> int:
    return int(page.inner_text(selector).split()[0])


def test_the_page_works_in_a_real_browser(browser_page, decode_dir, synth_corpus, tmp_path):
    out = tmp_path / "report.html"
    assert CliRunner().invoke(app, ["report", str(decode_dir), "--out", str(out), "--manifest",
                                    str(synth_corpus / "test.tsv")]).exit_code == 0
    records = [json.loads(line) for line in (decode_dir / "hyps.jsonl").read_text().splitlines()]
    page = browser_page
    page.goto(out.as_uri())
    assert _count(page, "#utt-count") == len(records)
    page.select_option("#f-modality", "video")
    video = [r for r in records if r["modality"] == "video"]
    assert _count(page, "#utt-count") == len(video)
    page.check("#f-errors")
    assert _count(page, "#utt-count") == sum(1 for r in video if r["errors"])
    page.uncheck("#f-errors")
    page.select_option("#f-modality", "")
    page.fill("#f-search", records[0]["id"])
    assert _count(page, "#utt-count") == sum(1 for r in records if r["id"] == records[0]["id"])
    first = page.locator("#utt-list .utt").first
    words = len(alignment_ops(records[0]["ref_normalized"], records[0]["hyp_normalized"]))
    assert first.locator(".al > .w").count() == words and records[0]["id"] in first.inner_text()
    href = first.locator("a", has_text="video").get_attribute("href")
    assert (out.parent / href).resolve() == (synth_corpus / "video" / f"{records[0]['id']}.mp4").resolve()
    _plays(first, "audio")
    _plays(first, "video")
    changes = modality_changes(records)
    assert _count(page, "#change-count") == len(changes)
    page.select_option("#change-kind", "fixed")
    assert _count(page, "#change-count") == sum(1 for c in changes if c["change"] < 0)
    fixed = page.locator("#change-table tbody a").first
    if fixed.count():  # an utterance in the comparison opens its records below
        uid = fixed.inner_text()
        fixed.click()
        assert page.input_value("#f-search") == uid
        assert _count(page, "#utt-count") == sum(1 for r in records if r["id"] == uid)
    shot = page.screenshot(full_page=True)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "report.png").write_bytes(shot)
    assert page.problems == []


def _plays(record, kind: str) -> None:
    """The record's link opens a player under it, and the browser reads the clip (its duration is known)."""
    record.locator(f"a.play-{kind}").click()
    player = record.locator(f"{kind}.player")
    player.wait_for()
    duration = player.evaluate("media => new Promise(done => media.readyState >= 1 ? done(media.duration) : "
                               "media.addEventListener('loadedmetadata', () => done(media.duration)))")
    assert duration > 0.5


def test_embedded_media_play_in_the_browser(browser_page, decode_dir, synth_corpus, tmp_path):
    out = tmp_path / "embedded.html"
    assert CliRunner().invoke(app, ["report", str(decode_dir), "--out", str(out), "--manifest",
                                    str(synth_corpus / "test.tsv"), "--embed-media"]).exit_code == 0
    browser_page.goto(out.as_uri())
    first = browser_page.locator("#utt-list .utt").first
    assert first.locator("a.play-audio").get_attribute("href").startswith("data:audio/")
    _plays(first, "audio")
    assert browser_page.problems == []


def test_hostile_text_stays_text_in_the_browser(browser_page, tmp_path):
    hostile = "</script><script>alert(1)</script> <img src=x onerror=alert(2)>"
    folder = _write_decode(tmp_path / "d", [make_record("u1", "audio", "clean", "set blue", hostile, "none")])
    out = tmp_path / "r.html"
    assert CliRunner().invoke(app, ["report", str(folder), "--out", str(out)]).exit_code == 0
    browser_page.goto(out.as_uri())
    assert browser_page.locator("#utt-list img").count() == 0
    assert "alert(1)" in browser_page.inner_text("#utt-list")
    assert browser_page.problems == []
