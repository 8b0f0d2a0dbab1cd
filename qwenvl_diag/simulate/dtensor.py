"""DTensor on simulated GPUs: a distributed tensor reports the device of its local shard.

torch/distributed/tensor/_api.py makes a DTensor with `torch.Tensor._dtensor__new__(cls, local_tensor,
...)`, whose C++ wrapper takes the local tensor's device: on a GPU machine `dtensor.device` is the
rank's `cuda:<index>`, or `cpu` for a CPU-offloaded shard. A simulated shard's C++ device is the CPU,
so the wrapper's own `device` would read `cpu`; these properties read the shard's simulated device.
"""

from __future__ import annotations

import torch

from .tensor import adopt, device_of

_Tensor = torch.Tensor
_DISABLE = torch._C.DisableTorchFunctionSubclass
# The DTensor class, once `shims` has imported torch.distributed.tensor (None before: no DTensor exists).
DTENSOR: type | None = None


def _shard_device(dtensor) -> torch.device:
    return device_of(dtensor._local_tensor)


def _is_cuda(dtensor) -> bool:
    return _shard_device(dtensor).type == "cuda"


def _get_device(dtensor) -> int:
    device = _shard_device(dtensor)
    return device.index if device.type == "cuda" else -1


def shims() -> dict:
    """{DTensor class: {attribute: replacement}}, or {} where torch has no distributed package."""
    if not torch.distributed.is_available():
        return {}
    global DTENSOR
    from torch.distributed.tensor import DTensor

    DTENSOR = DTensor
    return {
        DTensor: {
            "device": property(_shard_device),
            "is_cuda": property(_is_cuda),
            "get_device": _get_device,
        }
    }


def _shards(value, found: list) -> list:
    if isinstance(value, DTENSOR):
        found.append(value)
    elif type(value) in (list, tuple):
        for item in value:
            _shards(item, found)
    elif type(value) is dict:
        for item in value.values():
            _shards(item, found)
    return found


def _adopt_shards(out, device: torch.device):
    """Outputs of a DTensor op: each fresh local shard (and plain result) goes on `device`."""
    if isinstance(out, DTENSOR):
        local = out._local_tensor
        if type(local) is _Tensor:
            adopt(local, device)
        return out
    if type(out) is _Tensor:
        return adopt(out, device)
    if type(out) in (list, tuple):
        return type(out)(_adopt_shards(item, device) for item in out)
    return out


def dtensor_call(func, args: tuple, kwargs: dict):
    """A call on DTensors. DTensor's dispatch (a C++ fast path, torch/distributed/tensor/_dispatch.py)
    runs the op on each local shard below Python's view, so its fresh shards come back plain: they are
    put where the input shards are, the device the local kernel ran on. Not modelled: shards on several
    devices in one op (a GPU's local kernel would refuse them; here the op runs on the CPU data and its
    results keep the CPU)."""
    shards = _shards((args, kwargs), [])
    devices = {_shard_device(shard) for shard in shards}
    with _DISABLE():
        out = func(*args, **kwargs)
    device = next(iter(devices))
    return _adopt_shards(out, device) if len(devices) == 1 and device.type == "cuda" else out


def is_dtensor_type(kind: type) -> bool:
    return DTENSOR is not None and issubclass(kind, DTENSOR)


def has_shards(args: tuple, kwargs: dict) -> bool:
    return bool(_shards((args, kwargs), []))
