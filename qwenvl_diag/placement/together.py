"""`plan_together`: re-plan a layout so that the vision tower and `embed_tokens` share one GPU.

The layout of the batched-inference failure puts the vision tower (first in module order, so on the
main GPU) and `embed_tokens` on different GPUs. Rather than move modules by hand, the map is planned
again by the installed planner (`plan_device_map(..., "sequential", max_memory=...)`, i.e. accelerate's
`infer_auto_device_map`), so no-split modules stay whole and no GPU gets more than its memory. The
constraint is expressed as per-GPU budgets: each GPU keeps what the original plan gave it, the vision
tower's GPU also gets room for `embed_tokens` (plus the largest layer, which accelerate reserves on
the main GPU), and the last GPU in use and those after it may use all their memory.
"""

from __future__ import annotations

from collections import Counter

from ..errors import PlacementError
from .devices import device_label
from .modules import devices_of, find_module, module_kind
from .plan import DevicePlan, plan_device_map


def vision_and_embeddings(plan: DevicePlan) -> tuple[set, set]:
    """(devices of the vision tower, devices of embed_tokens) under `plan`."""
    vision = find_module(plan.module_names, "visual")
    embed = find_module(plan.module_names, "embed_tokens")
    if vision is None or embed is None:
        raise PlacementError(
            f"{plan.model} has no vision tower or no embed_tokens: nothing to keep together."
        )
    return (
        devices_of(vision, plan.device_map, plan.tensor_names),
        devices_of(embed, plan.device_map, plan.tensor_names),
    )


def _budgets(plan: DevicePlan, target: int, embed: str) -> dict:
    used = Counter()
    for key, device in plan.device_map.items():
        used[device] += plan.module_bytes.get(key, 0)
    sizes = plan.module_bytes
    embed_bytes = sum(b for k, b in sizes.items() if k == embed or k.startswith(embed + "."))
    largest = max((b for k, b in sizes.items() if module_kind(k) in ("decoder", "embed", "head")), default=0)
    last = max((d for d in used if isinstance(d, int)), default=target)
    budgets = {}
    for device, capacity in plan.max_memory.items():
        if not isinstance(device, int):
            budgets[device] = capacity
        elif device == target:
            budgets[device] = min(capacity, used[device] + embed_bytes + largest)
        else:
            budgets[device] = capacity if device >= last else max(used[device], 1)
    return budgets


def plan_together(plan: DevicePlan, source: object = None) -> DevicePlan:
    """A plan of the same checkpoint, GPUs and memory in which the vision tower and `embed_tokens` sit on
    one GPU (the vision tower's), or `plan` itself when they already do.

    `source` is what `plan` was planned from (a shipped checkpoint name, a config or a checkpoint
    directory; default `plan.model`). Raises `PlacementError` when they cannot share a GPU within its
    memory (or the vision tower is itself split across GPUs).

    >>> together = plan_together(qd.plan_device_map("Qwen/Qwen2.5-VL-7B-Instruct", 8, "24GiB", "balanced"))
    """
    if not isinstance(plan, DevicePlan):
        raise PlacementError(
            f"plan_together takes a DevicePlan from qd.plan_device_map; got {type(plan).__name__}."
        )
    vision_devices, embed_devices = vision_and_embeddings(plan)
    if len(vision_devices | embed_devices) == 1:
        return plan
    gpus = sorted(d for d in vision_devices if isinstance(d, int))
    if len(vision_devices) != 1 or not gpus:
        raise PlacementError(
            f"The vision tower is on {sorted(map(device_label, vision_devices))}: keep it whole on one GPU "
            "first (no_split_module_classes, or an explicit map)."
        )
    embed = find_module(plan.module_names, "embed_tokens")
    together = plan_device_map(
        plan.model if source is None else source,
        plan.gpus,
        plan.memory,
        "sequential",
        dtype=plan.dtype,
        max_memory=_budgets(plan, gpus[0], embed),
    )
    vision_devices, embed_devices = vision_and_embeddings(together)
    offloads = "cpu" in together.device_map.values() and "cpu" not in plan.device_map.values()
    if len(vision_devices | embed_devices) != 1 or offloads:
        raise PlacementError(
            f"The vision tower and embed_tokens of {plan.model} do not fit together on "
            f"{device_label(gpus[0])} ({plan.max_memory[gpus[0]] / 2**30:.1f} GiB) without offloading: "
            "use GPUs with more memory, or one device."
        )
    return together
