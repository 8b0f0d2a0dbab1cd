"""`device_map_frame`, `device_summary_frame`, `flags_frame`: where every placed module lives, as frames."""

from __future__ import annotations

import math

import pandas as pd
import torch
from accelerate.utils.modeling import clean_device_map

from ..errors import PlacementError
from .devices import device_label, device_order, normalise_device
from .modules import lm_head_tied, module_kind, module_layer, named_tensors, placed_sizes, unplaced
from .plan import DevicePlan
from .risks import RiskFlag, find_risks, risks_frame
from .sharded import fsdp_flags, is_sharded

PLACEMENT_COLUMNS = ["module", "kind", "layer", "device", "params", "bytes", "dtype"]
"""Columns of `device_map_frame`: one row per placed module (a key of the device map), in model order.
`kind` is one of vision, merger, audio, embed, decoder, norm, rotary, head, other; `layer` the
decoder-layer or vision-block number (<NA> for other modules); `device` "cuda:N", "cpu" or "disk";
`params` the number of parameters and `bytes` the bytes of parameters and buffers it places (real sizes
for a plan, a tied weight counted once, with embed_tokens); `dtype` the dtype of most of its parameters."""

SUMMARY_COLUMNS = ["device", "modules", "params", "bytes", "capacity", "share"]
"""Columns of `device_summary_frame`: per device (GPUs by index, then cpu, disk), the placed modules,
their params and bytes, the device's memory (`capacity`, bytes: the plan's max_memory, or the GPU's
total memory; NaN where unknown) and `share` = bytes / capacity. A plan lists each of its GPUs."""


def placement_map(model: torch.nn.Module) -> dict:
    """The model's {module: device}: `hf_device_map` where from_pretrained or `qd.dispatch` set one, else
    read from where its parameters and buffers are (collapsed to the outermost modules that share one;
    a tied weight under each of its names, so a tied lm_head is placed too)."""
    device_map = getattr(model, "hf_device_map", None)
    if device_map:
        return {k: _accelerate_form(d) for k, d in device_map.items()}
    devices = {name: _accelerate_form(t.device) for name, t in named_tensors(model)}
    return clean_device_map(devices) if devices else {"": "cpu"}


def _accelerate_form(device: object) -> int | str:
    """0 for "cuda:0" / torch.device("cuda", 0) / 0, "cpu" for cpu; other devices by their name."""
    try:
        return normalise_device(device)
    except PlacementError:
        return str(device)


def _model_order(names: list[str], keys) -> list:
    """`keys` sorted in module order (a parameter key right after the module that holds it)."""
    position = {n: i for i, n in enumerate(names)}

    def rank(key: str) -> float:
        owner = key
        while owner not in position and owner:
            owner = owner.rpartition(".")[0]
        return position.get(owner, -1) + (0.5 if owner != key else 0)

    return sorted(keys, key=rank)


def _rows(device_map: dict, sizes: dict, names: list[str]) -> list[dict]:
    return [
        {
            "module": key,
            "device": device_label(device_map[key]),
            "params": sizes[key][0],
            "bytes": sizes[key][1],
            "dtype": sizes[key][2],
        }
        for key in _model_order(names, device_map)
    ]


def _not_a_placement(function: str, value: object) -> PlacementError:
    return PlacementError(
        f"{function} takes a model or a plan from qd.plan_device_map; got {type(value).__name__}."
    )


def device_map_frame(model_or_plan: torch.nn.Module | DevicePlan) -> pd.DataFrame:
    """One row per placed module of a model or a DevicePlan, in model order; columns PLACEMENT_COLUMNS.

    >>> qd.device_map_frame(plan).query("kind == 'embed'")
    """
    if isinstance(model_or_plan, DevicePlan):
        plan = model_or_plan
        sizes = {
            k: (plan.module_params[k], plan.module_bytes[k], plan.module_dtypes[k]) for k in plan.device_map
        }
        rows = _rows(plan.device_map, sizes, plan.module_names)
    elif isinstance(model_or_plan, torch.nn.Module):
        device_map = placement_map(model_or_plan)
        names = [n for n, _ in model_or_plan.named_modules()]
        rows = _rows(device_map, placed_sizes(model_or_plan, device_map), names)
    else:
        raise _not_a_placement("device_map_frame", model_or_plan)
    frame = pd.DataFrame(rows, columns=["module", "device", "params", "bytes", "dtype"])
    frame.insert(1, "kind", frame["module"].map(module_kind).astype(object))
    frame.insert(2, "layer", pd.array([module_layer(m) for m in frame["module"]], dtype="Int64"))
    return frame[PLACEMENT_COLUMNS].astype({"params": "int64", "bytes": "int64"})


def _gpu_capacity(label: str) -> float:
    if label.startswith("cuda:") and torch.cuda.is_available():
        return float(torch.cuda.get_device_properties(int(label.split(":")[1])).total_memory)
    return math.nan


def device_summary_frame(model_or_plan: torch.nn.Module | DevicePlan) -> pd.DataFrame:
    """Per device: placed modules, params, bytes, capacity and share of it; columns SUMMARY_COLUMNS."""
    frame = device_map_frame(model_or_plan)
    summary = frame.groupby("device", sort=False).agg(
        modules=("module", "count"), params=("params", "sum"), bytes=("bytes", "sum")
    )
    if isinstance(model_or_plan, DevicePlan):
        capacity = {device_label(d): float(b) for d, b in model_or_plan.max_memory.items()}
        gpus = [device_label(i) for i in range(model_or_plan.gpus)]
        summary = summary.reindex(
            [*summary.index, *(g for g in gpus if g not in summary.index)], fill_value=0
        )
    else:
        capacity = {d: _gpu_capacity(d) for d in summary.index}
    summary = summary.reset_index()
    summary["capacity"] = [capacity.get(d, math.nan) for d in summary["device"]]
    summary["share"] = summary["bytes"] / summary["capacity"]
    summary = summary.iloc[sorted(range(len(summary)), key=lambda i: device_order(summary["device"].iat[i]))]
    return summary[SUMMARY_COLUMNS].reset_index(drop=True)


def placement_flags(model_or_plan: torch.nn.Module | DevicePlan) -> list[RiskFlag]:
    """A plan's risk flags, or those of where a model's modules are now (FSDP2's, for a sharded model:
    accelerate's map risks would describe another engine)."""
    if isinstance(model_or_plan, DevicePlan):
        return list(model_or_plan.flags)
    if not isinstance(model_or_plan, torch.nn.Module):
        raise _not_a_placement("flags_frame", model_or_plan)
    if is_sharded(model_or_plan):
        return fsdp_flags(model_or_plan)
    device_map = placement_map(model_or_plan)
    tensors = [n for n, _ in named_tensors(model_or_plan)]
    modules = [n for n, _ in model_or_plan.named_modules()]
    left_out = unplaced(tensors, device_map)
    return find_risks(device_map, modules, tensors, lm_head_tied(model_or_plan), left_out)


def flags_frame(model_or_plan: torch.nn.Module | DevicePlan) -> pd.DataFrame:
    """The risk flags of a plan or of a placed model, one row each; columns FLAG_COLUMNS (code, modules,
    devices, why).

    >>> qd.flags_frame(plan)["code"].tolist()
    ['vision_embed_apart']
    """
    return risks_frame(placement_flags(model_or_plan))
