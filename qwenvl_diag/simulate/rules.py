"""PyTorch's device rules for each aten op, read from the installed torch, and its error texts.

What a CUDA build does when one op sees tensors on several devices is decided by how the op is
registered, which the wheel ships in `torchgen/packaged/ATen/native/native_functions.yaml`:
- ops with a CUDA kernel and the default `device_check` get a generated wrapper that checks every
  out and positional tensor argument is on one device (c10::impl::check_and_update_common_device,
  no exemption for CPU scalars);
- `device_check: NoCheck` ops check inside their kernel, almost all through TensorIterator (first
  non-CPU device wins, 0-dim CPU inputs may join);
- ops with only a CompositeExplicitAutograd kernel, or with no dispatch section at all
  (CompositeImplicitAutograd), are checked by the ops they call;
- ops with neither have no CUDA kernel at all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from ..device_errors import SCALAR_TYPE_NAMES


class Kind(enum.Enum):
    CHECKED = "generated device check"
    NO_CHECK = "kernel checks (TensorIterator)"
    COMPOSITE = "composite: inner ops check"
    IMPLICIT = "composite implicit: decomposes into ops that check"
    NO_CUDA_KERNEL = "no CUDA kernel"


@dataclass(frozen=True)
class OpRule:
    kind: Kind
    wrapper: str = ""
    # a structured out= kernel whose meta function sizes `out` from the inputs (no TensorIterator):
    # its generated resize_out refuses an `out` on another device before any kernel check
    checks_out_device: bool = False


def _dispatch_keys(entry: dict) -> set[str]:
    return {key.strip() for keys in (entry.get("dispatch") or {}) for key in keys.split(",")}


def wrapper_name(name: str, overload: str, structured: bool, out_variant: bool) -> str:
    """The generated CUDA wrapper's name, as torchgen (register_dispatch_key.py) spells it."""
    if structured and out_variant:
        return f"wrapper_CUDA_{name}_out_{overload}"
    if structured:
        return f"wrapper_CUDA_{name}_{overload}" if overload else f"wrapper_CUDA_{name}"
    return f"wrapper_CUDA_{overload}_{name}_out" if out_variant else f"wrapper_CUDA_{overload}_{name}"


def _is_out_variant(signature: str) -> bool:
    """Whether a schema has out= arguments (written tensors after the `*`)."""
    arguments = signature.split("(", 1)[1].rsplit(") ->", 1)[0]
    _, star, keyword_only = arguments.partition(", *,") if ", *," in arguments else arguments.partition("*,")
    return bool(star) and "!" in keyword_only


def native_functions_path() -> Path:
    import torchgen

    return Path(torchgen.__file__).parent / "packaged" / "ATen" / "native" / "native_functions.yaml"


@cache
def rule_table() -> dict[str, OpRule]:
    """{"name.overload": OpRule} for every op of the installed torch (parsed once, ~0.3 s)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    entries = yaml.load(native_functions_path().read_text(), Loader=loader)
    by_name = {entry["func"].split("(", 1)[0]: entry for entry in entries}
    table = {}
    for full, entry in by_name.items():
        keys = _dispatch_keys(entry)
        delegate = entry.get("structured_delegate")
        if delegate in by_name:
            keys |= _dispatch_keys(by_name[delegate])
        structured = bool(entry.get("structured") or delegate)
        name, _, overload = full.partition(".")
        no_check = entry.get("device_check") == "NoCheck"
        if "CUDA" in keys:
            kind = Kind.NO_CHECK if no_check else Kind.CHECKED
        elif keys & {"CompositeExplicitAutograd", "CompositeExplicitAutogradNonFunctional"}:
            kind = Kind.COMPOSITE
        elif not keys or "CompositeImplicitAutograd" in keys:
            # no dispatch section: torchgen registers the kernel as CompositeImplicitAutograd, so a CUDA
            # build runs its decomposition (thnn_conv2d -> _slow_conv2d_forward) rather than failing
            kind = Kind.IMPLICIT
        else:
            kind = Kind.NO_CHECK if no_check else Kind.NO_CUDA_KERNEL
        out_variant = _is_out_variant(entry["func"])
        checks_out = (
            bool(entry.get("structured")) and entry.get("structured_inherits") != "TensorIteratorBase"
        )
        table[full] = OpRule(
            kind, wrapper_name(name, overload, structured, out_variant), out_variant and checks_out
        )
    return table


def rule_for(func: torch._ops.OpOverload) -> OpRule | None:
    """The rule of an aten op overload, or None for ops the yaml does not declare."""
    name = func._schema.name.split("::", 1)[-1]
    overload = func._overloadname
    return rule_table().get(name if overload == "default" else f"{name}.{overload}")


# The texts below are torch 2.x's (strings in libtorch_cpu.so: adaption.cpp, TensorIterator.cpp,
# TensorAdvancedIndexing.cpp, cuda/Indexing.cu).
def checked_mismatch(argument: str, device, common, wrapper: str) -> RuntimeError:
    return RuntimeError(
        f"Expected all tensors to be on the same device, but got {argument} is on {device}, different "
        f"from other tensors on {common} (when checking argument in method {wrapper})"
    )


def iterator_mismatch(common, other) -> RuntimeError:
    return RuntimeError(
        "Expected all tensors to be on the same device, but found at least two devices, "
        f"{common} and {other}!"
    )


def index_mismatch(self_device) -> RuntimeError:
    return RuntimeError(
        f"indices should be either on cpu or on the same device as the indexed tensor ({self_device})"
    )


def mask_mismatch(mask_device, self_device) -> RuntimeError:
    return RuntimeError(
        "expected self and mask to be on the same device, but got mask on "
        f"{mask_device} and self on {self_device}"
    )


def too_many_cpu_scalars() -> RuntimeError:
    return RuntimeError("Trying to pass too many CPU scalars to non-CPU kernel!")


def out_mismatch(expected, out) -> RuntimeError:
    return RuntimeError(f"Expected out tensor to have device {expected}, but got {out} instead")


def sdpa_mismatch(query, key, value) -> RuntimeError:
    return RuntimeError(
        "Expected query, key, and value to have the same device type, but got "
        f"query.device: {query} key.device: {key} and value.device: {value} instead."
    )


def masked_fill_cpu_self() -> RuntimeError:
    return RuntimeError("masked_fill_: Expected inputs to be on same device")


def value_mismatch(self_device, value_device) -> RuntimeError:
    return RuntimeError(f"expected device {self_device} but got device {value_device} for value tensor")


_DISPATCH_KEY_NAMES = {"cuda": "CUDA", "cpu": "CPU", "meta": "Meta"}


def tensor_type_name(device: torch.device, dtype: torch.dtype) -> str:
    """`Tensor::toString()` (aten/src/ATen/core/Tensor.cpp): the dispatch key's name, the scalar type's
    name and "Type", e.g. "CUDABFloat16Type" (for a dense tensor the dispatch key is the device type's)."""
    return f"{_DISPATCH_KEY_NAMES[device.type]}{SCALAR_TYPE_NAMES[str(dtype).removeprefix('torch.')]}Type"


def convolution_type_mismatch(input_type: str, parameter: str, other_type: str, mkldnn: bool) -> RuntimeError:
    """Convolution.cpp check_input_same_type_as_parameters; the MKLDNN backend's variant allows an
    MKLDNN input with a dense CPU float parameter and says so."""
    text = f"Input type ({input_type}) and {parameter} type ({other_type}) should be the same"
    if mkldnn:
        text += f" or input should be a MKLDNN tensor and {parameter} is a dense tensor"
    return RuntimeError(text)


def no_cuda_kernel(func) -> NotImplementedError:
    return NotImplementedError(
        f"Could not run '{func._schema.name}' with arguments from the 'CUDA' backend. This could be because "
        "the operator doesn't exist for this backend, or was omitted during the selective/custom build "
        "process."
    )
