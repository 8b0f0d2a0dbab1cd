"""Recognising device-mismatch errors in text (qwenvl_diag.device_errors): texts real CUDA machines print."""

from __future__ import annotations

import re

import pytest
import torch

from qwenvl_diag.device_errors import SCALAR_TYPE_NAMES, convolution_type_mismatch, is_device_error

DEVICE_ERRORS = [
    # a 2025 multi-GPU Qwen2.5-VL report (generated wrapper check)
    "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cuda:1! "
    "(when checking argument for argument mat2 in method wrapper_CUDA_bmm)",
    "Expected all tensors to be on the same device, but got index is on cpu, different from other tensors "
    "on cuda:0 (when checking argument in method wrapper_CUDA__index_select)",
    "indices should be either on cpu or on the same device as the indexed tensor (cuda:0)",
    "expected self and mask to be on the same device, but got mask on cpu and self on cuda:0",
    "Expected query, key, and value to have the same device type, but got query.device: cuda:0 "
    "key.device: cuda:1 and value.device: cuda:1 instead.",
    "expected device cuda:0 but got device cuda:1 for value tensor",
    "Expected out tensor to have device cuda:0, but got cuda:1 instead",
    "Trying to pass too many CPU scalars to non-CPU kernel!",
    # public reports of a patch embedding whose weight stayed on the CPU (Tensor::toString() names)
    "Input type (CUDABFloat16Type) and weight type (CPUBFloat16Type) should be the same",
    "Input type (CPUFloatType) and weight type (CUDAFloatType) should be the same or input should be a "
    "MKLDNN tensor and weight is a dense tensor",
    "Input type (CUDAHalfType) and bias type (CPUHalfType) should be the same",
    # the pre-1.x spelling (type().toString()), still pasted from old notebooks
    "Input type (torch.cuda.FloatTensor) and weight type (torch.FloatTensor) should be the same",
    # torch.compile's fake tensors in older torch (unslothai/unsloth#4066, Qwen3-VL-30B-A3B on 2 GPUs)
    "Unhandled FakeTensor Device Propagation for aten.add.Tensor, found two different devices cuda:1, cuda:0",
]
OTHER_ERRORS = [
    # the same check for a dtype mismatch on one device is not a device error
    "Input type (CUDAHalfType) and weight type (CUDAFloatType) should be the same",
    "Input type (torch.cuda.HalfTensor) and weight type (torch.cuda.FloatTensor) should be the same",
    "Input type (CUDAComplexFloatType) and weight type (CUDAFloatType) should be the same",
    "CUDA out of memory. Tried to allocate 2.00 GiB",
    "mat1 and mat2 shapes cannot be multiplied (4x3 and 4x3)",
]


@pytest.mark.parametrize("text", DEVICE_ERRORS)
def test_device_errors_are_recognised(text):
    assert is_device_error(text)
    assert is_device_error(f"Traceback (most recent call last):\n  ...\nRuntimeError: {text}\n")


@pytest.mark.parametrize("text", OTHER_ERRORS)
def test_other_errors_are_not(text):
    assert not is_device_error(text)
    assert convolution_type_mismatch(text) is None


def test_a_convolution_mismatch_names_both_types():
    text = "RuntimeError: Input type (CUDABFloat16Type) and weight type (CPUBFloat16Type) should be the same"
    assert convolution_type_mismatch(text) == ("CUDABFloat16Type", "weight", "CPUBFloat16Type")


@pytest.mark.parametrize("name", sorted(SCALAR_TYPE_NAMES))
def test_scalar_type_names_are_the_installed_torchs(name):
    # torch.asarray's copy=False refusal prints c10::toString(ScalarType) of both dtypes (tensor_new.cpp)
    dtype = getattr(torch, name)
    other = torch.float64 if dtype != torch.float64 else torch.float32
    with pytest.raises(ValueError) as raised:
        torch.asarray(torch.empty(1, dtype=dtype), dtype=other, copy=False)
    assert re.search(r"with dtype '(\w+)'", str(raised.value))[1] == SCALAR_TYPE_NAMES[name]
