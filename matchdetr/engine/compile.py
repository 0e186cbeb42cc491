"""``train.compile`` / ``predict --compile``: the model's forward through ``torch.compile`` (inductor).

The module is compiled in place (``nn.Module.compile``), so its ``state_dict`` keys, ``.train()`` / ``.eval()``
and every attribute stay the module's own: checkpoints written from a compiled run load anywhere, and DDP
wraps or is wrapped as usual. Only the forward is compiled; the criterion (Hungarian matching on the host)
and the post-processing stay eager.

Inductor needs a C++ compiler on CPU and Triton on CUDA. When that is missing, or when compiling fails at
the first call, the model runs eagerly after one warning that says why: a run that asked for speed still
runs, at eager speed, instead of stopping.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
from torch import nn


def backend_problem(device: torch.device) -> str | None:
    """Why inductor cannot compile for ``device`` here (one line), or None when it can."""
    if device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception as err:  # InvalidCxxCompiler, or an inductor without this helper
            return f"no working C++ compiler for inductor on the CPU (set CXX to one; {type(err).__name__})"
    elif device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "inductor on CUDA needs Triton (pip install triton), which is not importable"
    return None


def cpu_inductor(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
    """Inductor without its decomposition of bilinear ``grid_sampler_2d``, which on the CPU is slower than
    ATen's kernel (inductor's own comment measures about 0.8x; with it, stable-dino-tiny's compiled inference
    ran at 0.64x of eager, without it at 1.24x, docs/benchmarks.md). The deformable attention and the Semantics
    Aligner sample with it; everything else is as inductor does it."""
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.decomposition import select_decomp_table

    grid_sampler = torch.ops.aten.grid_sampler_2d
    table = {op: fn for op, fn in select_decomp_table().items() if getattr(op, "overloadpacket", op) is not grid_sampler}
    # AOT autograd's cache is keyed on the graph before decomposition, not on the table: it would hand back a
    # build made with the default table. Inductor's own cache (keyed on the decomposed graph) stays on.
    with torch._functorch.config.patch(enable_autograd_cache=False):
        return compile_fx(gm, example_inputs, decompositions=table)


class _CompiledOrEager:
    """The compiled call, which becomes the eager one for good if compiling fails (a warning says why).

    Only backend failures fall back (``BackendCompilerFailed``: the C++ or Triton build); an error of the
    model itself is raised as it would be eagerly."""

    def __init__(self, compiled: Callable[..., Any], eager: Callable[..., Any], name: str) -> None:
        self.compiled, self.eager, self.name, self.failed = compiled, eager, name, False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except torch._dynamo.exc.BackendCompilerFailed as err:
            self.failed = True
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            warnings.warn(f"torch.compile of {self.name} failed ({first[:200]}); running eagerly")
            return self.eager(*args, **kwargs)


def compile_model(model: nn.Module, device: torch.device | None = None, mode: str | None = None,
                  backend: str | Callable[..., Any] = "inductor") -> bool:
    """Compile ``model``'s forward in place; returns whether it will run compiled.

    device: where the model runs (default: its first parameter's device), which decides the backend check.
    mode: ``torch.compile``'s mode (None: the default; "max-autotune" searches kernels for longer).
    backend: ``torch.compile``'s backend; ``aot_eager`` captures the same graphs without generating code
    (the fast tests use it).
    Shapes are left to torch's automatic dynamic shapes: the first image size compiles a static graph, a
    second one a dynamic graph that serves the sizes after it.
    """
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    problem = backend_problem(device) if backend == "inductor" else None
    name = type(model.module if hasattr(model, "module") else model).__name__
    if problem is not None:
        warnings.warn(f"torch.compile unavailable: {problem}; running {name} eagerly")
        return False
    if backend == "inductor" and device.type == "cpu" and mode is None:
        backend = cpu_inductor
    compiled = torch.compile(model._call_impl, backend=backend, mode=mode)
    # What nn.Module.compile does, with the eager fallback around it; __call__ uses it when it is set.
    model._compiled_call_impl = _CompiledOrEager(compiled, model._call_impl, name)
    return True
