"""Conformance table for the simulated GPUs (issue 3).

Each row runs one op on tensors placed on cpu / cuda:0 / cuda:1 under ``qd.simulated_gpus(2)`` and asserts
what a real two-GPU CUDA machine running the installed torch (2.14.1) does: either "ok" with the device of
the result (and, where it matters, values equal to the same op on plain CPU), or the exact error message.

Every expectation is derived from PyTorch's own source and the shipped binaries, never from the simulator:

* codegen'd device check (``torchgen/dest/register_dispatch_key.py`` ``gen_device_check``; the message is
  ``c10::impl::common_device_check_failure`` in ``aten/src/ATen/core/adaption.cpp``): every op *without*
  ``device_check: NoCheck`` in ``native_functions.yaml`` gets, in its generated CUDA wrapper, a check of the
  ``out`` arguments first and then every positional tensor argument (kw-only ones are skipped) against the
  device of the first defined one. No CPU-scalar exemption. Wrapper names are the strings in
  ``libtorch_cuda.so`` (``wrapper_CUDA_mm``, ``wrapper_CUDA__index_select``, ...).
* TensorIterator (``aten/src/ATen/TensorIterator.cpp`` ``compute_types``), for ``NoCheck`` ops: operands are
  outputs first, then inputs; the common device is the first non-CPU operand; an *input* that is a 0-dim
  CPU tensor may join a non-CPU kernel when the config allows CPU scalars (binary and comparison ops do;
  at most one), everything else on another device raises.
* Indexing (``TensorAdvancedIndexing.cpp``, ``TensorAdvancedIndexingUtils.h``, ``IndexingUtils.h`` shipped in
  ``torch/include``): ``index`` accepts indices on cpu or on self's device; ``index_put_`` moves indices (and
  a 0-dim value) to self's device.
* Conversions (``torch/csrc/utils/tensor_new.cpp`` ``internal_new_from_data`` and ``asarray``;
  ``python_variable_methods.cpp`` ``THPVariable_new_tensor``, which runs under ``OptionalDeviceGuard``
  of self): a tensor's data goes to ``device=`` if given, else stays on the data's own device.
* Convolution (``Convolution.cpp`` ``_convolution``): ``_select_conv_backend`` looks at the input only;
  the cuDNN and MKLDNN branches call ``check_input_same_type_as_parameters`` (``Tensor::toString()``
  names: dispatch key + ``c10::toString(ScalarType)`` + "Type") before any device check. For a CPU input
  the backend is the one this host's CPU build picks; the rows use shapes whose choice does not depend on
  the CPU (float32, strided or kernel over 3x3 for MKLDNN; 3x3, batch 1, tiny for thnn).
* A real machine here means the standard CUDA wheel: cuDNN present and enabled (convolution picks
  ``ConvBackend::Cudnn`` for a non-depthwise CUDA input, bf16 included with cuDNN >= 8), default
  (non-deterministic) algorithms unless a row turns deterministic ones on.

Left out on purpose: ``scaled_dot_product_attention`` with q/k/v on one GPU and ``attn_mask`` on another
device. ``validate_sdpa_input`` does not look at the mask's device, so which error a real machine raises
depends on the backend ``_fused_sdp_choice_cuda`` picks (cuDNN / flash / memory-efficient / math), i.e. on
the GPU architecture and the sdp settings. Mixed q/k/v devices are included: that check runs first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import qwenvl_diag as qd

CPU, C0, C1 = "cpu", "cuda:0", "cuda:1"
GiB = 1024**3
MiB = 1024**2


def ti(common: str, other: str) -> str:
    """TensorIterator's message (``TensorIteratorBase::compute_types``)."""
    return (
        "Expected all tensors to be on the same device, but found at least two devices, "
        f"{common} and {other}!"
    )


def cg(arg: str, device: str, common: str, wrapper: str) -> str:
    """The generated wrapper's message (``c10::impl::common_device_check_failure``)."""
    return (
        f"Expected all tensors to be on the same device, but got {arg} is on {device}, "
        f"different from other tensors on {common} (when checking argument in method {wrapper})"
    )


def index_msg(self_device: str) -> str:
    """``check_indices_on_cpu_or_selfdevice`` in the meta function of ``index.Tensor``."""
    return f"indices should be either on cpu or on the same device as the indexed tensor ({self_device})"


def sdpa_msg(q: str, k: str, v: str) -> str:
    """``validate_sdpa_input`` (aten/src/ATen/native/transformers/attention.cpp)."""
    return (
        "Expected query, key, and value to have the same device type, but got "
        f"query.device: {q} key.device: {k} and value.device: {v} instead."
    )


def mask_msg(mask: str, self_device: str) -> str:
    """``masked_fill__cuda`` (Scalar overload) in aten/src/ATen/native/cuda/Indexing.cu."""
    return (
        f"expected self and mask to be on the same device, but got mask on {mask} and self on {self_device}"
    )


class Env:
    """Builds a row's inputs.

    ``real=True``: under the simulator, devices as written. ``real=False``: the plain-CPU reference run, every
    device mapped to cpu. Inputs come from one seeded CPU generator, so both runs see the same numbers.
    """

    def __init__(self, real: bool) -> None:
        self.real = real
        self._gen = torch.Generator().manual_seed(0)

    def dev(self, device: str) -> str:
        return device if self.real else CPU

    def randn(self, *shape: int, on: str = C0) -> torch.Tensor:
        return torch.randn(shape, generator=self._gen).to(self.dev(on))

    def t(self, data: Any, on: str = C0, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.tensor(data, dtype=dtype).to(self.dev(on))


REF = "ref"  # compare values with the same function run on plain CPU


@dataclass(frozen=True)
class Ok:
    device: str
    values: Any = REF  # REF, None (not compared) or a function Env -> expected CPU tensor

    def __str__(self) -> str:
        return f"ok on {self.device}"


@dataclass(frozen=True)
class Value:
    value: Any

    def __str__(self) -> str:
        return f"returns {self.value!r}"


@dataclass(frozen=True)
class Err:
    message: str
    exc: type[BaseException] = RuntimeError

    def __str__(self) -> str:
        return f"{self.exc.__name__}: {self.message}"


@dataclass(frozen=True)
class Row:
    id: str
    fn: Callable[[Env], Any]
    expect: Ok | Value | Err
    reason: str


ROWS: list[Row] = []


def row(id: str, fn: Callable[[Env], Any], expect: Ok | Value | Err, reason: str) -> None:
    ROWS.append(Row(id, fn, expect, reason))


# --------------------------------------------------------------------------------------------------------
# Elementwise ops (TensorIterator, BINARY_OP_CONFIG: allow_cpu_scalars(true))
# --------------------------------------------------------------------------------------------------------
row(
    "add_cuda0_plus_cpu_0dim",
    lambda e: e.randn(2, 3) + e.randn(on=CPU),
    Ok(C0),
    "TensorIterator: a 0-dim CPU input may join a CUDA kernel as a scalar (allow_cpu_scalars)",
)
row(
    "add_cpu_0dim_plus_cuda0",
    lambda e: e.randn(on=CPU) + e.randn(2, 3),
    Ok(C0),
    "the common device is the first non-CPU operand, so argument order does not matter",
)
row(
    "mul_cuda1_by_cpu_int_0dim",
    lambda e: e.randn(2, 3, on=C1) * e.t(3, on=CPU),
    Ok(C1),
    "CPU 0-dim exemption holds for any dtype; the result lives on the CUDA operand's device",
)
row(
    "cuda0_0dim_plus_cpu_tensor",
    lambda e: e.randn(on=C0) + e.randn(2, 3, on=CPU),
    Err(ti(C0, CPU)),
    "only CPU 0-dim tensors are exempt; a CUDA 0-dim makes cuda:0 common and the CPU tensor fails (#119609)",
)
row(
    "cpu_tensor_plus_cuda0_0dim",
    lambda e: e.randn(2, 3, on=CPU) + e.randn(on=C0),
    Err(ti(C0, CPU)),
    "pytorch#119609 the other way round: the CUDA 0-dim still sets the common device",
)
row(
    "cuda0_plus_cpu_one_element_1d",
    lambda e: e.randn(2, 3) + e.randn(1, on=CPU),
    Err(ti(C0, CPU)),
    "the exemption tests dim() == 0, not numel() == 1",
)
row(
    "cuda0_plus_cpu_tensor",
    lambda e: e.randn(2, 3) + e.randn(2, 3, on=CPU),
    Err(ti(C0, CPU)),
    "a non-scalar CPU input on a CUDA kernel is rejected",
)
row(
    "cpu_tensor_plus_cuda0",
    lambda e: e.randn(2, 3, on=CPU) + e.randn(2, 3),
    Err(ti(C0, CPU)),
    "common device = first non-CPU operand, so cuda:0 is named first although the CPU tensor came first",
)
row(
    "cuda0_plus_cuda1",
    lambda e: e.randn(2, 3) + e.randn(2, 3, on=C1),
    Err(ti(C0, C1)),
    "two GPUs in one TensorIterator op",
)
row(
    "cuda1_minus_cuda0",
    lambda e: torch.sub(e.randn(2, 3, on=C1), e.randn(2, 3)),
    Err(ti(C1, C0)),
    "the first non-CPU operand (self, cuda:1) is the common device",
)
row(
    "cuda0_plus_cuda1_0dim",
    lambda e: e.randn(2, 3) + e.randn(on=C1),
    Err(ti(C0, C1)),
    "the scalar exemption is for CPU tensors only, not 0-dim tensors on another GPU",
)
row(
    "cuda0_0dim_plus_cpu_0dim",
    lambda e: e.randn(on=C0) + e.randn(on=CPU),
    Ok(C0),
    "one CPU scalar with a CUDA 0-dim tensor: common device cuda:0, the CPU scalar is allowed",
)
row(
    "two_cpu_scalars_into_cuda_out",
    lambda e: torch.add(e.randn(on=CPU), e.randn(on=CPU), out=e.randn(on=C0)),
    Err("Trying to pass too many CPU scalars to non-CPU kernel!"),
    "the CUDA out= sets the common device; max_cpu_scalars_on_non_cpu is 1 (TensorIterator.cpp)",
)
row(
    "mul_same_gpu",
    lambda e: torch.mul(e.randn(2, 3, on=C1), e.randn(2, 3, on=C1)),
    Ok(C1),
    "same device: runs, result on that device",
)


def _python_rmsnorm(e: Env) -> torch.Tensor:
    # Qwen2RMSNorm.forward: `self.weight * hidden_states.to(input_dtype)` with the weight on another GPU.
    weight, hidden = e.randn(3, on=C1), e.randn(2, 3, on=C0)
    normed = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + 1e-6)
    return weight * normed


row(
    "python_rmsnorm_weight_on_other_gpu",
    _python_rmsnorm,
    Err(ti(C1, C0)),
    "the final `weight * hidden` mul: weight (first operand, cuda:1) is the common device",
)

# --------------------------------------------------------------------------------------------------------
# Comparisons (set_up_comparison_op_config: allow_cpu_scalars(true))
# --------------------------------------------------------------------------------------------------------
row(
    "gt_cuda0_vs_cpu_0dim",
    lambda e: e.randn(3) > e.randn(on=CPU),
    Ok(C0),
    "comparison TensorIterator allows one CPU 0-dim input; bool result on cuda:0",
)
row(
    "eq_cuda0_vs_cpu_tensor",
    lambda e: torch.eq(e.randn(3), e.randn(3, on=CPU)),
    Err(ti(C0, CPU)),
    "a non-scalar CPU operand of a CUDA comparison is rejected",
)
row(
    "eq_cpu_tensor_vs_cuda0",
    lambda e: e.randn(3, on=CPU) == e.randn(3),
    Err(ti(C0, CPU)),
    "same error whatever the order: common device = first non-CPU operand",
)


def _arange_vs_other_gpu(e: Env) -> torch.Tensor:
    x, t = e.randn(5, on=C0), e.randn(5, on=C1)
    return torch.arange(5, device=x.device) > t


row(
    "arange_on_x_device_gt_tensor_on_other_gpu",
    _arange_vs_other_gpu,
    Err(ti(C0, C1)),
    "arange(device=x.device) lands on x's GPU; comparing with a tensor on another GPU fails",
)
row(
    "arange_lt_cuda1_0dim",
    lambda e: torch.arange(5, device=e.dev(C0)) < e.randn(on=C1),
    Err(ti(C0, C1)),
    "a 0-dim tensor on another GPU is not a CPU scalar",
)
row(
    "cpu_0dim_lt_cuda1",
    lambda e: e.randn(on=CPU) < e.randn(3, on=C1),
    Ok(C1),
    "CPU scalar first, CUDA tensor second: result on the CUDA tensor's device",
)

# --------------------------------------------------------------------------------------------------------
# In-place ops (the output is operand 0 of the TensorIterator and never gets the CPU-scalar exemption)
# --------------------------------------------------------------------------------------------------------
row(
    "add_inplace_cuda0_from_cuda1",
    lambda e: e.randn(2, 3).add_(e.randn(2, 3, on=C1)),
    Err(ti(C0, C1)),
    "in-place: self is the output; its device is common, the other GPU's input fails",
)
row(
    "add_inplace_cuda0_from_cpu_0dim",
    lambda e: e.randn(2, 3).add_(e.randn(on=CPU)),
    Ok(C0),
    "in-place with a CPU scalar input is fine",
)
row(
    "add_inplace_cpu_from_cuda0",
    lambda e: e.randn(2, 3, on=CPU).add_(e.randn(2, 3)),
    Err(ti(C0, CPU)),
    "dispatches to CUDA; common device is the CUDA input; the CPU output (self) is rejected",
)
row(
    "mul_inplace_cpu_by_cuda0_0dim",
    lambda e: e.randn(2, 3, on=CPU).mul_(e.randn(on=C0)),
    Err(ti(C0, CPU)),
    "into a CPU tensor from a CUDA 0-dim: the output is not an input, so no scalar exemption",
)


def _iadd_other_gpu(e: Env) -> torch.Tensor:
    y = e.randn(2, 3, on=C1)
    y += e.randn(2, 3, on=C0)
    return y


row(
    "iadd_cuda1_from_cuda0",
    _iadd_other_gpu,
    Err(ti(C1, C0)),
    "`y += x` is add_: y's device (cuda:1) is common",
)

# --------------------------------------------------------------------------------------------------------
# copy_ (device_check: NoCheck, CompositeExplicitAutograd copy_: cross-device copies are what it is for)
# --------------------------------------------------------------------------------------------------------
row(
    "copy_into_cuda0_from_cuda1",
    lambda e: e.randn(2, 3).copy_(e.randn(2, 3, on=C1)),
    Ok(C0),
    "copy_ copies across devices; dst keeps its device",
)
row(
    "copy_into_cuda0_from_cpu",
    lambda e: e.randn(2, 3).copy_(e.randn(2, 3, on=CPU)),
    Ok(C0),
    "host-to-device copy",
)
row(
    "copy_into_cpu_from_cuda1",
    lambda e: e.randn(2, 3, on=CPU).copy_(e.randn(2, 3, on=C1)),
    Ok(CPU),
    "device-to-host copy into a CPU tensor is allowed (unlike add_)",
)
row(
    "copy_broadcast_into_cuda1_from_cpu_row",
    lambda e: e.randn(2, 3, on=C1).copy_(e.randn(3, on=CPU)),
    Ok(C1),
    "copy_ broadcasts src across devices",
)

# --------------------------------------------------------------------------------------------------------
# to() / cuda() / cpu() / torch.device (to_impl + ensure_has_index in TensorConversions.cpp)
# --------------------------------------------------------------------------------------------------------
row(
    "to_cuda1_from_cuda0",
    lambda e: e.randn(2, 3).to(e.dev(C1)),
    Ok(C1),
    "to(device) moves the data",
)
row(
    "to_int_index_means_cuda",
    lambda e: e.randn(2, 3, on=CPU).to(1),
    Ok(C1, values=lambda e: e.randn(2, 3, on=CPU)),
    "an integer device is an index of the current accelerator: cuda:1",
)
row(
    "cuda_without_index_is_current_device",
    lambda e: e.randn(2, 3, on=C1).cuda(),
    Ok(C0, values=lambda e: e.randn(2, 3, on=CPU)),
    "Tensor.cuda() means the current device (ensure_has_index), so a cuda:1 tensor moves to cuda:0",
)
row(
    "cuda_with_index",
    lambda e: e.randn(2, 3, on=CPU).cuda(1),
    Ok(C1, values=lambda e: e.randn(2, 3, on=CPU)),
    "cuda(1) targets cuda:1",
)
row(
    "to_bare_cuda_is_current_device",
    lambda e: e.randn(2, 3, on=C1).to("cuda"),
    Ok(C0, values=lambda e: e.randn(2, 3, on=CPU)),
    "'cuda' has no index; to() fills in the current device (cuda:0), it does not keep cuda:1",
)
row(
    "cpu_from_cuda1",
    lambda e: e.randn(2, 3, on=C1).cpu(),
    Ok(CPU),
    "cpu() copies to host",
)
row(
    "to_same_device_returns_self",
    lambda e: (lambda x: x.to("cuda:0") is x)(e.randn(2, 3)),
    Value(True),
    "to_will_alias: nothing changes, so to() returns self, not a copy",
)
row(
    "to_dtype_keeps_device",
    lambda e: e.randn(2, 3, on=C1).to(torch.float64),
    Ok(C1),
    "a dtype-only to() stays on the tensor's device",
)


def _module_to_cuda1(e: Env) -> torch.Tensor:
    lin = torch.nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(e.randn(2, 3, on=CPU))
        lin.bias.copy_(e.randn(2, on=CPU))
    lin = lin.to(e.dev(C1))
    return lin(e.randn(4, 3, on=C1))


row(
    "module_to_cuda1_forward",
    _module_to_cuda1,
    Ok(C1),
    "Module.to moves parameters; forward with an input on the same GPU runs there",
)
row(
    "module_to_int_index",
    lambda e: torch.nn.Linear(3, 2).to(1).weight,
    Ok(C1, values=None),
    "Module.to(1) parses 1 as an accelerator index (torch._C._nn._parse_to): cuda:1",
)
row(
    "torch_device_from_string",
    lambda e: (lambda d: (str(d), d.type, d.index))(torch.device("cuda:1")),
    Value(("cuda:1", "cuda", 1)),
    "torch.device('cuda:1') is a CUDA device with index 1",
)
row(
    "torch_device_from_int",
    lambda e: str(torch.device(1)),
    Value("cuda:1"),
    "torch.device(int) is an index of the current accelerator (CUDA here)",
)

# --------------------------------------------------------------------------------------------------------
# Factories with device=
# --------------------------------------------------------------------------------------------------------
row("zeros_on_cuda1", lambda e: torch.zeros(2, 3, device=e.dev(C1)), Ok(C1), "factory honours device=")
row("arange_on_cuda1", lambda e: torch.arange(5, device=e.dev(C1)), Ok(C1), "factory honours device=")
row(
    "tensor_on_cuda1",
    lambda e: torch.tensor([1.0, 2.0], device=e.dev(C1)),
    Ok(C1),
    "torch.tensor(data, device=) builds on CPU and copies to the device",
)
row("full_on_cuda0", lambda e: torch.full((2,), 7.0, device=e.dev(C0)), Ok(C0), "factory honours device=")
row(
    "ones_with_device_object",
    lambda e: torch.ones(2, device=torch.device("cuda", 1)),
    Ok(C1, values=lambda e: torch.ones(2)),
    "torch.device('cuda', 1) is the same as 'cuda:1'",
)
row(
    "randn_on_cuda1",
    lambda e: torch.randn(2, 3, device="cuda:1"),
    Ok(C1, values=None),
    "random factory on a GPU (values come from that GPU's generator, not compared)",
)
row(
    "zeros_on_bare_cuda_is_current_device",
    lambda e: torch.zeros(2, device="cuda"),
    Ok(C0, values=lambda e: torch.zeros(2)),
    "device='cuda' allocates on the current device (cuda:0)",
)
row(
    "zeros_on_int_device",
    lambda e: torch.zeros(2, device=1),
    Ok(C1, values=lambda e: torch.zeros(2)),
    "device=1 is cuda:1 on a CUDA machine",
)
row(
    "zeros_like_follows_input",
    lambda e: torch.zeros_like(e.randn(2, 3, on=C1)),
    Ok(C1),
    "*_like without device= takes the input's device",
)
row(
    "zeros_like_with_device",
    lambda e: torch.zeros_like(e.randn(2, 3, on=C1), device=e.dev(C0)),
    Ok(C0),
    "*_like with device= overrides the input's device",
)
row(
    "ones_like_cpu_input_with_cuda_device",
    lambda e: torch.ones_like(e.randn(2, 3, on=CPU), device=e.dev(C1)),
    Ok(C1),
    "*_like of a CPU tensor with device='cuda:1'",
)
row(
    "full_like_follows_input",
    lambda e: torch.full_like(e.randn(2, 3, on=C1), 2.5),
    Ok(C1),
    "full_like takes the input's device",
)
row(
    "empty_like_follows_input",
    lambda e: torch.empty_like(e.randn(2, 3, on=C1)),
    Ok(C1, values=None),
    "empty_like takes the input's device (values undefined)",
)
row(
    "new_zeros_follows_self",
    lambda e: e.randn(2, 3, on=C1).new_zeros(4),
    Ok(C1),
    "Tensor.new_* use self's options, device included",
)
row(
    "new_tensor_follows_self",
    lambda e: e.randn(2, on=C1).new_tensor([1.0, 2.0]),
    Ok(C1),
    "new_tensor builds on self's device",
)
row(
    "new_ones_with_cpu_device",
    lambda e: e.randn(2, on=C1).new_ones(3, device="cpu"),
    Ok(CPU),
    "new_* with device= overrides self's device",
)


# --------------------------------------------------------------------------------------------------------
# Conversions from data (torch/csrc/utils/tensor_new.cpp): `internal_new_from_data` returns
# `var.to(device_opt or var.device(), dtype, non_blocking=false, copy=copy_variables)` for tensor data
# (copy_variables: tensor / new_tensor true, as_tensor false); `asarray` calls `tensor.to(device.value_or(
# tensor.device()), ...)` when device or dtype differ and refuses copy=False then; other data (lists) is
# stored on the CPU and moved to the options' device (`device=`, else CPU, else self's for new_tensor).
# --------------------------------------------------------------------------------------------------------
def _half(e: Env, *shape: int, on: str = C0) -> torch.Tensor:
    return e.randn(*shape, on=on).half()


row(
    "as_tensor_cuda0_to_cpu",
    lambda e: torch.as_tensor(e.randn(2, 3), device=e.dev(CPU)),
    Ok(CPU),
    "as_tensor: var.to(cpu) is a host copy, not the GPU tensor itself",
)
row(
    "as_tensor_cuda1_0dim_to_cpu",
    lambda e: torch.as_tensor(e.randn(on=C1), device=e.dev(CPU)),
    Ok(CPU),
    "the same for a 0-dim tensor",
)
row(
    "as_tensor_cuda0_to_cuda1",
    lambda e: torch.as_tensor(e.randn(2, 3), device=e.dev(C1)),
    Ok(C1),
    "device_opt wins over the data's device: a copy on cuda:1",
)
row(
    "as_tensor_cuda0_to_cuda1_half",
    lambda e: torch.as_tensor(e.randn(2, 3), dtype=torch.float16, device=e.dev(C1)),
    Ok(C1),
    "dtype and device change in the one var.to(device, dtype)",
)
row(
    "as_tensor_dtype_only_stays_on_gpu",
    lambda e: torch.as_tensor(e.randn(2, 3, on=C1), dtype=torch.float16),
    Ok(C1),
    "no device: var.to(var.device(), Half), so the result stays on cuda:1",
)
row(
    "as_tensor_cpu_0dim_to_cuda1",
    lambda e: torch.as_tensor(e.randn(on=CPU), device=e.dev(C1)),
    Ok(C1),
    "host-to-device for a 0-dim tensor",
)
row(
    "as_tensor_same_device_aliases",
    lambda e: (lambda x: torch.as_tensor(x, device="cuda:0") is x)(e.randn(2, 3)),
    Value(True),
    "copy_variables=false and nothing changes: to() returns self",
)
row(
    "asarray_cuda0_to_cpu",
    lambda e: torch.asarray(e.randn(2, 3), device=e.dev(CPU)),
    Ok(CPU),
    "asarray: wrong device and copy=None, so tensor.to(cpu)",
)
row(
    "asarray_cuda1_copy_true",
    lambda e: torch.asarray(e.randn(2, 3, on=C1), copy=True),
    Ok(C1),
    "copy=True with nothing to change is tensor.clone(), on the tensor's own device",
)
row(
    "asarray_cuda0_half_to_cuda1",
    lambda e: torch.asarray(e.randn(on=C0), dtype=torch.float16, device=e.dev(C1)),
    Ok(C1),
    "device and dtype differ: one tensor.to(cuda:1, Half)",
)
row(
    "asarray_copy_false_other_gpu",
    lambda e: torch.asarray(e.randn(2, 3), device="cuda:1", copy=False),
    Err("can't alias tensor from device 'cuda:0' to 'cuda:1'.", ValueError),
    "copy=False with a wrong device: TORCH_CHECK_VALUE, a ValueError",
)
row(
    "asarray_copy_false_bare_cuda",
    lambda e: torch.asarray(e.randn(2, 3), device="cuda", copy=False),
    Err("can't alias tensor from device 'cuda:0' to 'cuda'.", ValueError),
    "the check is device != tensor.device(): 'cuda' has no index, so it differs from cuda:0",
)
row(
    "asarray_same_device_aliases",
    lambda e: (lambda x: torch.asarray(x) is x)(e.randn(2, 3, on=C1)),
    Value(True),
    "no device, no dtype, copy=None: the tensor itself",
)
row(
    "tensor_of_cuda1_tensor",
    lambda e: torch.tensor(e.randn(2, 3, on=C1)),
    Ok(C1),
    "torch.tensor(t): var.detach().to(var.device(), copy=true), a copy on the data's GPU",
)
row(
    "tensor_of_cuda0_0dim_to_cpu_half",
    lambda e: torch.tensor(e.randn(on=C0), dtype=torch.float16, device=e.dev(CPU)),
    Ok(CPU),
    "device= and dtype= go to the one var.to(cpu, Half)",
)
row(
    "tensor_of_cuda0_to_cuda1",
    lambda e: torch.tensor(e.randn(2, 3), device=e.dev(C1)),
    Ok(C1),
    "a GPU-to-GPU copy",
)
row(
    "tensor_of_list_of_gpu_scalars",
    lambda e: torch.tensor([e.randn(on=C1), e.randn(on=C1)]),
    Ok(CPU),
    "a list is no Variable: recursive_store fills a CPU tensor and the default options' device is cpu",
)
row(
    "new_tensor_keeps_data_device",
    lambda e: e.randn(2, on=C1).new_tensor(e.randn(2, 3, on=C0)),
    Ok(C0),
    "new_tensor of a tensor: device_opt or var.device(), the data's cuda:0 and not self's cuda:1",
)
row(
    "new_tensor_cpu_data_stays_on_cpu",
    lambda e: e.randn(2, on=C1).new_tensor(e.randn(2, 3, on=CPU)),
    Ok(CPU),
    "likewise a CPU tensor stays on the CPU",
)
row(
    "new_tensor_cpu_self_gpu_data",
    lambda e: e.randn(2, on=CPU).new_tensor(e.randn(on=C1)),
    Ok(C1),
    "a CPU self does not pull GPU data to the host",
)
row(
    "new_tensor_takes_self_dtype",
    lambda e: _half(e, 2, on=C1).new_tensor(e.randn(2, 3, on=C0)),
    Ok(C0),
    "type_inference=false: self's dtype (Half), the data's device",
)
row(
    "new_tensor_to_explicit_gpu",
    lambda e: e.randn(2, on=CPU).new_tensor(e.randn(2, 3, on=C0), device=e.dev(C1)),
    Ok(C1),
    "device= wins over both",
)
row(
    "new_tensor_bare_cuda_is_self_gpu",
    lambda e: e.randn(2, on=C1).new_tensor([1.0, 2.0], device=e.dev("cuda")),
    Ok(C1),
    "THPVariable_new_tensor runs under OptionalDeviceGuard(device_of(self)): 'cuda' is self's cuda:1",
)

# --------------------------------------------------------------------------------------------------------
# Tensor.to overloads (python_variable_methods.cpp THPVariable_to -> parse_to_conversion; to_impl in
# TensorConversions.cpp: a new tensor on the asked device, dtype applied in the same _to_copy)
# --------------------------------------------------------------------------------------------------------
row(
    "to_positional_device_and_dtype",
    lambda e: e.randn(2, 3).to(e.dev(C1), torch.float16),
    Ok(C1),
    "to(device, dtype): both change",
)
row(
    "to_0dim_cuda1_to_cuda0",
    lambda e: e.randn(on=C1).to(e.dev(C0)),
    Ok(C0),
    "a 0-dim tensor moves like any other",
)
row(
    "to_cuda0_to_cpu_half",
    lambda e: e.randn(2, 3).to(device=e.dev(CPU), dtype=torch.float16),
    Ok(CPU),
    "keyword device and dtype",
)
row(
    "to_cpu_to_cuda1_copy",
    lambda e: e.randn(2, 3, on=CPU).to(e.dev(C1), copy=True),
    Ok(C1),
    "copy=True to another device",
)
row(
    "to_non_blocking_cuda0_to_cuda1",
    lambda e: e.randn(2, 3).to(e.dev(C1), non_blocking=True),
    Ok(C1),
    "non_blocking changes when the copy is synchronised, not where it lands",
)
row(
    "to_positional_non_blocking_and_copy",
    lambda e: e.randn(on=C0).to(e.dev(C1), torch.float16, True, True),
    Ok(C1),
    "to(device, dtype, non_blocking, copy) positionally",
)
row(
    "to_other_tensor_takes_device_and_dtype",
    lambda e: e.randn(2, 3).to(_half(e, 1, on=C1)),
    Ok(C1),
    "to(other): other's device and dtype",
)
row(
    "to_same_device_copy_is_new_tensor",
    lambda e: (lambda x: x.to("cuda:0", copy=True) is x)(e.randn(2, 3)),
    Value(False),
    "to_will_alias is false with copy=True: a new tensor on the same device",
)
row(
    "to_dtype_only_0dim_on_cuda1",
    lambda e: e.randn(on=C1).to(torch.float16),
    Ok(C1),
    "to(dtype) of a 0-dim GPU tensor stays on its GPU",
)

# --------------------------------------------------------------------------------------------------------
# *_like and new_* with device= (TensorFactories.cpp: empty_like / new_empty merge `options` over self's,
# so an explicit device wins)
# --------------------------------------------------------------------------------------------------------
row(
    "zeros_like_0dim_cuda0_to_cuda1_half",
    lambda e: torch.zeros_like(e.randn(on=C0), dtype=torch.float16, device=e.dev(C1)),
    Ok(C1),
    "device= and dtype= override the input's",
)
row(
    "full_like_cuda1_to_cpu",
    lambda e: torch.full_like(e.randn(2, 3, on=C1), 2.0, device=e.dev(CPU)),
    Ok(CPU),
    "a CPU result from a GPU input",
)
row(
    "rand_like_to_cuda1",
    lambda e: torch.rand_like(e.randn(2, 3, on=CPU), device="cuda:1"),
    Ok(C1, values=None),
    "random *_like on another device (values from that GPU's generator)",
)
row(
    "new_full_cuda1_to_cuda0_half",
    lambda e: e.randn(2, on=C1).new_full((3,), 1.5, dtype=torch.float16, device=e.dev(C0)),
    Ok(C0),
    "new_full with device= and dtype=",
)
row(
    "new_empty_cpu_to_cuda1",
    lambda e: e.randn(2, on=CPU).new_empty((3,), device="cuda:1"),
    Ok(C1, values=None),
    "new_empty with device= from a CPU tensor",
)
row(
    "new_zeros_0dim_cuda0_to_cuda1",
    lambda e: e.randn(on=C0).new_zeros((2, 2), device=e.dev(C1)),
    Ok(C1),
    "new_zeros of a 0-dim tensor with device=",
)

# --------------------------------------------------------------------------------------------------------
# mm / bmm / addmm / matmul / linear: codegen'd checks (structured CUDA kernels, no NoCheck)
# --------------------------------------------------------------------------------------------------------
row(
    "mm_cuda0_cuda1",
    lambda e: torch.mm(e.randn(2, 3), e.randn(3, 4, on=C1)),
    Err(cg("mat2", C1, C0, "wrapper_CUDA_mm")),
    "wrapper_CUDA_mm checks self, then mat2 against self's device",
)
row(
    "mm_cuda0_cpu",
    lambda e: torch.mm(e.randn(2, 3), e.randn(3, 4, on=CPU)),
    Err(cg("mat2", CPU, C0, "wrapper_CUDA_mm")),
    "a CPU operand of a codegen-checked CUDA op",
)
row(
    "mm_cpu_cuda0",
    lambda e: torch.mm(e.randn(2, 3, on=CPU), e.randn(3, 4)),
    Err(cg("mat2", C0, CPU, "wrapper_CUDA_mm")),
    "dispatch goes to CUDA, but the reference device is the first argument's (cpu)",
)
row(
    "mm_same_gpu",
    lambda e: torch.mm(e.randn(2, 3, on=C1), e.randn(3, 4, on=C1)),
    Ok(C1),
    "same device: runs",
)
row(
    "matmul_2d_cuda0_cuda1",
    lambda e: e.randn(2, 3) @ e.randn(3, 4, on=C1),
    Err(cg("mat2", C1, C0, "wrapper_CUDA_mm")),
    "matmul is CompositeImplicit: 2-D @ 2-D calls mm (LinearAlgebra.cpp _matmul_impl)",
)
row(
    "matmul_3d_3d_rotary_style",
    lambda e: e.randn(2, 3, 1) @ e.randn(2, 1, 4, on=C1),
    Err(cg("mat2", C1, C0, "wrapper_CUDA_bmm")),
    "3-D @ 3-D (the rotary inv_freq @ position_ids product) expands and calls bmm",
)
row(
    "matmul_3d_2d_folds_to_mm",
    lambda e: e.randn(2, 3, 4) @ e.randn(4, 5, on=C1),
    Err(cg("mat2", C1, C0, "wrapper_CUDA_mm")),
    "contiguous 3-D @ 2-D is folded (should_fold) into a 2-D mm",
)
row(
    "bmm_cuda1_cuda0",
    lambda e: torch.bmm(e.randn(2, 3, 4, on=C1), e.randn(2, 4, 5)),
    Err(cg("mat2", C0, C1, "wrapper_CUDA_bmm")),
    "wrapper_CUDA_bmm: self (cuda:1) is the reference device",
)
row(
    "addmm_cpu_0dim_bias",
    lambda e: torch.addmm(e.randn(on=CPU), e.randn(2, 3), e.randn(3, 4)),
    Err(cg("mat1", C0, CPU, "wrapper_CUDA_addmm")),
    "the codegen'd check has no CPU-scalar exemption: a CPU 0-dim self sets the reference device",
)
row(
    "addmm_mat2_on_cuda1",
    lambda e: torch.addmm(e.randn(4), e.randn(2, 3), e.randn(3, 4, on=C1)),
    Err(cg("mat2", C1, C0, "wrapper_CUDA_addmm")),
    "checked in order self, mat1, mat2",
)
row(
    "linear_2d_weight_and_bias_on_cuda1",
    lambda e: F.linear(e.randn(2, 3), e.randn(4, 3, on=C1), e.randn(4, on=C1)),
    Err(cg("mat1", C0, C1, "wrapper_CUDA_addmm")),
    "linear (Linear.cpp): 2-D input with bias is addmm(bias, input, weight.t()), so bias sets the device",
)
row(
    "linear_2d_no_bias",
    lambda e: F.linear(e.randn(2, 3), e.randn(4, 3, on=C1)),
    Err(cg("mat2", C1, C0, "wrapper_CUDA_mm")),
    "linear without bias is matmul(input, weight.t()) -> mm",
)
row(
    "linear_3d_bias_on_cuda1",
    lambda e: F.linear(e.randn(2, 5, 3), e.randn(4, 3, on=C1), e.randn(4, on=C1)),
    Err(cg("mat1", C0, C1, "wrapper_CUDA_addmm")),
    "contiguous n-D input with a 1-D bias goes through _flatten_nd_linear -> addmm(bias, ...)",
)
row(
    "linear_only_bias_on_cuda1",
    lambda e: F.linear(e.randn(2, 3), e.randn(4, 3), e.randn(4, on=C1)),
    Err(cg("mat1", C0, C1, "wrapper_CUDA_addmm")),
    "the bias alone on another GPU makes input (mat1) the odd one out",
)
row(
    "nn_linear_on_cuda1_input_on_cuda0",
    lambda e: torch.nn.Linear(3, 4).to(e.dev(C1))(e.randn(2, 3)),
    Err(cg("mat1", C0, C1, "wrapper_CUDA_addmm")),
    "nn.Linear.forward is F.linear(input, weight, bias)",
)
row(
    "linear_same_gpu",
    lambda e: F.linear(e.randn(2, 3, on=C1), e.randn(4, 3, on=C1), e.randn(4, on=C1)),
    Ok(C1),
    "same device: runs",
)
row(
    "mm_out_on_other_gpu",
    lambda e: torch.mm(e.randn(2, 3), e.randn(3, 4), out=e.randn(2, 4, on=C1)),
    Err(cg("self", C0, C1, "wrapper_CUDA_mm_out_out")),
    "gen_device_check walks the out arguments first, so out's device is the reference",
)

# --------------------------------------------------------------------------------------------------------
# cat / stack (cat has a codegen'd check over the whole tensor list; stack is composite over cat)
# --------------------------------------------------------------------------------------------------------
row(
    "cat_cuda0_cuda1",
    lambda e: torch.cat([e.randn(2, 3), e.randn(2, 3, on=C1)]),
    Err(cg("tensors", C1, C0, "wrapper_CUDA_cat")),
    "every list element is checked under the argument name 'tensors'",
)
row(
    "cat_cpu_cuda0",
    lambda e: torch.cat([e.randn(2, 3, on=CPU), e.randn(2, 3)]),
    Err(cg("tensors", C0, CPU, "wrapper_CUDA_cat")),
    "the first element (cpu) is the reference device",
)
row(
    "cat_empty_cpu_with_cuda0",
    lambda e: torch.cat([torch.empty(0), e.randn(3)]),
    Err(cg("tensors", C0, CPU, "wrapper_CUDA_cat")),
    "check_and_update_common_device skips only undefined tensors, not empty ones",
)
row(
    "stack_cuda1_cuda0",
    lambda e: torch.stack([e.randn(3, on=C1), e.randn(3)]),
    Err(cg("tensors", C0, C1, "wrapper_CUDA_cat")),
    "stack (CompositeExplicitAutograd) calls cat, whose wrapper raises",
)
row(
    "cat_same_gpu",
    lambda e: torch.cat([e.randn(2, 3, on=C1), e.randn(1, 3, on=C1)]),
    Ok(C1),
    "same device: runs",
)
row(
    "cat_out_on_other_gpu",
    lambda e: torch.cat([e.randn(2, 3), e.randn(2, 3)], out=e.randn(4, 3, on=C1)),
    Err(cg("tensors", C0, C1, "wrapper_CUDA_cat_out_out")),
    "out is checked before the inputs",
)

# --------------------------------------------------------------------------------------------------------
# Indexing: index / index_select / gather / setitem (index_put_)
# --------------------------------------------------------------------------------------------------------
row(
    "getitem_cpu_long_index",
    lambda e: e.randn(4, 3)[e.t([0, 2], on=CPU)],
    Ok(C0),
    "index.Tensor: dev_tensor[cpu_index] is allowed (meta check_indices_on_cpu_or_selfdevice)",
)
row(
    "getitem_cpu_bool_mask",
    lambda e: e.randn(4, 3)[e.t([True, False, True, True], on=CPU)],
    Ok(C0),
    "a CPU bool mask: nonzero on CPU, then moved to self's device (expandTensors ensure_same_device)",
)
row(
    "getitem_index_on_other_gpu",
    lambda e: e.randn(4, 3)[e.t([0, 2], on=C1)],
    Err(index_msg(C0)),
    "index on a third device is refused (pytorch PR #69607); TORCH_CHECK, so RuntimeError",
)
row(
    "getitem_cpu_tensor_cuda_index",
    lambda e: e.randn(4, 3, on=CPU)[e.t([0, 2], on=C0)],
    Err(index_msg(CPU)),
    "a CUDA index into a CPU tensor is neither cpu nor self's device",
)
row(
    "index_select_cpu_index",
    lambda e: e.randn(4, 3).index_select(0, e.t([0, 2], on=CPU)),
    Err(cg("index", CPU, C0, "wrapper_CUDA__index_select")),
    "index_select, unlike x[idx], has a codegen'd check: a CPU index is an error",
)
row(
    "index_select_index_on_cuda1",
    lambda e: torch.index_select(e.randn(4, 3), 0, e.t([0, 2], on=C1)),
    Err(cg("index", C1, C0, "wrapper_CUDA__index_select")),
    "index on another GPU",
)
row(
    "gather_cpu_index",
    lambda e: torch.gather(e.randn(2, 3), 1, e.t([[0, 1], [2, 0]], on=CPU)),
    Err(cg("index", CPU, C0, "wrapper_CUDA_gather")),
    "gather is codegen-checked (self, index; dim is not a tensor)",
)


def _setitem(e: Env, index: torch.Tensor, value: Any, on: str = C0) -> torch.Tensor:
    x = e.randn(4, 3, on=on)
    x[index] = value
    return x


def _deterministic(fn: Callable[[], Any]) -> Any:
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return fn()
    finally:
        torch.use_deterministic_algorithms(before)


row(
    "setitem_cpu_index_cuda0_value",
    lambda e: _setitem(e, e.t([0, 2], on=CPU), e.randn(2, 3)),
    Ok(C0),
    "index_put_ -> _index_put_impl_: make_info moves CPU indices to self's device",
)
row(
    "setitem_cpu_mask_python_scalar",
    lambda e: _setitem(e, e.t([True, False, True, False], on=CPU), 0.0),
    Ok(C0),
    "x[cpu_mask] = 0.0: the scalar becomes a CPU 0-dim value, moved to self's device",
)
row(
    "setitem_cuda_mask_cpu_0dim_value",
    lambda e: _setitem(e, e.t([True, False, True, False], on=C0), e.t(5.0, on=CPU)),
    Ok(C0),
    "canDispatchToMaskedFill: CPU 1-element value + same-device mask -> masked_fill_(value.item())",
)
row(
    "setitem_value_on_other_gpu",
    lambda e: _setitem(e, e.t([0, 2], on=CPU), e.randn(2, 3, on=C1)),
    Err(ti(C0, C1)),
    "a non-0-dim value is not moved; make_index_put_iterator's TensorIterator rejects it",
)
row(
    "setitem_value_cpu_vector",
    lambda e: _setitem(e, e.t([0, 2], on=CPU), e.randn(3, on=CPU)),
    Err(ti(C0, CPU)),
    "a CPU value that is not 0-dim is rejected the same way",
)
row(
    "setitem_value_0dim_on_other_gpu",
    lambda e: _setitem(e, e.t([0, 2], on=CPU), e.randn(on=C1)),
    Ok(C0),
    "_index_put_impl_ moves a 0-dim 1-element value from any device to self's device",
)
row(
    "setitem_index_on_other_gpu",
    lambda e: _setitem(e, e.t([0, 2], on=C1), e.randn(2, 3)),
    Ok(C0),
    "unlike x[idx], x[idx] = v has no index-device check: make_info moves indices from any device",
)
row(
    "index_put_accumulate_value_on_other_gpu",
    lambda e: e.randn(4, 3).index_put_((e.t([0, 2], on=CPU),), e.randn(2, 3, on=C1), accumulate=True),
    Err("expected device cuda:0 but got device cuda:1 for value tensor"),
    "accumulate=True on CUDA takes index_put_with_sort after an explicit value-device check",
)
row(
    "index_put_functional_cpu_index",
    lambda e: torch.index_put(e.randn(4, 3), (e.t([1, 3], on=CPU),), e.randn(2, 3)),
    Ok(C0),
    "index_put = clone + index_put_; CPU indices are fine",
)
row(
    "index_put_gpu_mask_cpu_one_element_vector",
    lambda e: e.randn(4, 3).index_put_((e.t([True, False, True, False]),), e.randn(1, on=CPU)),
    Ok(C0),
    "canDispatchToMaskedFill tests numel() == 1 and is_cpu(), not dim() == 0: masked_fill_(value.item())",
)
row(
    "index_put_cpu_mask_cpu_one_element_vector",
    lambda e: e.randn(4, 3).index_put_((e.t([True, False, True, False], on=CPU),), e.randn(1, on=CPU)),
    Err(ti(C0, CPU)),
    "a CPU mask is not on self's device: no masked_fill_; a 1-D value is not moved; TensorIterator refuses",
)
row(
    "setitem_views_a_leading_one_value_as_0dim",
    lambda e: _setitem(e, e.t([True, False, True, False], on=CPU), e.randn(1, on=CPU)),
    Ok(C0),
    "set_item (TensorIndexing.h) views the value without leading 1s (slicePrefix1sSize): 0-dim, so moved",
)
row(
    "setitem_cpu_self_gpu_value",
    lambda e: _setitem(e, e.t([0, 2], on=CPU), e.randn(2, 3, on=C1), on=CPU),
    Err(ti(C1, CPU)),
    "make_index_put_iterator: self (CPU) is the output, the value's GPU is the first non-CPU operand",
)
row(
    "index_put_deterministic_value_on_other_gpu",
    lambda e: _deterministic(lambda: _setitem(e, e.t([0, 2], on=CPU), e.randn(2, 3, on=C1))),
    Err("expected device cuda:0 but got device cuda:1 for value tensor"),
    "deterministicAlgorithms() also takes index_put_with_sort and its value-device check",
)

# --------------------------------------------------------------------------------------------------------
# masked_fill (NoCheck; masked_fill__cuda's own checks); masked_scatter (masked_scatter_ is codegen-checked)
# --------------------------------------------------------------------------------------------------------
MASK = [[True, False, True], [False, True, False]]
row(
    "masked_fill_cpu_0dim_value",
    lambda e: e.randn(2, 3).masked_fill(e.t(MASK), e.t(-1.0, on=CPU)),
    Ok(C0),
    "masked_fill__cuda(Tensor value) takes value.item(): a CPU 0-dim value is fine",
)
row(
    "masked_fill_0dim_value_on_other_gpu",
    lambda e: e.randn(2, 3).masked_fill(e.t(MASK), e.t(-1.0, on=C1)),
    Ok(C0),
    "value.item() works from any device, so even another GPU's 0-dim value is fine",
)
row(
    "masked_fill_mask_on_cpu",
    lambda e: e.randn(2, 3).masked_fill(e.t(MASK, on=CPU), 0.0),
    Err(mask_msg(CPU, C0)),
    "masked_fill__cuda requires mask on self's device",
)
row(
    "masked_fill_mask_on_other_gpu",
    lambda e: e.randn(2, 3).masked_fill(e.t(MASK, on=C1), float("-inf")),
    Err(mask_msg(C1, C0)),
    "mask on another GPU",
)
row(
    "masked_fill_cpu_self_cuda_mask_tensor_value",
    lambda e: e.randn(2, 3, on=CPU).masked_fill(e.t(MASK), e.t(1.0, on=CPU)),
    Err("masked_fill_: Expected inputs to be on same device"),
    "the CUDA mask routes to masked_fill__cuda(Tensor value), which refuses a CPU self first",
)
row(
    "masked_fill_cpu_self_cuda_mask_scalar_value",
    lambda e: e.randn(2, 3, on=CPU).masked_fill(e.t(MASK), 1.0),
    Err(mask_msg(C0, CPU)),
    "with a Python scalar value the Scalar overload runs and reports the mask/self pair",
)
row(
    "masked_fill_cpu_self_cpu_mask_gpu_value",
    lambda e: e.randn(2, 3, on=CPU).masked_fill(e.t(MASK, on=CPU), e.t(1.0, on=C1)),
    Err("masked_fill_: Expected inputs to be on same device"),
    "the dispatch key comes from every tensor: a GPU value alone picks masked_fill__cuda, which refuses self",
)


def _masked_scatter(e: Env, mask_on: str, source_on: str, self_on: str = C0) -> torch.Tensor:
    x = e.randn(2, 3, on=self_on)
    return x.masked_scatter(e.t(MASK, on=mask_on), e.randn(6, on=source_on))


row(
    "masked_scatter_same_gpu",
    lambda e: _masked_scatter(e, C0, C0),
    Ok(C0),
    "same device: runs",
)
row(
    "masked_scatter_mask_on_cpu",
    lambda e: _masked_scatter(e, CPU, C0),
    Err(cg("mask", CPU, C0, "wrapper_CUDA__masked_scatter_")),
    "masked_scatter = clone + masked_scatter_, whose CUDA wrapper checks self, mask, source",
)
row(
    "masked_scatter_source_on_other_gpu",
    lambda e: _masked_scatter(e, C0, C1),
    Err(cg("source", C1, C0, "wrapper_CUDA__masked_scatter_")),
    "source on another GPU",
)
row(
    "masked_scatter_image_embeds_on_other_gpu",
    lambda e: _masked_scatter(e, C1, C0, self_on=C1),
    Err(cg("source", C0, C1, "wrapper_CUDA__masked_scatter_")),
    "Qwen-VL's inputs_embeds.masked_scatter(image_mask, image_embeds) with the vision tower elsewhere",
)

# --------------------------------------------------------------------------------------------------------
# Embedding (CompositeExplicitAutograd embedding_symint -> weight.index_select(0, indices))
# --------------------------------------------------------------------------------------------------------
row(
    "embedding_ids_on_cpu",
    lambda e: F.embedding(e.t([0, 2, 1], on=CPU), e.randn(5, 4)),
    Err(cg("index", CPU, C0, "wrapper_CUDA__index_select")),
    "embedding is index_select on the weight: CPU ids are an error",
)
row(
    "embedding_ids_on_other_gpu",
    lambda e: F.embedding(e.t([0, 2, 1], on=C1), e.randn(5, 4)),
    Err(cg("index", C1, C0, "wrapper_CUDA__index_select")),
    "ids on another GPU",
)
row(
    "embedding_2d_ids_on_cpu",
    lambda e: torch.nn.functional.embedding(e.t([[0, 2, 1]], on=CPU), e.randn(5, 4)),
    Err(cg("index", CPU, C0, "wrapper_CUDA__index_select")),
    "n-D ids are reshaped to 1-D first, then the same index_select",
)
row(
    "embedding_same_gpu",
    lambda e: F.embedding(e.t([[0, 2], [4, 1]], on=C1), e.randn(5, 4, on=C1)),
    Ok(C1),
    "same device: runs",
)

# --------------------------------------------------------------------------------------------------------
# torch.where (TensorCompare.cpp where / where_self_out: result on the first non-CPU of cond, self, other;
# 0-dim operands on any other device are moved there; remaining mismatches reach TensorIterator)
# --------------------------------------------------------------------------------------------------------
COND = [True, False, True]
row(
    "where_cpu_0dim_other",
    lambda e: torch.where(e.t(COND), e.randn(3), e.t(0.0, on=CPU)),
    Ok(C0),
    "a 0-dim CPU operand is moved to the output device",
)
row(
    "where_cpu_0dim_self",
    lambda e: torch.where(e.t(COND), e.t(0.0, on=CPU), e.randn(3)),
    Ok(C0),
    "the output device is the first non-CPU of (cond, self, other), so a CPU 0-dim self is fine too",
)
row(
    "where_0dim_on_other_gpu",
    lambda e: torch.where(e.t(COND), e.randn(3), e.randn(on=C1)),
    Ok(C0),
    "where moves 0-dim operands from *any* other device, not only from CPU",
)
row(
    "where_cond_cpu_tensor",
    lambda e: torch.where(e.t(COND, on=CPU), e.randn(3), e.randn(3)),
    Err(ti(C0, CPU)),
    "a non-0-dim CPU condition is left for TensorIterator to reject",
)
row(
    "where_other_on_other_gpu",
    lambda e: torch.where(e.t(COND), e.randn(3), e.randn(3, on=C1)),
    Err(ti(C0, C1)),
    "a non-0-dim operand on another GPU",
)
row(
    "where_result_follows_condition",
    lambda e: torch.where(e.t(COND, on=C1), e.randn(3), e.randn(3)),
    Err(ti(C1, C0)),
    "the result is allocated on the condition's device (cuda:1), so self/other on cuda:0 are rejected",
)
row(
    "where_python_scalar",
    lambda e: torch.where(e.t(COND, on=C1), e.randn(3, on=C1), 0.0),
    Ok(C1),
    "where.ScalarOther wraps the scalar on self's device",
)
row(
    "where_out_follows_the_inputs_not_out",
    lambda e: torch.where(e.t(True, on=C1), e.randn(3), e.randn(3), out=e.randn(3)),
    Err(ti(C0, C1)),
    "out_device(condition, self, other) is cuda:1 (the 0-dim condition, first), so nothing is moved; "
    "TensorIterator's out (cuda:0) is then common and the condition is refused",
)
row(
    "where_out_0dim_other_moved",
    lambda e: torch.where(e.t(COND), e.randn(3), e.randn(on=C1), out=e.randn(3)),
    Ok(C0),
    "with out=, a 0-dim operand on another GPU is still moved to out_device (the condition's cuda:0)",
)


def _cpu_error(fn: Callable[[], Any]) -> str:
    """The text of an error raised by device-independent code (run on the CPU)."""
    try:
        fn()
    except RuntimeError as error:
        return str(error)
    raise AssertionError("expected an error")


_QKV = (torch.float32, torch.float16, torch.float16)

# --------------------------------------------------------------------------------------------------------
# scaled_dot_product_attention (validate_sdpa_input runs before any backend is chosen)
# --------------------------------------------------------------------------------------------------------
row(
    "sdpa_same_gpu",
    lambda e: F.scaled_dot_product_attention(
        e.randn(1, 2, 4, 8, on=C1), e.randn(1, 2, 4, 8, on=C1), e.randn(1, 2, 4, 8, on=C1)
    ),
    Ok(C1),
    "same device: runs",
)
row(
    "sdpa_causal_same_gpu",
    lambda e: F.scaled_dot_product_attention(
        e.randn(1, 2, 4, 8), e.randn(1, 2, 4, 8), e.randn(1, 2, 4, 8), is_causal=True
    ),
    Ok(C0),
    "is_causal builds its mask on the query's device",
)
row(
    "sdpa_bool_mask_same_gpu",
    lambda e: F.scaled_dot_product_attention(
        e.randn(1, 2, 4, 8),
        e.randn(1, 2, 4, 8),
        e.randn(1, 2, 4, 8),
        attn_mask=e.t([[True] * 4, [True, False, True, True], [False, True, True, True], [True] * 4]),
    ),
    Ok(C0),
    "a bool mask on the same device",
)
row(
    "sdpa_key_value_on_other_gpu",
    lambda e: F.scaled_dot_product_attention(
        e.randn(1, 2, 4, 8), e.randn(1, 2, 4, 8, on=C1), e.randn(1, 2, 4, 8, on=C1)
    ),
    Err(sdpa_msg(C0, C1, C1)),
    "validate_sdpa_input compares full devices (despite saying 'device type') before backend choice",
)
row(
    "sdpa_value_on_cpu",
    lambda e: F.scaled_dot_product_attention(
        e.randn(1, 2, 4, 8), e.randn(1, 2, 4, 8), e.randn(1, 2, 4, 8, on=CPU)
    ),
    Err(sdpa_msg(C0, C0, CPU)),
    "same check, value on the host",
)
row(
    "sdpa_dtype_checked_before_device",
    lambda e: F.scaled_dot_product_attention(
        e.randn(1, 2, 4, 8), e.randn(1, 2, 4, 8, on=C1).half(), e.randn(1, 2, 4, 8, on=C1).half()
    ),
    Err(_cpu_error(lambda: F.scaled_dot_product_attention(*(torch.ones(1, 2, 4, 8, dtype=d) for d in _QKV)))),
    "validate_sdpa_input checks dtypes before devices (the same function on every device, so its CPU text)",
)

# --------------------------------------------------------------------------------------------------------
# layer_norm -> native_layer_norm (codegen-checked); rms_norm -> _fused_rms_norm on CUDA (codegen-checked)
# --------------------------------------------------------------------------------------------------------
row(
    "layer_norm_weight_and_bias_on_cuda1",
    lambda e: F.layer_norm(e.randn(2, 4), (4,), e.randn(4, on=C1), e.randn(4, on=C1)),
    Err(cg("weight", C1, C0, "wrapper_CUDA__native_layer_norm")),
    "layer_norm is native_layer_norm(input, shape, weight, bias): checked input, weight, bias",
)
row(
    "layer_norm_bias_on_cpu",
    lambda e: F.layer_norm(e.randn(2, 4), (4,), e.randn(4), e.randn(4, on=CPU)),
    Err(cg("bias", CPU, C0, "wrapper_CUDA__native_layer_norm")),
    "optional tensors (Tensor?) are checked too",
)
row(
    "layer_norm_same_gpu",
    lambda e: F.layer_norm(e.randn(2, 4, on=C1), (4,), e.randn(4, on=C1), e.randn(4, on=C1)),
    Ok(C1),
    "same device: runs",
)
row(
    "rms_norm_weight_on_cuda1",
    lambda e: F.rms_norm(e.randn(2, 4), (4,), e.randn(4, on=C1)),
    Err(cg("weight", C1, C0, "wrapper_CUDA___fused_rms_norm")),
    "rms_norm_symint (layer_norm.cpp) calls _fused_rms_norm for same-dtype input; its CUDA wrapper checks",
)
row(
    "rms_norm_same_gpu",
    lambda e: F.rms_norm(e.randn(2, 4, on=C1), (4,), e.randn(4, on=C1), eps=1e-6),
    Ok(C1),
    "same device: runs",
)
row(
    "rms_norm_other_dtype_weight_on_other_gpu",
    lambda e: F.rms_norm(e.randn(2, 4), (4,), e.randn(4, on=C1).double()),
    Err(ti(C0, C1)),
    "rms_norm_symint: a weight of another dtype takes rms_norm_composite; its result.mul(weight) refuses",
)
row(
    "rms_norm_weight_on_cpu",
    lambda e: F.rms_norm(e.randn(2, 4, on=C1), (4,), e.randn(4, on=CPU)),
    Err(cg("weight", CPU, C1, "wrapper_CUDA___fused_rms_norm")),
    "same dtype: _fused_rms_norm's CUDA wrapper checks input, then weight",
)

# --------------------------------------------------------------------------------------------------------
# Convolution (Convolution.cpp _convolution: float32, groups=1, cuDNN enabled -> ConvBackend::Cudnn)
# --------------------------------------------------------------------------------------------------------
row(
    "conv2d_weight_on_cuda1",
    lambda e: F.conv2d(e.randn(1, 3, 5, 5), e.randn(2, 3, 3, 3, on=C1)),
    Err(cg("weight", C1, C0, "wrapper_CUDA__cudnn_convolution")),
    "the conv type check compares cuda vs cuda only; the cudnn_convolution wrapper's check fails",
)
row(
    "conv3d_weight_on_cuda1",
    lambda e: F.conv3d(e.randn(1, 2, 3, 4, 4), e.randn(2, 2, 2, 2, 2, on=C1)),
    Err(cg("weight", C1, C0, "wrapper_CUDA__cudnn_convolution")),
    "3-D convolution takes the same cuDNN path",
)
row(
    "conv2d_bias_on_cuda1",
    lambda e: F.conv2d(e.randn(1, 3, 5, 5), e.randn(2, 3, 3, 3), e.randn(2, on=C1)),
    Err(ti(C0, C1)),
    "cuDNN convolution has no bias argument; the bias is added with output.add_(bias), a TensorIterator op",
)
row(
    "conv2d_same_gpu",
    lambda e: F.conv2d(e.randn(1, 3, 5, 5, on=C1), e.randn(2, 3, 3, 3, on=C1), e.randn(2, on=C1)),
    Ok(C1),
    "same device: runs",
)
row(
    "conv3d_same_gpu",
    lambda e: F.conv3d(e.randn(1, 2, 3, 4, 4), e.randn(2, 2, 2, 2, 2), padding=1),
    Ok(C0),
    "same device: runs",
)


# Convolutions that mix a CPU and a GPU tensor: `_select_conv_backend` looks at the input alone. A CUDA
# input takes cuDNN, whose branch runs check_input_same_type_as_parameters first (`type_equal`: backend and
# dtype, not the GPU index; the names are Tensor::toString(), dispatch key + scalar type + "Type"). A CPU
# input takes a CPU backend: MKLDNN (float32 strided or with kernels over 3x3) runs that check's MKLDNN
# variant; thnn (small float32 kernels) dispatches _slow_conv2d_forward to CUDA, whose wrapper checks.
def _conv_type(input_type: str, parameter: str, other_type: str, mkldnn: bool = False) -> str:
    text = f"Input type ({input_type}) and {parameter} type ({other_type}) should be the same"
    return text + (f" or input should be a MKLDNN tensor and {parameter} is a dense tensor" if mkldnn else "")


def _patch_embed(
    e: Env, dtype: torch.dtype, input_on: str, weight_on: str, bias_on: str | None = None
) -> torch.Tensor:
    # Qwen-VL's PatchEmbed: Conv3d(3, embed, kernel=stride=(temporal, patch, patch)); Qwen3-VL's has a bias
    pixels = e.randn(1, 3, 2, 14, 14, on=input_on).to(dtype)
    weight = e.randn(8, 3, 2, 14, 14, on=weight_on).to(dtype)
    bias = None if bias_on is None else e.randn(8, on=bias_on).to(dtype)
    return F.conv3d(pixels, weight, bias, stride=(2, 14, 14))


for _dtype, _name in ((torch.float32, "Float"), (torch.bfloat16, "BFloat16"), (torch.float16, "Half")):
    row(
        f"patch_embed_{_name.lower()}_input_gpu_weight_cpu",
        lambda e, dtype=_dtype: _patch_embed(e, dtype, C0, CPU),
        Err(_conv_type(f"CUDA{_name}Type", "weight", f"CPU{_name}Type")),
        "cuDNN branch: check_input_same_type_as_parameters raises a type error before any device check",
    )
    row(
        f"patch_embed_{_name.lower()}_bias_on_cpu",
        lambda e, dtype=_dtype: _patch_embed(e, dtype, C1, C1, CPU),
        Err(_conv_type(f"CUDA{_name}Type", "bias", f"CPU{_name}Type")),
        "the same check compares the bias after the weight",
    )
    row(
        f"patch_embed_{_name.lower()}_same_gpu_with_bias",
        lambda e, dtype=_dtype: _patch_embed(e, dtype, C1, C1, C1),
        Ok(C1, values=None if _dtype is torch.float16 else REF),
        "same device: runs (fp16 values are not compared: the CPU reference kernel differs)",
    )
row(
    "patch_embed_input_cpu_weight_gpu",
    lambda e: _patch_embed(e, torch.float32, CPU, C0),
    Err(_conv_type("CPUFloatType", "weight", "CUDAFloatType", mkldnn=True)),
    "CPU input: use_mkldnn (float32, strided, kernel over 3x3) -> MKLDNN's variant of the type check",
)
row(
    "patch_embed_input_and_weight_cpu_bias_gpu",
    lambda e: _patch_embed(e, torch.float32, CPU, CPU, C1),
    Err(_conv_type("CPUFloatType", "bias", "CUDAFloatType", mkldnn=True)),
    "the MKLDNN check reaches the bias when the weight matches",
)
row(
    "patch_embed_weight_other_gpu_bias_cpu",
    lambda e: _patch_embed(e, torch.float32, C0, C1, CPU),
    Err(_conv_type("CUDAFloatType", "bias", "CPUFloatType")),
    "cuda:0 and cuda:1 are one type, so the CPU bias fails the type check before cuDNN's device check",
)
row(
    "patch_embed_bfloat16_weight_other_gpu",
    lambda e: _patch_embed(e, torch.bfloat16, C0, C1),
    Err(cg("weight", C1, C0, "wrapper_CUDA__cudnn_convolution")),
    "same type on two GPUs passes the type check; cudnn_convolution's generated check raises",
)
row(
    "nn_conv3d_on_cpu_input_on_gpu",
    lambda e: torch.nn.Conv3d(3, 8, (2, 14, 14), (2, 14, 14), bias=False)(e.randn(1, 3, 2, 14, 14, on=C0)),
    Err(_conv_type("CUDAFloatType", "weight", "CPUFloatType")),
    "a patch embedding left on the CPU: nn.Conv3d.forward is F.conv3d(input, weight, bias)",
)
row(
    "conv1d_input_gpu_weight_cpu",
    lambda e: F.conv1d(e.randn(1, 3, 8), e.randn(2, 3, 3, on=CPU)),
    Err(_conv_type("CUDAFloatType", "weight", "CPUFloatType")),
    "conv1d is viewed as 2-D (view4d) and takes the same cuDNN branch",
)
row(
    "conv2d_small_input_cpu_weight_gpu",
    lambda e: F.conv2d(e.randn(1, 3, 5, 5, on=CPU), e.randn(2, 3, 3, 3, on=C0)),
    Err(cg("weight", C0, CPU, "wrapper_CUDA___slow_conv2d_forward")),
    "not MKLDNN (3x3, batch 1, small), so Slow2d: thnn_conv2d -> _slow_conv2d_forward dispatched to CUDA",
)
row(
    "conv2d_small_input_cpu_bias_gpu",
    lambda e: F.conv2d(e.randn(1, 3, 5, 5, on=CPU), e.randn(2, 3, 3, 3, on=CPU), e.randn(2, on=C1)),
    Err(cg("bias", C1, CPU, "wrapper_CUDA___slow_conv2d_forward")),
    "the same wrapper checks self, weight, bias in order",
)
row(
    "conv2d_depthwise_weight_other_gpu",
    lambda e: F.conv2d(e.randn(1, 4, 5, 5), e.randn(4, 1, 3, 3, on=C1), groups=4),
    Err(cg("weight", C1, C0, "wrapper_CUDA___conv_depthwise2d")),
    "is_depthwise (groups == channels, float32 contiguous): CudaDepthwise2d, no type check, wrapper check",
)
row(
    "conv2d_depthwise_weight_cpu",
    lambda e: F.conv2d(e.randn(1, 4, 5, 5), e.randn(4, 1, 3, 3, on=CPU), groups=4),
    Err(cg("weight", CPU, C0, "wrapper_CUDA___conv_depthwise2d")),
    "the depthwise branch has no type check: a CPU weight meets the generated device check",
)
row(
    "conv2d_unbatched_depthwise_weight_other_gpu",
    lambda e: F.conv2d(e.randn(4, 5, 5), e.randn(4, 1, 3, 3, on=C1), groups=4),
    Err(cg("weight", C1, C0, "wrapper_CUDA___conv_depthwise2d")),
    "conv2d_symint batchifies an unbatched input first: the same 2-D depthwise kernel",
)
row(
    "conv2d_unbatched_input_cpu_weight_gpu",
    lambda e: F.conv2d(e.randn(3, 20, 20, on=CPU), e.randn(8, 3, 5, 5, on=C0), stride=2),
    Err(_conv_type("CPUFloatType", "weight", "CUDAFloatType", mkldnn=True)),
    "batchified, strided float32: MKLDNN's type check",
)

# --------------------------------------------------------------------------------------------------------
# softmax, reductions, out= on another device
# --------------------------------------------------------------------------------------------------------
row("softmax_on_cuda1", lambda e: F.softmax(e.randn(2, 5, on=C1), dim=-1), Ok(C1), "single-input op")
row("sum_all_on_cuda1", lambda e: e.randn(2, 5, on=C1).sum(), Ok(C1), "a full reduction stays on device")
row(
    "mean_dim_on_cuda1",
    lambda e: e.randn(2, 5, on=C1).mean(-1, keepdim=True),
    Ok(C1),
    "reduction over a dim stays on device",
)
row(
    "sum_out_on_other_gpu",
    lambda e: torch.sum(e.randn(2, 3), 0, out=e.randn(3, on=C1)),
    Err("Expected out tensor to have device cuda:0, but got cuda:1 instead"),
    "structured sum.IntList_out: resize_reduction sets self's options; generated resize_out checks out",
)
row(
    "add_out_on_other_gpu",
    lambda e: torch.add(e.randn(2, 3), e.randn(2, 3), out=e.randn(2, 3, on=C1)),
    Err(ti(C1, C0)),
    "outputs come first among TensorIterator operands, so out's device becomes the common device",
)
row(
    "add_out_on_cpu",
    lambda e: torch.add(e.randn(2, 3), e.randn(2, 3), out=e.randn(2, 3, on=CPU)),
    Err(ti(C0, CPU)),
    "a CPU out is skipped when choosing the common device, then rejected",
)
row(
    "add_out_same_gpu",
    lambda e: torch.add(e.randn(2, 3, on=C1), e.randn(2, 3, on=C1), out=e.randn(2, 3, on=C1)),
    Ok(C1),
    "same device: runs",
)

row(
    "histc_of_ints_on_gpu",
    lambda e: torch.histc(e.t([0, 1, 1, 3, 7, 2, 2, 2, 9], on=C1, dtype=torch.int32), bins=8, min=0, max=7),
    Ok(C1, values=lambda e: torch.tensor([1, 2, 3, 1, 0, 0, 0, 1], dtype=torch.int32)),
    "_histc_cuda dispatches every type (the CPU kernel floats only; transformers' MoE routing counts ints "
    "on GPUs); counts in the input's dtype, bin (x - min) * bins / (max - min), 9 > max dropped",
)

# --------------------------------------------------------------------------------------------------------
# The calls that see several devices in the seed-style scenarios (Scenario.preset "seed-batched" and
# "seed-video") of every shipped checkpoint, collected on both stacks: torch.embedding (ids and weight on two
# GPUs), Tensor.__getitem__ with CPU indices and gt across GPUs are rows above; the rest are below. A 0-dim
# integer tensor where an int is expected (a size, a repeat count, a pad width) is read by the Python
# argument parser with item() (python_arg_parser.cpp), a host value on every device: no device rule applies.
# --------------------------------------------------------------------------------------------------------
row(
    "rope_expand_with_gpu_scalar_size",
    lambda e: e.t([[0, 1, 2]], on=CPU).expand(e.t(3), -1),
    Ok(CPU),
    "get_rope_index: torch.arange(...).view(1, -1).expand(llm_grid_t, -1), the grid size a 0-dim GPU tensor",
)
row(
    "rope_reshape_with_gpu_scalar_sizes",
    lambda e: e.t(list(range(6)), on=CPU).reshape(e.t(2, on=C1), e.t(3, on=C1)),
    Ok(CPU),
    "sizes read with item(); the CPU tensor is reshaped where it is",
)
row(
    "rope_repeat_with_gpu_scalar_count",
    lambda e: e.t([0, 1], on=CPU).repeat(e.t(2)),
    Ok(CPU),
    "a repeat count read with item()",
)
row(
    "pad_with_gpu_scalar_widths",
    lambda e: F.pad(e.t([1, 2], on=CPU), (e.t(1), e.t(2))),
    Ok(CPU),
    "pad widths read with item()",
)
row(
    "expand_as_mask_to_embeds_on_other_gpu",
    lambda e: e.t([[True], [False]]).expand_as(e.randn(2, 3, on=C1)),
    Ok(C0),
    "expand_as (CompositeImplicit) takes other's sizes only: the mask stays on its GPU",
)
row(
    "video_time_tensor_cpu_range_times_gpu_scalar",
    lambda e: e.t([[0], [1]], on=CPU).expand(-1, 2) * e.t(2.0, on=C0),
    Err(ti(C0, CPU)),
    "the seed's video failure (4.51.3 get_rope_index: expanded_range * second_per_grid_t): the 0-dim "
    "GPU tensor sets the common device, the CPU range is refused (pytorch#119609)",
)

# --------------------------------------------------------------------------------------------------------
# torch.cuda API
# --------------------------------------------------------------------------------------------------------
row("cuda_is_available", lambda e: torch.cuda.is_available(), Value(True), "a machine with GPUs")
row("cuda_device_count", lambda e: torch.cuda.device_count(), Value(2), "simulated_gpus(2)")
row("cuda_current_device", lambda e: torch.cuda.current_device(), Value(0), "the current device starts at 0")


def _set_device_then_bare_cuda(e: Env) -> tuple:
    torch.cuda.set_device(1)
    try:
        return (
            torch.cuda.current_device(),
            str(torch.zeros(2, device="cuda").device),
            str(torch.ones(2).cuda().device),
        )
    finally:
        torch.cuda.set_device(0)


row(
    "set_device_then_bare_cuda",
    _set_device_then_bare_cuda,
    Value((1, C1, C1)),
    "after set_device(1), 'cuda' and .cuda() mean cuda:1",
)


def _device_context(e: Env) -> tuple:
    with torch.cuda.device(1):
        inside = (torch.cuda.current_device(), str(torch.empty(1, device="cuda").device))
    return (*inside, torch.cuda.current_device())


row(
    "cuda_device_context_manager",
    _device_context,
    Value((1, C1, 0)),
    "torch.cuda.device(1) switches the current device and restores it",
)
row(
    "get_device_properties_total_memory",
    lambda e: tuple(torch.cuda.get_device_properties(i).total_memory for i in range(2)),
    Value((24 * GiB, 24 * GiB)),
    "total_memory is the memory argument (default 24GiB), per device",
)
row(
    "mem_get_info_total",
    lambda e: (lambda free, total: (total, 0 < free <= total))(*torch.cuda.mem_get_info(1)),
    Value((24 * GiB, True)),
    "mem_get_info returns (free, total) in bytes",
)


def _memory_allocated(e: Env) -> tuple:
    before0, before1 = torch.cuda.memory_allocated(0), torch.cuda.memory_allocated(1)
    x = torch.empty(MiB // 4, dtype=torch.float32, device="cuda:0")  # 1 MiB, a multiple of 512 B
    grew0, grew1 = torch.cuda.memory_allocated(0) - before0, torch.cuda.memory_allocated(1) - before1
    del x
    return grew0, grew1, torch.cuda.memory_allocated(0) - before0


row(
    "memory_allocated_tracks_live_tensor",
    _memory_allocated,
    Value((MiB, 0, 0)),
    "the caching allocator counts the live block on its own device and drops it when the tensor dies",
)


# --------------------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------------------
def _snapshot(out: Any) -> dict:
    if isinstance(out, torch.Tensor):
        return {
            "device": str(out.device),
            "dtype": out.dtype,
            "shape": tuple(out.shape),
            "values": out.detach().cpu().tolist(),
        }
    return {"value": out}


def _close(got: Any, want: Any) -> bool:
    g, w = torch.tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64)
    return g.shape == w.shape and torch.allclose(g, w, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_table_is_big_enough_and_ids_are_unique():
    assert len(ROWS) >= 225
    assert len({r.id for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_conformance(row: Row) -> None:
    expect = row.expect
    got: dict | None = None
    raised: BaseException | None = None
    with qd.simulated_gpus(2):
        try:
            got = _snapshot(row.fn(Env(real=True)))
        except Exception as exc:  # judged below against the real-CUDA outcome
            raised = exc
    where = f"[{row.id}] real CUDA: {expect}\n  why: {row.reason}"

    if isinstance(expect, Err):
        assert raised is not None, f"{where}\n  simulator: no error, returned {got}"
        assert isinstance(raised, expect.exc), f"{where}\n  simulator: {type(raised).__name__}: {raised}"
        assert str(raised) == expect.message, f"{where}\n  simulator: {raised}"
        return
    if raised is not None:
        raise AssertionError(f"{where}\n  simulator: {type(raised).__name__}: {raised}") from raised
    assert got is not None
    if isinstance(expect, Value):
        assert got == {"value": expect.value}, f"{where}\n  simulator: {got}"
        return
    assert "device" in got, f"{where}\n  simulator returned a non-tensor: {got}"
    assert got["device"] == expect.device, f"{where}\n  simulator: result on {got['device']}"
    if expect.values is None:
        return
    want = _snapshot(row.fn(Env(real=False)) if expect.values == REF else expect.values(Env(real=False)))
    assert (got["dtype"], got["shape"]) == (want["dtype"], want["shape"]), f"{where}\n  simulator: {got}"
    assert _close(got["values"], want["values"]), f"{where}\n  simulator: {got['values']} vs {want['values']}"


def test_total_memory_follows_the_memory_argument():
    with qd.simulated_gpus(2, memory="8GiB"):
        totals = [torch.cuda.get_device_properties(i).total_memory for i in range(2)]
        info_total = torch.cuda.mem_get_info(0)[1]
    assert totals == [8 * GiB, 8 * GiB]
    assert info_total == 8 * GiB
