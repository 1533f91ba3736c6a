"""`clipwhisper export`: a checkpoint with referenced pretrained parts loads where they do not exist."""

import json
import os
import shutil
import subprocess
import sys

from test_train import local_pretrained, tiny  # noqa: F401  (local_pretrained is a fixture)
from typer.testing import CliRunner

from clipwhisper.cli import app
from clipwhisper.training.loop import run_training


def decode_in_a_fresh_process(checkpoint, corpus, out):
    """A new interpreter: open_clip knows none of the test's model names, and the hub is off."""
    command = [sys.executable, "-m", "clipwhisper", "decode", "--model-path", str(checkpoint), "--test-tsv",
               str(corpus / "test.tsv"), "--output-dir", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line)["hyp"] for line in (out / "hyps.jsonl").read_text().splitlines()]


def test_export_copies_every_pretrained_part(synth_corpus, local_pretrained, tmp_path):  # noqa: F811
    pretrained = tmp_path / "pretrained"
    shutil.copytree(local_pretrained, pretrained)
    config = tiny(synth_corpus, tmp_path / "run", max_steps=4, **{
        "model.audio_encoder": {"name": str(pretrained / "whisper-tiny-test.pt"), "dims": None, "trainable": False},
        "model.video_encoder": {"name": "cw-test-vit", "pretrained": str(pretrained / "clip.pt"), "vision_cfg": None,
                                "trainable": False},
        "model.llm": {"name": str(pretrained / "llm"), "config": None, "finetune": "lora",
                      "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
    })
    original = run_training(config)
    runner = CliRunner()
    decoded = runner.invoke(app, ["decode", "--model-path", str(original), "--test-tsv",
                                  str(synth_corpus / "test.tsv"), "--output-dir", str(tmp_path / "decode")])
    assert decoded.exit_code == 1 or decoded.exit_code == 0, decoded.output
    reference = [json.loads(line)["hyp"] for line in (tmp_path / "decode" / "hyps.jsonl").read_text().splitlines()]
    for name, flags in (("exported", []), ("merged", ["--merge-lora"])):
        result = runner.invoke(app, ["export", str(original), str(tmp_path / name), *flags])
        assert result.exit_code == 0, result.output
        assert "loads with no downloads" in result.stdout
    shutil.rmtree(pretrained)  # the original now fails to load; the exports must not need it
    manifest = json.loads((tmp_path / "exported" / "config.json").read_text())
    assert manifest["adapter"] == "adapter" and manifest["llm_weights"] == "llm" and manifest["step"] == 4
    assert manifest["model"]["video_encoder"]["vision_cfg"] and manifest["model"]["audio_encoder"]["dims"]
    assert decode_in_a_fresh_process(tmp_path / "exported", synth_corpus, tmp_path / "d1") == reference
    merged = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert merged["adapter"] is None and merged["model"]["llm"]["finetune"] == "frozen"
    assert decode_in_a_fresh_process(tmp_path / "merged", synth_corpus, tmp_path / "d2") == reference


def test_a_lora_checkpoint_of_a_config_built_llm_reloads_the_same_weights(synth_corpus, tmp_path):
    """The saved base LLM carries its own weight names, not peft's wrapped ones (``q_proj.base_layer``)."""
    import torch
    from test_train import a_batch

    from clipwhisper.model.checkpoint import load_checkpoint
    from clipwhisper.training.loop import Trainer

    trainer = Trainer(tiny(synth_corpus, tmp_path, max_steps=2, **{"model.llm.finetune": "lora"}))
    final = trainer.fit()
    model, loaded = trainer.model.eval(), load_checkpoint(final)
    batch = a_batch(synth_corpus, model)
    with torch.no_grad():
        assert loaded(batch).item() == model(batch).item()


def test_export_never_deletes_what_it_did_not_write(checkpoint, tmp_path):
    """An existing folder of the user's, or a file, is refused (exit 2) and left as it was; --overwrite
    replaces an earlier export and nothing else."""
    runner = CliRunner()
    users = tmp_path / "mine"
    users.mkdir()
    (users / "notes.txt").write_text("my notes")
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    for target, extra in ((users, []), (users, ["--overwrite"]), (a_file, []), (a_file, ["--overwrite"])):
        result = runner.invoke(app, ["export", str(checkpoint), str(target), *extra])
        assert result.exit_code == 2, result.output
    assert (users / "notes.txt").read_text() == "my notes" and a_file.read_text() == "keep me"
    out = tmp_path / "export"
    assert runner.invoke(app, ["export", str(checkpoint), str(out)]).exit_code == 0
    again = runner.invoke(app, ["export", str(checkpoint), str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert runner.invoke(app, ["export", str(checkpoint), str(out), "--overwrite"]).exit_code == 0
    (out / "notes.txt").write_text("a user's file put beside the export")
    refused = runner.invoke(app, ["export", str(checkpoint), str(out), "--overwrite"])
    assert refused.exit_code == 2 and "notes.txt" in refused.output
    assert (out / "notes.txt").exists() and (out / "config.json").exists()
