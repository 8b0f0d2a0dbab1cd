"""`dispatch`: place a twin, tiny or real model by a plan or an explicit map (accelerate underneath)."""

from __future__ import annotations

import torch
from accelerate import dispatch_model
from accelerate.hooks import AlignDevicesHook, remove_hook_from_module

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
        held = _held_by_hooks(model)
        on_meta = [n for n in on_meta if n not in held]
    if on_meta:
        raise PlacementError(
            f"{len(on_meta)} weights of this model are on the meta device ({on_meta[:3]}): it was never "
            "loaded. Dispatch a model with weights (qd.twin, qd.tiny_model, qd.load_model)."
        )
    return device_map


def _held_by_hooks(model: torch.nn.Module) -> set[str]:
    """Names of the meta placeholders an earlier dispatch left for offloaded weights: accelerate's hooks
    hold those weights and put them back when the hooks are removed, as `dispatch` does first."""
    held = set()
    for prefix, module in model.named_modules():
        hook = getattr(module, "_hf_hook", None)
        if isinstance(hook, AlignDevicesHook) and hook.offload and hook.weights_map is not None:
            held |= {
                f"{prefix}.{name}" if prefix else name
                for name, device in hook.original_devices.items()
                if device != torch.device("meta") and name in hook.weights_map
            }
    return held


def _offloaded_to_cpu(model: torch.nn.Module, device_map: dict) -> None:
    """Move the modules the map offloads to the CPU, where from_pretrained loads them: accelerate keeps
    an offloaded weight on whatever device it is on, so a model dispatched before would keep them on
    its earlier GPUs. (A key naming a tensor moves its module; accelerate then places the rest.)"""
    modules = dict(model.named_modules())
    for key, device in device_map.items():
        if device == "cpu":
            modules[key if key in modules else key.rpartition(".")[0]].to("cpu")


def dispatch(model: torch.nn.Module, plan: DevicePlan | dict) -> torch.nn.Module:
    """Place `model` by `plan` (from `plan_device_map`) or an explicit {module: device} map; returns it.

    Uses accelerate's `dispatch_model`, as `from_pretrained(device_map=...)` does (hooks that move
    each module's inputs to its device when the map spans several devices, the model's
    `_skip_keys_device_placement` left where they are), and sets `model.hf_device_map`. Modules mapped
    to "cpu" are offloaded as from_pretrained offloads them: their parameters become meta placeholders,
    their weights wait on the CPU in accelerate's hooks, and they run on the main device. Hooks of an
    earlier dispatch are removed first. The map is checked first (unknown or missing modules, GPUs
    this machine lacks, disk) and the model is left as it was if the check fails.

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
    _offloaded_to_cpu(model, device_map)
    dispatch_model(
        model, device_map=device_map, skip_keys=getattr(model, "_skip_keys_device_placement", None)
    )
    model.hf_device_map = dict(device_map)
    return model


def undispatch(model: torch.nn.Module) -> torch.nn.Module:
    """Take a dispatched model off its devices: accelerate's hooks removed (offloaded weights put back),
    every tensor on the CPU and no `hf_device_map`, as the model was built. Call it while the
    (simulated) GPUs it was placed on still run."""
    remove_hook_from_module(model, recurse=True)
    model.to("cpu")
    model.__dict__.pop("hf_device_map", None)
    return model
