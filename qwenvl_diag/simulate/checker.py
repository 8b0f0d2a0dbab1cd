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
_COMPOSITE_KEYS = {
    Kind.COMPOSITE: torch._C.DispatchKey.CompositeExplicitAutograd,
    Kind.IMPLICIT: torch._C.DispatchKey.CompositeImplicitAutograd,
}

# Copies move data between devices by design: no device check (ATen copy_ / _to_copy).
_COPIES = {"copy_", "_copy_from", "_copy_from_and_resize", "_to_copy", "lift_fresh", "lift_fresh_copy"}
# Advanced indexing accepts CPU indices (index's meta: check_indices_on_cpu_or_selfdevice).
_INDEX_READS = {"index", "_unsafe_index"}
# index_put moves indices to self's device; a 1-element 0-dim value may come from anywhere
# (_index_put_impl_), other values must be on self's device (TensorIterator / index_put_with_sort).
_INDEX_WRITES = {"_index_put_impl_", "index_put_", "index_put", "_unsafe_index_put"}
_MASKED_FILLS = {"masked_fill_"}
# Aliases of their one input (autograd's AccumulateGrad detaches each gradient): no device check, and
# their CompositeExplicitAutograd kernel re-dispatches to themselves, so they are never run through it.
_ALIASES = {"detach", "alias"}


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


def _iterator_device(tensors, cpu_scalars: int = 1) -> torch.device:
    """TensorIterator: outputs first; the first non-CPU device is common; up to `cpu_scalars` 0-dim CPU
    inputs may join a non-CPU kernel (binary and comparison ops allow one)."""
    ordered = [t for t in tensors if t[2]] + [t for t in tensors if not t[2]]
    devices = [(device_of(t), written, t.dim()) for _, t, written, _ in ordered]
    common = next((d for d, _, _ in devices if d.type != "cpu"), devices[0][0])
    for device, written, dim in devices:
        if device == common:
            continue
        if common.type != "cpu" and not written and dim == 0 and device.type == "cpu":
            cpu_scalars -= 1
            if cpu_scalars < 0:
                raise rules.too_many_cpu_scalars()
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


def _check_out_device(tensors) -> None:
    """Structured out= kernels sized by their meta function: `out` must be where the inputs are."""
    inputs = [t for t in tensors if not t[2]]
    outputs = [t for t in tensors if t[2]]
    if inputs and outputs:
        expected = _iterator_device(inputs)
        for _, out, _, _ in outputs:
            if device_of(out) != expected:
                raise rules.out_mismatch(expected, device_of(out))


def _index_read_device(tensors) -> torch.device:
    """TensorAdvancedIndexing.cpp, index.Tensor's meta function: check_indices_on_cpu_or_selfdevice."""
    self_device = device_of(tensors[0][1])
    for _, index, _, _ in tensors[1:]:
        device = device_of(index)
        if device.type != "cpu" and device != self_device:
            raise rules.index_mismatch(self_device)
    return self_device


def _dispatches_to_masked_fill(indices, value, self_device) -> bool:
    """canDispatchToMaskedFill (TensorAdvancedIndexing.cpp): a 1-element CPU value and, as the only index,
    a bool or uint8 mask on self's device."""
    return (
        value.numel() == 1
        and device_of(value).type == "cpu"
        and len(indices) == 1
        and indices[0].dtype in (torch.bool, torch.uint8)
        and device_of(indices[0]) == self_device
    )


def _index_write_device(func, args, kwargs, tensors) -> torch.device:
    """TensorAdvancedIndexing.cpp _index_put_impl_: without accumulate, a masked write of a 1-element CPU
    value becomes masked_fill_(value.item()); else a 0-dim 1-element value is moved to self's device and
    the indices too (make_info); CUDA's accumulate (or deterministic) path checks the value's device before
    index_put_with_sort; otherwise make_index_put_iterator's TensorIterator (self is its output) checks."""
    self_tensor = tensors[0][1]
    self_device = device_of(self_tensor)
    value = next(t for name, t, _, _ in tensors if name == "values")
    indices = [t for name, t, _, _ in tensors if name == "indices"]
    accumulate = kwargs.get("accumulate", args[3] if len(args) > 3 else False)
    if not accumulate and _dispatches_to_masked_fill(indices, value, self_device):
        return self_device
    if device_of(value) == self_device or (value.numel() == 1 and value.dim() == 0):
        return self_device
    if self_device.type == "cuda" and (accumulate or torch.are_deterministic_algorithms_enabled()):
        raise rules.value_mismatch(self_device, device_of(value))
    return _iterator_device([("self", self_tensor, True, False), ("values", value, False, False)], 0)


def _masked_fill_device(tensors) -> torch.device:
    """cuda/Indexing.cu masked_fill__cuda, reached when any of self, mask, value is on a GPU: the Tensor
    overload refuses a CPU self, then reads value.item() (any device) into the Scalar overload, which
    requires the mask on self's device."""
    self_device, mask_device = device_of(tensors[0][1]), device_of(tensors[1][1])
    if len(tensors) > 2 and self_device.type == "cpu":
        raise rules.masked_fill_cpu_self()
    if mask_device != self_device:
        raise rules.mask_mismatch(mask_device, self_device)
    return self_device


def _where_device(tensors) -> torch.device:
    """TensorCompare.cpp where / where_self_out: out_device(condition, self, other) is the first non-CPU
    of the three (also with out=); 0-dim operands on any other device are moved there; `where` allocates
    its result there; then TensorIterator (outputs first, no CPU scalars) checks the rest."""
    outputs = [t for _, t, written, _ in tensors if written]
    inputs = [t for _, t, written, _ in tensors if not written]
    target = next((device_of(t) for t in inputs if device_of(t).type != "cpu"), _CPU)
    remaining = [
        (name, t, written, kw)
        for name, t, written, kw in tensors
        if written or target.type == "cpu" or device_of(t) == target or t.dim() != 0
    ]
    if not outputs:
        remaining.insert(0, ("out", _Placeholder(target), True, True))
    return _iterator_device(remaining, cpu_scalars=0)


class _Placeholder:
    """Stands for the output `where` allocates on its target device."""

    def __init__(self, device: torch.device):
        self._sim_device = device

    def dim(self) -> int:
        return 1


def op_device(func, args, kwargs, context: torch.device) -> tuple[torch.device, torch._C.DispatchKey | None]:
    """(device of the op's result, the composite kernel to run it through or None), or the error CUDA
    raises."""
    tensors = _tensor_arguments(func, args, kwargs)
    if not tensors:  # a factory inside a kernel: C++ allocates with its inputs' options
        requested = kwargs.get("device")
        return (context if requested is None or torch.device(requested).type == "cpu" else requested), None
    name = func._schema.name.split("::", 1)[-1]
    if name in _ALIASES:
        return device_of(tensors[0][1]), None
    if name in _COPIES:
        written = [t for _, t, w, _ in tensors if w]
        return device_of(written[0] if written else tensors[0][1]), None
    if all(device_of(t).type == "cpu" for _, t, _, _ in tensors):
        return _CPU, None
    if name in _INDEX_READS:
        return _index_read_device(tensors), None
    if name in _INDEX_WRITES:
        return _index_write_device(func, args, kwargs, tensors), None
    if name in _MASKED_FILLS:
        return _masked_fill_device(tensors), None
    if name == "where":
        return _where_device(tensors), None
    rule = rules.rule_for(func)
    if rule is not None and rule.kind is Kind.NO_CHECK and rule.checks_out_device:
        _check_out_device(tensors)
    if rule is None or rule.kind is Kind.NO_CHECK:
        return _iterator_device(tensors), None
    if rule.kind is Kind.CHECKED:
        return _checked_device(tensors, rule.wrapper), None
    if rule.kind in _COMPOSITE_KEYS:
        return device_of(tensors[0][1]), _COMPOSITE_KEYS[rule.kind]
    raise rules.no_cuda_kernel(func)


class DeviceCheckMode(TorchDispatchMode):
    """Runs aten ops on the CPU data while tracking and checking the simulated device of each tensor."""

    def __init__(self, context: torch.device):
        super().__init__()
        self.contexts = [context]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        device, composite = op_device(func, args, kwargs, self.contexts[-1])
        if composite is not None:
            self.contexts.append(device)
            try:
                with self:
                    return func._op_dk(composite, *args, **kwargs)
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


# Calls whose CUDA path runs a kernel the CPU decomposition never reaches: the check that kernel's
# generated wrapper (or its own code) does, applied to the call's arguments before running it on the CPU.
# Each returns the result's device, raises CUDA's error, or returns None where the CPU decomposition is
# the one CUDA runs too (then the call is replayed op by op).
def _argument(args, kwargs, position: int, name: str):
    return args[position] if len(args) > position else kwargs.get(name)


def _named(*pairs) -> list:
    return [(name, t, False, False) for name, t in pairs if isinstance(t, torch.Tensor)]


def _sdpa_device(args, kwargs) -> torch.device | None:
    """attention.cpp scaled_dot_product_attention: validate_sdpa_input (dtypes, then devices) before any
    backend is chosen; then the chosen kernel's check. Which kernel runs depends on the GPU and the sdp
    settings; simulated as the memory-efficient one (the one that takes a mask in fp32 and bf16). Mixed
    dtypes: the CPU replay raises validate_sdpa_input's own dtype error first (None)."""
    query, key, value = (_argument(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
    if not query.dtype == key.dtype == value.dtype:
        return None
    devices = [device_of(query), device_of(key), device_of(value)]
    if len(set(devices)) > 1:
        raise rules.sdpa_mismatch(*devices)
    mask = _argument(args, kwargs, 3, "attn_mask")
    wrapper = rules.rule_table()["_scaled_dot_product_efficient_attention"].wrapper
    return _checked_device(
        _named(("query", query), ("key", key), ("value", value), ("attn_bias", mask)), wrapper
    )


def _rms_norm_device(args, kwargs) -> torch.device | None:
    """layer_norm.cpp rms_norm_symint: a weight of the input's dtype goes to _fused_rms_norm, which on CUDA
    is its own kernel (generated check of input and weight; on the CPU it is the composite). A complex
    input or a weight of another dtype takes rms_norm_composite on every device: the CPU replay (None)."""
    source, weight = _argument(args, kwargs, 0, "input"), _argument(args, kwargs, 2, "weight")
    if source.is_complex() or (isinstance(weight, torch.Tensor) and weight.dtype != source.dtype):
        return None
    tensors = _named(("input", source), ("weight", weight))
    return _checked_device(tensors, rules.rule_table()["_fused_rms_norm"].wrapper)


def _expanded(value, dim: int) -> list[int]:
    return (
        list(value) * (dim if len(value) == 1 else 1) if isinstance(value, (list, tuple)) else [value] * dim
    )


def _same_types(source, weight, bias, mkldnn: bool) -> None:
    """Convolution.cpp check_input_same_type_as_parameters: `type_equal` compares backend and dtype
    (cuda:0 and cuda:1 are one type), weight first, then bias."""
    source_type = rules.tensor_type_name(device_of(source), source.dtype)
    for parameter, tensor in (("weight", weight), ("bias", bias)):
        if not isinstance(tensor, torch.Tensor):
            continue
        other_type = rules.tensor_type_name(device_of(tensor), tensor.dtype)
        if other_type != source_type:
            raise rules.convolution_type_mismatch(source_type, parameter, other_type, mkldnn)


def _is_cuda_depthwise(source, weight, groups: int) -> bool:
    """ConvParams::is_depthwise, and use_cudnn_depthwise false: its cuDNN kernels are for channels-last
    or fp16 inputs only."""
    channels = source.shape[source.dim() - weight.dim() + 1]  # an unbatched input is batchified first
    return (
        weight.dim() in (4, 5)
        and channels == groups > 1
        and weight.shape[0] % channels == 0
        and source.dtype != torch.float16
        and source.is_contiguous()
    )


def _host(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor`, or an uninitialised CPU tensor of its layout when its data is elsewhere (the tracer's
    shape-only meta copies): backend selection reads sizes, dtype and the real device only."""
    if torch.Tensor.device.__get__(tensor).type == "cpu":
        return tensor
    return torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype)


def _convolution_device(args, kwargs) -> torch.device | None:
    """Convolution.cpp `_convolution`: `_select_conv_backend` looks at the input alone.

    A CUDA input takes cuDNN (the standard wheel: cuDNN present and enabled), whose branch first runs
    check_input_same_type_as_parameters (so a CPU weight or bias is a type error), then cudnn_convolution's
    generated check (input and weight on two GPUs), then adds the bias in place (TensorIterator); a
    depthwise one takes the CUDA depthwise kernel and its generated check. A CPU input takes the backend the
    CPU build picks for it (`torch._C._select_conv_backend`, same data, same host): MKLDNN runs its variant
    of the type check; the others (thnn, slow_conv3d) are left to the op-by-op replay (None).
    """
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    source, weight, bias, stride, padding, dilation, groups = (
        _argument(args, kwargs, i, name) for i, name in enumerate(names)
    )
    groups = 1 if groups is None else groups
    bias = bias if isinstance(bias, torch.Tensor) else None
    if device_of(source).type == "cuda":
        if _is_cuda_depthwise(source, weight, groups):
            name = "_conv_depthwise2d" if weight.dim() == 4 else "conv_depthwise3d"
            tensors = _named(("self", source), ("weight", weight), ("bias", bias))
            return _checked_device(tensors, rules.rule_table()[name].wrapper)
        _same_types(source, weight, bias, mkldnn=False)
        device = _checked_device(
            _named(("self", source), ("weight", weight)), rules.rule_table()["cudnn_convolution"].wrapper
        )
        if bias is not None:
            _iterator_device([("self", _Placeholder(device), True, False), ("other", bias, False, False)])
        return device
    dim = weight.dim() - 2
    # padding="same"/"valid" give the same backend as 0: only use_nnpack reads padding (< kernel size)
    numeric_padding = 0 if isinstance(padding, str) or padding is None else padding
    with torch._C.DisableTorchFunctionSubclass():
        batched = _host(source) if source.dim() == weight.dim() else _host(source).unsqueeze(0)
        backend = torch._C._select_conv_backend(
            batched,
            _host(weight),
            None if bias is None else _host(bias),
            _expanded(1 if stride is None else stride, dim),
            _expanded(numeric_padding, dim),
            _expanded(1 if dilation is None else dilation, dim),
            False,
            [0] * dim,
            groups,
            None,
        )
    if backend == torch._C._ConvBackend.Mkldnn:
        _same_types(source, weight, bias, mkldnn=True)
    return None


KERNEL_CHECKS = {
    torch.nn.functional.scaled_dot_product_attention: _sdpa_device,
    torch.nn.functional.rms_norm: _rms_norm_device,
    torch.rms_norm: _rms_norm_device,
    torch.conv1d: _convolution_device,
    torch.conv2d: _convolution_device,
    torch.conv3d: _convolution_device,
}
