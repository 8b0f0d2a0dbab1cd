"""`diagnose`: one traced run turned into a Diagnosis (the line that mixed devices, the known bug, advice).

After a diagnosis, passing or raising, the model, its hooks and forward methods, the inputs and
torch's global state are as before: the tracer's mode and hooks are removed in `finally`, the rope
capture restores the wrapped method, and the inputs are only read.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field

import pandas as pd

from . import report
from .bugs import match_known_bugs
from .device_errors import is_device_error
from .environment import environment
from .explain.lines import index_note
from .fixes import fixes_for
from .placement import device_map_frame, device_summary_frame, flags_frame
from .rope import ROPE_INPUT_COLUMNS, capture_rope, find_rope_index
from .silent import silent_findings
from .trace import Trace, check_run_arguments, module_state_kept, run_action, tracing

FRAMES = ("placement", "summary", "flags", "tensors", "transfers", "mismatches", "rope", "inputs")


@dataclass
class Diagnosis:
    """The outcome of one diagnosed run. `frames` holds the DataFrames named in `FRAMES`."""

    model: str
    action: str
    error: str | None
    error_type: str | None
    first_mismatch: dict | None
    frames: dict[str, pd.DataFrame]
    known_bugs: list[dict]
    advice: list[str]
    environment: dict
    # the engine the run used: {"engine": "device_map"}, or the fsdp2 engine's facts (`fsdp.engine_facts`)
    engine: dict = field(default_factory=lambda: {"engine": "device_map"})
    # what limited the diagnosis, e.g. a transformers release newer than the kit's line index (`index_note`)
    notes: list[str] = field(default_factory=list)
    scenario: object = field(default=None, repr=False)
    plan: object = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when the run raised nothing."""
        return self.error is None

    @property
    def device_error(self) -> bool:
        """True when the run failed because an op saw tensors on different devices ("Expected all tensors
        to be on the same device", or a variant such as the convolution's "Input type (CUDAFloatType)
        and weight type (CPUFloatType) should be the same"; see `device_errors.is_device_error`)."""
        return self.error is not None and is_device_error(self.error)

    def to_markdown(self) -> str:
        """A report to paste into a GitHub issue: what failed, the line, the known bug, layout, versions."""
        return report.markdown(self)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "action": self.action,
            "error": self.error,
            "error_type": self.error_type,
            "first_mismatch": self.first_mismatch,
            "known_bugs": self.known_bugs,
            "advice": self.advice,
            "environment": self.environment,
            "engine": self.engine,
            "notes": self.notes,
            "scenario": self.scenario.to_dict() if self.scenario is not None else None,
            "frames": {name: frame.to_dict(orient="records") for name, frame in self.frames.items()},
            "frame_columns": {name: list(frame.columns) for name, frame in self.frames.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> Diagnosis:
        """The Diagnosis `to_dict` (or `to_json`, parsed) describes: what the version lab's side
        environments send back. Frames keep their columns and rows (JSON turns tuples into lists);
        `plan` is None, as no plan object travels."""
        from .scenario import Scenario

        columns = data.get("frame_columns", {})
        frames = {
            name: pd.DataFrame(rows, columns=columns.get(name) or None)
            for name, rows in data["frames"].items()
        }
        scenario = data.get("scenario")
        return cls(
            model=data["model"],
            action=data["action"],
            error=data["error"],
            error_type=data["error_type"],
            first_mismatch=data["first_mismatch"],
            frames=frames,
            known_bugs=data["known_bugs"],
            advice=data["advice"],
            environment=data["environment"],
            engine=data.get("engine") or {"engine": "device_map"},
            notes=data.get("notes") or [],
            scenario=Scenario.from_dict(scenario) if scenario is not None else None,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def _repr_html_(self) -> str:
        return report.html_report(self)

    def __str__(self) -> str:
        return self.to_markdown()


def _model_label(model) -> str:
    return (
        getattr(model, "name_or_path", "")
        or getattr(getattr(model, "config", None), "_name_or_path", "")
        or type(model).__name__
    )


def _placement_frames(model) -> dict[str, pd.DataFrame]:
    return {
        "placement": device_map_frame(model),
        "summary": device_summary_frame(model),
        "flags": flags_frame(model),
    }


def _advice(
    error: BaseException | None, bugs: list[dict], flags: pd.DataFrame, first: dict | None
) -> list[str]:
    """What to do, most specific first: the known bug's fix and workaround, then the layout's risks."""
    advice = []
    for bug in bugs:
        if bug.get("found"):
            advice.append(f"No error, but wrong values: {bug['found']}.")
        if bug["fixed_in"]:
            advice.append(
                f"Upgrade transformers to {bug['fixed_in']} or later: it fixes {bug['id']} ({bug['title']})."
            )
        advice.append(f"{bug['id']}: {bug['workaround']}.")
        advice.extend(
            f"Fix from the kit's catalogue: {fix.name} ({fix.title}); check it on your scenario with "
            f"qd.verify(scenario, fix={fix.name!r})."
            for fix in fixes_for(bug["id"])
        )
    codes = set(flags["code"]) if not flags.empty else set()
    if "vision_embed_apart" in codes and error is not None:
        advice.append(
            "Keep the vision tower and embed_tokens on one GPU (an explicit device map such as "
            "qd.split_device_map(checkpoint, [layer], vision_gpu=0)), or run on one device."
        )
    if first is not None and not bugs:
        advice.append(
            f"{first['op']} at {report.short_path(first['file'])}:{first['line']} got tensors on "
            f"{first['devices']}: move the tensor that is not where the module computes (see the "
            "'tensors' frame) before that line."
        )
    if error is not None and first is None and not is_device_error(str(error)):
        advice.append("The run failed for a reason other than device placement; see the error.")
    return advice


def diagnose(model, inputs, action: str = "forward", **generate_kwargs) -> Diagnosis:
    """Run `model` on `inputs` once under the tracer and explain any device error.

    Works on real GPUs and under `qd.simulated_gpus`. The run's own exception is caught and reported
    (`diagnosis.error`); bad arguments raise the kit's errors.

    >>> diagnosis = diagnose(model, inputs, action="generate")
    >>> print(diagnosis.to_markdown())
    """
    from .input_check import check_inputs

    check_run_arguments(model, inputs, action)
    frames = _placement_frames(model)
    frames["inputs"] = check_inputs(inputs, model)
    # models without a rope-index function (not Qwen-VL) still get every other frame
    rope_capture = capture_rope(model) if find_rope_index(model) is not None else contextlib.nullcontext()
    with module_state_kept(model), tracing(model) as recorder, rope_capture as rope:
        try:
            _, error = run_action(model, inputs, action, generate_kwargs), None
        except Exception as caught:  # the user's forward failing is what is being diagnosed
            error = caught
    trace = Trace(recorder.frames(), action, error)
    frames.update(trace.frames)
    frames["rope"] = rope.frame() if rope is not None else pd.DataFrame(columns=ROPE_INPUT_COLUMNS)
    env = environment()
    first = trace.first_mismatch
    bugs = (
        match_known_bugs(first["file"], first["function"], first["code"], env["transformers"])
        if first is not None
        else []
    )
    bugs += silent_findings(rope, getattr(model, "config", None), env["transformers"])
    return Diagnosis(
        model=_model_label(model),
        action=action,
        error=str(error) if error is not None else None,
        error_type=type(error).__name__ if error is not None else None,
        first_mismatch=first,
        frames={name: frames[name] for name in FRAMES},
        known_bugs=bugs,
        advice=_advice(error, bugs, frames["flags"], first),
        environment=env,
        notes=[note for note in [index_note(env["transformers"])] if note],
    )
