"""The causal LLM and its tokenizer: from a hub id, a local folder, or a config; LoRA with peft."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..config import LLMConfig
from ..errors import ConfigError


def quiet_transformers() -> None:
    """No per-file progress bars from transformers: our own output says what happens."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def load_tokenizer(source: str | Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    if tokenizer.pad_token is None:  # Llama 3 has none; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_base_llm(config: LLMConfig, tokenizer, weights: str | Path | None = None) -> nn.Module:
    """The LLM without adapters: from ``weights`` (a saved folder), the config dict, or ``config.name``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    quiet_transformers()
    if weights is not None:
        return AutoModelForCausalLM.from_pretrained(str(weights))
    if config.config is not None:
        options = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
                   "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
                   **config.config}  # the config may set a larger vocabulary (real-size benchmarks)
        llm_config = AutoConfig.for_model(options.pop("model_type", "llama"), **options)
        return AutoModelForCausalLM.from_config(llm_config)
    return AutoModelForCausalLM.from_pretrained(config.name)


def decoder_layers(llm: nn.Module) -> list[nn.Module]:
    """The LLM's repeated blocks, found by transformers' own list of modules never to split."""
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    names = set(getattr(base, "_no_split_modules", None) or [])
    layers = [module for module in base.modules() if type(module).__name__ in names]
    if not layers:
        raise ConfigError("model.llm", [f"{type(base).__name__} names no decoder layer class (_no_split_modules)"])
    return layers


def apply_finetuning(llm: nn.Module, config: LLMConfig, adapter: str | Path | None = None) -> nn.Module:
    """LoRA (new, or loaded from ``adapter``), frozen, or fully trainable."""
    if config.gradient_checkpointing:  # renamed in transformers 5; the old name warns
        enable = getattr(llm, "activation_checkpointing_enable", None) or llm.gradient_checkpointing_enable
        enable()
        llm.config.use_cache = False
    if config.finetune == "full":
        llm.requires_grad_(True)
        return llm
    llm.requires_grad_(False)
    if config.finetune == "frozen":
        return llm
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter is not None:
        return PeftModel.from_pretrained(llm, str(adapter), is_trainable=True)
    lora = config.lora
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                             target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(llm, peft_config)
