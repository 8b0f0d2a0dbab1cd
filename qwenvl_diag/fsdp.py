"""The FSDP2 engine: a model sharded by PyTorch's own `fully_shard` over N ranks, diagnosed per rank.

Each rank runs in this process, one after the other, on PyTorch's fake process group (the "fake"
backend that PyTorch's own FSDP tests use to run one rank without its peers): `init_process_group`,
`init_device_mesh("cuda", (N,))`, `fully_shard` and every FSDP2 hook are the real ones, and rank r
computes on its own (simulated or real) `cuda:r`. The fake group completes each collective without
peers: an all-gather fills every rank's slot with this rank's shard, so shapes, dtypes, devices and
code paths are FSDP2's own while the gathered values are not the model's. That is enough for device
errors: FSDP2 is SPMD, a rank's tensors never meet another rank's device, and which device a tensor is
on depends only on the rank's own placement, which is what the fake group leaves exact.

The wrap follows verl's `apply_fsdp2` (verl/utils/fsdp_utils.py, the RL stack with most of this error's
FSDP reports): every module whose class is in the model's `_no_split_modules` (decoder layers, vision
blocks) and, when the input and output embeddings are not tied, every `nn.Embedding`, each its own FSDP
unit; then the root. `cpu_offload` adds `CPUOffloadPolicy()` to every unit, as verl's `offload_policy`.

The user's model is never sharded: each rank shards a deep copy, so the model is as before afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import os

import torch

from .errors import EngineError

ENGINES = ("device_map", "fsdp2")
WRAP_POLICY = "verl apply_fsdp2: _no_split_modules classes, nn.Embedding when untied, then the root"
PROCESS_GROUP = "fake"


def wrapped_modules(model: torch.nn.Module) -> list[str]:
    """Names of the modules verl's `apply_fsdp2` makes FSDP units of (the root, "", comes last)."""
    classes = set(getattr(model, "_no_split_modules", None) or ())
    if not classes:
        raise EngineError(
            f"{type(model).__name__} names no _no_split_modules: the FSDP2 wrap (per decoder layer and "
            "vision block) needs them. Use a Qwen-VL model."
        )
    tied = getattr(getattr(model, "config", None), "tie_word_embeddings", False)
    names = [
        name
        for name, module in model.named_modules()
        if name
        and (type(module).__name__ in classes or (isinstance(module, torch.nn.Embedding) and not tied))
    ]
    return [*names, ""]


def shard(model: torch.nn.Module, mesh, cpu_offload: bool = False) -> list[str]:
    """`fully_shard` every unit of `wrapped_modules(model)` on `mesh`, in place; returns their names."""
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    options = {"mesh": mesh}
    if cpu_offload:
        options["offload_policy"] = CPUOffloadPolicy()
    names = wrapped_modules(model)
    for name in names:
        fully_shard(model.get_submodule(name), **options)
    return names


@contextlib.contextmanager
def rank_process_group(rank: int, world_size: int):
    """The default process group of one rank on the fake backend, destroyed on exit (also after an
    error), with the environment variables as they were."""
    import torch.distributed as dist

    if not dist.is_available():
        raise EngineError("This torch has no torch.distributed: the FSDP2 engine needs it.")
    if dist.is_initialized():
        raise EngineError(
            "A torch.distributed process group is already running in this process; the FSDP2 engine "
            "makes its own. Run the diagnosis outside torchrun (or destroy the group first)."
        )
    environ = dict(os.environ)
    dist.init_process_group(PROCESS_GROUP, store=dist.HashStore(), rank=rank, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)


def sharded_replica(model: torch.nn.Module, rank: int, world_size: int, cpu_offload: bool):
    """A deep copy of `model` sharded as rank `rank` of `world_size` (call inside `rank_process_group`)."""
    from torch.distributed.device_mesh import init_device_mesh

    torch.cuda.set_device(rank)
    mesh = init_device_mesh("cuda", (world_size,))
    replica = copy.deepcopy(model)
    shard(replica, mesh, cpu_offload)
    return replica


def engine_facts(world_size: int, cpu_offload: bool) -> dict:
    """What a diagnosis reports about the engine it ran on."""
    return {
        "engine": "fsdp2",
        "world_size": world_size,
        "cpu_offload": cpu_offload,
        "offload_policy": "CPUOffloadPolicy()" if cpu_offload else None,
        "wrap": WRAP_POLICY,
        "process_group": PROCESS_GROUP,
    }
