"""Recognising PyTorch's device-mismatch errors in text (no torch needed: pasted tracebacks work too).

One pattern per message a torch 2.x op raises when it sees tensors on different devices; each names the
ATen source that raises it. The simulator raises the same texts (`simulate/rules.py`).
"""

from __future__ import annotations

import re

# c10/core/ScalarType.h (AT_FORALL_SCALAR_TYPES_WITH_COMPLEX_AND_QINTS and friends): the name
# `c10::toString(ScalarType)` prints for each torch dtype, keyed by the dtype's name in `torch`.
SCALAR_TYPE_NAMES = {
    "uint8": "Byte",
    "int8": "Char",
    "int16": "Short",
    "int32": "Int",
    "int64": "Long",
    "float16": "Half",
    "float32": "Float",
    "float64": "Double",
    "complex32": "ComplexHalf",
    "complex64": "ComplexFloat",
    "complex128": "ComplexDouble",
    "bool": "Bool",
    "bfloat16": "BFloat16",
    "uint16": "UInt16",
    "uint32": "UInt32",
    "uint64": "UInt64",
    "float8_e5m2": "Float8_e5m2",
    "float8_e4m3fn": "Float8_e4m3fn",
    "float8_e5m2fnuz": "Float8_e5m2fnuz",
    "float8_e4m3fnuz": "Float8_e4m3fnuz",
}
# longest first, so that a suffix match takes the whole name ("ComplexFloat", not "Float")
_BY_LENGTH = sorted(SCALAR_TYPE_NAMES.values(), key=len, reverse=True)

_MESSAGES = (
    # aten/src/ATen/core/adaption.cpp common_device_check_failure (generated wrappers) and
    # TensorIterator.cpp compute_types
    r"Expected all tensors to be on the same device",
    # TensorAdvancedIndexingUtils.h / IndexingUtils.h check_indices_on_cpu_or_selfdevice
    r"indices should be either on cpu or on the same device as the indexed tensor",
    # cuda/Indexing.cu masked_fill__cuda
    r"expected self and mask to be on the same device",
    r"masked_fill_: Expected inputs to be on same device",
    # transformers/attention.cpp validate_sdpa_input
    r"Expected query, key, and value to have the same device type",
    # cuda/Indexing.cu index_put_with_sort_kernel
    r"expected device \S+ but got device \S+ for value tensor",
    # generated structured kernels' resize_out / check_inplace
    r"Expected out tensor to have device",
    # TensorIterator.cpp compute_types
    r"Trying to pass too many CPU scalars to non-CPU kernel",
    # torch/_subclasses/fake_tensor.py merge_devices under torch.compile, in older torch (2.14 raises
    # FakeTensorDeviceMismatchError with the adaption.cpp wording)
    r"Unhandled FakeTensor Device Propagation for",
)
_DEVICE_MESSAGE = re.compile("|".join(_MESSAGES))

# Convolution.cpp check_input_same_type_as_parameters: `Tensor::toString()` is the dispatch key's name
# and the scalar type's ("CUDABFloat16Type"); before torch 1.x's rename, `type().toString()` printed
# "torch.cuda.FloatTensor" / "torch.FloatTensor".
_CONV_TYPES = re.compile(
    r"Input type \((?P<input>[\w.]+)\) and (?P<parameter>weight|bias) type \((?P<other>[\w.]+)\) "
    r"should be the same"
)


def _backend(type_name: str) -> str:
    """The device part of a tensor type name: "CUDA" of "CUDABFloat16Type", "torch.cuda" of
    "torch.cuda.HalfTensor"."""
    if type_name.startswith("torch."):
        return type_name.rsplit(".", 1)[0]
    stem = type_name.removesuffix("Type")
    scalar = next((name for name in _BY_LENGTH if stem.endswith(name)), "")
    return stem[: len(stem) - len(scalar)]


def type_device(type_name: str) -> str:
    """The device kind a tensor type name stands for: "cuda" for "CUDABFloat16Type" and
    "torch.cuda.HalfTensor", "cpu" for "CPUFloatType" and "torch.FloatTensor", "xpu", "mps", "npu"
    (PrivateUse1) ..."""
    backend = _backend(type_name)
    named = {"torch": "cpu", "torch.cuda": "cuda", "PrivateUse1": "npu"}
    return named.get(backend, backend.lower())


def convolution_type_mismatch(text: str) -> tuple[str, str, str] | None:
    """(input type, "weight" or "bias", its type) of a convolution type error whose two tensors are on
    different kinds of device, e.g. ("CUDABFloat16Type", "weight", "CPUBFloat16Type"); None for any
    other text, including the same message for a dtype-only mismatch ("CUDAHalfType" vs "CUDAFloatType")."""
    match = _CONV_TYPES.search(text)
    if match is None or _backend(match["input"]) == _backend(match["other"]):
        return None
    return match["input"], match["parameter"], match["other"]


def is_device_error(text: str) -> bool:
    """Whether an error text is PyTorch refusing tensors on different devices: "Expected all tensors to
    be on the same device", the indexing, masked_fill, SDPA, out= and CPU-scalar variants, and the
    convolution type check when input and weight (or bias) sit on different kinds of device."""
    return bool(_DEVICE_MESSAGE.search(text)) or convolution_type_mismatch(text) is not None
