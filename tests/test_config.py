from pathlib import Path

import pytest
import yaml

from clipwhisper.config import PACKAGED_CONFIGS, DecodeConfig, TrainConfig, nested, read_yaml, resolve
from clipwhisper.errors import ConfigError

SHIPPED = sorted(PACKAGED_CONFIGS.glob("*.yaml"))


def test_tiny_and_lrs3_are_shipped():
    assert {p.stem for p in SHIPPED} >= {"tiny", "lrs3_base"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_config_parses(path):
    config = resolve(TrainConfig, path)
    assert config.model.modality in ("audio", "video", "both")


def test_lrs3_base_names_the_real_models():
    model = resolve(TrainConfig, PACKAGED_CONFIGS / "lrs3_base.yaml").model
    assert model.audio_encoder.name == "medium.en"
    assert (model.video_encoder.name, model.video_encoder.pretrained) == ("ViT-B-16", "openai")
    assert model.llm.name == "meta-llama/Llama-3.2-1B" and model.llm.finetune == "lora"
    assert model.llm.lora.r == 16 and model.llm.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_precedence_defaults_file_env_flags(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("batch_size: 3\nmax_epochs: 4\nlearning_rate: 0.5\nmodel: {fusion: {kind: sum, audio_drop: 0.3}}\n")
    monkeypatch.setenv("CLIPWHISPER_MAX_EPOCHS", "5")
    monkeypatch.setenv("CLIPWHISPER_LEARNING_RATE", "0.25")
    monkeypatch.setenv("CLIPWHISPER_MODEL__FUSION__VIDEO_DROP", "0.2")
    config = resolve(TrainConfig, path, nested({"learning_rate": 0.125, "model.modality": "audio"}))
    assert config.seed == 0  # default
    assert config.batch_size == 3  # file
    assert config.max_epochs == 5  # env over file
    assert config.learning_rate == 0.125  # flag over env
    fusion = config.model.fusion
    assert (fusion.kind, fusion.audio_drop, fusion.video_drop) == ("sum", 0.3, 0.2)  # nested sources merge
    assert config.model.modality == "audio"


def test_environment_values_inside_free_mappings_are_typed(monkeypatch):
    """open_clip's vision_cfg and a transformers config have no schema of ours: a value the environment sets there
    is read as --set reads it (a number, a boolean, a list), other text kept, and open_clip builds the tower."""
    from clipwhisper.model.video_encoder import ClipVideoEncoder

    monkeypatch.setenv("CLIPWHISPER_MODEL__VIDEO_ENCODER__VISION_CFG__PATCH_SIZE", "24")
    monkeypatch.setenv("CLIPWHISPER_MODEL__LLM__CONFIG__NUM_HIDDEN_LAYERS", "2")
    monkeypatch.setenv("CLIPWHISPER_MODEL__LLM__CONFIG__TIE_WORD_EMBEDDINGS", "true")
    monkeypatch.setenv("CLIPWHISPER_MODEL__LLM__CONFIG__HIDDEN_ACT", "gelu")
    config = resolve(TrainConfig, PACKAGED_CONFIGS / "tiny.yaml").model
    assert config.video_encoder.vision_cfg["patch_size"] == 24 and config.video_encoder.vision_cfg["width"] == 64
    llm = config.llm.config
    assert (llm["num_hidden_layers"], llm["tie_word_embeddings"], llm["hidden_act"]) == (2, True, "gelu")
    assert llm["model_type"] == "llama"
    assert ClipVideoEncoder.build(config.video_encoder).visual.conv1.kernel_size == (24, 24)


def test_unknown_keys_are_rejected_by_name_and_all_problems_reported(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("batch_sise: 8\nmodel:\n  fusion: {kind: mean}\n  llm: {lora: {rr: 4}}\nmax_epochs: 0\n")
    with pytest.raises(ConfigError) as info:
        resolve(TrainConfig, path)
    problems = info.value.problems
    assert "unknown key 'batch_sise'" in problems
    assert "unknown key 'model.llm.lora.rr'" in problems
    assert any(p.startswith("model.fusion.kind:") for p in problems)
    assert any(p.startswith("max_epochs:") for p in problems)
    assert str(path) in str(info.value) and info.value.exit_code == 2


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("batch_size: 8\nmodel: {modality: [\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: invalid YAML"):
        read_yaml(path)


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        resolve(TrainConfig, path)


def test_decode_snr_list_accepts_clean_and_numbers():
    config = resolve(DecodeConfig, None, nested({"snr_db": ["clean", "10", "-5"]}))
    assert config.snr_db == ["clean", 10.0, -5.0]


def test_modality_dropout_cannot_drop_both():
    with pytest.raises(ConfigError, match="audio_drop \\+ video_drop"):
        resolve(TrainConfig, None, nested({"model.fusion.audio_drop": 0.6, "model.fusion.video_drop": 0.6}))


def test_nested_drops_none():
    assert nested({"a.b": 1, "a.c": None, "d": 2}) == {"a": {"b": 1}, "d": 2}


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        resolve(TrainConfig, Path(tmp_path / "absent.yaml"))


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))


@pytest.mark.parametrize("text, message", [
    ("model:\n  llm:\n    config:\n" + "".join(f"      {line}\n" for line in LAUGHS.splitlines()),
     "aliases expand to over 100,000 values"),                         # 10**9 values if built
    ("a: &a [1, *a]\n", "an alias inside its own anchor"),             # a cycle
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 64 levels"),
    ("seed: " + "9" * 5000 + "\n", "invalid value"),                   # over Python's int() digit limit
    ("seed: 1\nbatch_size: 2\nseed: 3\n", "bad.yaml:3: key 'seed' given twice (first on line 1)"),
    ("# " + "x" * (1 << 20) + "\n", "over 1 MiB"),
])
def test_yaml_is_bounded_before_anything_is_built(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        read_yaml(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_text_inside_a_free_mapping_is_read_with_the_same_bounds(tmp_path):
    """A value inside an LLM's config is read as a number, boolean or list when it is one (the environment gives
    text); a quoted string of nested anchors in a config file stays the text it is, never 10**9 values."""
    laughs = "[" + ", ".join(line.split(": ", 1)[1] for line in LAUGHS.splitlines()) + "]"
    path = tmp_path / "laughs.yaml"
    path.write_text(yaml.safe_dump({"model": {"llm": {"config": {"model_type": "llama", "hidden_act": laughs}}}}))
    assert resolve(TrainConfig, path).model.llm.config["hidden_act"] == laughs


def test_anchors_that_stay_small_still_work(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("lora: &lora {r: 8, alpha: 16}\nmodel:\n  llm:\n    lora: *lora\n")
    assert read_yaml(path)["model"]["llm"]["lora"] == {"r": 8, "alpha": 16}
