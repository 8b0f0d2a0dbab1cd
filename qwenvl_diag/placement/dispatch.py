"""`dispatch`: place a twin, tiny or real model by a plan or an explicit map (accelerate underneath)."""

from __future__ import annotations

import torch
from accelerate import dispatch_model
from accelerate.hooks import remove_hook_from_module

from ..errors import PlacementError
from .devices import normalise_device
from .modules import named_tensors, unplaced
from .plan import DevicePlan


def _validated_map(model: torch.nn.Module, device_map: dict) -> dict:
    """`device_map` in accelerate's device forms, checked against the model and this machine's GPUs."""
    tensors = dict(named_tensors(model))
    names = {n for n, _ in model.named_modules()} | set(tensors)
    unknown = [k for k in device_map if not isinstance(k, str) or (k and k not in names)]
    if unknown:
        raise PlacementError(
            f"The map names modules this model does not have: {unknown[:5]}. Was it planned for another "
            "checkpoint, or in another transformers release? Plan with the checkpoint this model is a "
            "twin of, in this environment."
        )
    device_map = {k: normalise_device(d) for k, d in device_map.items()}
    if "disk" in device_map.values():
        raise PlacementError("qd.dispatch does not offload to disk; map those modules to 'cpu' instead.")
    gpus = [d for d in device_map.values() if isinstance(d, int)]
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus and max(gpus) >= available:
        raise PlacementError(
            f"The map uses cuda:{max(gpus)}, but this machine has {available} GPU(s). Dispatch inside "
            f"`with qd.simulated_gpus({max(gpus) + 1}):` to simulate them."
        )
    left_out = unplaced(tensors, device_map)
    if left_out:
        raise PlacementError(
            f"The map gives no device to {left_out[:5]}; add them, or a parent module, to it."
        )
    on_meta = [n for n, t in tensors.items() if t.device.type == "meta"]
    if on_meta:
        raise PlacementError(
            f"{len(on_meta)} weights of this model are on the meta device ({on_meta[:3]}): it was never "
            "loaded, or an earlier dispatch offloaded them to cpu. Dispatch a freshly built model."
        )
    return device_map


def dispatch(model: torch.nn.Module, plan: DevicePlan | dict) -> torch.nn.Module:
    """Place `model` by `plan` (from `plan_device_map`) or an explicit {module: device} map; returns it.

    Uses accelerate's `dispatch_model`, as `from_pretrained(device_map=...)` does (hooks that move
    each module's inputs to its device when the map spans several devices), and sets
    `model.hf_device_map`. Hooks of an earlier dispatch are removed first. The map is checked first
    (unknown or missing modules, GPUs this machine lacks, disk) and the model is left as it was if
    the check fails.

    >>> qd.dispatch(model, plan)
    """
    device_map = plan.device_map if isinstance(plan, DevicePlan) else plan
    if not isinstance(device_map, dict) or not device_map:
        raise PlacementError(
            "dispatch takes a plan from qd.plan_device_map or a non-empty {module: device} dict; "
            f"got {plan!r:.80}."
        )
    device_map = _validated_map(model, device_map)
    remove_hook_from_module(model, recurse=True)
    dispatch_model(model, device_map=device_map)
    model.hf_device_map = dict(device_map)
    return model
