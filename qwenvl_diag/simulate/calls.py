"""What every torch call does under the simulation (the fast path, and the calls that move data).

A call whose tensors are all on one simulated GPU runs on the CPU data and its fresh results are put
on that GPU: no device rule can fail there. Calls that name a device (`.to`, `.cuda`, `.cpu`,
factories with `device=`) are handled here; calls that mix devices go to `checker`.
"""

from __future__ import annotations

from functools import partial

import torch

from . import dtensor, state
from .checker import KERNEL_CHECKS, DeviceCheckMode
from .rng import RANDOM_CALLS, device_generator
from .tensor import SimTensor, adopt, device_of, handle_calls_with, move_in_place

_DISABLE = torch._C.DisableTorchFunctionSubclass
_CPU = torch.device("cpu")
_Tensor = torch.Tensor


def _devices(args, kwargs) -> set:
    found = set()
    for value in (*args, *kwargs.values()):
        if isinstance(value, _Tensor):
            found.add(value.device)
        elif type(value) in (list, tuple):
            for item in value:
                if isinstance(item, _Tensor):
                    found.add(item.device)
    return found


def handle(func, args: tuple, kwargs: dict):
    """Run one torch call (a function, method or property) the way a CUDA machine would."""
    special = _SPECIAL.get(func)
    if special is not None:
        return special(args, kwargs)
    if dtensor.DTENSOR is not None and dtensor.has_shards(args, kwargs):
        return dtensor.dtensor_call(func, args, kwargs)
    return _run(func, args, kwargs)


def _run(func, args: tuple, kwargs: dict):
    if kwargs.get("device") is not None:
        return _with_device(func, args, kwargs)
    devices = _devices(args, kwargs)
    if len(devices) > 1:
        return _mixed(func, args, kwargs, devices)
    device = next(iter(devices)) if devices else _CPU
    if device.type != "cuda":
        with _DISABLE():
            return func(*args, **kwargs)
    if func in RANDOM_CALLS and kwargs.get("generator") is None:
        with _DISABLE(), device_generator(device):
            return adopt(func(*args, **kwargs), device)
    with _DISABLE():
        return adopt(func(*args, **kwargs), device)


def _mixed(func, args, kwargs, devices):
    kernel_check = KERNEL_CHECKS.get(func)
    device = kernel_check(args, kwargs) if kernel_check is not None else None
    if device is not None:
        with _DISABLE():
            out = func(*args, **kwargs)
        return adopt(out, device) if device.type == "cuda" else out
    context = next((d for d in devices if d.type == "cuda"), _CPU)
    with _DISABLE(), DeviceCheckMode(context):
        out = func(*args, **kwargs)
    return _settle(out, args)


def _settle(out, args):
    """Results of a checked call: tensors tagged with a simulated device become SimTensors."""
    if isinstance(out, _Tensor):
        device = out.__dict__.pop("_sim_device", None) if type(out) is _Tensor else None
        if device is not None and device.type == "cuda":
            return adopt(out, device)
        return out
    if isinstance(out, (tuple, list)):
        kind = type(out)
        items = [_settle(item, args) for item in out]
        return kind(items) if kind in (tuple, list) or not hasattr(out, "_fields") else kind(*items)
    return out


def _unaliased(out, args):
    """`out`, copied where a factory handed back (a view of) one of its CPU inputs."""
    if not isinstance(out, _Tensor):
        return out
    pointer = _Tensor.untyped_storage(out).data_ptr()
    for value in args:
        if isinstance(value, _Tensor) and _Tensor.untyped_storage(value).data_ptr() == pointer:
            return out.clone()
    return out


def _with_device(func, args, kwargs):
    """Factories and `*_like` / `new_*` calls that name their device."""
    target = state.cuda_device(kwargs["device"])
    with _DISABLE():
        if target is None:
            return func(*args, **kwargs)
        if func in RANDOM_CALLS and kwargs.get("generator") is None:
            with device_generator(target):
                out = func(*args, **{**kwargs, "device": _CPU})
        else:
            out = func(*args, **{**kwargs, "device": _CPU})
        return adopt(_unaliased(out, args), target)


def _from_data(func, args, kwargs):
    """`torch.tensor`, `Tensor.new_tensor`, `torch.as_tensor` and `torch.asarray` of a tensor.

    torch/csrc/utils/tensor_new.cpp: `internal_new_from_data` returns `var.to(device_opt or var.device(),
    ...)` (a copy for `tensor` / `new_tensor`, copy_variables=true; an alias when nothing changes for
    `as_tensor`), and `asarray` calls `tensor.to(device.value_or(tensor.device()), ...)`, refusing
    copy=False when `device != tensor.device()`. So the result is on `device=` when given, else on the
    data's device (not on `self`'s for `new_tensor`). Other data (lists, numpy, even of GPU tensors) is
    stored on the CPU and moved to the options' device: `device=`, else `self`'s for `new_tensor`, else CPU.
    """
    method = func is _Tensor.new_tensor
    requested = kwargs.get("device")
    if method and _is_bare_cuda(requested) and args[0].device.type == "cuda":
        # THPVariable_new_tensor runs under OptionalDeviceGuard(device_of(self)): "cuda" is self's GPU
        requested = args[0].device
        kwargs = {**kwargs, "device": requested}
    data = args[1] if method else args[0] if args else None
    if not isinstance(data, _Tensor):  # a sequence or array: built on the CPU, then `.to(options' device)`
        if requested is not None:
            return _with_device(func, args, kwargs)
        with _DISABLE():
            out = func(*args, **kwargs)
        home = args[0].device if method else _CPU
        return adopt(out, home) if home.type == "cuda" else out
    target = data.device if requested is None else state.cuda_device(requested) or torch.device(requested)
    rest = {key: value for key, value in kwargs.items() if key != "device"}
    if func is torch.asarray and requested is not None and kwargs.get("copy") is False:
        asked = state.cuda_device(requested) if isinstance(requested, int) else torch.device(requested)
        if asked != data.device:
            raise ValueError(f"can't alias tensor from device '{data.device}' to '{asked}'.")
    if not method and func is not torch.tensor:  # as_tensor / asarray: `.to` first, which may alias
        return _run(func, (move(data, target), *args[1:]), rest)
    with _DISABLE():
        out = func(*args, **rest, device=_CPU)
    if target != data.device:
        _record_transfer(out)
    return adopt(out, target) if target.type == "cuda" else out


def _is_bare_cuda(spec) -> bool:
    return spec is not None and not isinstance(spec, int) and torch.device(spec) == torch.device("cuda")


def _record_transfer(out: _Tensor) -> None:
    simulation = state.active()
    if simulation is not None:
        simulation.transfers += 1
        simulation.transferred_bytes += out.numel() * out.element_size()


def _parse_to(args, kwargs):
    """(device, dtype, copy, memory_format) of a `Tensor.to` call's arguments after `self`."""
    kwargs = dict(kwargs)
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    copy, memory_format = kwargs.pop("copy", False), kwargs.pop("memory_format", None)
    flags = []
    for value in args:
        if isinstance(value, _Tensor):
            device, dtype = value.device, value.dtype
        elif isinstance(value, torch.dtype):
            dtype = value
        elif isinstance(value, bool):
            flags.append(value)
        elif isinstance(value, (str, int, torch.device)):
            device = value
    if len(flags) > 1:
        copy = flags[1]
    return device, dtype, copy, memory_format


def move(tensor: _Tensor, device, dtype=None, copy: bool = False, memory_format=None):
    """`tensor.to(device, dtype)` across real and simulated devices; a real copy when the device changes."""
    current = tensor.device
    if device is None:
        target = current
    else:
        target = state.cuda_device(device) or torch.device(device)
    options = {"dtype": dtype} if dtype is not None else {}
    if memory_format is not None:
        options["memory_format"] = memory_format
    with _DISABLE():
        if target == current:
            out = _Tensor.to(tensor, copy=copy, **options)
            return out if out is tensor or current.type != "cuda" else adopt(out, target)
        if target.type != "cuda":
            return _Tensor.to(tensor, target, copy=True, **options)
        out = _Tensor.to(tensor, _CPU, copy=True, **options)
    _record_transfer(out)
    return adopt(out, target)


def _to(args, kwargs):
    device, dtype, copy, memory_format = _parse_to(args[1:], kwargs)
    return move(args[0], device, dtype, copy, memory_format)


def _cuda(args, kwargs):
    device = args[1] if len(args) > 1 else kwargs.get("device")
    target = state.cuda_device(device if device is not None else "cuda")
    return move(args[0], target, memory_format=kwargs.get("memory_format"))


def _cpu(args, kwargs):
    return move(args[0], _CPU, memory_format=kwargs.get("memory_format"))


def _numpy(args, kwargs):
    tensor = args[0]
    if tensor.device.type == "cuda" and not kwargs.get("force", args[1] if len(args) > 1 else False):
        raise TypeError(
            f"can't convert {tensor.device} device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
            "to host memory first."
        )
    with _DISABLE():
        return _Tensor.numpy(tensor, **kwargs)


def _histc(func, args, kwargs):
    """histc of an integer tensor on a simulated GPU. SummaryOps.cu `_histc_cuda` counts every type
    (AT_DISPATCH_ALL_TYPES; transformers' MoE routing relies on it), the CPU kernel floating types only.
    Counted as `CUDA_tensor_histogram` does, in integers: bin = (x - min) * bins / (max - min), the top edge
    in the last bin, values outside [min, max] dropped; min == max takes the data's range, then widens
    by one each way; the counts have the input's dtype."""
    tensor = args[0]
    if tensor.device.type != "cuda" or tensor.is_floating_point() or tensor.is_complex() or "out" in kwargs:
        return _run(func, args, kwargs)
    defaults = {"bins": 100, "min": 0, "max": 0}
    bins, low, high = (
        args[i] if len(args) > i else kwargs.get(name, value)
        for i, (name, value) in enumerate(defaults.items(), 1)
    )
    with _DISABLE():
        values = _Tensor.reshape(tensor, -1).long()
        low, high = int(low), int(high)
        if low == high and values.numel():
            low, high = int(values.min()), int(values.max())
        if low == high:
            low, high = low - 1, high + 1
        kept = values[(values >= low) & (values <= high)]
        index = ((kept - low) * bins).div(high - low, rounding_mode="floor").clamp(max=bins - 1)
        counts = torch.bincount(index, minlength=bins).to(tensor.dtype)
    return adopt(counts, tensor.device)


def _set_data(args, kwargs):
    """`tensor.data = other` (what `Module.to` does): same Python object, the other's data and device."""
    tensor, value = args
    with _DISABLE():
        _Tensor.data.__set__(tensor, value)
    move_in_place(tensor, device_of(value))


def _pin_memory(args, kwargs):
    # Pinned host memory needs a CUDA driver; the simulated host copy is an ordinary clone.
    with _DISABLE():
        return args[0].clone()


def _is_pinned(args, kwargs):
    return False


def _device(args, kwargs):
    # torch.device(1) means "accelerator 1": under the simulation, the accelerator is CUDA.
    if len(args) == 1 and not kwargs and isinstance(args[0], int) and not isinstance(args[0], bool):
        return torch.device("cuda", args[0])
    return torch.device(*args, **kwargs)


def _parse_module_to(args, kwargs):
    # nn.Module.to(1) parses its arguments here; bare GPU indices become simulated cuda devices.
    args = tuple(state.cuda_device(a) if isinstance(a, int) and not isinstance(a, bool) else a for a in args)
    if isinstance(kwargs.get("device"), int):
        kwargs = {**kwargs, "device": state.cuda_device(kwargs["device"])}
    return torch._C._nn._parse_to(*args, **kwargs)


_SPECIAL = {
    _Tensor.to: _to,
    _Tensor.cuda: _cuda,
    _Tensor.cpu: _cpu,
    _Tensor.numpy: _numpy,
    _Tensor.data.__set__: _set_data,
    _Tensor.pin_memory: _pin_memory,
    _Tensor.is_pinned: _is_pinned,
    torch.device: _device,
    torch._C._nn._parse_to: _parse_module_to,
    **{
        func: partial(_from_data, func)
        for func in (torch.tensor, torch.as_tensor, torch.asarray, _Tensor.new_tensor)
    },
    **{func: partial(_histc, func) for func in (torch.histc, _Tensor.histc)},
}


def is_simulated_call(func, types, kwargs) -> bool:
    """Whether the simulation must handle a call (the mode passes everything else straight through)."""
    if func in _SPECIAL or kwargs.get("device") is not None:
        return True
    return any(issubclass(t, SimTensor) or dtensor.is_dtensor_type(t) for t in types)


handle_calls_with(handle)
