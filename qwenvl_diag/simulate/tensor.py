"""The tensor that lives on a simulated GPU: CPU data, a Python-level `device` that says `cuda:N`.

C++ keeps seeing a CPU tensor (so no CUDA machinery is ever touched and every kernel runs on the
CPU); Python code, transformers and accelerate included, sees `tensor.device == cuda:N`.
"""

from __future__ import annotations

import torch

from . import state

_CPU = torch.device("cpu")
_handle = None


def handle_calls_with(handle) -> None:
    """Make `handle(func, args, kwargs)` what every torch call on a simulated tensor does: `calls`
    registers its handler here, since it builds on this module (the dependency goes one way)."""
    global _handle
    _handle = handle


class SimTensor(torch.Tensor):
    """A tensor on a simulated CUDA device (see `qwenvl_diag.simulated_gpus`)."""

    @property
    def device(self) -> torch.device:
        return device_of(self)

    @property
    def is_cuda(self) -> bool:
        return device_of(self).type == "cuda"

    @property
    def is_cpu(self) -> bool:
        return device_of(self).type == "cpu"

    def get_device(self) -> int:
        device = device_of(self)
        return device.index if device.type == "cuda" else -1

    @property
    def _is_param(self) -> bool:
        return self.__dict__.get("_param_flag", False)

    @_is_param.setter
    def _is_param(self, value: bool) -> None:
        # nn.Parameter(simulated tensor) returns the tensor itself marked `_is_param`; make it a real
        # Parameter subclass, so `type(param)` and `isinstance` read as for a Parameter on a GPU.
        self.__dict__["_param_flag"] = value
        if value and type(self) is SimTensor:
            self.__class__ = SimParameter

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return _handle(func, args, kwargs or {})


class SimParameter(SimTensor, torch.nn.Parameter):
    """An `nn.Parameter` on a simulated GPU."""

    def __new__(cls, data=None, requires_grad=True):
        # `type(param)(value, requires_grad=...)` (accelerate, transformers) builds what nn.Parameter builds.
        return torch.nn.Parameter(data, requires_grad)


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
