"""single_query_steps: generation's one-token steps attend by two matmuls, as SDPA would."""

import torch
import torch.nn.functional as F
from test_causal import tiny_llm

from clipwhisper.model.single_query import SINGLE_QUERY, single_query_attention, single_query_steps


def test_one_query_against_a_masked_cache_equals_sdpa():
    """Four query heads on two key/value heads, a cache of 11 slots with left padding and unused slots masked."""
    torch.manual_seed(0)
    query, key, value = torch.randn(3, 4, 1, 8), torch.randn(3, 2, 11, 8), torch.randn(3, 2, 11, 8)
    mask = torch.ones(3, 1, 1, 11, dtype=torch.bool)
    mask[0, ..., :4] = False  # left padding
    mask[1, ..., 7:] = False  # slots not filled yet
    module = torch.nn.Module()
    module.num_key_value_groups = 2
    ours, _ = single_query_attention(module, query, key, value, mask, scaling=0.3)
    expected = F.scaled_dot_product_attention(query, key.repeat_interleave(2, 1), value.repeat_interleave(2, 1),
                                              attn_mask=mask, scale=0.3).transpose(1, 2)
    torch.testing.assert_close(ours, expected)
    additive = torch.zeros(3, 1, 1, 11).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(single_query_attention(module, query, key, value, additive, scaling=0.3)[0], expected)


def test_generation_with_single_query_steps_gives_sdpas_tokens_and_is_undone():
    """A real Llama generating from left-padded prompts: the same tokens (greedy and beam 5), the LLM back on SDPA
    after, whatever happened inside."""
    llm = tiny_llm()
    torch.manual_seed(1)
    embeds = torch.randn(3, 9, 64)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[0, :3] = 0
    mask[2, :5] = 0
    options = {"inputs_embeds": embeds, "attention_mask": mask, "max_new_tokens": 12, "do_sample": False,
               "pad_token_id": 0, "eos_token_id": 99}
    for beams in (1, 5):
        expected = llm.generate(num_beams=beams, **options)
        with single_query_steps(llm):
            assert llm.model.layers[0].self_attn.config._attn_implementation == SINGLE_QUERY
            ours = llm.generate(num_beams=beams, **options)
        assert torch.equal(ours, expected) and len({tuple(row) for row in ours.tolist()}) == 3, beams
    assert llm.config._attn_implementation == "sdpa"
