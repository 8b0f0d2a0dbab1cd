"""Backward passes on simulated GPUs.

The autograd engine runs a backward's kernels in C++, below Python's torch-function layer, and captures
the thread-local state, the torch-function mode stack with it, when it starts
(aten/src/ATen/ThreadLocalState.h; CPU work runs on the calling thread). Called as any other torch call,
`loss.backward()` would start while the simulation's mode is off the stack (a mode is popped while it
handles a call): the hooks the backward runs (FSDP2's unshard and reduce-scatter among them) would run
unsimulated, and every gradient would be a plain CPU tensor. `backward` starts the engine with the
simulation's mode on the stack, and puts each gradient a leaf accumulates on that leaf's device (a
post-accumulate-grad hook, removed after), as CUDA's AccumulateGrad keeps a gradient on its
parameter's device. The backward kernels themselves are not device-checked.
"""

from __future__ import annotations

import torch

from .tensor import adopt, device_of

_DEFAULTS = {
    torch.Tensor.backward: (
        ("tensors", None),
        ("grad_tensors", None),
        ("retain_graph", None),
        ("create_graph", False),
    ),
    torch.autograd.backward: (
        ("tensors", None),
        ("grad_tensors", None),
        ("retain_graph", None),
        ("create_graph", False),
        ("grad_variables", None),
    ),
}
CALLS = tuple(_DEFAULTS)


def _leaves(tensors: tuple) -> list[torch.Tensor]:
    """The leaf tensors whose gradients a backward from `tensors` accumulates (AccumulateGrad nodes)."""
    found, seen, stack = {}, set(), [t.grad_fn for t in tensors if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            found[id(variable)] = variable
        stack.extend(next_node for next_node, _ in node.next_functions)
    return list(found.values())


def _grad_on_device(leaf: torch.Tensor) -> None:
    grad = leaf.grad
    device = device_of(leaf)
    if grad is not None and type(grad) is torch.Tensor and device.type == "cuda":
        adopt(grad, device)


def _as_tuple(value) -> tuple:
    return () if value is None else (value,) if isinstance(value, torch.Tensor) else tuple(value)


def backward(simulation_mode, func, args: tuple, kwargs: dict) -> None:
    """`func(*args, **kwargs)`, `Tensor.backward` or `torch.autograd.backward`, on simulated GPUs (see the
    module's doc)."""
    # torch.autograd.backward's own steps (torch/autograd/__init__.py), not the function itself: it
    # dispatches to this mode again, and the engine must start while the mode is on the stack
    from torch.autograd import _make_grads
    from torch.autograd.graph import _engine_run_backward

    options = dict(_DEFAULTS[func])
    options.update(zip(options, args, strict=False))
    options.update({"grad_tensors" if key == "gradient" else key: value for key, value in kwargs.items()})
    tensors = _as_tuple(options["tensors"])
    grads = options["grad_tensors"]
    grads = tuple(grads) if isinstance(grads, (list, tuple)) else (grads,) * len(tensors)
    create_graph = options["create_graph"]
    retain_graph = create_graph if options["retain_graph"] is None else options["retain_graph"]
    inputs = _as_tuple(options.get("inputs"))
    hooks = [leaf.register_post_accumulate_grad_hook(_grad_on_device) for leaf in _leaves(tensors)]
    try:
        with simulation_mode:
            grads = _make_grads(tensors, grads, is_grads_batched=False)
            _engine_run_backward(
                tensors,
                grads,
                retain_graph,
                create_graph,
                inputs,
                allow_unreachable=True,
                accumulate_grad=True,
            )
    finally:
        for hook in hooks:
            hook.remove()
