"""CUDA graphs, captured once per input shape and then replayed: of a frozen encoder's forward, and of the
LLM decoder's forward and backward in training.

A frozen encoder launches hundreds of small kernels a batch (CLIP about a dozen per block and chunk, Whisper
about fifteen per block), and so does the LoRA LLM's decoder; on the H100 the host took longer to launch
them than the GPU to run them (docs/performance.md). A replayed graph is one launch. Where graphs apply,
callers pad their inputs to a multiple of ``GRANULE`` (``multiple``), so that few graphs are captured;
anywhere else the function runs as it is.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import nn

GRANULE = 32
MAX_GRAPHS = 64  # per module: each keeps its input and output buffers; further shapes run kernel by kernel
# No capture once the caching allocator holds this share of the GPU's memory: a graph's pool memory serves
# only graphs, and what is left must serve steps that run without one.
MEMORY_SHARE = 0.7
# A capture forbids unsafe CUDA calls in its own thread only: the loader's pin thread pins the next batch's memory
# (cudaHostAlloc) while the model captures a new shape ("global", the default, invalidated such captures on the
# H200 machine); the thread's pinned copies are not on the capture's stream. As inductor's CUDA graphs do.
CAPTURE_MODE = "thread_local"


class _PerShape:
    """Graphs of ``module``'s computation by key. They read its parameters where they were at capture; if any
    moves (e.g. a cast), they are captured again. ``enabled = False`` where the parameters move every step
    (FSDP gathers them anew)."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.enabled = True
        self.graphs: dict[tuple, object] = {}
        self.weights: tuple[int, ...] = ()
        self.pool = None  # one memory pool for all of them: they replay one at a time

    def applies(self, tensor: torch.Tensor) -> bool:
        raise NotImplementedError

    def multiple(self, tensor: torch.Tensor) -> int:
        """What to pad ``tensor``'s varying dimension to a multiple of: 1 where no graph will run."""
        return GRANULE if self.applies(tensor) else 1

    def _graph(self, key: tuple, capture: Callable[[], object]):
        """The graph for ``key``, captured now if new; None when ``MAX_GRAPHS`` are taken or the GPU's memory
        mostly is (``MEMORY_SHARE``)."""
        weights = tuple(t.data_ptr() for t in (*self.module.parameters(), *self.module.buffers()))
        if weights != self.weights:
            self.graphs.clear()
            self.weights = weights
        if key not in self.graphs:
            if len(self.graphs) >= MAX_GRAPHS or memory_held() > MEMORY_SHARE:
                return None
            self.pool = self.pool or torch.cuda.graph_pool_handle()
            self.graphs[key] = capture()
        return self.graphs[key]


def memory_held() -> float:
    """The share of the current GPU's memory that PyTorch's caching allocator holds (no device sync)."""
    return torch.cuda.memory_reserved() / torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory


def shapes_of(inputs) -> tuple:
    return tuple((tuple(t.shape), t.dtype) for t in inputs)


class ShapeGraphs(_PerShape):
    """Calls ``function(*tensors)`` through a CUDA graph per distinct input shapes and dtypes, in eval mode
    without autograd or autocast, as frozen encoders run."""

    def __init__(self, function: Callable[..., torch.Tensor], module: nn.Module):
        super().__init__(module)
        self.function = function

    def applies(self, tensor: torch.Tensor) -> bool:
        """In eval mode only: a graph would replay what one mode computes in the other (dropout, and
        PyTorch's fused attention, which nn.MultiheadAttention takes only in eval mode)."""
        return (self.enabled and not self.module.training and tensor.is_cuda and not torch.is_grad_enabled()
                and not torch.is_autocast_enabled("cuda") and not torch.cuda.is_current_stream_capturing())

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        entry = self._graph(shapes_of(inputs), lambda: self._capture(inputs)) if self.applies(inputs[0]) else None
        if entry is None:
            return self.function(*inputs)
        graph, static_inputs, output = entry
        for static, tensor in zip(static_inputs, inputs):
            static.copy_(tensor)
        graph.replay()
        return output.clone()  # the next replay overwrites the graph's output

    def _capture(self, inputs) -> tuple[torch.cuda.CUDAGraph, list[torch.Tensor], torch.Tensor]:
        static_inputs = [t.clone() for t in inputs]
        warm_up(lambda: self.function(*static_inputs), times=1)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode=CAPTURE_MODE):
            output = self.function(*static_inputs)
        return graph, static_inputs, output


class TrainingGraphs(_PerShape):
    """Calls ``function(tensor)`` in training, forward and backward, through a pair of CUDA graphs per input
    shape, training mode of ``module`` and autocast dtype; gradients flow to ``tensor`` and to ``module``'s
    trainable parameters. For modules whose trainable parameters are few (LoRA adapters): the graphs keep
    each shape's parameter gradients.

    All graphs share one memory pool, so a replayed forward overwrites what another graph's backward still
    needs: while one graphed forward awaits its backward, a second forward runs without graphs."""

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor], module: nn.Module):
        super().__init__(module)
        self.function = function
        self._awaiting = None  # the autograd node of a graphed forward whose backward has not run yet

    def applies(self, tensor: torch.Tensor) -> bool:
        return (self.enabled and tensor.is_cuda and tensor.requires_grad and torch.is_grad_enabled()
                and not torch.cuda.is_current_stream_capturing()
                and (self._awaiting is None or self._awaiting() is None))

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        autocast = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else None
        key = (*shapes_of([tensor]), self.module.training, autocast)
        step = self._graph(key, lambda: self._capture(tensor, autocast)) if self.applies(tensor) else None
        if step is None:
            return self.function(tensor)
        self._keep_gradients(step.params)
        output = _Replay.apply(step, tensor, *step.params)
        self._awaiting = weakref.ref(output.grad_fn)  # dead once the step's autograd graph is freed
        output.register_hook(self._backward_started)
        return output

    def _backward_started(self, grad: torch.Tensor) -> None:
        self._awaiting = None

    @staticmethod
    def _keep_gradients(params: list[torch.Tensor]) -> None:
        """Parameters without a gradient get a zero one, to add into: autograd would otherwise adopt the
        graph's gradient buffer as ``.grad``, and the next replay would overwrite it (wrong sums when
        micro-batches accumulate, pytorch/pytorch#96693)."""
        for param in params:
            if param.grad is None:
                param.grad = torch.zeros_like(param)

    def _capture(self, tensor: torch.Tensor, autocast: torch.dtype | None) -> _GraphedStep:
        # Autocast must not cache casts of the weights across the capture: each replay casts them anew.
        with torch.autocast("cuda", dtype=autocast, enabled=autocast is not None, cache_enabled=False):
            return _GraphedStep(self.function, [p for p in self.module.parameters() if p.requires_grad],
                                tensor, self.pool)


class _GraphedStep:
    """One shape's forward graph and backward graph, with their static input, output and gradient buffers
    (what torch.cuda.make_graphed_callables builds, less the captured autograd graph it keeps alive: the
    gradient accumulators that graph holds belong to the capture's stream, and every later backward would
    cross streams to reach them)."""

    def __init__(self, function, params: list[torch.Tensor], tensor: torch.Tensor, pool):
        self.params = params
        self.input = tensor.detach().clone().requires_grad_(True)
        inputs = (self.input, *params)
        warm_up(lambda: _forward_backward(function, inputs), times=3)  # as make_graphed_callables does
        self.forward_graph, self.backward_graph = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.forward_graph, pool=pool, capture_error_mode=CAPTURE_MODE):
            output = function(self.input)
        self.output_grad = torch.empty_like(output)
        with torch.cuda.graph(self.backward_graph, pool=pool, capture_error_mode=CAPTURE_MODE):
            self.grads = torch.autograd.grad(output, inputs, self.output_grad, allow_unused=True)
        self.output = output.detach()


def warm_up(work: Callable[[], object], times: int) -> None:
    """``work()`` before its capture, on a side stream as capture wants: library handles, workspaces, kernel
    choice and compiled code are set up outside the graph."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(times):
            work()
    torch.cuda.current_stream().wait_stream(side)


def _forward_backward(function, inputs: tuple[torch.Tensor, ...]) -> None:
    """One call and its gradients, whose autograd graph is gone on return: a graph still alive would hand its
    gradient accumulators, made on this stream, to the next call on another stream."""
    output = function(inputs[0])
    torch.autograd.grad(output, inputs, torch.ones_like(output), allow_unused=True)


class _Replay(torch.autograd.Function):
    @staticmethod
    def forward(ctx, step: _GraphedStep, tensor: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        ctx.step = step
        step.input.copy_(tensor)
        step.forward_graph.replay()
        return step.output.clone()  # the next replay overwrites the graph's output

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        step = ctx.step
        step.output_grad.copy_(grad)
        step.backward_graph.replay()
        return None, *step.grads


def graphs_of(model: nn.Module) -> list[_PerShape]:
    """The CUDA graphs of every module within ``model`` that keeps some (its frozen encoders and its LLM)."""
    return [value for module in model.modules() for value in vars(module).values() if isinstance(value, _PerShape)]
