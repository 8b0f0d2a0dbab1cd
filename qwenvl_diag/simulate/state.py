"""The active simulation: how many GPUs, their memory, the current device of each thread, live tensors."""

from __future__ import annotations

import threading
import weakref

import torch

_CUDA = "cuda"
# torch's default seed of a CUDA generator (c10::detail::default_rng_seed_val).
DEFAULT_CUDA_SEED = 67280421310721


def seeded_state(seed: int) -> torch.Tensor:
    """A generator state seeded with `seed`: what a simulated GPU's generator starts from (see `rng`)."""
    return torch.Generator().manual_seed(seed).get_state()


class Simulation:
    """Plain state of one running simulation; `context.SimulatedGPUs` starts and stops it."""

    def __init__(self, count: int, memory: int):
        self.count = count
        self.memory = memory
        # keyed by id(): tensors compare elementwise, so they cannot be keys or set members themselves
        self.live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self.peak = [0] * count
        self.transfers = 0
        self.transferred_bytes = 0
        self._thread = threading.local()
        self.rng_states = [seeded_state(DEFAULT_CUDA_SEED) for _ in range(count)]

    @property
    def current(self) -> int:
        return getattr(self._thread, "index", 0)

    @current.setter
    def current(self, index: int) -> None:
        self._thread.index = index

    def allocated(self, index: int) -> int:
        """Bytes of the distinct storages of live tensors on simulated GPU `index`."""
        seen: dict[int, int] = {}
        for tensor in list(self.live.values()):
            device = tensor.__dict__.get("_sim_device")
            if device is not None and device.index == index:
                storage = torch.Tensor.untyped_storage(tensor)
                seen[storage.data_ptr()] = storage.nbytes()
        total = sum(seen.values())
        self.peak[index] = max(self.peak[index], total)
        return total


_ACTIVE: Simulation | None = None


def active() -> Simulation | None:
    """The running simulation, or None."""
    return _ACTIVE


def set_active(simulation: Simulation | None) -> None:
    global _ACTIVE
    _ACTIVE = simulation


def invalid_ordinal() -> RuntimeError:
    # CUDA's own text (c10/cuda/CUDAException: "CUDA error: " + cudaGetErrorString(cudaErrorInvalidDevice)).
    return RuntimeError(
        "CUDA error: invalid device ordinal\nCUDA kernel errors might be asynchronously reported at some "
        "other API call, so the stacktrace below might be incorrect."
    )


def cuda_device(spec) -> torch.device | None:
    """The simulated `cuda:N` that `spec` (int, "cuda", "cuda:1", torch.device) names, else None.

    A bare "cuda" means the thread's current device, as in PyTorch; an index beyond the simulated
    count raises CUDA's "invalid device ordinal".
    """
    if spec is None:
        return None
    if isinstance(spec, int) and not isinstance(spec, bool):
        index = spec
    else:
        if isinstance(spec, str):
            spec = torch.device(spec)
        if not isinstance(spec, torch.device) or spec.type != _CUDA:
            return None
        index = spec.index
    simulation = _ACTIVE
    if index is None:
        index = simulation.current if simulation is not None else 0
    if simulation is not None and not 0 <= index < simulation.count:
        raise invalid_ordinal()
    return torch.device(_CUDA, index)
