"""`split_device_map`: an explicit device map that cuts the decoder layers where you say.

The planner's maps follow from memory; to ask "what if the cut were after layer 14, and the vision tower
sat on GPU 1?", write the map by hand. This builds it from the model's own module names, so the same
split points give the right keys on every release (`model.layers.3` on 4.x, `model.language_model.
layers.3` on 5.x); `plan_device_map(..., strategy=device_map)` then sizes and flags it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch

from ..errors import PlacementError
from .modules import find_module, named_tensors, unplaced
from .plan import DevicePlan


@cache
def _shipped_names(checkpoint: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    from ..models.twin import real_model_on_meta

    model = real_model_on_meta(checkpoint)
    return tuple(n for n, _ in model.named_modules()), tuple(n for n, _ in named_tensors(model))


def _names(model_or_plan: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(module names, tensor names) of a DevicePlan, a model, or a shipped checkpoint's real model."""
    if isinstance(model_or_plan, DevicePlan):
        return tuple(model_or_plan.module_names), tuple(model_or_plan.tensor_names)
    if isinstance(model_or_plan, torch.nn.Module):
        return (
            tuple(n for n, _ in model_or_plan.named_modules()),
            tuple(n for n, _ in named_tensors(model_or_plan)),
        )
    if isinstance(model_or_plan, str):
        from ..models.catalog import resolve_checkpoint

        return _shipped_names(resolve_checkpoint(model_or_plan))
    raise PlacementError(
        "split_device_map takes a shipped checkpoint name, a DevicePlan from qd.plan_device_map or a "
        f"model; got {type(model_or_plan).__name__}."
    )


def _checked_splits(splits: object, layers: int) -> list[int]:
    if isinstance(splits, int) and not isinstance(splits, bool):
        splits = [splits]
    if not isinstance(splits, Sequence) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in splits
    ):
        raise PlacementError(f"Split points are decoder-layer numbers (a list of ints); got {splits!r}.")
    splits = list(splits)
    if splits != sorted(set(splits)) or (splits and not 0 < splits[0] <= splits[-1] < layers):
        raise PlacementError(
            f"Split points must increase strictly and lie in 1..{layers - 1} (the model has {layers} "
            f"decoder layers); got {splits}. [14] puts layers 0-13 on GPU 0 and 14-{layers - 1} on GPU 1."
        )
    return splits


def split_device_map(model_or_plan: object, splits: Sequence[int] | int, vision_gpu: int = 0) -> dict:
    """{module: gpu} with the decoder layers cut at `splits` and the vision tower whole on `vision_gpu`.

    Layers `[0, splits[0])` go on GPU 0, `[splits[0], splits[1])` on GPU 1, and so on; `embed_tokens`
    sits with layer 0, and everything after the layers (final norm, rotary embedding, `lm_head`) with
    the last layer. `model_or_plan` is a shipped checkpoint name, a DevicePlan or a model (its module
    names give the keys). A `vision_gpu` other than 0 puts the vision tower and `embed_tokens` apart.

    >>> device_map = qd.split_device_map("Qwen/Qwen2.5-VL-7B-Instruct", [14], vision_gpu=1)
    >>> qd.plan_device_map("Qwen/Qwen2.5-VL-7B-Instruct", 2, "24GiB", device_map).flags
    """
    module_names, tensor_names = _names(model_or_plan)
    vision, embed = find_module(module_names, "visual"), find_module(module_names, "embed_tokens")
    layers = find_module(module_names, "layers")
    if vision is None or embed is None or layers is None:
        raise PlacementError(
            "split_device_map needs a Qwen-VL model (a vision tower `visual`, `embed_tokens` and decoder "
            "`layers`); this one lacks some of them."
        )
    numbered = [n for n in module_names if n.startswith(layers + ".") and n[len(layers) + 1 :].isdigit()]
    cuts = _checked_splits(splits, len(numbered))
    if isinstance(vision_gpu, bool) or not isinstance(vision_gpu, int) or vision_gpu < 0:
        raise PlacementError(f"vision_gpu must be a GPU index (an int >= 0); got {vision_gpu!r}.")
    device_map = {vision: vision_gpu, embed: 0}
    for name in numbered:
        layer = int(name.rsplit(".", 1)[1])
        device_map[name] = sum(layer >= cut for cut in cuts)
    for rest in unplaced(tensor_names, device_map):
        device_map[rest] = len(cuts)
    return device_map
