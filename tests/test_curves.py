"""Training curves: PNG plots in the run folder and sparklines in `inspect`."""

import json

from typer.testing import CliRunner

from clipwhisper.cli import app
from clipwhisper.training.curves import read_curves, sparkline, write_plots

PNG = b"\x89PNG\r\n\x1a\n"


def test_training_writes_plots_that_inspect_names(checkpoint):
    run = checkpoint.parent
    for name in ("loss.png", "valid_wer.png"):
        assert (run / name).read_bytes().startswith(PNG)
    result = CliRunner().invoke(app, ["inspect", str(run)])
    assert result.exit_code == 0, result.output
    assert "train loss" in result.stdout and "valid WER (%)" in result.stdout and str(run / "loss.png") in result.stdout
    info = json.loads(CliRunner().invoke(app, ["inspect", str(run), "--format", "json"]).stdout)
    train = info["curves"]["train loss"]
    assert train["points"] == len(read_curves(run)["train loss"]) >= 2 and len(train["sparkline"]) == train["points"]
    assert info["plots"] == ["loss.png", "valid_wer.png"]


def test_plots_follow_the_log(tmp_path):
    log = tmp_path / "train_log.jsonl"
    records = [{"event": "train", "step": s, "loss": 5 - s / 10} for s in range(1, 11)]
    records.append({"event": "eval", "step": 10, "valid_loss": 4.2, "valid_wer": 0.9})
    log.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"event": "tra', encoding="utf-8")  # cut short
    write_plots(tmp_path)
    first = (tmp_path / "valid_wer.png").read_bytes()
    with log.open("w", encoding="utf-8") as out:
        out.write("".join(json.dumps(r) + "\n" for r in records))
        out.write(json.dumps({"event": "eval", "step": 20, "valid_loss": 3.1, "valid_wer": 0.5}) + "\n")
    write_plots(tmp_path)
    assert (tmp_path / "valid_wer.png").read_bytes() != first  # redrawn with the new evaluation
    assert read_curves(tmp_path)["valid WER (%)"] == [(10, 90.0), (20, 50.0)]
    assert not list(tmp_path.glob(".*tmp*"))


def test_sparkline_scales_and_buckets():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([3, 3, 3]) == "▁▁▁"
    assert len(sparkline(list(range(1000)), width=40)) == 40
    assert sparkline([]) == ""
