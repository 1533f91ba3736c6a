"""CUDA graphs of a frozen encoder's forward: captured once per input shape, then replayed.

A frozen encoder launches hundreds of small kernels a batch (CLIP about a dozen per block and chunk, Whisper
about fifteen per block), and at 112 px a training step's host took longer to launch its kernels than the GPU
to run them (docs/performance.md). A replayed graph is one launch. Graphs apply on a GPU in eval mode
without autograd or autocast, as frozen encoders run; anywhere else the function runs as it is. Where they
apply, callers pad their inputs to a multiple of ``GRANULE`` (``ShapeGraphs.multiple``), so that few graphs
are captured.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

GRANULE = 32
MAX_GRAPHS = 64  # per encoder: each keeps its input and output buffers; further shapes run kernel by kernel


class ShapeGraphs:
    """Calls ``function(*tensors)`` through a CUDA graph per distinct input shapes and dtypes. The graphs read
    ``module``'s parameters where they were at capture; if any moves (e.g. a cast), they are captured again.
    ``enabled = False`` where the parameters move every step (FSDP gathers them anew)."""

    def __init__(self, function: Callable[..., torch.Tensor], module: nn.Module):
        self.function = function
        self.module = module
        self.enabled = True
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]] = {}
        self.weights: tuple[int, ...] = ()
        self.pool = None

    def applies(self, tensor: torch.Tensor) -> bool:
        """In eval mode only: a graph would replay what one mode computes in the other (dropout, and
        PyTorch's fused attention, which nn.MultiheadAttention takes only in eval mode)."""
        return (self.enabled and not self.module.training and tensor.is_cuda and not torch.is_grad_enabled()
                and not torch.is_autocast_enabled("cuda") and not torch.cuda.is_current_stream_capturing())

    def multiple(self, tensor: torch.Tensor) -> int:
        """What to pad ``tensor``'s varying dimension to a multiple of: 1 where no graph will run."""
        return GRANULE if self.applies(tensor) else 1

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if not self.applies(inputs[0]):
            return self.function(*inputs)
        weights = tuple(t.data_ptr() for t in (*self.module.parameters(), *self.module.buffers()))
        if weights != self.weights:
            self.graphs.clear()
            self.weights = weights
        key = tuple((tuple(t.shape), t.dtype) for t in inputs)
        if key not in self.graphs:
            if len(self.graphs) >= MAX_GRAPHS:
                return self.function(*inputs)
            self.graphs[key] = self._capture(inputs)
        graph, static_inputs, output = self.graphs[key]
        for static, tensor in zip(static_inputs, inputs):
            static.copy_(tensor)
        graph.replay()
        return output.clone()  # the next replay overwrites the graph's output

    def _capture(self, inputs) -> tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]:
        static_inputs = [t.clone() for t in inputs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph: library handles, workspaces, kernel choice
            self.function(*static_inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        self.pool = self.pool or torch.cuda.graph_pool_handle()  # one pool: graphs replay one at a time
        with torch.cuda.graph(graph, pool=self.pool):
            output = self.function(*static_inputs)
        return graph, static_inputs, output


def graphs_of(model: nn.Module) -> list[ShapeGraphs]:
    """The CUDA graphs of every module within ``model`` that keeps some (its frozen encoders)."""
    return [module.graphs for module in model.modules() if isinstance(getattr(module, "graphs", None), ShapeGraphs)]
