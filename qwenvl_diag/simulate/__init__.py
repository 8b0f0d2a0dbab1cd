"""Simulated CUDA devices on a CPU-only machine: real data on the CPU, CUDA's device rules and errors.

The public face is `simulated_gpus` (re-exported by `qwenvl_diag`); the modules here are its parts:
`state` (the active simulation), `tensor` (the tensor that reports a simulated device), `calls`
(what every torch call does under the simulation), `rules` and `checker` (PyTorch's device rules,
read from the installed torch, applied op by op when a call mixes devices), `cuda_api` (the
`torch.cuda` functions a machine with N GPUs answers) and `context` (start, stop, restore).
"""

from .context import SimulatedGPUs, simulated_gpus

__all__ = ["SimulatedGPUs", "simulated_gpus"]
