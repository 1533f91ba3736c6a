"""A beam search's one-token steps through the LLM's decoder layers replayed as one CUDA graph.

Eagerly, each step of a 16-layer Llama launches about 900 small kernels for a few hundred rows, and the host takes
longer to launch them than the GPU to run them (docs/performance.md). With the generated tokens in buffers of
fixed size (``shared_prefix.py``'s ``max_new``) every step of one search has the same shapes and reads the same
buffers, so the layers are captured once per search and replayed: the first step runs eagerly (it allocates the
cache's buffers), the second eagerly on a side stream (library handles and workspaces set up outside a
capture), the third is captured, and every later one is a single launch. Embedding, mask, head and the search
itself stay transformers' own. Compiling the same step was tried and cost more than it saved, since every new
prefix length compiled anew (docs/history/performance-log.md); a capture is made per search instead.
"""

from __future__ import annotations

import contextlib
import inspect

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from .graphs import CAPTURE_MODE, MEMORY_SHARE, memory_held, shapes_of, warm_up


class LayerStack:
    """Called with layer 0's arguments, runs every layer with them in turn (the decoder's loop then passes the
    result through the others); on a GPU, one-token steps through one CUDA graph per search."""

    def __init__(self, layers: list[nn.Module]):
        self.forwards = [type(layer).forward.__get__(layer) for layer in layers]  # not the patched ones
        self.steps = 0
        self.key = self.graph = self.output = None
        self.inputs: list[torch.Tensor] = []  # the graph's static inputs: hidden states, then kwargs' tensors

    def run(self, hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
        for forward in self.forwards:
            hidden = forward(hidden, **kwargs)
        return hidden

    def __call__(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        if not (hidden_states.is_cuda and hidden_states.shape[1] == 1
                and not torch.cuda.is_current_stream_capturing()):
            return self.run(hidden_states, kwargs)
        leaves, spec = tree_flatten(kwargs)
        tensors = [hidden_states, *(leaf for leaf in leaves if isinstance(leaf, torch.Tensor))]
        # Anything but a tensor (the cache, flags) is captured as it is: it must be the very same object.
        key = (spec, shapes_of(tensors), tuple(id(leaf) for leaf in leaves if not isinstance(leaf, torch.Tensor)))
        self.steps += 1
        if self.steps == 1:
            return self.run(hidden_states, kwargs)
        if self.steps == 2:
            outputs = []
            warm_up(lambda: outputs.append(self.run(hidden_states, kwargs)), times=1)
            outputs[0].record_stream(torch.cuda.current_stream())  # made on the side stream, read on this one
            return outputs[0]
        if self.graph is None and self.steps == 3 and memory_held() <= MEMORY_SHARE:
            self._capture(tensors, leaves, spec, key)
        if self.graph is None or key != self.key:  # e.g. a step whose mask transformers left out
            return self.run(hidden_states, kwargs)
        for static, tensor in zip(self.inputs, tensors):
            static.copy_(tensor)
        self.graph.replay()
        return self.output.clone()  # the next replay overwrites it

    def _capture(self, tensors: list[torch.Tensor], leaves: list, spec, key) -> None:
        self.inputs = [tensor.clone() for tensor in tensors]
        fed = iter(self.inputs[1:])
        kwargs = tree_unflatten([next(fed) if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves], spec)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, capture_error_mode=CAPTURE_MODE):
            self.output = self.run(self.inputs[0], kwargs)
        self.key = key


def _passes_through(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return hidden_states


@contextlib.contextmanager
def layers_as_one(layers: list[nn.Module]):
    """Within: the first of the decoder's ``layers`` runs them all (``LayerStack``: one-token steps on a GPU
    through a CUDA graph), the others pass their input through. Layers that return something else than
    the hidden states (older transformers returned a tuple) are left as they are."""
    returns = {inspect.signature(type(layer).forward).return_annotation for layer in layers}
    if returns != {torch.Tensor} or any("forward" in vars(layer) for layer in layers):
        yield
        return
    layers[0].forward = LayerStack(layers)
    for layer in layers[1:]:
        layer.forward = _passes_through
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward
