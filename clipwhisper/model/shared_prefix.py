"""Beam search whose beams share their row's prefix in the KV cache, instead of holding a copy each.

transformers' beam search keeps one KV cache row per beam and reorders every layer's whole cache after each
step (an ``index_select`` over beams × (prefix + generated) positions), and every step's attention reads the
prefix once per beam. The prefix is the same for a row's beams, and it is most of the sequence (the modality
block: about 120 tokens for 4.5 s of audio and video against 24 new tokens). Here each layer's cache holds
only what the beams generated, reordered as transformers asks, while the prefix's keys and values are held
once per row on the attention module; the one-token steps' attention (``single_query.py``) scores a query
against both, the prefix part with a row's beams folded into one matmul. transformers' beam search itself is
unchanged, so the hypotheses are its own.

With ``max_new`` the generated tokens go into a buffer of that many positions per layer, written and reordered
in place, and the mask spans prefix + ``max_new`` positions (the 2D mask, shorter, is padded with masked
positions there): every step of a search then has the same shapes and reads the same buffers, so the decoder's
layers can replay as one CUDA graph (``step_graph.py``).
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn


@functools.cache  # defined once, when transformers is first needed
def _beam_layer_class():
    from transformers.cache_utils import DynamicLayer

    class BeamLayer(DynamicLayer):
        """One layer's tokens generated per beam; lengths count the ``prefix_length`` positions held elsewhere,
        so positions and masks are those of the whole sequence."""

        def __init__(self, prefix_length: int):
            super().__init__()
            self.prefix_length = prefix_length

        def generated(self) -> int:
            return super().get_seq_length()

        def get_seq_length(self) -> int:
            return self.prefix_length + self.generated()

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.get_seq_length() + query_length, 0

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            if self.generated() > 0:
                super().reorder_cache(beam_idx)

    return BeamLayer


@functools.cache  # defined once, when transformers is first needed
def _static_beam_layer_class():
    from transformers.cache_utils import CacheLayerMixin

    class StaticBeamLayer(CacheLayerMixin):
        """One layer's tokens generated per beam in ``max_new`` positions allocated on the first step, the count
        written kept on the device (a replayed step advances it); lengths count the ``prefix_length`` positions
        held elsewhere. Not transformers' ``StaticLayer``: where that writes has changed between versions, and
        its beam reorder replaces the buffers."""

        is_compileable = True
        is_sliding = False

        def __init__(self, prefix_length: int, max_new: int):
            super().__init__()
            self.prefix_length, self.max_new = prefix_length, max_new
            self.written = torch.tensor(0)

        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            # zeros, not empty: a masked position's weight is 0, and 0 times a NaN left in memory is NaN
            self.keys = key_states.new_zeros((*key_states.shape[:2], self.max_new, key_states.shape[-1]))
            self.values = value_states.new_zeros((*value_states.shape[:2], self.max_new, value_states.shape[-1]))
            self.written = self.written.to(key_states.device)
            self.is_initialized = True

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            positions = torch.arange(key_states.shape[-2], device=key_states.device) + self.written
            self.written.add_(key_states.shape[-2])
            self.keys.index_copy_(2, positions, key_states)
            self.values.index_copy_(2, positions, value_states)
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.prefix_length + (int(self.written) if self.is_initialized else 0)

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.prefix_length + self.max_new, 0

        def get_max_length(self) -> int:
            return self.prefix_length + self.max_new

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            if self.is_initialized:  # in place: a captured step keeps reading the same buffers
                self.keys.copy_(self.keys.index_select(0, beam_idx))
                self.values.copy_(self.values.index_select(0, beam_idx))

    return StaticBeamLayer


@contextlib.contextmanager
def shared_prefix(llm: nn.Module, layers: list[nn.Module], cache, max_new: int | None = None):
    """Within: ``cache`` (a prefix's, from ``llm``'s decoder ``layers``) holds what beams generate (with
    ``max_new``, in buffers of that many positions), its prefix moved to the attention modules, which drop it on
    exit; yields whether it could. It cannot where the cache or the attention is of another kind than this
    serves: a sliding-window layer, an attention implementation other than SDPA (``single_query_steps`` then
    leaves the LLM's own), a layer without ``self_attn``."""
    from transformers.cache_utils import DynamicLayer

    modules = [getattr(layer, "self_attn", None) for layer in layers]
    if (any(module is None for module in modules) or llm.config._attn_implementation != "sdpa"
            or len(cache.layers) != len(modules) or any(type(layer) is not DynamicLayer for layer in cache.layers)):
        yield False
        return
    prefix_length = cache.get_seq_length()
    beam_layer = functools.partial(_beam_layer_class(), prefix_length) if max_new is None \
        else functools.partial(_static_beam_layer_class(), prefix_length, max_new)
    try:
        for module, layer in zip(modules, cache.layers):
            module.shared_prefix = (layer.keys, layer.values)
        cache.layers = [beam_layer() for _ in modules]
        yield True
    finally:
        for module in modules:
            module.shared_prefix = None


def shared_prefix_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            prefix: tuple[torch.Tensor, torch.Tensor], attention_mask: torch.Tensor | None,
                            scale: float) -> torch.Tensor:
    """One query per beam: ``query (N, H, 1, D)`` for N = rows × beams, ``key``/``value (N, KV, G, D)`` the
    generated positions, ``prefix`` keys and values ``(rows, KV, P, D)``, the mask over P + G positions as
    transformers builds it. Returns ``(N, 1, H, D)``."""
    prefix_keys, prefix_values = prefix
    beams_total, heads, _, dim = query.shape
    rows, kv_heads, length = prefix_keys.shape[0], key.shape[1], prefix_keys.shape[2]
    beams, groups = beams_total // rows, heads // kv_heads

    def by_row(x: torch.Tensor) -> torch.Tensor:  # (N, KV, g, X) -> (rows, KV, beams * g, X)
        return x.reshape(rows, beams, kv_heads, groups, -1).transpose(1, 2).reshape(rows, kv_heads, beams * groups, -1)

    def by_beam(x: torch.Tensor) -> torch.Tensor:  # the inverse
        return x.reshape(rows, kv_heads, beams, groups, -1).transpose(1, 2).reshape(beams_total, kv_heads, groups, -1)

    grouped = query.reshape(beams_total, kv_heads, groups, dim)
    on_prefix = by_beam(torch.matmul(by_row(grouped), prefix_keys.transpose(-1, -2)))
    on_generated = torch.matmul(grouped, key.transpose(-1, -2))
    scores = torch.cat([on_prefix, on_generated], dim=-1).float() * scale
    if attention_mask is not None:
        wanted = attention_mask[:, :, -1:]  # (N, 1, 1, P + G), over the groups
        scores = scores.masked_fill(~wanted, float("-inf")) if wanted.dtype == torch.bool else scores + wanted.float()
    weights = scores.softmax(-1).to(value.dtype)
    attended = by_beam(torch.matmul(by_row(weights[..., :length]), prefix_values))
    attended = attended + torch.matmul(weights[..., length:], value)
    return attended.reshape(beams_total, 1, heads, dim)
