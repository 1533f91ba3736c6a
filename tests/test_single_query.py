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


def test_beams_over_a_prefix_held_once_per_row_equal_sdpa_over_each_beams_copy():
    """Two rows of three beams, four query heads on two key/value heads: a prefix of 7 positions held once per
    row (the first row left-padded) and 3 generated positions per beam attend as SDPA does over each beam's
    whole sequence."""
    torch.manual_seed(0)
    rows, beams = 2, 3
    query = torch.randn(rows * beams, 4, 1, 8)
    prefix_keys, prefix_values = torch.randn(rows, 2, 7, 8), torch.randn(rows, 2, 7, 8)
    key, value = torch.randn(rows * beams, 2, 3, 8), torch.randn(rows * beams, 2, 3, 8)
    mask = torch.ones(rows * beams, 1, 1, 10, dtype=torch.bool)
    mask[:beams, ..., :2] = False  # the first row's left padding, in each of its beams
    module = torch.nn.Module()
    module.shared_prefix = (prefix_keys, prefix_values)
    ours, _ = single_query_attention(module, query, key, value, mask, scaling=0.3)
    whole_keys = torch.cat([prefix_keys.repeat_interleave(beams, 0), key], dim=2).repeat_interleave(2, 1)
    whole_values = torch.cat([prefix_values.repeat_interleave(beams, 0), value], dim=2).repeat_interleave(2, 1)
    expected = F.scaled_dot_product_attention(query, whole_keys, whole_values, attn_mask=mask,
                                              scale=0.3).transpose(1, 2)
    torch.testing.assert_close(ours, expected)
