"""The exact path for a torch call that mixes devices: replay it op by op with PyTorch's device rules.

Calls whose tensors are all on one device cannot raise a device error and skip this (`calls.py`).
When devices differ, the call is re-run under a dispatch mode that sees every aten op it reaches
(after CompositeImplicitAutograd decomposition, as a CUDA build would), keeps each intermediate
tensor's simulated device, and raises what the first op a CUDA build would refuse raises.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from . import rules
from .rules import Kind
from .tensor import device_of

_CPU = torch.device("cpu")
_aten = torch.ops.aten
_COMPOSITE_KEY = torch._C.DispatchKey.CompositeExplicitAutograd

# Copies move data between devices by design: no device check (ATen copy_ / _to_copy).
_COPIES = {"copy_", "_copy_from", "_copy_from_and_resize", "_to_copy", "lift_fresh", "lift_fresh_copy"}
# Advanced indexing accepts CPU indices (index's meta: check_indices_on_cpu_or_selfdevice).
_INDEX_READS = {"index", "_unsafe_index"}
# index_put moves indices to self's device; a 1-element 0-dim value may come from anywhere
# (_index_put_impl_), other values must be on self's device (TensorIterator / index_put_with_sort).
_INDEX_WRITES = {"_index_put_impl_", "index_put_", "index_put", "_unsafe_index_put"}
_MASKED_FILLS = {"masked_fill_"}


def _tensor_arguments(func, args, kwargs) -> list[tuple[str, torch.Tensor, bool, bool]]:
    """(name, tensor, is_written, is_keyword_only) for every tensor argument, in schema order."""
    found = []
    for position, argument in enumerate(func._schema.arguments):
        value = args[position] if position < len(args) else kwargs.get(argument.name)
        written = bool(argument.alias_info and argument.alias_info.is_write)
        if isinstance(value, torch.Tensor):
            found.append((argument.name, value, written, argument.kwarg_only))
        elif isinstance(value, (list, tuple)):
            found.extend(
                (argument.name, t, written, argument.kwarg_only) for t in value if isinstance(t, torch.Tensor)
            )
    return found


def _iterator_device(tensors) -> torch.device:
    """TensorIterator: outputs first; the first non-CPU device is common; 0-dim CPU inputs may join."""
    ordered = [t for t in tensors if t[2]] + [t for t in tensors if not t[2]]
    devices = [(device_of(t), written, t.dim()) for _, t, written, _ in ordered]
    common = next((d for d, _, _ in devices if d.type != "cpu"), devices[0][0])
    for device, written, dim in devices:
        if device == common or (common.type != "cpu" and not written and dim == 0 and device.type == "cpu"):
            continue
        raise rules.iterator_mismatch(common, device)
    return common


def _checked_device(tensors, wrapper: str) -> torch.device:
    """The generated wrapper: out arguments, then positional ones, must share one device."""
    ordered = [t for t in tensors if t[2] and t[3]] + [t for t in tensors if not t[3]]
    common = None
    for name, tensor, _, _ in ordered:
        device = device_of(tensor)
        if common is None:
            common = device
        elif device != common:
            raise rules.checked_mismatch(name, device, common, wrapper)
    return common if common is not None else device_of(tensors[0][1])


def _index_read_device(tensors) -> torch.device:
    self_device = device_of(tensors[0][1])
    for _, index, _, _ in tensors[1:]:
        device = device_of(index)
        if device.type != "cpu" and device != self_device:
            raise rules.index_mismatch(self_device)
    return self_device


def _index_write_device(func, args, kwargs, tensors) -> torch.device:
    self_device = device_of(tensors[0][1])
    value = next(t for name, t, _, _ in tensors if name == "values")
    value_device = device_of(value)
    if value_device == self_device or (value.numel() == 1 and value.dim() == 0):
        return self_device
    accumulate = kwargs.get("accumulate", args[3] if len(args) > 3 else False)
    if self_device.type == "cuda" and accumulate:
        raise rules.value_mismatch(self_device, value_device)
    raise rules.iterator_mismatch(self_device, value_device)


def _masked_fill_device(tensors) -> torch.device:
    self_device, mask_device = device_of(tensors[0][1]), device_of(tensors[1][1])
    if mask_device != self_device:
        raise rules.mask_mismatch(mask_device, self_device)
    return self_device


def op_device(func, args, kwargs, context: torch.device) -> tuple[torch.device, bool]:
    """(device of the op's result, whether to run its composite kernel), or the error CUDA raises."""
    tensors = _tensor_arguments(func, args, kwargs)
    if not tensors:  # a factory inside a kernel: C++ allocates with its inputs' options
        requested = kwargs.get("device")
        return (context if requested is None or torch.device(requested).type == "cpu" else requested), False
    name = func._schema.name.split("::", 1)[-1]
    if name in _COPIES:
        written = [t for _, t, w, _ in tensors if w]
        return device_of(written[0] if written else tensors[0][1]), False
    if all(device_of(t).type == "cpu" for _, t, _, _ in tensors):
        return _CPU, False
    if name in _INDEX_READS:
        return _index_read_device(tensors), False
    if name in _INDEX_WRITES:
        return _index_write_device(func, args, kwargs, tensors), False
    if name in _MASKED_FILLS:
        return _masked_fill_device(tensors), False
    rule = rules.rule_for(func)
    if rule is None or rule.kind is Kind.NO_CHECK:
        return _iterator_device(tensors), False
    if rule.kind is Kind.CHECKED:
        return _checked_device(tensors, rule.wrapper), False
    if rule.kind is Kind.COMPOSITE:
        return device_of(tensors[0][1]), True
    raise rules.no_cuda_kernel(func)


class DeviceCheckMode(TorchDispatchMode):
    """Runs aten ops on the CPU data while tracking and checking the simulated device of each tensor."""

    def __init__(self, context: torch.device):
        super().__init__()
        self.contexts = [context]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        device, composite = op_device(func, args, kwargs, self.contexts[-1])
        if composite:
            self.contexts.append(device)
            try:
                with self:
                    return func._op_dk(_COMPOSITE_KEY, *args, **kwargs)
            finally:
                self.contexts.pop()
        if "device" in kwargs and kwargs["device"] is not None:
            kwargs = {**kwargs, "device": _CPU}
        out = func(*args, **kwargs)
        _tag(out, device, args)
        return out


def _tag(out, device: torch.device, args) -> None:
    if isinstance(out, torch.Tensor):
        if not any(out is a for a in args):
            out._sim_device = device
    elif isinstance(out, (tuple, list)):
        for item in out:
            _tag(item, device, args)
