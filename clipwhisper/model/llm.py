"""The causal LLM and its tokenizer: from a hub id, a local folder, or a config; LoRA with peft."""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path

import torch
from torch import nn

from ..config import LLMConfig
from ..errors import ConfigError, first_line
from .shared_prefix import shared_prefix
from .step_graph import layers_as_one


def quiet_transformers() -> None:
    """No per-file progress bars from transformers: our own output says what happens."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def _source(name: str | Path) -> tuple[str, dict]:
    """``from_pretrained``'s first argument and options: a GGUF file is read through its folder with
    ``gguf_file`` (transformers dequantises it); never code from the source (``trust_remote_code=False``)."""
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ConfigError("model.llm.name", [f"{name}: no such GGUF file"])
        return str(path.parent), {"gguf_file": path.name, "trust_remote_code": False}
    return str(name), {"trust_remote_code": False}


def source_kind(name: str) -> str:
    """What an ``llm.name`` refers to, in words (recorded in checkpoints, shown by ``inspect``)."""
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        return "GGUF file"
    return "transformers folder" if path.is_dir() else "hub id"


def load_tokenizer(source: str | Path):
    """The tokenizer of an LLM folder, hub id or GGUF file. Its own special tokens are used as declared:
    no BOS is fine (the prompt starts without one); no padding token borrows EOS (padding is masked);
    no EOS is an error, since the transcript must end with one."""
    from transformers import AutoTokenizer

    where, options = _source(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **options)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # missing offline, unknown or corrupt files
        raise ConfigError("model.llm", [f"no tokenizer loads from {source}: {first_line(exc)}"]) from None
    if tokenizer.eos_token_id is None:
        raise ConfigError("model.llm", [f"the tokenizer of {source} declares no EOS token; set llm.tokenizer "
                                        "to one that does"])
    if tokenizer.pad_token is None:  # Llama 3 has none; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_base_llm(config: LLMConfig, tokenizer, weights: str | Path | None = None,
                   dtype: torch.dtype = torch.float32) -> nn.Module:
    """The LLM without adapters, its parameters in ``dtype`` (transformers would otherwise follow the saved
    weights' dtype): from ``weights`` (a saved folder), the config dict, or ``config.name``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    quiet_transformers()
    if weights is not None:
        return AutoModelForCausalLM.from_pretrained(str(weights), dtype=dtype, trust_remote_code=False)
    if config.config is not None:
        options = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
                   "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
                   **config.config}  # the config may set a larger vocabulary (real-size benchmarks)
        llm_config = AutoConfig.for_model(options.pop("model_type", "llama"), **options)
        return AutoModelForCausalLM.from_config(llm_config, dtype=dtype)
    where, options = _source(config.name)
    try:
        llm = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **options)
    except (OSError, ValueError, KeyError) as exc:  # missing offline, not a causal LM, unsupported GGUF
        raise ConfigError("model.llm.name", [f"{config.name}: transformers could not load it as a causal LM "
                                             f"({first_line(exc)}); what works: a hub id, a transformers "
                                             "folder, or a .gguf file"]) from None
    if "gguf_file" in options:  # dequantised at load: a plain model now, which save_pretrained may write
        llm.hf_quantizer = None
        llm.config.__dict__.pop("quantization_config", None)
    return llm


def decoder_of(llm: nn.Module) -> nn.Module:
    """The LLM's decoder stack (hidden states, no head). transformers 4.56's ``get_decoder`` returns None for
    Llama-style models (it asks the inner model for a decoder it does not have); the base model is that stack."""
    decoder = llm.get_decoder()
    if decoder is None:
        base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
        decoder = base.base_model
    return decoder


@contextlib.contextmanager
def beam_prefix_cache(llm: nn.Module, embeds: torch.Tensor, mask: torch.Tensor, beams: int,
                      max_new: int | None = None):
    """Within: ``generate``'s keyword argument for a KV cache of all but the last of ``embeds`` (left-padded,
    positions from ``mask`` as ``generate`` counts them), computed once per row. Beam search otherwise runs
    the same prompt through the LLM once per beam; ``generate`` then runs only the last token. The beams share
    their row's prefix where the LLM allows (``shared_prefix.py``), else each gets a copy. With ``max_new``
    (``max_new_tokens``) and a shared prefix, the generated tokens' cache has fixed shapes and the decoder's layers
    run as one (``step_graph.py``: on a GPU, its one-token steps replayed as a CUDA graph). The keyword is
    ``cache`` since transformers 5.2x, ``past_key_values`` before."""
    from transformers import GenerationMixin

    positions = (mask.long().cumsum(1) - 1).clamp(min=0)
    output = decoder_of(llm)(inputs_embeds=embeds[:, :-1], attention_mask=mask[:, :-1].long(),
                             position_ids=positions[:, :-1], use_cache=True)
    keyword = "cache" if "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters \
        else "past_key_values"
    cache = output["cache" if "cache" in output else "past_key_values"]
    layers = decoder_layers(llm)
    with shared_prefix(llm, layers, cache, max_new) as shared, contextlib.ExitStack() as fixed:
        if not shared:
            cache.batch_repeat_interleave(beams)
        elif max_new is not None:
            fixed.enter_context(layers_as_one(layers))
        yield {keyword: cache}


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
