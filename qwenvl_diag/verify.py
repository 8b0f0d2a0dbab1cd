"""`verify`: does a fix work on this scenario? Run it with and without the fix and compare with a
single-device reference, so that a fix that hides an error but changes the numbers counts as a failure.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ._compat import TRANSFORMERS_VERSION
from .bugs import match_known_bugs
from .errors import FixNotApplicableWarning, QwenVLDiagError
from .fixes import Fix, Setup, applying, fix_names, get_fix, resolve
from .judged import Judged
from .scenario import Scenario, devices_for, materials
from .trace import train_step
from .versions import LATEST, judge_in, resolve_version, side_env

VERIFY_COLUMNS = [
    "fix",
    "error_before",
    "error_after",
    "max_abs_logit_diff",
    "same_generated_ids",
    "verdict",
    "why",
]
"""Columns of `verify`: one row per fix. `error_before` / `error_after`: the run's error text without
and with the fix (None when it passed); `max_abs_logit_diff`: the largest absolute difference from the
single-device reference at real tokens (NaN when the run failed); `same_generated_ids`: whether the
token ids equal the reference's (None when the run failed); `verdict` one of `VERDICTS`; `why` one
sentence: what the fix did and what came of it."""

VERDICTS = ("fixed", "not fixed", "not needed", "breaks results")
LOGIT_ATOL = 1e-4
_SKIPPED = (str(Path(torch.__file__).parent), str(Path(__file__).parent))


@dataclass
class Outcome:
    """One run: its error, or the logits compared (float32, CPU) and the token ids."""

    error: BaseException | None
    logits: torch.Tensor | None = None
    ids: torch.Tensor | None = None


def _run(model: torch.nn.Module, inputs, scenario: Scenario) -> Outcome:
    """The scenario's action, returning what is compared: for "forward", the logits at real tokens
    (attention_mask 1) and their argmax; for "generate", the logits of each generated step (always
    at a real, last, position) and the generated sequences."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # generate's device and sampling warnings, once per run
            if scenario.action in ("forward", "train_step"):
                if scenario.action == "forward":
                    with torch.no_grad():
                        logits = model(**inputs).logits.cpu().float()
                else:  # the step's forward logits are compared; its backward must not fail
                    logits = train_step(model, inputs).logits.detach().cpu().float()
                mask = inputs.get("attention_mask")
                real = (
                    mask.cpu().bool()
                    if isinstance(mask, torch.Tensor)
                    else torch.ones(logits.shape[:2], dtype=bool)
                )
                logits = logits[real]
                return Outcome(None, logits, logits.argmax(-1))
            out = model.generate(
                **inputs,
                max_new_tokens=scenario.max_new_tokens,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
            )
            return Outcome(
                None, torch.stack([step.cpu().float() for step in out.logits]), out.sequences.cpu()
            )
    except Exception as error:  # the model failing is the finding
        return Outcome(error)


def _ranks_run(model, inputs, scenario: Scenario) -> Outcome:
    """The scenario's action on each FSDP2 rank (a sharded copy each); the first failing rank's outcome."""
    from .fsdp import on_rank, rank_process_group, sharded_replica

    outcome = None
    for rank in range(scenario.gpus):
        with rank_process_group(rank, scenario.gpus):
            replica = sharded_replica(model, rank, scenario.gpus, scenario.cpu_offload, scenario.host_buffers)
            outcome = _run(replica, on_rank(inputs, rank), scenario)
        if outcome.error is not None:
            break
    return outcome


def _fixed_run(
    model, inputs, plan, source, scenario: Scenario, names: list[str]
) -> tuple[Outcome, list[str]]:
    """A fresh copy of the model placed and run with the named fixes applied (and undone after)."""
    if scenario.engine == "fsdp2":
        if names:  # the catalogue's fixes change a device_map placement or what runs on it
            return Outcome(QwenVLDiagError("it acts on a device_map placement, not on FSDP2's")), []
        return _ranks_run(model, inputs, scenario), []
    setup = Setup(copy.deepcopy(model), inputs, plan, source, inputs_on=scenario.inputs_on)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FixNotApplicableWarning)  # the note says it
            with applying(setup, names):
                outcome = _run(setup.model, setup.inputs, scenario)
    except QwenVLDiagError as error:  # the fix could not be applied here (no room on one GPU, ...)
        outcome = Outcome(error)
    return outcome, setup.notes


def _location(error: BaseException) -> tuple[str, int, str, str] | None:
    """(file, line, function, code) of the innermost frame outside torch and the kit: the library line."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith(_SKIPPED)]
    if not frames:
        return None
    frame = frames[-1]
    return frame.filename, frame.lineno, frame.name, frame.line or ""


def _failure(error: BaseException, fix: Fix) -> str:
    """What still fails, and whether it is a bug the fix is meant for."""
    if isinstance(error, QwenVLDiagError):
        return f"the fix cannot be applied here: {error}"
    located = _location(error)
    if located is None:
        return f"the run still fails: {type(error).__name__}: {str(error)[:120]}"
    file, line, function, code = located
    where = f"{Path(file).name}:{line} ({function})"
    bugs = match_known_bugs(file, function, code)
    if not bugs:
        return f"the run still fails at {where}: {type(error).__name__}: {str(error)[:120]}"
    bug = bugs[0]
    what = bug["title"].split(": ", 1)[-1]
    aim = "" if bug["id"] in fix.addresses else f" (a bug {fix.name} does not address)"
    return f"it leaves {bug['id']} in place{aim}: {what}, at {where}"


def _judge(outcome: Outcome, reference: Outcome | None, fix: Fix | None) -> Judged:
    if outcome.error is not None:
        failure = _failure(outcome.error, fix) if fix is not None else None
        return Judged(str(outcome.error), failure=failure, compared=reference is not None)
    if reference is None:
        return Judged(None, compared=False)
    if outcome.logits.shape != reference.logits.shape:
        diff = math.inf
    else:
        diff = (outcome.logits - reference.logits).abs().max().item()
    return Judged(None, diff, torch.equal(outcome.ids, reference.ids))


def _matches(judged: Judged, atol: float) -> bool:
    if not judged.compared:
        return judged.error is None
    return judged.error is None and judged.diff <= atol and bool(judged.same)


def _verdict(before: Judged, after: Judged, atol: float) -> str:
    before_ok = _matches(before, atol)
    if after.error is not None:
        return "breaks results" if before_ok else "not fixed"
    if not _matches(after, atol):
        silently_wrong_before = before.error is None and not before_ok
        return "not fixed" if silently_wrong_before else "breaks results"
    return "not needed" if before_ok else "fixed"


def _why(fix: Fix, verdict: str, notes: list[str], after: Judged, atol: float) -> str:
    did = "; ".join(notes) or fix.title
    if verdict == "fixed" and not after.compared:
        return f"{did}: no error on any rank (values not compared: {_UNCOMPARED})."
    if verdict == "fixed":
        return (
            f"{did}: no error, and the result equals the single-device reference (max diff {after.diff:.1e})."
        )
    if verdict == "not needed":
        still = (
            "it still passes" if not after.compared else "it the result equals the single-device reference"
        )
        passes = f"the run already passes without it on transformers {TRANSFORMERS_VERSION}"
        return f"{did}: {passes}, and with {still}."
    if after.error is not None:
        lead = "it makes a passing run fail; " if verdict == "breaks results" else ""
        return f"{did}: {lead}{after.failure or after.error}."
    differs = [f"logits differ by {after.diff:.3g} (> {atol:g})"] if not after.diff <= atol else []
    differs += [] if after.same else ["the generated ids differ"]
    return (
        f"{did}: no error, but {' and '.join(differs)} from the single-device reference (a silent failure)."
    )


def judge_scenario(scenario: Scenario, fix: str | None = None) -> Judged:
    """The scenario run (with its own fixes, and `fix` when given) judged against its single-device
    reference, in this environment: what the version lab runs in a side environment."""
    model, source, plan, inputs = materials(scenario)
    reference = _reference(model, inputs, scenario)
    names = [*scenario.fixes, *([fix] if fix else [])]
    with devices_for(scenario):
        outcome, _ = _fixed_run(model, inputs, plan, source, scenario, names)
    return _judge(outcome, reference, get_fix(fix) if fix else None)


_UNCOMPARED = "an FSDP2 run on the fake process group gathers this rank's shard into every slot"


def _reference(model: torch.nn.Module, inputs, scenario: Scenario) -> Outcome | None:
    """The single-device run to compare with (None for FSDP2: its values are not the model's)."""
    if scenario.engine == "fsdp2":
        return None
    reference = _run(copy.deepcopy(model), inputs, scenario)
    if reference.error is not None:
        raise QwenVLDiagError(
            f"The single-device reference run on the CPU failed, so there is nothing to compare with: "
            f"{type(reference.error).__name__}: {reference.error}"
        ) from reference.error
    return reference


def _in_latest(scenario: Scenario, before: Judged) -> tuple[Judged, list[str]]:
    """The scenario judged under the newest transformers, in the version lab's side environment (or
    `before` itself when the installed release is the newest)."""
    try:
        if resolve_version(LATEST) == str(TRANSFORMERS_VERSION):
            return before, [f"transformers {TRANSFORMERS_VERSION}, installed here, is the newest release"]
        env = side_env(LATEST)
        judged = judge_in(env, scenario)
    except QwenVLDiagError as error:
        return Judged(str(error), failure=f"the version lab could not check it: {error}"), []
    note = f"ran under transformers {env.transformers} (accelerate {env.accelerate}) in a side environment"
    if judged.failure is None and judged.error is not None:
        judged.failure = f"the newest release fails too: {judged.error[:160]}"
    return judged, [note]


def verify(
    scenario: Scenario, fix: str | list[str] | None = None, *, atol: float = LOGIT_ATOL
) -> pd.DataFrame:
    """Run `scenario` without and with each fix (default: every catalogue fix) and judge each against a
    single-device reference; one row per fix, columns `VERIFY_COLUMNS`.

    The reference is the same model (same seed, same inputs) on the plain CPU. What is compared is what
    the scenario's action yields: for "forward", the logits at real tokens (attention_mask 1; padded
    positions are left out because on transformers 4.51.3 a CUDA-only branch of the sdpa mask code
    unmasks fully padded rows, so their values differ by design) and their argmax; for "generate",
    the logits of every generated step (each at the last, real, position) and the generated ids.
    Tolerance: `atol` (default 1e-4) on the largest absolute logit difference, and equal ids. On
    simulated GPUs the runs are bit-identical to the CPU (differences are 0.0), so any difference
    means the fix changed the numbers; on real GPUs kernels differ from the CPU's, so pass a larger
    `atol` there.

    Verdicts: "fixed" (it failed without the fix; with it, no error and the reference's result),
    "not fixed" (it still fails), "not needed" (it passed without the fix, and with it the result is
    unchanged), "breaks results" (no error but other numbers than the reference, or a passing run
    made to fail). The scenario's own `fixes` are applied in every run.

    >>> qd.verify(qd.Scenario.preset("seed-batched"))[["fix", "verdict", "why"]]
    """
    if not isinstance(scenario, Scenario):
        raise QwenVLDiagError(f"verify takes a qd.Scenario; got {type(scenario).__name__}.")
    chosen = resolve(fix_names() if fix is None else fix)
    model, source, plan, inputs = materials(scenario)
    reference = _reference(model, inputs, scenario)
    rows = []
    with devices_for(scenario):
        outcome, _ = _fixed_run(model, inputs, plan, source, scenario, scenario.fixes)
        before = _judge(outcome, reference, None)
        for chosen_fix in chosen:
            if chosen_fix.stage == "environment":
                after, notes = _in_latest(scenario, before)
            else:
                outcome, notes = _fixed_run(
                    model, inputs, plan, source, scenario, [*scenario.fixes, chosen_fix.name]
                )
                after = _judge(outcome, reference, chosen_fix)
            verdict = _verdict(before, after, atol)
            rows.append(
                {
                    "fix": chosen_fix.name,
                    "error_before": before.error,
                    "error_after": after.error,
                    "max_abs_logit_diff": after.diff,
                    "same_generated_ids": after.same,
                    "verdict": verdict,
                    "why": _why(chosen_fix, verdict, notes, after, atol),
                }
            )
    # object columns keep None (a passed run, no ids) as None rather than NaN
    return pd.DataFrame(rows, columns=VERIFY_COLUMNS, dtype=object).astype({"max_abs_logit_diff": float})


def main(argv: list[str] | None = None) -> int:
    """Print `judge_scenario(Scenario.from_json(argv[0]))` as JSON: the version lab's probe, run as
    `python -c "from qwenvl_diag.verify import main; main()" SCENARIO_JSON` in a side environment."""
    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(dataclasses.asdict(judge_scenario(Scenario.from_json(args[0])))))
    return 0
