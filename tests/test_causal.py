"""causal_only: mask-free causal attention for packed training rows."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from clipwhisper.model.causal import CAUSAL_SDPA, causal_only


def tiny_llm(attention: str = "sdpa"):
    config = AutoConfig.for_model("llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, vocab_size=100,
                                  attn_implementation=attention)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def test_causal_only_matches_sdpa_with_its_causal_mask_and_is_undone_on_error():
    llm = tiny_llm()
    embeds = torch.randn(3, 9, 64)
    with torch.no_grad():
        expected = llm.model(inputs_embeds=embeds, use_cache=False).last_hidden_state
        with causal_only(llm):
            assert llm.model.layers[0].self_attn.config._attn_implementation == CAUSAL_SDPA
            packed = llm.model(inputs_embeds=embeds, use_cache=False).last_hidden_state
    torch.testing.assert_close(packed, expected)
    with pytest.raises(RuntimeError), causal_only(llm):
        raise RuntimeError("a failed step")
    assert llm.config._attn_implementation == "sdpa"


def test_causal_only_leaves_other_attention_implementations_alone():
    llm = tiny_llm("eager")
    with causal_only(llm):
        assert llm.config._attn_implementation == "eager"


def test_sliding_window_llm_keeps_its_window():
    """Gemma 3 alternates sliding-window and full layers: the packed path must see the window too."""
    config = AutoConfig.for_model("gemma3_text", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=100,
                                  sliding_window=4, layer_types=["sliding_attention", "full_attention"],
                                  attn_implementation="sdpa")
    torch.manual_seed(0)
    llm = AutoModelForCausalLM.from_config(config).eval()
    embeds = torch.randn(2, 12, 64)
    mask = torch.ones(2, 12, dtype=torch.long)
    with torch.no_grad():
        expected = llm.model(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
        with causal_only(llm):
            packed = llm.model(inputs_embeds=embeds, use_cache=False).last_hidden_state
    torch.testing.assert_close(packed, expected)
