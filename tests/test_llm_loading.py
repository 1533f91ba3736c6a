"""The LLM loads in the precision asked for, runs no code from its folder, and handles special tokens as
its tokenizer declares them."""

from __future__ import annotations

import io
import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from clipwhisper.config import LLMConfig
from clipwhisper.errors import ConfigError
from clipwhisper.model.llm import apply_finetuning, build_base_llm, load_tokenizer
from clipwhisper.model.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def bf16_llm(tmp_path_factory):
    """A small Llama saved with bf16 weights, as hub checkpoints are, with its tokenizer."""
    folder = tmp_path_factory.mktemp("llm")
    tokenizer = train_tokenizer(["set blue at a one now", "place red by b two again"])
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_llm_loads_in_fp32_when_saved_in_bf16(bf16_llm):
    llm = build_base_llm(LLMConfig(name=str(bf16_llm)), load_tokenizer(bf16_llm))
    assert {p.dtype for p in llm.parameters()} == {torch.float32}


def test_frozen_lora_base_loads_in_the_autocast_dtype_and_lora_trains_in_fp32(bf16_llm):
    config = LLMConfig(name=str(bf16_llm), finetune="lora")
    llm = apply_finetuning(build_base_llm(config, load_tokenizer(bf16_llm), dtype=torch.bfloat16), config)
    trainable = {p.dtype for p in llm.parameters() if p.requires_grad}
    frozen = {p.dtype for p in llm.parameters() if not p.requires_grad}
    assert trainable == {torch.float32} and frozen == {torch.bfloat16}


@pytest.mark.parametrize("config_file", ["config.json", "tokenizer_config.json"])
def test_llm_folder_asking_for_remote_code_runs_none(bf16_llm, tmp_path, monkeypatch, config_file):
    """A config naming its own Python class (auto_map) never gets its file executed, even when a user
    would answer yes to transformers' question."""
    evil = tmp_path / "evil"
    evil.mkdir()
    for item in bf16_llm.iterdir():
        (evil / item.name).write_bytes(item.read_bytes())
    marker = tmp_path / "ran"
    (evil / "evil_model.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((evil / config_file).read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "evil_model.EvilForCausalLM",
                          "AutoTokenizer": ["evil_model.EvilTokenizer", None]}
    config.update({"model_type": "evil"} if config_file == "config.json" else {"tokenizer_class": "EvilTokenizer"})
    (evil / config_file).write_text(json.dumps(config))
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n" * 10))
    try:
        build_base_llm(LLMConfig(name=str(evil)), load_tokenizer(evil))
    except (ConfigError, ValueError):
        pass  # refusing is fine; running the file is not
    assert not marker.exists()


def test_tokenizer_without_eos_is_one_line(bf16_llm, tmp_path):
    folder = tmp_path / "no-eos"
    tokenizer = load_tokenizer(bf16_llm)
    tokenizer.eos_token = None
    tokenizer.save_pretrained(folder)
    with pytest.raises(ConfigError, match="declares no EOS token"):
        load_tokenizer(folder)


def test_missing_llm_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"model.llm.name: .*what works: a hub id") as caught:
        build_base_llm(LLMConfig(name="someone/llm-not-cached"), None)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="no such GGUF file"):
        build_base_llm(LLMConfig(name=str(tmp_path / "model.gguf")), None)
