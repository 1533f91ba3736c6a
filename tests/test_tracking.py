"""--report-to: a short training run read back through each tracker's own library (TensorBoard's event reader,
MLflow's client over the SQLite store in the run folder, W&B's offline run files)."""

import json
import sys

import pytest
from test_train import log_records, tiny

from clipwhisper.errors import ConfigError
from clipwhisper.training.loop import run_training


@pytest.fixture(scope="module")
def tracked_run(synth_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("tracked")
    with pytest.MonkeyPatch.context() as env:
        env.chdir(tmp_path_factory.mktemp("elsewhere"))  # the run folder is not the working directory
        env.setenv("WANDB_MODE", "offline")
        env.setenv("WANDB_SILENT", "true")
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        run_training(tiny(synth_corpus, out, max_steps=4, eval_steps=2, progress_every_s=1e-6,
                          log_param_updates=True, report_to=["tensorboard", "mlflow", "wandb"]))
    return out


def test_tensorboard_event_files_hold_the_scalars_plots_and_settings(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tracked_run / "tensorboard"), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    records = log_records(tracked_run)
    losses = events.Scalars("train/loss")
    assert [s.step for s in losses] == [r["step"] for r in records]
    assert [s.value for s in losses] == pytest.approx([r["loss"] for r in records])
    assert [s.step for s in events.Scalars("eval/valid_wer")] == [2, 4]
    assert [s.value for s in events.Scalars("eval/valid_cer")] == pytest.approx(
        [r["valid_cer"] for r in log_records(tracked_run, "eval")])
    assert {"progress/grad_norm", "progress/utterances_per_s", "train/lr"} <= set(events.Tags()["scalars"])
    assert any(tag.startswith("param_updates/components/") and tag.endswith("/update_norm")
               for tag in events.Tags()["scalars"])
    assert {"plots/loss", "plots/valid_wer"} <= set(events.Tags()["images"])
    assert {"settings/text_summary", "summary/text_summary"} <= set(events.Tags()["tensors"])


def test_mlflow_store_holds_the_metrics_settings_and_plots(tracked_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tracked_run / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("clipwhisper").experiment_id])
    history, records = client.get_metric_history(run.info.run_id, "train/loss"), log_records(tracked_run)
    assert sorted(m.step for m in history) == [r["step"] for r in records]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx([r["loss"] for r in records])
    assert run.data.params["learning_rate"] == "0.003" and run.data.params["model.fusion.kind"]
    assert run.data.metrics["eval/valid_wer"] == pytest.approx(log_records(tracked_run, "eval")[-1]["valid_wer"])
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} == {"plots/loss.png",
                                                                                  "plots/valid_wer.png"}
    assert run.info.status == "FINISHED"
    # the artifacts live in the run folder, not in an mlruns/ of the working directory
    assert {p.name for p in (tracked_run / "mlflow-artifacts").rglob("*.png")} == {"loss.png", "valid_wer.png"}
    assert not (tracked_run.parent / "elsewhere0" / "mlruns").exists()


def wandb_records(path):
    """The protobuf records of a .wandb file: W&B's LevelDB-style log (a 7-byte header ':W&B', magic, version;
    32-KiB blocks of chunks, each with a 7-byte header: checksum, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    offset, pending, records = 7, b"", []
    while offset + 7 <= len(data):
        if block - offset % block < 7:  # no room for a chunk header: the rest of the block is padding
            offset += block - offset % block
            continue
        length, kind = int.from_bytes(data[offset + 4:offset + 6], "little"), data[offset + 6]
        if length == 0 and kind == 0:
            break
        pending += data[offset + 7:offset + 7 + length]
        offset += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_offline_run_file_holds_the_settings_history_and_summary(tracked_run):
    (path,) = (tracked_run / "wandb").glob("offline-run-*/*.wandb")
    records = wandb_records(path)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    settings = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert settings["learning_rate"] == 0.003 and settings["max_steps"] == 4
    history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    losses = [(row["_step"], row["train/loss"]) for row in history if "train/loss" in row]
    expected = log_records(tracked_run)
    assert [step for step, _ in losses] == [r["step"] for r in expected]
    assert [loss for _, loss in losses] == pytest.approx([r["loss"] for r in expected])
    assert any(key.startswith("plots/loss/") for row in history for key in row)  # the image, at its path
    summary = {item.key: json.loads(item.value_json) for r in records if r.WhichOneof("record_type") == "summary"
               for item in r.summary.update}
    assert "best valid WER" in summary["summary"]


def test_a_missing_tracker_library_names_the_extra(synth_corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # what an environment without it does on import
    with pytest.raises(ConfigError, match=r"--report-to wandb needs the wandb package: pip install "
                                          r"'clipwhisper\[tracking\]'"):
        run_training(tiny(synth_corpus, tmp_path, max_steps=1, report_to=["wandb"]))
