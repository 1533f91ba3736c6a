"""The README's main job, in its quick form: corpus, training, decoding, table, plot and report."""

import json

from typer.testing import CliRunner

from clipwhisper.cli import app


def test_quick_demo(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "decode" / "summary.json").read_text())
    cells = {(c["modality"], str(c["snr"])) for c in summary["cells"]}
    assert cells == {(m, s) for m in ("audio", "video", "both") for s in ("clean", "10.0", "5.0", "0.0", "-5.0")}
    assert summary["failed_utterances"] == 0
    video = [c["wer"] for c in summary["cells"] if c["modality"] == "video"]
    assert max(video) == min(video)  # the video stream does not see the audio noise
    report = (tmp_path / "report.md").read_text()
    assert "| audio |" in report and "| both |" in report and "wer_vs_snr.png" in report
    assert (tmp_path / "wer_vs_snr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "report.html").read_text()  # the error analysis of the demo's decode
    assert "report.html" in report and "<svg" in page and f'data-wer="{summary["cells"][0]["wer"]}"' in page
    # a second run reuses every finished stage
    again = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path)])
    assert again.exit_code == 0 and "reusing" in again.output
    assert json.loads((tmp_path / "decode" / "summary.json").read_text()) == summary
    assert "clipwhisper commit " in report or "clipwhisper version " in report  # the figures name their code
    other = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path), "--seed", "1"])
    assert other.exit_code == 2 and "seed: 0 there, 1 now" in other.output  # never mixed with another seed's
    # the environment changes the demo's recipe, as it does train's: a model trained otherwise is not reused
    noisier = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path)],
                                 env={"CLIPWHISPER_DATA__NOISE_PROB": "0.5"})
    assert noisier.exit_code == 2 and "training.data.noise_prob: 0.3 there, 0.5 now" in noisier.output


def test_the_demo_does_not_write_into_someone_elses_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "holds files clipwhisper did not write (notes.txt)" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
