"""`torch.vmap` on simulated GPUs: a vmapped function of simulated tensors returns tensors on their GPU.

functorch runs the function on its own batched wrappers of the inputs' C++ tensors, which for a simulated
tensor are CPU tensors, so the results come back as plain CPU tensors: transformers' 4D attention masks
(masking_utils `_vmap_for_bhqkv`, 4.53 on) would read as made on the CPU. On a GPU, the batching rules run
the ops' own kernels on the inputs' device, so the results live there (torch/_functorch/vmap.py:
`_create_batched_inputs` wraps the inputs, `_unwrap_batched` returns the kernels' outputs). The shim
puts the outermost call's plain results on the one GPU its tensor arguments share.
"""

from __future__ import annotations

import functools
import threading

import torch
from torch.utils._pytree import tree_flatten, tree_map

from .tensor import adopt, device_of

# vmaps inside a vmapped function see functorch's wrappers: only the outermost call (per thread) adopts
_nesting = threading.local()


def _on_gpu(value, device: torch.device):
    return adopt(value, device) if type(value) is torch.Tensor else value


def _simulated(vmap):
    @functools.wraps(vmap)
    def simulated_vmap(func, *args, **kwargs):
        vmapped = vmap(func, *args, **kwargs)

        @functools.wraps(func)
        def call(*inputs, **named):
            depth = getattr(_nesting, "depth", 0)
            tensors = [x for x in tree_flatten((inputs, named))[0] if isinstance(x, torch.Tensor)]
            devices = {device_of(t) for t in tensors} if depth == 0 else set()
            _nesting.depth = depth + 1
            try:
                out = vmapped(*inputs, **named)
            finally:
                _nesting.depth = depth
            if len(devices) == 1 and next(iter(devices)).type == "cuda":
                device = next(iter(devices))
                return tree_map(lambda value: _on_gpu(value, device), out)
            return out

        return call

    return simulated_vmap


def shims() -> dict:
    """{module: {"vmap": replacement}} for `torch.vmap` and `torch.func.vmap`."""
    import torch.func

    return {torch: {"vmap": _simulated(torch.vmap)}, torch.func: {"vmap": _simulated(torch.func.vmap)}}
