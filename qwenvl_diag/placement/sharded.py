"""Risks of a model sharded by FSDP2 (`fully_shard`): where its units hold their shards, against where
they compute. The sharding itself is `qwenvl_diag.fsdp`'s; `frames.placement_flags` asks here."""

from __future__ import annotations

import sys

import torch


def is_shard(tensor: torch.Tensor) -> bool:
    """Whether `tensor` is a DTensor (a rank's shard of a parameter); no DTensor exists before
    torch.distributed.tensor is imported, so that import is not made here."""
    dtensor = sys.modules.get("torch.distributed.tensor")
    return dtensor is not None and isinstance(tensor, dtensor.DTensor)


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether `model` is sharded by FSDP2 (its root went through `fully_shard`)."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


_OFFLOAD_WHY = (
    "CPUOffloadPolicy keeps these units' sharded parameters on the CPU; FSDP2 gathers them onto the rank's "
    "GPU only for the unit's own forward. Code that reads module.weight.device before calling the module "
    "(to build an index, a mask or positions) gets the CPU."
)
_EMBEDDING_WHY = (
    "These nn.Embedding modules are FSDP units of their own (verl wraps every embedding of a model with "
    "untied embeddings): outside their own forward, even inside their parent's, their weight is this "
    "rank's shard (a DTensor), not the gathered weight the embedding computes with."
)


def _own_devices(unit: torch.nn.Module) -> set[str]:
    """Devices of the parameters a unit manages itself (not those of the units inside it)."""
    from torch.distributed.fsdp import FSDPModule

    inner = {
        id(p) for m in unit.modules() if m is not unit and isinstance(m, FSDPModule) for p in m.parameters()
    }
    return {str(p.device) for p in unit.parameters() if id(p) not in inner}


def fsdp_flags(model: torch.nn.Module) -> list:
    """The risk flags (`RiskFlag`s) of an FSDP2-sharded model: fsdp_cpu_offload, fsdp_embedding_units."""
    from torch.distributed.fsdp import FSDPModule

    from .risks import RiskFlag

    units = {name: module for name, module in model.named_modules() if isinstance(module, FSDPModule)}
    flags = []
    offloaded = [name or "(root)" for name, unit in units.items() if "cpu" in _own_devices(unit)]
    if offloaded:
        flags.append(RiskFlag("fsdp_cpu_offload", tuple(offloaded), ("cpu",), _OFFLOAD_WHY))
    embeddings = [name for name, unit in units.items() if name and isinstance(unit, torch.nn.Embedding)]
    if embeddings:
        devices = tuple(sorted(set().union(*(_own_devices(units[name]) for name in embeddings))))
        flags.append(RiskFlag("fsdp_embedding_units", tuple(embeddings), devices, _EMBEDDING_WHY))
    return flags
