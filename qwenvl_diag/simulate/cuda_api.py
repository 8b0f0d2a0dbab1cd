"""The `torch.cuda` functions, answered as a machine with N GPUs of the simulated memory would."""

from __future__ import annotations

import types

import torch

from . import rng, state

NAME = "Simulated GPU (qwenvl-diag)"


def _index(device=None) -> int:
    simulation = state.active()
    if device is None:
        return simulation.current
    resolved = state.cuda_device(device)
    if resolved is None:
        raise ValueError(f"Expected a cuda device, but got: {device}")
    return resolved.index


def _set_device(device) -> None:
    state.active().current = _index(device)


class _DeviceContext:
    """`torch.cuda.device(i)`: a context manager that makes GPU i the current one."""

    def __init__(self, device):
        self.index = -1 if device is None or device == -1 else _index(device)
        self.previous = -1

    def __enter__(self):
        simulation = state.active()
        self.previous = simulation.current
        if self.index >= 0:
            simulation.current = self.index

    def __exit__(self, *exc):
        state.active().current = self.previous
        return False


def _properties(device=None):
    _index(device)
    simulation = state.active()
    return types.SimpleNamespace(
        name=NAME,
        total_memory=simulation.memory,
        major=9,
        minor=0,
        multi_processor_count=132,
        is_integrated=False,
        is_multi_gpu_board=False,
    )


def _mem_get_info(device=None) -> tuple[int, int]:
    simulation = state.active()
    used = simulation.allocated(_index(device))
    return max(0, simulation.memory - used), simulation.memory


def _memory_allocated(device=None) -> int:
    return state.active().allocated(_index(device))


def _max_memory_allocated(device=None) -> int:
    simulation = state.active()
    index = _index(device)
    simulation.allocated(index)
    return simulation.peak[index]


def _reset_peak(device=None) -> None:
    simulation = state.active()
    index = _index(device)
    simulation.peak[index] = 0
    simulation.allocated(index)


def _nothing(*args, **kwargs) -> None:
    return None


def shims(count: int) -> dict:
    """{torch.cuda attribute: simulated replacement}."""
    return {
        "is_available": lambda: True,
        "is_initialized": lambda: True,
        "_lazy_init": _nothing,
        "init": _nothing,
        "device_count": lambda: count,
        "current_device": lambda: state.active().current,
        "set_device": _set_device,
        "device": _DeviceContext,
        "get_device_properties": _properties,
        "get_device_name": lambda device=None: _properties(device).name,
        "get_device_capability": lambda device=None: (9, 0),
        "is_bf16_supported": lambda including_emulation=True: True,
        "mem_get_info": _mem_get_info,
        "memory_allocated": _memory_allocated,
        "memory_reserved": _memory_allocated,
        "max_memory_allocated": _max_memory_allocated,
        "max_memory_reserved": _max_memory_allocated,
        "reset_peak_memory_stats": _reset_peak,
        "reset_max_memory_allocated": _reset_peak,
        "synchronize": _nothing,
        "empty_cache": _nothing,
        "ipc_collect": _nothing,
        "manual_seed": rng.manual_seed,
        "manual_seed_all": rng.manual_seed_all,
        "get_rng_state": rng.get_rng_state,
        "set_rng_state": rng.set_rng_state,
    }


def cached_availability_checks() -> list:
    """lru-cached "is CUDA available" answers of transformers and accelerate, to clear on start and stop."""
    import importlib

    found = []
    for module_name in ("transformers.utils.import_utils", "accelerate.utils.imports"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name, value in vars(module).items():
            if ("available" in name or "cuda" in name) and hasattr(value, "cache_clear"):
                found.append(value)
    return found


def check_no_real_cuda() -> int:
    """Real CUDA devices this process can use (0 on a machine without a working driver)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0
