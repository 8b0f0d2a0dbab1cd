"""Random numbers on simulated GPUs: one generator per device, as CUDA has, never the CPU's.

Random ops on a simulated device run on the CPU, so they would draw from (and advance) torch's global
CPU generator. Each simulated GPU instead keeps its own CPU generator state, swapped in around the op:
the global CPU stream is the same after a simulated run as before it, and `torch.cuda.manual_seed`
makes simulated sampling reproducible.
"""

from __future__ import annotations

import contextlib

import torch

from . import state
from .state import seeded_state

_Tensor = torch.Tensor
_F = torch.nn.functional
RANDOM_CALLS = frozenset(
    {
        torch.rand,
        torch.randn,
        torch.randint,
        torch.randperm,
        torch.rand_like,
        torch.randn_like,
        torch.randint_like,
        torch.normal,
        torch.bernoulli,
        torch.multinomial,
        torch.poisson,
        torch.dropout,
        torch.native_dropout,
        _F.dropout,
        _F.dropout1d,
        _F.dropout2d,
        _F.dropout3d,
        _F.alpha_dropout,
        _F.feature_alpha_dropout,
        _F.gumbel_softmax,
        _Tensor.bernoulli,
        _Tensor.bernoulli_,
        _Tensor.multinomial,
        _Tensor.normal_,
        _Tensor.uniform_,
        _Tensor.random_,
        _Tensor.exponential_,
        _Tensor.geometric_,
        _Tensor.log_normal_,
        _Tensor.cauchy_,
    }
)


@contextlib.contextmanager
def device_generator(device: torch.device):
    """Draw from simulated `device`'s generator instead of the global CPU one."""
    simulation = state.active()
    if simulation is None:
        yield
        return
    states = simulation.rng_states
    cpu_state = torch.get_rng_state()
    torch.set_rng_state(states[device.index])
    try:
        yield
    finally:
        states[device.index] = torch.get_rng_state()
        torch.set_rng_state(cpu_state)


def manual_seed(seed: int) -> None:
    simulation = state.active()
    simulation.rng_states[simulation.current] = seeded_state(int(seed))


def manual_seed_all(seed: int) -> None:
    simulation = state.active()
    simulation.rng_states = [seeded_state(int(seed)) for _ in range(simulation.count)]


def get_rng_state(device="cuda") -> torch.Tensor:
    return state.active().rng_states[state.cuda_device(device).index].clone()


def set_rng_state(new_state: torch.Tensor, device="cuda") -> None:
    state.active().rng_states[state.cuda_device(device).index] = new_state.clone()
