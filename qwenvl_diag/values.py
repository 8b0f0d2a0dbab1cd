"""Short, read-only descriptions of argument values (tensors, lists, scalars) for the kit's frames.

Everything here only reads: no value is moved, copied to another device or modified. Tensors on
real or simulated GPUs are read with `.tolist()` / `.item()`, which both support.
"""

from __future__ import annotations

from typing import Any

import torch

SMALL = 8
"""A tensor or list with at most this many elements is summarised by its full value list."""


def _number(value: Any) -> str:
    if not isinstance(value, float):
        return repr(value)
    text = f"{value:.4g}"
    return text if any(c in text for c in ".ena") else text + ".0"  # 1.0 stays a float: "1.0"


def _numbers(values: list) -> str:
    return "[" + ", ".join(_numbers(v) if isinstance(v, list) else _number(v) for v in values) + "]"


def tensors_in(value: Any) -> list[torch.Tensor]:
    """The tensors in `value`: itself, or the items of a list/tuple (one level)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    return []


def value_type(value: Any) -> str:
    """'Tensor' for any tensor (real or simulated), 'list[float]' style for lists and tuples, else the
    type name."""
    if isinstance(value, torch.Tensor):
        return "Tensor"
    if isinstance(value, (list, tuple)):
        items = sorted({value_type(v) for v in value})
        return f"{type(value).__name__}[{' | '.join(items)}]" if items else type(value).__name__
    return type(value).__name__


def value_device(value: Any) -> str:
    """The device of a tensor ("cuda:0", "cpu"), the devices of the tensors in a list joined by ", ",
    or "" when the value holds no tensor."""
    return ", ".join(sorted({str(t.device) for t in tensors_in(value)}, key=lambda d: (len(d), d)))


def value_dtype(value: Any) -> str:
    """The dtype of a tensor without the "torch." prefix (those of a list's tensors joined), or ""."""
    return ", ".join(sorted({str(t.dtype).removeprefix("torch.") for t in tensors_in(value)}))


def value_shape(value: Any) -> tuple | None:
    """A tensor's shape as a tuple (() for a 0-dim tensor), `(len,)` for a list or tuple, else None."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)):
        return (len(value),)
    return None


def _tensor_summary(tensor: torch.Tensor) -> str:
    if tensor.device.type == "meta":
        return "no data (meta device)"
    if tensor.numel() == 0:
        return "empty"
    data = tensor.detach()
    if data.dim() == 0:
        return _number(data.item())
    if data.numel() <= SMALL:
        return _numbers(data.tolist())
    flat = data.flatten()
    low, high = (flat.min().item(), flat.max().item()) if flat.dtype != torch.bool else (None, None)
    first = _numbers(flat[:4].tolist())[:-1] + ", ...]"
    span = f"min={_number(low)} max={_number(high)} " if low is not None else ""
    return f"{span}first={first}"


def value_summary(value: Any) -> str:
    """A one-line summary: a small tensor or list in full, a large tensor as min / max / first values,
    a list of tensors as a count, anything else as its repr (cut to 60 characters)."""
    if isinstance(value, torch.Tensor):
        return _tensor_summary(value)
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (bool, int, float)) for v in value):
            shown = _numbers(list(value[:SMALL]))
            return shown if len(value) <= SMALL else shown[:-1] + f", ... ({len(value)} items)]"
        tensors = tensors_in(value)
        if tensors:
            return f"{len(tensors)} tensors of shapes {', '.join(str(tuple(t.shape)) for t in tensors[:4])}"
    if value is None or isinstance(value, (bool, int, float, str, torch.dtype, torch.device)):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return type(value).__name__
