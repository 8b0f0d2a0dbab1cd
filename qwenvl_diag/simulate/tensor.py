"""The tensor that lives on a simulated GPU: CPU data, a Python-level `device` that says `cuda:N`.

C++ keeps seeing a CPU tensor (so no CUDA machinery is ever touched and every kernel runs on the
CPU); Python code, transformers and accelerate included, sees `tensor.device == cuda:N`.
"""

from __future__ import annotations

import torch

from . import state

_CPU = torch.device("cpu")


class SimTensor(torch.Tensor):
    """A tensor on a simulated CUDA device (see `qwenvl_diag.simulated_gpus`)."""

    @property
    def device(self) -> torch.device:
        return self._sim_device

    @property
    def is_cuda(self) -> bool:
        return True

    @property
    def is_cpu(self) -> bool:
        return False

    def get_device(self) -> int:
        return self._sim_device.index

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        from .calls import handle

        return handle(func, args, kwargs or {})


class SimParameter(SimTensor, torch.nn.Parameter):
    """An `nn.Parameter` moved in place (`param.data = ...`, as `Module.to` does) to a simulated GPU."""


# torch's repr prints `type(t).__name__ + "("` for subclasses; a simulated tensor prints as CUDA's does.
SimTensor.__name__ = SimParameter.__name__ = "tensor"


_SIM_CLASS = {torch.Tensor: SimTensor, torch.nn.Parameter: SimParameter}
_PLAIN_CLASS = {SimTensor: torch.Tensor, SimParameter: torch.nn.Parameter}


def device_of(tensor: torch.Tensor) -> torch.device:
    """The device a tensor reports: its simulated device, else its real one."""
    return tensor.__dict__.get("_sim_device") or torch.Tensor.device.__get__(tensor)


def adopt(out, device: torch.device):
    """Put the fresh plain tensors in `out` (a tensor, or a tuple/list of them) on simulated `device`."""
    kind = type(out)
    if kind is torch.Tensor:
        out.__class__ = SimTensor
        out._sim_device = device
        simulation = state.active()
        if simulation is not None:
            simulation.live[id(out)] = out
        return out
    if kind is tuple or kind is list:
        return kind(adopt(item, device) for item in out)
    if isinstance(out, tuple):  # torch.return_types (max, sort, ...) take one sequence
        return kind([adopt(item, device) for item in out])
    return out


def move_in_place(tensor: torch.Tensor, device: torch.device) -> None:
    """Make `tensor` (whose data was just swapped) report `device`, keeping the Python object."""
    kind = type(tensor)
    if device.type == "cuda":
        tensor.__class__ = _SIM_CLASS.get(kind, kind)
        tensor._sim_device = device
        simulation = state.active()
        if simulation is not None:
            simulation.live[id(tensor)] = tensor
    elif kind in _PLAIN_CLASS:
        tensor.__class__ = _PLAIN_CLASS[kind]
        del tensor._sim_device
