"""`run`: a `Scenario` built, placed, run and diagnosed, here or in another transformers release.

A scenario whose `transformers` names another release than the installed one runs in the version
lab's side environment of that release (made on demand, cached: see `versions.side_env`); its whole
`Diagnosis` (frames, first mismatch, known bugs, environment) comes back as JSON and is rebuilt here,
so two releases' frames can be compared side by side.

>>> old = qd.run(qd.Scenario.preset("text-generate", transformers="4.52.4"))
>>> new = qd.run(qd.Scenario.preset("text-generate", transformers="latest"))
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

from ._compat import TRANSFORMERS_VERSION
from .errors import QwenVLDiagError, VersionLabError
from .scenario import Scenario, devices_for, materials

if TYPE_CHECKING:  # the model side (torch) loads when a scenario runs, so the CLI starts fast
    from .diagnose import Diagnosis


def release_of(scenario: Scenario) -> str | None:
    """The transformers release the scenario runs under, when it is not the installed one (None: here).
    "latest" asks the package index which release that is."""
    wanted = scenario.transformers
    if wanted in (None, "installed"):
        return None
    from .versions import resolve_version

    release = resolve_version(wanted)
    return None if release == str(TRANSFORMERS_VERSION) else release


def _run_elsewhere(scenario: Scenario, release: str) -> Diagnosis:
    """The scenario's Diagnosis made by the side environment of `release`."""
    from .diagnose import Diagnosis
    from .versions import doctor_in, side_env

    env = side_env(release)
    there = dataclasses.replace(scenario, transformers=env.transformers)  # runs where it is sent
    done = doctor_in(env, there)
    if done.returncode not in (0, 1) or not done.stdout.lstrip().startswith("{"):
        said = "\n".join(done.stderr.strip().splitlines()[-3:]).removeprefix("qwenvl-diag: ")
        message = said or f"exit status {done.returncode}"
        raise VersionLabError(f"The scenario could not run under transformers {env.transformers}: {message}")
    diagnosis = Diagnosis.from_dict(json.loads(done.stdout))
    diagnosis.scenario = scenario
    return diagnosis


def run(scenario: Scenario) -> Diagnosis:
    """Build, plan, place, make inputs and diagnose a scenario; returns its Diagnosis.

    Runs on real GPUs when the machine has enough (devices="auto" or "real"), else on simulated ones.
    The scenario's `fixes` are applied around the placement (see `qd.applying`) and undone after. A
    scenario with `transformers` set to another release runs in that release's side environment; its
    Diagnosis has no `plan` object then (the placement frames hold the layout).
    """
    if not isinstance(scenario, Scenario):
        raise QwenVLDiagError(f"run takes a qd.Scenario; got {type(scenario).__name__}.")
    release = release_of(scenario)
    if release is not None:
        return _run_elsewhere(scenario, release)
    return run_with(scenario, *materials(scenario))


def _run_fsdp2(scenario: Scenario, model, inputs) -> Diagnosis:
    """The fsdp2 engine's run: every rank's diagnosis (`fsdp.diagnose_ranks`) on the scenario's GPUs."""
    from .fsdp import diagnose_ranks

    with devices_for(scenario):
        diagnosis = diagnose_ranks(
            model,
            inputs,
            scenario.gpus,
            scenario.cpu_offload,
            action=scenario.action,
            host_buffers=scenario.host_buffers,
            max_new_tokens=scenario.max_new_tokens,
        )
    diagnosis.scenario = scenario
    return diagnosis


def run_with(scenario: Scenario, model, source, plan, inputs, *, unplace: bool = False) -> Diagnosis:
    """`run` here on materials made already (`materials`' four: a sweep builds a twin once and places
    it again per layout). With `unplace`, the model leaves the GPUs before they go (`undispatch`: no
    hooks, every tensor on the CPU, as built), so the next scenario can place it again."""
    if scenario.engine == "fsdp2":
        return _run_fsdp2(scenario, model, inputs)
    from .diagnose import diagnose
    from .fixes import Setup, applying
    from .placement import device_map_frame, device_summary_frame, flags_frame
    from .placement.dispatch import undispatch

    with devices_for(scenario):
        try:
            setup = Setup(model, inputs, plan, source, inputs_on=scenario.inputs_on)
            with applying(setup, scenario.fixes) as setup:
                diagnosis = diagnose(
                    model, setup.inputs, action=scenario.action, max_new_tokens=scenario.max_new_tokens
                )
                plan = setup.plan
        finally:
            if unplace:
                undispatch(model)
    diagnosis.scenario = scenario
    diagnosis.plan = plan
    # the layout a user cares about is the real checkpoint's: the plan's real sizes, not the twin's
    diagnosis.frames.update(
        placement=device_map_frame(plan), summary=device_summary_frame(plan), flags=flags_frame(plan)
    )
    return diagnosis
