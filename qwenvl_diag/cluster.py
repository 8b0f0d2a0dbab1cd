"""Sweeps on a Ray cluster: `qd.sweep(..., cluster="ray")`, `qwenvl-diag sweep --ray [ADDRESS]`.

The grid is cut into tasks of whole layouts (every scenario of a checkpoint x GPUs x memory x strategy in
one task, so a task plans each layout once and runs each distinct map once, as a local sweep does), one
set of tasks per release. Each task runs the local sweep's own code (`sweep._sweep_here`, one process) on
a node, in the environment its `runtime_env` makes there:

- `pip`: that release's transformers, the accelerate of its weeks (`versions.matching_accelerate`), and
  the kit's other dependencies at the versions the driver runs (torch, torchvision, qwen-vl-utils ...);
  Ray builds it as a virtualenv over the node's Python (its packages stay visible, so a node that has
  torch 2.14.1 installs only what differs) and keeps it for the release's next tasks;
- `py_modules` (the job's, set when the sweep connects): the running kit's package directory, so nodes
  run exactly the driver's kit (nothing of the kit is installed on a node by hand; a node needs Python
  and Ray). Ray takes a local directory only at the job level: a caller who ran `ray.init` already
  gives `runtime_env={"py_modules": [qwenvl_diag]}` there (`job_env()`).

Rows stream back as tasks finish. A task whose worker dies (node lost, out of memory) is retried once by
Ray (`max_retries=1`); a second loss is a "kit error" row per scenario of the task saying so, never a wait.
Ctrl-C cancels the tasks not done and keeps the rows that came back.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from .errors import SweepError
from .scenario import Scenario

INSTALL_HINT = "pip install 'qwenvl-diag[cluster]' (Ray with its runtime environments: ray[default])"
RETRIES = 1
"""How many times Ray runs a task again after its worker died (node lost, out of memory)."""
TASK_SCENARIOS = 64
"""About how many scenarios a task takes (whole layouts; a layout larger than this is one task)."""
# the kit's dependencies a node gets at the driver's versions, where fidelity hangs on them; the others
# (tokenizers, huggingface-hub ...) are left to the release's own requirements
_PINNED_AS_DRIVER = ("torch", "torchvision", "qwen-vl-utils")


def _ray():
    try:
        import ray
    except ImportError as error:
        raise SweepError(f'cluster="ray" needs Ray, which is not installed here: {INSTALL_HINT}.') from error
    return ray


def _installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def node_packages(transformers: str) -> list[str]:
    """The pip requirements of a node that runs release `transformers`: that release, its accelerate,
    the kit's other dependencies (torch, torchvision and qwen-vl-utils pinned to the driver's).

    >>> node_packages("4.51.3")[:2]
    ['transformers==4.51.3', 'accelerate==1.6.0']
    """
    from .versions import matching_accelerate

    packages = [f"transformers=={transformers}", f"accelerate=={matching_accelerate(transformers)}"]
    for requirement in importlib.metadata.requires("qwenvl-diag") or []:
        if ";" in requirement:  # an extra's
            continue
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
        if name in ("transformers", "accelerate", "uv"):  # uv makes side environments: a node needs none
            continue
        version = _installed(name) if name in _PINNED_AS_DRIVER else None
        packages.append(f"{name}=={version}" if version else requirement)
    if (version := _installed("torchvision")) and not any(p.startswith("torchvision") for p in packages):
        packages.append(f"torchvision=={version}")  # qwen-vl-utils imports it; the driver's build
    return packages


def runtime_env(transformers: str) -> dict:
    """The Ray runtime environment of the tasks that run release `transformers`; Ray merges it with the
    job's (`job_env`)."""
    return {
        "pip": {"packages": node_packages(transformers), "pip_check": False},
        "env_vars": {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"},
    }


def job_env() -> dict:
    """The job's runtime environment: the running kit, shipped to every node."""
    return {"py_modules": [str(Path(__file__).resolve().parent)], "excludes": ["__pycache__", "*.pyc"]}


def task_chunks(scenarios: list[Scenario]) -> list[list[int]]:
    """Scenario indices in tasks of whole layouts, about `TASK_SCENARIOS` each, in grid order."""
    from .sweep import _layout_key

    layouts: dict[str, list[int]] = {}
    for index, scenario in enumerate(scenarios):
        layouts.setdefault(_layout_key(scenario), []).append(index)
    chunks: list[list[int]] = [[]]
    for members in layouts.values():
        if chunks[-1] and len(chunks[-1]) + len(members) > TASK_SCENARIOS:
            chunks.append([])
        chunks[-1].extend(members)
    return [chunk for chunk in chunks if chunk]


def _sweep_task(scenario_dicts: list[dict]) -> tuple[list[dict], dict]:
    """A task on a node: the local sweep of these scenarios in this worker's transformers, one process."""
    from .sweep import _sweep_here, _worker_init

    _worker_init()
    rows: list[dict] = []
    timing = _sweep_here([Scenario.from_dict(data) for data in scenario_dicts], 1, rows.append)
    return rows, timing


def _lost_rows(scenarios: list[Scenario], transformers: str, error: BaseException) -> list[dict]:
    """A row per scenario of a task Ray could not finish, saying why."""
    from .sweep import _kit_error, _row
    from .versions import matching_accelerate

    said = str(error).strip().splitlines()[0] if str(error).strip() else ""
    reason = SweepError(
        f"The Ray task running this scenario under transformers {transformers} was lost "
        f"{RETRIES + 1} times ({type(error).__name__}: {said}); its node died or ran out of memory. "
        "Run the scenario alone (qd.run) to see whether it is the scenario or the node."
    )
    versions = {"transformers": transformers, "accelerate": matching_accelerate(transformers)}
    return [_row(scenario, versions, _kit_error(reason), None, False, 0.0) for scenario in scenarios]


def _add(total: dict, timing: dict) -> dict:
    if not total:
        return {**timing, "processes": 1, "tasks": 1}
    return {
        **total,
        "plan_s": total["plan_s"] + timing["plan_s"],
        "run_s": total["run_s"] + timing["run_s"],
        "processes": total["processes"] + 1,
        "tasks": total["tasks"] + 1,
    }


def sweep_on_ray(
    scenarios: list[Scenario],
    releases: list[str],
    emit: Callable[[dict], None],
    address: str | None = None,
    cpus: int | None = None,
) -> dict[str, dict]:
    """Run `scenarios` under each of `releases` as Ray tasks; `emit(row)` for each row as its task
    finishes. `address`: the cluster's (None: $RAY_ADDRESS, else a local Ray of `cpus` CPUs started for
    the sweep and stopped after). Returns the timings per release. Ctrl-C cancels the tasks not done and
    is raised again, once the rows that came back were emitted."""
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        address = address or os.environ.get("RAY_ADDRESS") or None
        local = {"num_cpus": cpus} if address is None else {}
        ray.init(
            address=address, runtime_env=job_env(), include_dashboard=False, log_to_driver=False, **local
        )
    task = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(_sweep_task)
    pending: dict = {}
    timings: dict[str, dict] = {}
    began = time.perf_counter()
    try:
        for release in releases:
            env = runtime_env(release)
            for chunk in task_chunks(scenarios):
                ref = task.options(runtime_env=env, name=f"qwenvl-diag sweep {release}").remote(
                    [scenarios[i].to_dict() for i in chunk]
                )
                pending[ref] = (release, chunk)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                release, chunk = pending.pop(ref)
                try:
                    rows, timing = ray.get(ref)
                except ray.exceptions.RayError as error:
                    rows, timing = _lost_rows([scenarios[i] for i in chunk], release, error), None
                for row in rows:
                    emit(row)
                if timing is not None:
                    timings[release] = _add(timings.get(release, {}), timing)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()
    for timing in timings.values():
        timing["wall_s"] = time.perf_counter() - began
    return timings
