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
FSDP2 moves buffers to the rank's GPU and offloads only parameters; `host_buffers` then moves every
non-persistent buffer (the rotary `inv_freq`) back to the host, as SkyRL's `_sync_non_persistent_buffers`
(v0.2.0, quoted in transformers issue 45859) and VeOmni (PR 776) do under CPU offload.

The user's model is never sharded: each rank shards a deep copy, so the model is as before afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import os

import torch

from .errors import EngineError

WRAP_POLICY = "verl apply_fsdp2: _no_split_modules classes, nn.Embedding when untied, then the root"
PROCESS_GROUP = "fake"


def fsdp_units(model: torch.nn.Module) -> list[str]:
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
    """`fully_shard` every unit of `fsdp_units(model)` on `mesh`, in place; returns their names."""
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    options = {"mesh": mesh}
    if cpu_offload:
        options["offload_policy"] = CPUOffloadPolicy()
    names = fsdp_units(model)
    # bottom-up, as torch's fully_shard asks: a unit nested in another (Qwen3-Omni's audio encoder and its
    # layers are both _no_split_modules in 5.x) sharded after its parent finds DTensors already offloaded
    # to the CPU, and torch refuses ("Expects DTensor to be moved to cuda but got cpu")
    for name in reversed(names[:-1]):
        fully_shard(model.get_submodule(name), **options)
    fully_shard(model, **options)
    return names


@contextlib.contextmanager
def rank_process_group(rank: int, world_size: int):
    """One rank's context: the default process group on the fake backend and `cuda:<rank>` as the
    current device; on exit (also after an error) the group is destroyed, and the current device and
    the environment variables are as they were."""
    import torch.distributed as dist

    if not dist.is_available():
        raise EngineError("This torch has no torch.distributed: the FSDP2 engine needs it.")
    if dist.is_initialized():
        raise EngineError(
            "A torch.distributed process group is already running in this process; the FSDP2 engine "
            "makes its own. Run the diagnosis outside torchrun (or destroy the group first)."
        )
    environ, device = dict(os.environ), torch.cuda.current_device()
    dist.init_process_group(PROCESS_GROUP, store=dist.HashStore(), rank=rank, world_size=world_size)
    try:
        torch.cuda.set_device(rank)
        yield
    finally:
        dist.destroy_process_group()
        torch.cuda.set_device(device)
        os.environ.clear()
        os.environ.update(environ)


def buffers_to_host(model: torch.nn.Module) -> list[str]:
    """Move every non-persistent buffer to the host (what SkyRL's `_sync_non_persistent_buffers` does:
    `module._buffers[name] = buf.detach().cpu()`); returns the names moved."""
    moved = []
    for prefix, module in model.named_modules():
        for name in sorted(module._non_persistent_buffers_set):
            buffer = module._buffers.get(name)
            if buffer is not None and buffer.device.type != "cpu":
                module._buffers[name] = buffer.detach().cpu()
                moved.append(f"{prefix}.{name}" if prefix else name)
    return moved


def sharded_replica(
    model: torch.nn.Module, rank: int, world_size: int, cpu_offload: bool, host_buffers: bool = False
):
    """A deep copy of `model` sharded as rank `rank` of `world_size` (call inside `rank_process_group`)."""
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cuda", (world_size,))
    replica = copy.deepcopy(model)
    shard(replica, mesh, cpu_offload)
    if host_buffers:
        buffers_to_host(replica)
    return replica


def engine_facts(world_size: int, cpu_offload: bool, host_buffers: bool = False) -> dict:
    """What a diagnosis reports about the engine it ran on."""
    return {
        "engine": "fsdp2",
        "world_size": world_size,
        "cpu_offload": cpu_offload,
        "host_buffers": host_buffers,
        "offload_policy": "CPUOffloadPolicy()" if cpu_offload else None,
        "wrap": WRAP_POLICY,
        "process_group": PROCESS_GROUP,
    }


def on_rank(inputs, rank: int) -> dict:
    """The inputs as a trainer hands them to rank `rank` (`batch.to(f"cuda:{rank}")`); the caller's are
    left as they are."""
    device = f"cuda:{rank}"
    return {
        key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in inputs.items()
    }


def _with_rank(frame, rank: int):
    frame = frame.copy()
    frame.insert(0, "rank", rank)
    return frame


def diagnose_ranks(
    model,
    inputs,
    world_size: int,
    cpu_offload: bool = False,
    action: str = "forward",
    *,
    host_buffers: bool = False,
    **kwargs,
):
    """Diagnose `model` sharded by FSDP2 over `world_size` ranks (under simulated or real GPUs), rank by
    rank. Frames gain a `rank` column (first); the first mismatch, error, known bugs and advice are the
    first failing rank's (its `rank` in `first_mismatch`); `engine` says how the model was sharded.

    >>> with qd.simulated_gpus(2):
    ...     diagnosis = diagnose_ranks(model, inputs, world_size=2, cpu_offload=True)
    """
    import pandas as pd

    from .diagnose import _model_label, diagnose
    from .trace import check_run_arguments

    check_run_arguments(model, inputs, action)
    fsdp_units(model)  # not a model FSDP2 can wrap by layers: the kit's error before any rank runs
    if torch.cuda.device_count() < world_size:
        raise EngineError(
            f"FSDP2 over {world_size} ranks needs {world_size} GPUs (one per rank); this process sees "
            f"{torch.cuda.device_count()}. Run it under qd.simulated_gpus({world_size}), or use fewer ranks."
        )
    ranks = []
    for rank in range(world_size):
        with rank_process_group(rank, world_size):
            replica = sharded_replica(model, rank, world_size, cpu_offload, host_buffers)
            ranks.append(diagnose(replica, on_rank(inputs, rank), action=action, **kwargs))
    failed = next((rank for rank, one in enumerate(ranks) if one.error is not None), None)
    mismatched = next((rank for rank, one in enumerate(ranks) if one.first_mismatch is not None), None)
    lead = failed if failed is not None else mismatched if mismatched is not None else 0
    chosen = ranks[lead]
    first = {"rank": lead, **chosen.first_mismatch} if chosen.first_mismatch is not None else None
    frames = {
        name: pd.concat(
            [_with_rank(one.frames[name], rank) for rank, one in enumerate(ranks)], ignore_index=True
        )
        for name in chosen.frames
    }
    chosen.frames = frames
    chosen.model = _model_label(model)  # the model's own name, not its FSDP-wrapped class's
    chosen.first_mismatch = first
    chosen.engine = engine_facts(world_size, cpu_offload, host_buffers)
    if chosen.error is not None:
        failing = [rank for rank, one in enumerate(ranks) if one.error is not None]
        chosen.advice = [f"Failed on rank(s) {', '.join(map(str, failing))} of {world_size}.", *chosen.advice]
    return chosen
