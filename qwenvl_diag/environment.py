"""What a diagnosis ran on: library versions, and real or simulated devices."""

from __future__ import annotations

import platform
from importlib import metadata

import torch

from .simulate import state

_PACKAGES = ("torch", "transformers", "accelerate", "qwen-vl-utils")


def environment() -> dict:
    """Versions of the libraries that decide device placement, and the devices the run used."""
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    simulation = state.active()
    if simulation is not None:
        devices = {
            "kind": "simulated",
            "gpus": simulation.count,
            "memory_per_gpu": simulation.memory,
            "name": "simulated by qwenvl-diag (data on the CPU)",
        }
    elif torch.cuda.is_available():
        count = torch.cuda.device_count()
        devices = {
            "kind": "real",
            "gpus": count,
            "memory_per_gpu": torch.cuda.get_device_properties(0).total_memory if count else 0,
            "name": torch.cuda.get_device_name(0) if count else "",
        }
    else:
        devices = {"kind": "cpu only", "gpus": 0, "memory_per_gpu": 0, "name": ""}
    return {"python": platform.python_version(), **versions, "devices": devices}
