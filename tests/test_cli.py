import pytest
import yaml
from typer.testing import CliRunner

from clipwhisper.cli import app

runner = CliRunner()
COMMANDS = ["train", "decode", "transcribe", "inspect", "synth", "prepare", "export", "manifest"]


def test_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Usage" in result.output


def test_original_flag_spellings_are_aliases():
    args = ["train", "-c", "tiny", "--data_path", "d", "--output_path", "o", "--batch_size", "3",
            "--max_epochs", "2", "--save_steps", "7", "--log_param_updates", "--print-config"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for line in ["  path: d", "output_path: o", "batch_size: 3", "max_epochs: 2", "save_steps: 7",
                 "log_param_updates: true"]:
        assert line in result.output
    decode = ["decode", "--model_path", "m", "--test_data", "t.tsv", "--test_wrd", "t.wrd", "--output_dir", "out",
              "--modality", "video", "--print-config"]
    result = runner.invoke(app, decode)
    assert result.exit_code == 0, result.output
    for line in ["model_path: m", "test_tsv: t.tsv", "test_wrd: t.wrd", "output_dir: out", "modality:\n- video"]:
        assert line in result.output


def test_cuda_graphs_switch_reaches_train_and_decode_settings():
    for command in (["train", "-c", "tiny"], ["decode"]):
        default = runner.invoke(app, [*command, "--print-config"])
        off = runner.invoke(app, [*command, "--no-cuda-graphs", "--print-config"])
        assert "cuda_graphs: true" in default.output and "cuda_graphs: false" in off.output, off.output


def test_config_errors_are_one_line_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: 4\nmodell: {}\n")
    result = runner.invoke(app, ["train", "-c", str(bad), "--modality", "smell"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0]
    assert "unknown key 'modell'" in lines[0] and "model.modality" in lines[0]


def test_version_completion_and_choices_in_help():
    from importlib.metadata import version

    import torch

    shown = runner.invoke(app, ["--version"])
    assert shown.exit_code == 0 and shown.stdout.startswith(f"clipwhisper {version('clipwhisper')} (torch ")
    assert torch.__version__ in shown.stdout
    completion = runner.invoke(app, ["--show-completion", "bash"], prog_name="clipwhisper")
    assert completion.exit_code == 0 and "_CLIPWHISPER_COMPLETE" in completion.stdout
    for command, choices in (("train", ["[audio|video|both]", "[ddp|fsdp]", "(default: 8)", "(default: 0.0001)"]),
                             ("decode", ["[audio|video|both|all]", "[whisper|basic|none]", "[auto|bf16|fp16|fp32]",
                                         "(default: decode)", "(default: 64)", "(default: 64 on a GPU, 8 on the "
                                         "CPU)"])):
        text = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"}).stdout
        assert all(choice in text for choice in choices), text


def test_set_reaches_nested_settings_and_rejects_typos_and_doubles():
    result = runner.invoke(app, ["train", "-c", "tiny", "--set", "model.fusion.kind=sum", "--set",
                                 "model.video_connector.ctc_weight=0.25", "--set", "grad_accum=2", "--set",
                                 "data.noise_snr_db=[-5, 5]", "--print-config"])
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.stdout)
    assert resolved["model"]["fusion"]["kind"] == "sum" and resolved["grad_accum"] == 2
    assert resolved["model"]["video_connector"]["ctc_weight"] == 0.25 and resolved["data"]["noise_snr_db"] == [-5, 5]
    typo = runner.invoke(app, ["train", "-c", "tiny", "--set", "model.fusion.knd=sum", "--print-config"])
    assert typo.exit_code == 2 and "unknown key 'model.fusion.knd' (did you mean 'model.fusion.kind'?)" in typo.stderr
    twice = runner.invoke(app, ["decode", "--batch-size", "4", "--set", "batch_size=8", "--print-config"])
    assert twice.exit_code == 2 and "'batch_size' is also given by its own flag" in twice.stderr
    bad = runner.invoke(app, ["decode", "--set", "beam_size=0", "--print-config"])
    assert bad.exit_code == 2 and "beam_size" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert runner.invoke(app, ["decode", "--set", "beam_size", "--print-config"]).exit_code == 2


def test_unknown_packaged_config_is_a_usage_error():
    result = runner.invoke(app, ["train", "-c", "huge", "--print-config"])
    assert result.exit_code == 2 and "no packaged config" in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("nope: 1\n")
    result = runner.invoke(app, ["--debug", "train", "-c", str(bad)])
    assert result.exit_code == 1 and type(result.exception).__name__ == "ConfigError"


def test_synth_command(tmp_path):
    result = runner.invoke(app, ["synth", str(tmp_path / "c"), "-n", "5", "--image-size", "32", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "train 3, valid 1, test 1" in result.output
    assert len((tmp_path / "c" / "train.wrd").read_text().splitlines()) == 3
