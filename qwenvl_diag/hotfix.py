"""The instance hotfixes: for the releases with a known bug, move the offending tensor to the right
device before transformers' own code sees it. Our code, not a copy of transformers' source.

The rope/mask hotfix (the seed's two bugs):

- Video (`get_rope_index` multiplies a CPU `torch.arange` by a 0-dim GPU `second_per_grid_ts`):
  `second_per_grid_ts` is handed to `get_rope_index` on the CPU, where the arange is (what 4.52.1
  does inside the function). Its values are the same, so the positions are too.
- Batched (`_prepare_4d_causal_attention_mask_with_cache_position` compares an arange on the
  embeddings' GPU with a `cache_position` on the main GPU): `cache_position` is moved to the device
  the mask is built on (its `device` argument). The mask's values are the same.

The rope-deltas fix (text-only generate across GPUs, 4.48-4.52.4): the public user patch
`self.rope_deltas = rope_deltas.to(cache_position.device)` (QwenLM/Qwen3-VL #765) made from outside:
the `rope_deltas` that `get_rope_index` returns go to the model's execution device, where accelerate's
root hook puts `cache_position`, so the decode step's `cache_position[0] + self.rope_deltas` adds on one
device. The position ids it returns are unchanged.

Each is applied by wrapping the method on the user's model instance (its `__dict__`), never on a
transformers class or module, and undone exactly. Only the methods of bugs that affect the installed
release and the model's family are wrapped.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from ._compat import TRANSFORMERS_VERSION
from .bugs import MASK_FUNCTION, KnownBug, get_bug
from .errors import FixError
from .models.families import family_of_model_type
from .rope import ROPE_FUNCTION, find_rope_index

VIDEO_BUG = "qwen2_5_vl-video-second-per-grid-ts"
MASK_BUGS = ("qwen2_5_vl-batched-causal-mask", "qwen2_vl-batched-causal-mask")
HOTFIX_BUGS = (VIDEO_BUG, *MASK_BUGS)
ROPE_DELTAS_BUGS = ("qwen2_5_vl-text-generate-rope-deltas", "qwen2_vl-text-generate-rope-deltas")


def affected_bugs(model: torch.nn.Module, covered: tuple[str, ...] = HOTFIX_BUGS) -> list[KnownBug]:
    """The bugs of `covered` that affect the installed transformers for this model's family."""
    family = family_of_model_type(getattr(getattr(model, "config", None), "model_type", ""))
    if family is None:
        return []
    bugs = (get_bug(bug_id) for bug_id in covered)
    return [bug for bug in bugs if family.name in bug.families and bug.affects(TRANSFORMERS_VERSION)]


def _moving(original: Callable, argument: str, where: Callable[[dict], object]) -> Callable:
    """`original` with its `argument` (a tensor) first moved to `where(bound arguments)` when it is
    elsewhere; `where` returning None leaves it. Calls that do not bind go through unchanged (the
    original raises its own error)."""
    signature = inspect.signature(original)

    def moved(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return original(*args, **kwargs)
        value, device = bound.arguments.get(argument), where(bound.arguments)
        if isinstance(value, torch.Tensor) and device is not None and value.device != torch.device(device):
            bound.arguments[argument] = value.to(device)
        return original(*bound.args, **bound.kwargs)

    return moved


def _targets(model: torch.nn.Module, bugs: list[KnownBug]) -> list[tuple[str, torch.nn.Module, str]]:
    """(module path, module, method name) of each method to wrap."""
    targets = []
    if any(bug.id == VIDEO_BUG for bug in bugs):
        located = find_rope_index(model)
        if located is not None:
            targets.append((*located, ROPE_FUNCTION))
    if any(bug.id in MASK_BUGS for bug in bugs):
        targets += [
            (path, module, MASK_FUNCTION)
            for path, module in model.named_modules()
            if callable(getattr(type(module), MASK_FUNCTION, None))
        ]
    return targets


_WRAPPERS = {
    # get_rope_index's arange is on the CPU: hand it a CPU second_per_grid_ts
    ROPE_FUNCTION: lambda original: _moving(original, "second_per_grid_ts", lambda arguments: "cpu"),
    # the mask is built on its `device` argument: bring cache_position there
    MASK_FUNCTION: lambda original: _moving(
        original, "cache_position", lambda arguments: arguments.get("device")
    ),
}
_MISSING = object()


def _deltas_to(original: Callable, device: torch.device) -> Callable:
    """`original` (a rope-index method returning (position_ids, rope_deltas)) with the returned
    rope_deltas moved to `device`."""

    def moved(*args, **kwargs):
        position_ids, rope_deltas = original(*args, **kwargs)
        if isinstance(rope_deltas, torch.Tensor) and rope_deltas.device != device:
            rope_deltas = rope_deltas.to(device)
        return position_ids, rope_deltas

    return moved


def apply_hotfix(model: torch.nn.Module) -> tuple[Callable[[], None], list[str]]:
    """Wrap the methods of the rope/mask bugs that affect the installed release and the model's family;
    returns (undo, the wrapped "path.method" names). See `_wrapped`."""
    targets = [(*target, _WRAPPERS[target[2]]) for target in _targets(model, affected_bugs(model))]
    return _wrapped(targets)


def apply_rope_deltas_fix(
    model: torch.nn.Module, device: torch.device
) -> tuple[Callable[[], None], list[str]]:
    """Move the `rope_deltas` the rope-index method returns to `device` (where cache_position is), when
    a text-only generate bug affects the installed release and the model's family; see `_wrapped`."""
    located = find_rope_index(model) if affected_bugs(model, ROPE_DELTAS_BUGS) else None
    targets = [] if located is None else [(*located, ROPE_FUNCTION, lambda m: _deltas_to(m, device))]
    return _wrapped(targets)


def _wrapped(
    targets: list[tuple[str, torch.nn.Module, str, Callable[[Callable], Callable]]],
) -> tuple[Callable[[], None], list[str]]:
    """Wrap each (path, module, method name, wrapper maker) on the module instance; returns (undo, the
    wrapped "path.method" names). Nothing is wrapped (and undo does nothing) for no targets. Undo
    restores each module's `__dict__` entry exactly (absent, or the object that was there); undoing
    after something else replaced a wrapper raises `FixError`.
    """
    done: list[tuple[dict, str, object, Callable, str]] = []
    for path, module, name, make in targets:
        attributes = vars(module)
        before = attributes.get(name, _MISSING)
        wrapper = make(getattr(module, name))
        attributes[name] = wrapper
        done.append((attributes, name, before, wrapper, f"{path}.{name}" if path else name))

    def undo() -> None:
        replaced = [
            label for attributes, name, _, wrapper, label in done if attributes.get(name) is not wrapper
        ]
        if replaced:  # checked first, so a refused undo changes nothing
            raise FixError(
                f"Cannot undo the hotfix of {', '.join(replaced)}: it was wrapped again since. Undo fixes "
                "and captures in the reverse order of applying them."
            )
        for attributes, name, before, _, _ in reversed(done):
            if before is _MISSING:
                del attributes[name]
            else:
                attributes[name] = before
        done.clear()

    return undo, [entry[4] for entry in done]
