"""Ray, for sweeps on a cluster (`qd.sweep(..., cluster="ray")`, `qwenvl-diag sweep --ray [ADDRESS]`):
connecting, shipping the kit, fanning tasks out and collecting them as they finish. What a task does is
the sweep's (`sweep._sweep_task`: the local sweep's own code on a slice of the grid, one process):

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

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import SweepError

INSTALL_HINT = "pip install 'qwenvl-diag[cluster]' (Ray with its runtime environments: ray[default])"
RETRIES = 1
"""How many times Ray runs a task again after its worker died (node lost, out of memory)."""


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


def run_tasks(
    function: Callable,
    calls: Callable[[int], Sequence[tuple[str, tuple]]],
    finished: Callable[[int, object], None],
    lost: Callable[[int, BaseException], None],
    address: str | None = None,
    cpus: int | None = None,
) -> None:
    """Run `function(*args)` as a Ray task for each `(name, args)` that `calls(cpus)` gives for the
    cluster's CPU count (`name` is the task's, as Ray shows it), on the cluster at `address` (None:
    $RAY_ADDRESS, else a local Ray of `cpus` CPUs started here and stopped after; a Ray this process
    started already is used as it is). As each task finishes, `finished(index, result)`; a task that
    raised, or whose worker was lost at every try (`RETRIES`), `lost(index, error)`. Ctrl-C cancels the
    tasks not done and is raised again."""
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        address = address or os.environ.get("RAY_ADDRESS") or None
        local = {"num_cpus": cpus} if address is None else {}
        ray.init(
            address=address, runtime_env=job_env(), include_dashboard=False, log_to_driver=False, **local
        )
    task = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(function)
    pending: dict = {}
    try:
        cpus_there = max(1, int(ray.cluster_resources().get("CPU", 1)))
        for index, (name, args) in enumerate(calls(cpus_there)):
            pending[task.options(name=name).remote(*args)] = index
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as error:
                    lost(index, error)
                else:
                    finished(index, result)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()


def lost_reason(error: BaseException, what: str) -> str:
    """Why a task of `what` gave no result: its own error, or its worker lost at every try."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):  # the task raised (a RayTaskError): not retried, said as it is
        return f"The Ray task running {what} failed: {cause}"
    said = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return (
        f"The Ray task running {what} was lost {RETRIES + 1} times ({type(error).__name__}: {said}); its "
        "node died or ran out of memory. Run the scenario alone (qd.run) to see whether it is the scenario "
        "or the node."
    )
