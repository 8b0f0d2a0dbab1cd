"""`simulated_gpus`: start and stop a simulation, and put every patched thing back."""

from __future__ import annotations

import os
import threading

from torch.overrides import TorchFunctionMode

from ..errors import SimulationError
from . import autograd, cuda_api, dtensor, state, streams, vmap
from .calls import handle, is_simulated_call


class _SimulationMode(TorchFunctionMode):
    """Routes the calls that involve simulated devices to `calls.handle`; the rest run untouched."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in autograd.CALLS:  # the engine runs below this layer: it needs the simulation re-entered
            return autograd.backward(self, func, args, kwargs)
        if is_simulated_call(func, types, kwargs):
            return handle(func, args, kwargs)
        return func(*args, **kwargs)


def _parse_memory(memory) -> int:
    from accelerate.utils import convert_file_size_to_int

    try:
        size = convert_file_size_to_int(memory)
    except (ValueError, AttributeError, TypeError) as error:
        raise SimulationError(
            f"Cannot read memory {memory!r}: use bytes or a string like '24GiB'."
        ) from error
    if isinstance(memory, bool) or size <= 0:
        raise SimulationError(f"memory must be positive bytes or a string like '24GiB'; got {memory!r}.")
    return size


class SimulatedGPUs:
    """N simulated CUDA GPUs; use `with simulated_gpus(...)`, or `.start()` and `.stop()` in notebooks.

    Under it, `torch.cuda` reports N devices of `memory` bytes, tensors can be put on `cuda:0..N-1`
    (their data stays on the CPU), and ops that mix devices raise what a CUDA build raises.
    """

    def __init__(self, count: int = 2, memory: int | str = "24GiB"):
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 64:
            raise SimulationError(f"The number of simulated GPUs must be an int from 1 to 64; got {count!r}.")
        self.count = count
        self.memory = _parse_memory(memory)
        self.simulation: state.Simulation | None = None
        self._saved: dict = {}
        self._mode: _SimulationMode | None = None

    @property
    def running(self) -> bool:
        return self.simulation is not None

    def start(self) -> SimulatedGPUs:
        """Start simulating; returns self. Stop with `.stop()` (same thread)."""
        if state.active() is not None:
            raise SimulationError(
                "Simulated GPUs are already running; stop them first (`.stop()`, or leave the `with` block). "
                "One simulation at a time: nest nothing."
            )
        real = cuda_api.check_no_real_cuda()
        if real:
            raise SimulationError(
                f"This machine has {real} real CUDA device(s): simulated GPUs would shadow them. Use the "
                "real devices (every qwenvl-diag function works on them unchanged), or hide them with "
                "CUDA_VISIBLE_DEVICES='' before starting Python to simulate."
            )
        import torch._dynamo  # noqa: F401  (imported lazily by modes; must not first happen under ours)

        simulation = state.Simulation(self.count, self.memory)
        patched = {
            torch.cuda: {**cuda_api.shims(self.count), **streams.shims()},
            torch.accelerator: streams.accelerator_shims(),
            **dtensor.shims(),
            **vmap.shims(),
        }
        saved = []
        for module, replacements in patched.items():
            for name, replacement in replacements.items():
                saved.append((module, name, module.__dict__.get(name, _MISSING)))
                setattr(module, name, replacement)
        saved_start = threading.Thread.start
        threading.Thread.start = _start_with_simulation(saved_start)
        # transformers 5.25 kernelizes a model loaded onto a GPU by default, fetching compiled GPU kernels
        # from the Hub (`kernels`): a simulated GPU runs no such kernel and the kit downloads nothing at
        # run time, so the torch layers run, as on a real GPU with USE_HUB_KERNELS=0 (README: not modelled)
        hub_kernels = os.environ.get(_HUB_KERNELS)
        os.environ[_HUB_KERNELS] = "0"
        self._saved = {"modules": saved, "thread_start": saved_start, "hub_kernels": hub_kernels}
        state.set_active(simulation)
        self.simulation = simulation
        _clear_availability_caches()
        self._mode = _SimulationMode()
        self._mode.__enter__()
        return self

    def stop(self) -> None:
        """Stop simulating and put back every patched function and mode (also after an error)."""
        if self.simulation is None:
            return
        try:
            if self._mode is not None:
                self._mode.__exit__(None, None, None)
        finally:
            self._mode = None
            for module, name, original in self._saved["modules"]:
                if original is _MISSING:
                    delattr(module, name)
                else:
                    setattr(module, name, original)
            threading.Thread.start = self._saved["thread_start"]
            if self._saved["hub_kernels"] is None:
                os.environ.pop(_HUB_KERNELS, None)
            else:
                os.environ[_HUB_KERNELS] = self._saved["hub_kernels"]
            self._saved = {}
            state.set_active(None)
            self.simulation = None
            _clear_availability_caches()

    def __enter__(self) -> SimulatedGPUs:
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False

    def memory_allocated(self, index: int) -> int:
        """Bytes held by live tensors on simulated GPU `index`."""
        if self.simulation is None:
            raise SimulationError("The simulation is not running; start it first.")
        return self.simulation.allocated(index)

    def __repr__(self) -> str:
        status = "running" if self.running else "stopped"
        return f"SimulatedGPUs(count={self.count}, memory={self.memory / 2**30:g}GiB, {status})"


_MISSING = object()
_HUB_KERNELS = "USE_HUB_KERNELS"


def _clear_availability_caches() -> None:
    for check in cuda_api.cached_availability_checks():
        check.cache_clear()


def _start_with_simulation(original_start):
    """Thread.start that carries the running simulation into the new thread (e.g. TextIteratorStreamer)."""

    def start(thread, *args, **kwargs):
        run = thread.run

        def run_simulated():
            if state.active() is None:
                return run()
            with _SimulationMode():
                return run()

        thread.run = run_simulated
        return original_start(thread, *args, **kwargs)

    return start


def simulated_gpus(count: int = 2, memory: int | str = "24GiB") -> SimulatedGPUs:
    """`count` simulated CUDA GPUs with `memory` each, as a context manager (or `.start()` / `.stop()`).

    >>> with simulated_gpus(4, memory="24GiB"):
    ...     x = torch.ones(2, device="cuda:3")
    """
    return SimulatedGPUs(count, memory)
