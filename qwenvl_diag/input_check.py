"""`check_inputs`: for each model input, where it is, where the model will compute, and whether that is fine.

It replaces the bare `assert inputs["input_ids"].device == model.device` of many write-ups, which is
both too strict (under a device map, accelerate's root hook moves CPU inputs for you) and too weak
(it cannot see that a GPU `second_per_grid_ts` crashes transformers 4.49-4.51.3). Only reads: the
inputs and the model are left exactly as they were.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import pandas as pd
import torch

from ._compat import TRANSFORMERS_VERSION
from .bugs import get_bug
from .errors import InvalidArgumentError
from .models.families import family_of_model_type
from .rope import find_rope_index, required_arguments
from .values import tensors_in, value_device, value_type

CHECK_COLUMNS = ["key", "type", "device", "expected_device", "ok", "why"]
"""Columns of `check_inputs`: one row per input key (in the inputs' order), then one per input the
model needs and the inputs lack. `type` "Tensor", "list[float]", ... ("missing" for an absent key);
`device` where the value is now ("" when it holds no tensor); `expected_device` where the model
starts computing (accelerate's root-hook execution device when the model is dispatched, else the
device of its input embeddings); `ok` whether the run can go ahead with it; `why` a sentence."""

VIDEO_BUG = "qwen2_5_vl-video-second-per-grid-ts"
SECONDS = "second_per_grid_ts"


def _as_device(device: object) -> torch.device:
    # accelerate writes GPU execution devices as bare integers
    return torch.device("cuda", device) if isinstance(device, int) else torch.device(device)


def root_hook(model: torch.nn.Module):
    """The accelerate hook on the model itself that moves inputs (an AlignDevicesHook, possibly inside a
    SequentialHook), or None when the model is not dispatched."""
    hook = getattr(model, "_hf_hook", None)
    for candidate in [hook, *getattr(hook, "hooks", ())]:
        if getattr(candidate, "execution_device", None) is not None:
            return candidate
    return None


def compute_device(model: torch.nn.Module) -> torch.device:
    """Where the model starts computing: the root hook's execution device when accelerate dispatched
    it, else the device of its input embeddings (of its first parameter; cpu without parameters)."""
    hook = root_hook(model)
    if hook is not None:
        return _as_device(hook.execution_device)
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weight = getattr(embeddings, "weight", None)
    if isinstance(weight, torch.Tensor):
        return weight.device
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _skip_keys(hook) -> set[str]:
    keys = getattr(hook, "skip_keys", None) or ()
    return {keys} if isinstance(keys, str) else set(keys)


def _accepted_keys(model: torch.nn.Module) -> set[str] | None:
    """The keyword arguments forward() takes, or None when it takes any (**kwargs)."""
    parameters = inspect.signature(type(model).forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return set(parameters) - {"self"}


class _Checker:
    """The facts every row's verdict needs, read once from the model."""

    def __init__(self, model: torch.nn.Module):
        hook = root_hook(model)
        self.expected = compute_device(model)
        self.dispatched = hook is not None
        self.skip = _skip_keys(hook)
        self.accepted = _accepted_keys(model)
        family = family_of_model_type(getattr(getattr(model, "config", None), "model_type", ""))
        self.family = family.name if family else None
        self.video_bug = get_bug(VIDEO_BUG)

    def arrives(self, key: str, tensor: torch.Tensor) -> torch.device:
        """The device the model's code sees the tensor on."""
        return self.expected if self.dispatched and key not in self.skip else tensor.device

    def seconds_verdict(self, tensor: torch.Tensor) -> tuple[bool, str] | None:
        """The verdict on a tensor second_per_grid_ts, or None when the generic rules apply."""
        where = self.arrives(SECONDS, tensor)
        bug = self.video_bug
        if where.type != "cpu" and self.family in bug.families and bug.affects(TRANSFORMERS_VERSION):
            how = (
                f"accelerate's root hook moves it to {where}"
                if self.dispatched and tensor.device != where
                else f"it is on {where}"
            )
            return False, (
                f"A tensor second_per_grid_ts reaches the model on a GPU ({how}): transformers "
                f"{TRANSFORMERS_VERSION}'s get_rope_index multiplies a CPU torch.arange by its 0-dim GPU "
                f"elements and raises (known bug {bug.id}, fixed in {bug.fixed_in}). Pass it as a list: "
                "inputs['second_per_grid_ts'] = inputs['second_per_grid_ts'].tolist(), or upgrade "
                f"transformers to >= {bug.fixed_in}."
            )
        if where.type == "cpu":
            return True, (
                "second_per_grid_ts stays on the CPU; get_rope_index reads its elements as scalars, "
                "and a 0-dim CPU tensor may join GPU arithmetic."
            )
        return None

    def tensor_verdict(self, key: str, value: object) -> tuple[bool, str]:
        tensors = tensors_in(value)
        devices = {t.device for t in tensors}
        where = value_device(value)
        if self.dispatched and key not in self.skip:
            if devices == {self.expected}:
                return True, f"Already on {self.expected}, where accelerate's root hook sends every input."
            return True, (
                f"On {where}: accelerate's root hook moves it to {self.expected} when forward() is called "
                "(generate() may warn about the device, and still runs)."
            )
        if devices == {self.expected}:
            return True, f"On {self.expected}, where the model computes."
        nothing = (
            f"{key} is not moved by accelerate's hook (a skip key)"
            if self.dispatched
            else "the model is not dispatched, so nothing moves inputs"
        )
        return False, (
            f"On {where}, but the model computes on {self.expected} and {nothing}: PyTorch will refuse to "
            f"mix the devices. Move it: inputs = inputs.to('{self.expected}')."
        )

    def verdict(self, key: str, value: object) -> tuple[bool, str]:
        if self.accepted is not None and key not in self.accepted:
            return False, (
                f"forward() takes no argument {key!r}: the call raises (TypeError from forward(), "
                "ValueError from generate()). Drop it."
            )
        seconds = self.seconds_verdict(value) if key == SECONDS and isinstance(value, torch.Tensor) else None
        if seconds is not None:
            return seconds
        if tensors_in(value):
            return self.tensor_verdict(key, value)
        if isinstance(value, (list, tuple)):
            why = (
                f"A Python {type(value).__name__} of numbers: .to() and accelerate's hooks leave it as it "
                "is, and it needs no device."
            )
            if key == SECONDS and self.family in self.video_bug.families:
                why += f" (The list form never triggers the video bug {self.video_bug.id}.)"
            return True, why
        if value is None:
            return True, "None: nothing to place."
        return True, f"A {type(value).__name__}, not a tensor: nothing to place."

    def row(self, key: str, value: object) -> dict:
        ok, why = self.verdict(key, value)
        return {
            "key": key,
            "type": value_type(value),
            "device": value_device(value),
            "expected_device": str(self.expected),
            "ok": ok,
            "why": why,
        }


def _missing_rows(model: torch.nn.Module, inputs: Mapping, expected: torch.device) -> list[dict]:
    """Rows for arguments the rope-index function requires that the inputs lack (5.x Qwen-VL's
    mm_token_type_ids), when the inputs carry images or videos."""
    if not any(k in inputs for k in ("image_grid_thw", "video_grid_thw")):
        return []
    located = find_rope_index(model)
    if located is None:
        return []
    required = required_arguments(inspect.signature(located[1].get_rope_index))
    return [
        {
            "key": name,
            "type": "missing",
            "device": "",
            "expected_device": str(expected),
            "ok": False,
            "why": (
                f"transformers {TRANSFORMERS_VERSION} computes the 3-D rope positions of image and video "
                f"tokens only when the inputs carry {name}; without it the model silently uses 1-D text "
                "positions (wrong outputs, no error). Build the inputs with the processor, which adds it."
            ),
        }
        for name in required
        if name not in inputs
    ]


def check_inputs(inputs: Mapping, model: torch.nn.Module) -> pd.DataFrame:
    """One row per input key: its type and device, where the model will compute, whether that is fine
    and why (columns `CHECK_COLUMNS`). `inputs` is the processor's BatchFeature or a plain dict.

    Knows what moves inputs (accelerate's root hook under a device map; nothing otherwise), that
    lists are never moved, that a GPU tensor `second_per_grid_ts` is the video failure's trigger on
    the releases the catalogue lists, and that 5.x Qwen-VL needs `mm_token_type_ids` for image/video
    positions. Neither the inputs nor the model is modified.

    >>> qd.check_inputs(inputs, model).query("not ok")
    """
    if not isinstance(model, torch.nn.Module):
        raise InvalidArgumentError(
            f"check_inputs(inputs, model): model must be a torch.nn.Module; got {type(model).__name__}."
        )
    if not isinstance(inputs, Mapping):
        raise InvalidArgumentError(
            "check_inputs(inputs, model): inputs must be a dict or the processor's BatchFeature; got "
            f"{type(inputs).__name__}."
        )
    checker = _Checker(model)
    rows = [checker.row(str(key), value) for key, value in inputs.items()]
    rows += _missing_rows(model, inputs, checker.expected)
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)
