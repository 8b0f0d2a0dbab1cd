"""The fix catalogue: named, documented, reversible fixes for the Qwen-VL device failures.

A fix acts on a `Setup` (a model, its inputs and the device plan it is placed by) and returns an undo.
"plan" fixes rewrite the plan before the model is placed, "placed" fixes act on the placed model or
its inputs; `applying(setup, names)` runs both around the placement and undoes them on exit. Fixes
never modify the caller's inputs or plan objects (they put new ones on the setup) and never patch a
transformers class or module.

>>> qd.fixes()                                   # name, title, addresses, costs
>>> with qd.applying(qd.Setup(model, inputs, plan), ["vision_with_embeddings"]) as setup:
...     model.generate(**setup.inputs)
"""

from __future__ import annotations

import difflib
import warnings
from collections import UserDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import pandas as pd
import torch

from ._compat import TRANSFORMERS_VERSION
from .bugs import CATALOGUE as BUGS
from .bugs import get_bug
from .errors import FixError, FixNotApplicableWarning, InvalidArgumentError, UnknownFixError
from .hotfix import HOTFIX_BUGS, MASK_BUGS, ROPE_DELTAS_BUGS, VIDEO_BUG, apply_hotfix, apply_rope_deltas_fix
from .input_check import SECONDS, compute_device
from .placement import DevicePlan, dispatch, plan_device_map
from .placement.devices import device_label
from .placement.together import plan_together, vision_and_embeddings

FIX_COLUMNS = ["name", "title", "addresses", "costs"]
"""Columns of `fixes()`: the fix's `name` (for `get_fix`, `Scenario.fixes`, `verify`), a one-line
`title`, `addresses` (the catalogue bug ids it is meant to fix, see `qd.known_bugs()`) and `costs`
(memory balance, speed) in one sentence."""

STAGES = ("plan", "placed", "environment")
Undo = Callable[[], None]

# The bugs of a vision tower and embed_tokens on two GPUs, which one GPU or the two together avoid
APART_BUGS = (
    *MASK_BUGS,
    *ROPE_DELTAS_BUGS,
    "qwen2_vl-text-generate-position-ids",
    "qwen2_vl-image-mask-device",
    "qwen2_vl-rope-index-input-mask",
)
# the Qwen2.5-Omni thinker's: its audio tower apart from embed_tokens, which only one GPU avoids
OMNI_APART_BUGS = ("qwen2_5_omni-rope-deltas-padding-delta", "qwen2_5_omni-text-generate-rope-deltas")
# a vision tower split between patch_embed and pos_embed, which one GPU avoids
VISION_SPLIT_BUGS = ("qwen3_5-vision-split-pos-embeds-add", "qwen3_5-vision-split-pos-embed-weights")
# inputs left on the CPU: a one-GPU model's (usage), or those 5.18+'s generate encodes outside the hooks
INPUTS_ON_CPU_BUGS = (
    *(bug.id for bug in BUGS if bug.kind == "usage"),
    "qwen3_vl-generate-split-vision-cpu-grid",
)
UPGRADE_BUGS = tuple(bug.id for bug in BUGS if bug.fixed_in is not None)


@dataclass
class Setup:
    """What fixes act on: `model`, its `inputs`, the `plan` it is (to be) placed by, and `source`, what
    the plan was planned from (a shipped checkpoint name, a config or a directory; default
    `plan.model`). `placed` turns True once `place()` dispatched the model. `notes` collects one
    sentence per applied fix saying what it did. `inputs_on` "model" makes `place()` move the inputs as
    the model cards do after loading (`inputs.to(model.device)`); "cpu" leaves them where they are."""

    model: torch.nn.Module
    inputs: Mapping
    plan: DevicePlan
    source: object = None
    placed: bool = False
    notes: list[str] = field(default_factory=list)
    inputs_on: str = "cpu"

    def place(self) -> None:
        """Dispatch the model by the current plan (accelerate's dispatch_model, as from_pretrained), then,
        with `inputs_on` "model", move the inputs to `model.device` (transformers' own property: the
        first parameter's device), as the model cards' `inputs.to(model.device)` does."""
        dispatch(self.model, self.plan)
        self.placed = True
        if self.inputs_on == "model":
            self.inputs = _with(self.inputs, _moved(self.inputs, self.model.device))

    @property
    def plan_source(self) -> object:
        return self.plan.model if self.source is None else self.source


@dataclass(frozen=True)
class Fix:
    """One fix. `apply(setup)` applies it and returns the undo; `applied(setup)` is the same as a
    context manager. `stage` is "plan" (apply before `setup.place()`), "placed" (after), or
    "environment" (another transformers release: checked by `qd.verify` and `qd.run_in_versions` in
    the version lab's side environments, never applied inside this Python)."""

    name: str
    title: str
    addresses: tuple[str, ...]
    costs: str
    stage: str
    action: Callable[[Setup], Undo] = field(repr=False, compare=False)

    def apply(self, setup: Setup) -> Undo:
        """Apply the fix to `setup`; returns a function that undoes it."""
        if not isinstance(setup, Setup):
            raise InvalidArgumentError(f"{self.name}.apply takes a qd.Setup; got {type(setup).__name__}.")
        if self.stage == "environment":
            raise FixError(
                f"{self.name} changes the Python environment, so it is not applied to a live model: check "
                f"it with qd.verify(scenario, fix={self.name!r}) or qd.run_in_versions(scenario, "
                "['latest']), then upgrade (pip install -U transformers accelerate)."
            )
        if self.stage == "plan" and setup.placed:
            raise FixError(f"{self.name} rewrites the device plan: apply it before the model is placed.")
        if self.stage == "placed" and not setup.placed:
            raise FixError(f"{self.name} acts on the placed model: call setup.place() first.")
        return self.action(setup)

    @contextmanager
    def applied(self, setup: Setup) -> Iterator[Setup]:
        """The fix applied for the duration of the block."""
        undo = self.apply(setup)
        try:
            yield setup
        finally:
            undo()

    def row(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "addresses": list(self.addresses),
            "costs": self.costs,
        }


def _swap(setup: Setup, **values: object) -> Undo:
    """Put new objects on the setup; the undo puts the old ones back."""
    before = {name: getattr(setup, name) for name in values}
    for name, value in values.items():
        setattr(setup, name, value)

    def undo() -> None:
        for name, value in before.items():
            setattr(setup, name, value)

    return undo


def _with(inputs: Mapping, changes: dict) -> Mapping:
    """A new inputs mapping of the same kind (BatchFeature, dict) with `changes`; `inputs` is untouched."""
    data = {**inputs, **changes}
    return type(inputs)(data) if isinstance(inputs, (UserDict, dict)) else data


def _moved(inputs: Mapping, device: torch.device) -> dict:
    """The tensors of `inputs` not yet on `device`, moved there (what `inputs.to(device)` moves)."""
    return {k: v.to(device) for k, v in inputs.items() if isinstance(v, torch.Tensor) and v.device != device}


def _to_execution_device(setup: Setup) -> Undo:
    device = compute_device(setup.model)
    moved = _moved(setup.inputs, device)
    setup.notes.append(
        f"inputs.to('{device}'), accelerate's root-hook execution device, moved "
        f"{', '.join(moved) or 'nothing'}"
    )
    return _swap(setup, inputs=_with(setup.inputs, moved))


def _single_device(setup: Setup) -> Undo:
    plan = setup.plan
    plan_one = plan_device_map(setup.plan_source, plan.gpus, plan.memory, {"": 0}, dtype=plan.dtype)
    needed, room = sum(plan_one.module_bytes.values()), plan.max_memory[0]
    if needed > room:
        raise FixError(
            f"single_device: {plan.model} needs {needed / 2**30:.1f} GiB, more than cuda:0's "
            f"{room / 2**30:.1f} GiB; use vision_with_embeddings instead."
        )
    device = torch.device("cuda", 0)
    # one device means no accelerate hooks, so nothing moves the inputs: every such script does it
    setup.notes.append("device_map={'': 0} and inputs.to('cuda:0') (no hook moves inputs on one device)")
    return _swap(setup, plan=plan_one, inputs=_with(setup.inputs, _moved(setup.inputs, device)))


def _vision_with_embeddings(setup: Setup) -> Undo:
    vision, embed = vision_and_embeddings(setup.plan)
    together = plan_together(setup.plan, setup.plan_source)
    if together is setup.plan:
        where = ", ".join(sorted(map(device_label, vision | embed)))
        setup.notes.append(f"the vision tower and embed_tokens already share {where}: the map is unchanged")
        return _swap(setup)
    now = device_label(next(iter(vision_and_embeddings(together)[1])))
    was = ", ".join(sorted(map(device_label, embed)))
    setup.notes.append(f"re-planned with embed_tokens on {now} with the vision tower (was {was})")
    return _swap(setup, plan=together)


def _second_per_grid_ts_as_list(setup: Setup) -> Undo:
    value = setup.inputs.get(SECONDS)
    if not isinstance(value, torch.Tensor):
        setup.notes.append(f"no tensor {SECONDS} in the inputs: nothing to change")
        return _swap(setup)
    if get_bug(VIDEO_BUG).affects(TRANSFORMERS_VERSION):
        new, form = value.tolist(), "a list of floats, as this release's processor returns it"
    else:
        new, form = (
            value.cpu(),
            f"a CPU tensor, as transformers {TRANSFORMERS_VERSION}'s processor returns it",
        )
    setup.notes.append(f"{SECONDS} handed over as {form}")
    return _swap(setup, inputs=_with(setup.inputs, {SECONDS: new}))


def _environment_only(setup: Setup) -> Undo:
    raise FixError("upgrade_transformers runs in the version lab, not on a Setup.")  # Fix.apply refuses first


def _noted(setup: Setup, applied: tuple[Undo, list[str]], name: str, bugs: tuple[str, ...]) -> Undo:
    """Note what an instance hotfix wrapped, or warn that it is a no-op on this release and model."""
    undo, wrapped = applied
    if wrapped:
        setup.notes.append(f"wrapped {', '.join(wrapped)} on the model instance")
    else:
        ranges = sorted({get_bug(bug).affected for bug in bugs})
        message = (
            f"{name} is a no-op: transformers {TRANSFORMERS_VERSION} has none of {', '.join(bugs)} for this "
            f"model (affected: {' or '.join(ranges)})"
        )
        setup.notes.append(message)
        warnings.warn(message, FixNotApplicableWarning, stacklevel=5)
    return undo


def _rope_mask_hotfix(setup: Setup) -> Undo:
    return _noted(setup, apply_hotfix(setup.model), "rope_mask_hotfix", HOTFIX_BUGS)


def _rope_deltas_to_cache_device(setup: Setup) -> Undo:
    # accelerate's root hook moves cache_position (a forward argument) to the execution device
    applied = apply_rope_deltas_fix(setup.model, compute_device(setup.model))
    return _noted(setup, applied, "rope_deltas_to_cache_device", ROPE_DELTAS_BUGS)


CATALOGUE: tuple[Fix, ...] = (
    Fix(
        "inputs_to_execution_device",
        "Move the inputs to where the model starts computing (accelerate's root-hook execution device)",
        INPUTS_ON_CPU_BUGS,
        "One copy of the inputs before the call, as the root hook would make anyway; no memory or speed "
        "cost. It fixes inputs left on the CPU of a one-GPU model, no transformers bug (on 4.49-4.51.3 it "
        "is what puts a tensor second_per_grid_ts on a GPU).",
        "placed",
        _to_execution_device,
    ),
    Fix(
        "single_device",
        "Run the whole model on one GPU: device_map={'': 0}, inputs on cuda:0",
        (*APART_BUGS, *OMNI_APART_BUGS, *VISION_SPLIT_BUGS, *INPUTS_ON_CPU_BUGS),
        "All weights and activations on one GPU (needs the whole model's memory there; the other GPUs sit "
        "idle); no transfers between GPUs, so per-token speed is the same or better.",
        "plan",
        _single_device,
    ),
    Fix(
        "vision_with_embeddings",
        "Re-plan the device map so the vision tower and embed_tokens share one GPU",
        APART_BUGS,
        "The vision tower's GPU also holds embed_tokens (about 1 GiB for 7B in bf16) and fewer decoder "
        "layers move off it, so memory is less balanced; no extra transfers, speed unchanged.",
        "plan",
        _vision_with_embeddings,
    ),
    Fix(
        "second_per_grid_ts_as_list",
        "Hand second_per_grid_ts over in the form the release handles (a list on 4.49-4.51.3)",
        (VIDEO_BUG,),
        "None: a few floats instead of a tensor, no memory or speed cost.",
        "placed",
        _second_per_grid_ts_as_list,
    ),
    Fix(
        "rope_mask_hotfix",
        "Hotfix for 4.47-4.51.3: move second_per_grid_ts / cache_position to the device the code uses",
        HOTFIX_BUGS,
        "One tiny tensor copy per rope-index or mask call; no memory cost; a no-op (with a warning) on "
        "releases without the bugs.",
        "placed",
        _rope_mask_hotfix,
    ),
    Fix(
        "rope_deltas_to_cache_device",
        "Hotfix for 4.48-4.52.4 text-only generate: keep rope_deltas where cache_position is",
        ROPE_DELTAS_BUGS,
        "One tiny tensor copy per prefill; no memory or speed cost; a no-op (with a warning) on releases "
        "without the bug.",
        "placed",
        _rope_deltas_to_cache_device,
    ),
    Fix(
        "upgrade_transformers",
        "Upgrade transformers (and accelerate) to the newest release, checked in the version lab",
        UPGRADE_BUGS,
        "No memory or speed cost at run time; the check makes a cached side environment once (about 120 MB, "
        "under a minute), and the upgrade itself may need other code of yours updated.",
        "environment",
        _environment_only,
    ),
)


def fixes() -> pd.DataFrame:
    """The fix catalogue, one row per fix (columns `FIX_COLUMNS`).

    >>> qd.fixes()[["name", "addresses"]]
    """
    return pd.DataFrame([fix.row() for fix in CATALOGUE], columns=FIX_COLUMNS)


def fix_names() -> list[str]:
    return [fix.name for fix in CATALOGUE]


def get_fix(name: str) -> Fix:
    """The catalogue fix called `name`; `UnknownFixError` (with the close names) otherwise."""
    for fix in CATALOGUE:
        if fix.name == name:
            return fix
    close = difflib.get_close_matches(str(name), fix_names(), n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownFixError(f"Unknown fix {name!r}.{hint} Known fixes: {', '.join(fix_names())}.")


def fixes_for(bug_id: str) -> list[Fix]:
    """The catalogue fixes whose `addresses` include the known bug `bug_id`."""
    return [fix for fix in CATALOGUE if bug_id in fix.addresses]


def resolve(names: str | Iterable[str] | None) -> list[Fix]:
    """Fixes by name (one name, a list, or None for none), each once, in the order given."""
    if names is None:
        return []
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, Iterable) or not all(isinstance(n, str) for n in names):
        raise InvalidArgumentError(f"Fixes are given by name (a string or a list of strings); got {names!r}.")
    return [get_fix(name) for name in dict.fromkeys(names)]


@contextmanager
def applying(setup: Setup, names: str | Iterable[str] | None = ()) -> Iterator[Setup]:
    """Apply the named fixes around the placement: "plan" fixes, then `setup.place()` (unless the model
    is placed already), then "placed" fixes. On exit, also when the block raises, each is undone in
    reverse order; the model stays placed by the plan it was placed with.

    >>> with qd.applying(setup, ["rope_mask_hotfix"]) as setup:
    ...     out = setup.model(**setup.inputs)
    """
    chosen = resolve(names)
    with ExitStack() as undo:
        for fix in chosen:
            if fix.stage == "plan":
                undo.callback(fix.apply(setup))
        if not setup.placed:
            setup.place()
        for fix in chosen:
            if fix.stage == "placed":
                undo.callback(fix.apply(setup))
        yield setup
