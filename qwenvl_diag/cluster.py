"""Sweeps on a Ray cluster: `qd.sweep(..., cluster="ray")`, `qwenvl-diag sweep --ray [ADDRESS]`.

The grid is cut into tasks of whole layouts (every scenario of a checkpoint x GPUs x memory x strategy in
one task, so a task plans each layout once and runs each distinct map once, as a local sweep does), one
set of tasks per release. A task runs the local sweep's own code (`sweep._sweep_here`, one process) on a
node:

- the kit reaches the nodes as the job's `py_modules` (`job_env()`): the running kit's package directory,
  zipped and pushed by Ray when the sweep connects, so every node runs exactly the driver's kit. Ray
  takes a local directory only at the job level: a caller who ran `ray.init` already passes
  `runtime_env=job_env()` there;
- a release other than the node's own runs in that release's side environment, which the task makes on
  the node the way the version lab makes it here (`versions.side_env`: a virtual environment over the
  node's Python that adds only that transformers and the accelerate of its weeks, with uv, cached on the
  node), and is run by that environment's Python. Ray's own `pip` runtime environment is not used: over
  a virtualenv it clones the whole environment, a CUDA torch included (7 GB per release and node; it
  filled this machine's disk), where a side environment adds about 100 MB.

A node needs Python, Ray and the kit's dependencies (a cluster's setup commands install them: see
docs/guide/sweeps.md). Rows stream back as tasks finish. A task whose worker dies (node lost, out of
memory) is retried once by Ray (`max_retries=1`); a second loss is a "kit error" row per scenario of the
task saying so, never a wait. Ctrl-C cancels the tasks not done and keeps the rows that came back.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .errors import SweepError
from .scenario import Scenario

INSTALL_HINT = "pip install 'qwenvl-diag[cluster]' (Ray with its runtime environments: ray[default])"
RETRIES = 1
"""How many times Ray runs a task again after its worker died (node lost, out of memory)."""
TASK_SCENARIOS = 64
"""At most about how many scenarios a task takes (whole layouts; a layout larger than this is one task);
fewer when the grid is small, so that every CPU of the cluster gets two tasks."""


def _ray():
    try:
        import ray
    except ImportError as error:
        raise SweepError(f'cluster="ray" needs Ray, which is not installed here: {INSTALL_HINT}.') from error
    return ray


def job_env() -> dict:
    """The job's runtime environment: the running kit, shipped to every node (`py_modules`)."""
    return {
        "py_modules": [str(Path(__file__).resolve().parent)],
        "excludes": ["__pycache__", "*.pyc"],
        "env_vars": {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"},
    }


def task_chunks(scenarios: list[Scenario], size: int = TASK_SCENARIOS) -> list[list[int]]:
    """Scenario indices in tasks of whole layouts, about `size` each, in grid order."""
    from .sweep import _layout_key

    layouts: dict[str, list[int]] = {}
    for index, scenario in enumerate(scenarios):
        layouts.setdefault(_layout_key(scenario), []).append(index)
    chunks: list[list[int]] = [[]]
    for members in layouts.values():
        if chunks[-1] and len(chunks[-1]) + len(members) > size:
            chunks.append([])
        chunks[-1].extend(members)
    return [chunk for chunk in chunks if chunk]


def _sweep_task(scenario_dicts: list[dict], release: str, cache: str | None) -> tuple[list[dict], dict]:
    """A task on a node: the local sweep of these scenarios under `release`, one process: here when it
    is the node's transformers, else by the Python of its side environment on the node."""
    from ._compat import TRANSFORMERS_VERSION
    from .versions import side_env

    if release == str(TRANSFORMERS_VERSION):
        return _sweep_scenarios(scenario_dicts)
    env = side_env(release, cache=cache)
    kit = str(Path(__file__).resolve().parents[1])  # the shipped kit first, as in this worker
    path = os.pathsep.join(filter(None, [kit, os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [env.python, "-m", "qwenvl_diag.cluster"],
        input=json.dumps(scenario_dicts),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-6:])
        raise SweepError(f"The sweep under transformers {release} did not finish on its node:\n{tail}")
    result = json.loads(lines[-1])
    return result["rows"], result["timing"]


def _sweep_scenarios(scenario_dicts: list[dict]) -> tuple[list[dict], dict]:
    """The local sweep of these scenarios in this Python's transformers, one process: (rows, timing)."""
    from .sweep import _sweep_here, _worker_init

    _worker_init()
    rows: list[dict] = []
    timing = _sweep_here([Scenario.from_dict(data) for data in scenario_dicts], 1, rows.append)
    return rows, timing


def _lost_rows(scenarios: list[Scenario], transformers: str, error: BaseException) -> list[dict]:
    """A row per scenario of a task Ray could not finish, saying why: the task's own error, or its
    worker lost at every try."""
    from .sweep import _kit_error, _row
    from .versions import matching_accelerate

    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):  # the task raised (a RayTaskError): not retried, said as it is
        reason = SweepError(
            f"The Ray task running this scenario under transformers {transformers} failed: {cause}"
        )
    else:
        said = str(error).strip().splitlines()[0] if str(error).strip() else ""
        reason = SweepError(
            f"The Ray task running this scenario under transformers {transformers} was lost "
            f"{RETRIES + 1} times ({type(error).__name__}: {said}); its node died or ran out of memory. "
            "Run the scenario alone (qd.run) to see whether it is the scenario or the node."
        )
    versions = {"transformers": transformers, "accelerate": matching_accelerate(transformers)}
    return [_row(scenario, versions, _kit_error(reason), None, False, 0.0) for scenario in scenarios]


def _add(total: dict, timing: dict) -> dict:
    """A release's timings so far with one more task's (counts and seconds summed; `processes` counts
    the tasks, each one process)."""
    if not total:
        return {**timing, "processes": 1, "tasks": 1}
    summed = ("scenarios", "layouts", "unique_runs", "plan_s", "run_s", "processes", "tasks")
    return {**total, **{key: total[key] + timing.get(key, 1) for key in summed}}


def sweep_on_ray(
    scenarios: list[Scenario],
    releases: list[str],
    emit: Callable[[dict], None],
    address: str | None = None,
    cpus: int | None = None,
    cache: str | Path | None = None,
) -> dict[str, dict]:
    """Run `scenarios` under each of `releases` as Ray tasks; `emit(row)` for each row as its task
    finishes. `address`: the cluster's (None: $RAY_ADDRESS, else a local Ray of `cpus` CPUs started for
    the sweep and stopped after). `cache`: where nodes keep side environments (None: each node's
    default, `versions.side_env`). Returns the timings per release. Ctrl-C cancels the tasks not done and
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
    cluster_cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    size = max(1, min(TASK_SCENARIOS, math.ceil(len(scenarios) * len(releases) / (2 * cluster_cpus))))
    pending: dict = {}
    timings: dict[str, dict] = {}
    began = time.perf_counter()
    try:
        for release in releases:
            for chunk in task_chunks(scenarios, size):
                ref = task.options(name=f"qwenvl-diag sweep {release}").remote(
                    [scenarios[i].to_dict() for i in chunk], release, None if cache is None else str(cache)
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


def _main() -> int:
    """`python -m qwenvl_diag.cluster` (a side environment's Python, started by a task): the scenario
    dicts on stdin, the rows and timing as one JSON line on stdout."""
    rows, timing = _sweep_scenarios(json.loads(sys.stdin.read()))
    print(json.dumps({"rows": rows, "timing": timing}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
