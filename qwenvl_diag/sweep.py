"""`sweep`: a grid of scenarios (checkpoints x GPUs x memory x strategies x inputs x actions, on one or
more transformers releases), one row per scenario, as cheaply as the kit can run them.

- Every layout (checkpoint, GPUs, memory, strategy) is planned once per release.
- Scenarios whose plans give the same device map, with the same inputs and action, are run once; the
  row is reported for each (`reused` True on all but the one that ran).
- The runs are spread over worker processes (spawned; both cores by default), each building a twin once
  per checkpoint and placing it again per layout (`run_with(..., unplace=True)`: hooks removed and every
  tensor back on the CPU between runs, the model's attributes put back by `diagnose`).
- Another release runs in its side environment's Python, as one `qwenvl-diag sweep --format jsonl`
  process per release; several releases run side by side.
- `cluster="ray"` runs the same grid as Ray tasks instead, each release's in a runtime environment that
  makes on the node (`cluster.py`).
- A KeyboardInterrupt stops the sweep and returns the rows done so far (`attrs["interrupted"]`).

>>> frame = qd.sweep(["Qwen/Qwen2.5-VL-7B-Instruct"], gpus=[1, 8], inputs=["batch", "text"],
...                  actions=["generate"], strategies=["balanced"], memory=["24GiB"])
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .choices import ACTIONS, INPUT_KINDS
from .errors import InvalidArgumentError, QwenVLDiagError, SweepError
from .scenario import AVAILABLE, Scenario

SWEEP_COLUMNS = [
    "model",
    "gpus",
    "memory",
    "cpu_memory",
    "strategy",
    "inputs",
    "inputs_on",
    "action",
    "transformers",
    "accelerate",
    "outcome",
    "error",
    "file",
    "line",
    "function",
    "known_bug",
    "note",
    "flags",
    "layout",
    "reused",
    "seconds",
]
"""Columns of `sweep`, one row per scenario, in grid order (release, model, gpus, memory, strategy, inputs,
inputs_on, action). The first seven are the scenario's fields; `transformers` and `accelerate` the versions
it ran under; `outcome` ("passed", "failed", "kit error"), `error`, `file`, `line`, `known_bug` and `note`
as in `VERSION_COLUMNS` (`file` the path inside site-packages of the first mismatch, `known_bug` the first
catalogue match, `note` a release newer than the kit's line index); `function` the function of the first
mismatch; `flags` the plan's risk codes (a list, see `qd.flags_frame`); `layout` a short digest of the
device map (rows with equal `layout` were placed alike); `reused` True when the row is another scenario's
run (same checkpoint, map, inputs and action); `seconds` how long that run took (planning excluded)."""

DEFAULT_GPUS = (1, 2, 4, 8)
DEFAULT_MEMORY = ("24GiB", "40GiB", "80GiB")
# the model cards' inputs.to(model.device): what fails then is the library's, not the calling code's
DEFAULT_INPUTS_ON = ("model",)
_AXES = ("model", "gpus", "memory", "cpu_memory", "strategy", "inputs", "inputs_on", "action")


def _axis(name: str, value, default: Sequence) -> list:
    """One axis of the grid as a list without repeats: a single value, a list of them, or None (default)."""
    if value is None:
        return list(default)
    if isinstance(value, (str, int, dict)):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidArgumentError(f"{name} must be a value or a non-empty list of them; got {value!r}.")
    seen = {}
    for item in value:
        seen.setdefault(json.dumps(item, sort_keys=True), item)
    return list(seen.values())


def _key(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _axes(
    models, gpus, memory, strategies, inputs, actions, inputs_on=None, cpu_memory=None
) -> dict[str, list]:
    """The grid's axes, each a list, defaults filled in and every value checked (the kit's errors)."""
    from .models.catalog import shipped_checkpoints
    from .placement import STRATEGIES
    from .placement.devices import parse_memory
    from .scenario import plan_source

    axes = {
        "model": _axis("models", models, shipped_checkpoints()),
        "gpus": _axis("gpus", gpus, DEFAULT_GPUS),
        "memory": _axis("memory", memory, DEFAULT_MEMORY),
        "cpu_memory": _axis("cpu_memory", cpu_memory, (AVAILABLE,)),
        "strategy": _axis("strategies", strategies, STRATEGIES),
        "inputs": _axis("inputs", inputs, INPUT_KINDS),
        "inputs_on": _axis("inputs_on", inputs_on, DEFAULT_INPUTS_ON),
        "action": _axis("actions", actions, ACTIONS),
    }
    axes["model"] = list(dict.fromkeys(_model_name(name, plan_source) for name in axes["model"]))
    for size in axes["memory"]:
        parse_memory(size, "memory per GPU")
    for size in axes["cpu_memory"]:
        if size != AVAILABLE:
            parse_memory(size, "cpu_memory (host RAM to offload to, or 'available')")
    for strategy in axes["strategy"]:
        if not isinstance(strategy, dict) and strategy not in STRATEGIES:
            raise InvalidArgumentError(
                f"Unknown strategy {strategy!r}: use {', '.join(STRATEGIES)} or an explicit map."
            )
    return axes  # gpus, inputs, inputs_on and actions: each Scenario checks its own


def _scenarios(axes: dict[str, list]) -> list[Scenario]:
    return [Scenario(**dict(zip(_AXES, values, strict=True))) for values in itertools.product(*axes.values())]


def grid(
    models: Sequence[str] | str | None = None,
    gpus: Sequence[int] | int | None = None,
    memory: Sequence[str] | str | None = None,
    strategies: Sequence[str] | str | None = None,
    inputs: Sequence[str] | str | None = None,
    actions: Sequence[str] | str | None = None,
    *,
    inputs_on: Sequence[str] | str | None = None,
    cpu_memory: Sequence[str] | str | None = None,
) -> list[Scenario]:
    """The sweep's scenarios in grid order; each axis is a value, a list, or None for its default
    (every shipped checkpoint, 1/2/4/8 GPUs, 24/40/80 GiB, the four strategies, the four input kinds
    every family takes, inputs moved the model cards' way ("model"; "cpu" leaves them where the
    processor made them, `Scenario.inputs_on`), both actions, and the CPU budget `cpu_memory`
    ("available": this machine's free RAM, as from_pretrained; or sizes such as "1024GiB"). Every value is
    checked here (the kit's errors), before anything runs."""
    return _scenarios(_axes(models, gpus, memory, strategies, inputs, actions, inputs_on, cpu_memory))


def _model_name(name: str, plan_source) -> str:
    """A shipped checkpoint's hub id as shipped (any spelling accepted); other models as given. A name
    the kit does not know raises its error; a family this release lacks is left to its rows."""
    from .errors import UnsupportedReleaseError

    try:
        source = plan_source(name)
    except UnsupportedReleaseError:
        return name
    return source if isinstance(source, str) and not name.startswith("tiny/") else name


# ---- running one release here ------------------------------------------------------------------


@dataclass
class _Run:
    """One run that several scenarios share: `scenario` runs, its row goes to every index in `members`."""

    scenario: Scenario
    plan: object
    members: list[int] = field(default_factory=list)


class _Materials:
    """Twins (with their processors) and inputs built once and reused, per checkpoint and input kind."""

    def __init__(self):
        self.built: dict[tuple, tuple] = {}
        self.inputs: dict[tuple, object] = {}

    def get(self, scenario: Scenario) -> tuple:
        from .scenario import build, scenario_inputs

        key = (scenario.model, scenario.seed, scenario.attn_implementation)
        if key not in self.built:
            self.built[key] = build(scenario)
        model, processor, source = self.built[key]
        wanted = (*key, scenario.inputs, scenario.second_per_grid_ts, scenario.fps)
        if wanted not in self.inputs:
            self.inputs[wanted] = scenario_inputs(scenario, processor)
        return model, source, self.inputs[wanted]

    def forget(self, scenario: Scenario) -> None:
        """Drop the scenario's twin (rebuilt on next use), after a run that may have left it placed."""
        self.built.pop((scenario.model, scenario.seed, scenario.attn_implementation), None)


_WORKER_MATERIALS = _Materials()
"""A worker process's materials, kept across the chunks it runs."""


def _kit_error(error: BaseException) -> dict:
    text = str(error) if isinstance(error, QwenVLDiagError) else f"{type(error).__name__}: {error}"
    return {
        "outcome": "kit error",
        "error": text,
        "file": None,
        "line": None,
        "function": None,
        "known_bug": None,
        "note": None,
    }


def diagnosis_row(diagnosis) -> dict:
    """The result columns of `SWEEP_COLUMNS` for one Diagnosis (what a sweep reports for its scenario)."""
    from .versions import outcome_fields

    report = {
        "error": diagnosis.error,
        "first_mismatch": diagnosis.first_mismatch,
        "known_bugs": diagnosis.known_bugs,
        "notes": diagnosis.notes,
    }
    first = diagnosis.first_mismatch or {}
    return {**outcome_fields(report), "function": first.get("function")}


def _run_one(scenario: Scenario, plan, materials: _Materials) -> tuple[dict, float]:
    from .running import run_with

    started = time.perf_counter()
    try:
        model, source, inputs = materials.get(scenario)
        result = diagnosis_row(run_with(scenario, model, source, plan, inputs, unplace=True))
    except Exception as error:  # a scenario the kit cannot run is a row, not the end of the sweep
        materials.forget(scenario)
        result = _kit_error(error)
    return result, time.perf_counter() - started


def _run_chunk(chunk: list[tuple[int, dict, object]]) -> list[tuple[int, dict, float]]:
    """Run a chunk of (run index, scenario dict, plan) in a worker process."""
    return [
        (index, *_run_one(Scenario.from_dict(data), plan, _WORKER_MATERIALS)) for index, data, plan in chunk
    ]


def _worker_init() -> None:
    """A worker: Ctrl-C is the parent's to handle; one torch thread (the workers share the cores);
    the libraries' warnings about the twins' random weights and the simulated devices kept quiet."""
    import signal
    import warnings

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.filterwarnings("ignore")
    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()


def _plans(scenarios: list[Scenario]) -> dict[str, object]:
    """A plan (or the kit error that planning raised) per layout key."""
    from .scenario import plan_scenario

    plans = {}
    for scenario in scenarios:
        layout = _layout_key(scenario)
        if layout not in plans:
            try:
                plans[layout] = plan_scenario(scenario)
            except Exception as error:  # e.g. a family this release lacks: every scenario of it is a row
                plans[layout] = error
    return plans


def _layout_key(scenario: Scenario) -> str:
    return _key([scenario.model, scenario.gpus, scenario.memory, scenario.cpu_memory, scenario.strategy])


def layout_id(device_map: dict) -> str:
    """A short digest of a device map: equal maps, equal ids."""
    text = _key(sorted((str(k), str(v)) for k, v in device_map.items()))
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _chunks(runs: list[_Run], workers: int) -> list[list[int]]:
    """Run indices in chunks of one checkpoint each, small enough to spread and to report progress."""
    size = max(1, min(8, math.ceil(len(runs) / (4 * max(workers, 1)))))
    chunks = []
    for _, group in itertools.groupby(range(len(runs)), key=lambda i: runs[i].scenario.model):
        group = list(group)
        chunks += [group[i : i + size] for i in range(0, len(group), size)]
    return chunks


def _pool_results(chunks, payload, workers: int):
    """Results of every chunk from spawned worker processes, as they finish. A worker that dies (killed,
    out of memory, or failing to start) ends the sweep with `SweepError`, never a wait; on Ctrl-C (or any
    error) the workers are stopped."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    _check_main_guard()
    # an executor, not multiprocessing.Pool: a Pool replaces a dead worker and waits forever for the chunk
    # it held (or respawns workers that die at start forever); the executor fails what is pending instead
    spawn = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(workers, mp_context=spawn, initializer=_worker_init)
    done = 0
    try:
        futures = [executor.submit(_run_chunk, payload(chunk)) for chunk in chunks]
        for future in as_completed(futures):
            results = future.result()
            done += len(results)
            yield from results
    except BrokenProcessPool as error:
        raise SweepError(
            f"a sweep worker process died after {done} run(s) (killed, out of memory, or it could not start: "
            'a script that sweeps must do so under `if __name__ == "__main__":`, since each worker '
            "re-imports it). Run again with fewer processes, or processes=1 to run in this process."
        ) from error
    finally:
        # the executor has no public way to stop busy workers before Python 3.14's terminate_workers();
        # its processes are read before shutdown(), which drops them (a broken pool's own thread may not
        # have stopped them yet)
        processes = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
            process.join()
        multiprocessing.active_children()  # reaps a worker that died (no zombie left behind)


# the guard that keeps a spawned worker, which imports the main script, from running its sweep again
_MAIN_GUARD = re.compile(
    r"""^\s*if\s+(?:__name__\s*==\s*["']__main__["']|["']__main__["']\s*==\s*__name__)""", re.M
)


def _check_main_guard() -> None:
    """Refuse to spawn workers from a main script without an `if __name__ == "__main__":` guard: each
    worker imports the script, runs its sweep again and dies trying to start workers of its own. A
    notebook, `python -c` and an interactive session have no script to import."""
    import sys
    from pathlib import Path

    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path or not path.endswith(".py") or not os.path.isfile(path):
        return
    if _MAIN_GUARD.search(Path(path).read_text(errors="replace")):
        return
    raise SweepError(
        f'{path} sweeps with worker processes but has no `if __name__ == "__main__":` guard: each '
        "spawned worker imports it and would run the sweep again. Put the script's code under "
        '`if __name__ == "__main__":`, or sweep with processes=1.'
    )


def _local_results(chunks, payload):
    """The same in this process (one worker: no spawn), on one torch thread as a worker runs (the
    twins' tiny matrices gain nothing from more; a busy machine loses much), put back after."""
    import torch

    materials, threads = _Materials(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for chunk in chunks:
            for index, data, plan in payload(chunk):
                yield (index, *_run_one(Scenario.from_dict(data), plan, materials))
    finally:
        torch.set_num_threads(threads)


def _sweep_here(scenarios: list[Scenario], processes: int, emit: Callable[[dict], None]) -> dict:
    """Plan, deduplicate and run `scenarios` in this Python's transformers; `emit(row)` for
    each row as its run finishes. Returns the release's timings."""
    import accelerate
    import transformers

    started = time.perf_counter()
    plans = _plans(scenarios)
    planned = time.perf_counter()
    versions = {"transformers": transformers.__version__, "accelerate": accelerate.__version__}
    runs: dict[tuple, _Run] = {}
    for position, scenario in enumerate(scenarios):
        plan = plans[_layout_key(scenario)]
        if isinstance(plan, Exception):
            emit(_row(scenario, versions, _kit_error(plan), None, False, 0.0))
            continue
        key = (
            scenario.model,
            layout_id(plan.device_map),
            scenario.inputs,
            scenario.inputs_on,
            scenario.action,
        )
        runs.setdefault(key, _Run(scenario, plan)).members.append(position)
    order = sorted(runs.values(), key=lambda run: run.scenario.model)  # stable: grid order per model
    workers = max(1, min(processes, len(order)))
    chunks = _chunks(order, workers)

    def payload(chunk):
        return [(i, order[i].scenario.to_dict(), order[i].plan) for i in chunk]

    results = _pool_results(chunks, payload, workers) if workers > 1 else _local_results(chunks, payload)
    with contextlib.closing(results):  # on Ctrl-C too: the pool ends here
        for index, result, seconds in results:
            run = order[index]
            for rank, position in enumerate(run.members):
                emit(_row(scenarios[position], versions, result, run.plan, rank > 0, seconds))
    return {
        **versions,
        "scenarios": len(scenarios),
        "layouts": len(plans),
        "unique_runs": len(order),
        "processes": workers,
        "plan_s": planned - started,
        "run_s": time.perf_counter() - planned,
    }


def _row(scenario: Scenario, versions: dict, result: dict, plan, reused: bool, seconds: float) -> dict:
    row = {
        **{axis: getattr(scenario, axis) for axis in _AXES},
        **versions,
        **result,
        "flags": [flag.code for flag in plan.flags] if plan is not None else [],
        "layout": layout_id(plan.device_map) if plan is not None else None,
        "reused": reused,
        "seconds": seconds,
    }
    return {column: row[column] for column in SWEEP_COLUMNS}


# ---- other releases, in their side environments --------------------------------------------------


def _sweep_command(python: str, axes: dict[str, list], processes: int) -> list[str]:
    """`qwenvl-diag sweep` of `axes` for `python`, its rows as JSON lines."""
    command = [python, "-m", "qwenvl_diag.cli", "sweep", "--format", "jsonl", "--no-progress"]
    for axis, values in axes.items():
        option = "--" + axis.replace("_", "-")
        command += [option, *(v if isinstance(v, str) else json.dumps(v) for v in values)]
    return [*command, "--processes", str(processes)]


def _sweep_there(env, axes: dict, expected: int, processes: int, emit, started: list) -> dict:
    """The sweep of `axes` (`expected` scenarios) run by a side environment's Python (one process,
    `processes` workers), its rows emitted as they come. The process goes into `started`, for an
    interrupt to end it."""
    from .errors import VersionLabError

    began = time.perf_counter()
    process = subprocess.Popen(
        _sweep_command(env.python, axes, processes), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    started.append(process)
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.append(process.stderr.read()), daemon=True)
    reader.start()
    rows = 0
    for line in process.stdout:
        if line.startswith("{"):  # a row; anything else a library printed is not
            emit(json.loads(line))
            rows += 1
    process.wait()
    reader.join()
    if rows < expected and not getattr(process, "ended", False):
        tail = "\n".join("".join(errors).strip().splitlines()[-6:])
        raise VersionLabError(
            f"The sweep under transformers {env.transformers} stopped after {rows} of {expected} rows "
            f"(exit status {process.returncode}):\n{tail}"
        )
    return {
        "transformers": env.transformers,
        "accelerate": env.accelerate,
        "processes": processes,
        "created_s": env.seconds,
        "run_s": time.perf_counter() - began,
    }


# ---- on a Ray cluster (cluster.py: connecting, shipping the kit, the tasks) -------------------------

TASK_SCENARIOS = 64
"""At most about how many scenarios a Ray task takes (whole layouts; a layout larger than this is one
task); fewer when the grid is small, so that every CPU of the cluster gets two tasks."""


def _task_chunks(scenarios: list[Scenario], size: int = TASK_SCENARIOS) -> list[list[int]]:
    """Scenario indices in tasks of whole layouts (a task plans each of its layouts once and runs each
    distinct map once, as a local sweep does), about `size` each, in grid order."""
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
    """A Ray task on a node: the local sweep of these scenarios under `release`, one process: here when it
    is the node's transformers, else by the Python of its side environment, made on the node as the
    version lab makes it here (Ray's `pip` runtime environment is not used: over a virtualenv it clones
    the whole environment, a CUDA torch included, 7 GB per release and node)."""
    from ._compat import TRANSFORMERS_VERSION
    from .versions import side_env

    if release == str(TRANSFORMERS_VERSION):
        return _sweep_scenarios(scenario_dicts)
    env = side_env(release, cache=cache)
    kit = str(Path(__file__).resolve().parents[1])  # the shipped kit first, as in this worker
    path = os.pathsep.join(filter(None, [kit, os.environ.get("PYTHONPATH")]))
    code = "import sys; from qwenvl_diag.sweep import scenarios_main; sys.exit(scenarios_main())"
    # a Python that hangs would hold its task forever (Ray retries a dead task, not a hung one)
    timeout = _task_timeout_s(len(scenario_dicts))
    try:
        done = subprocess.run(
            [env.python, "-c", code],
            input=json.dumps(scenario_dicts),
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": path},
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise SweepError(
            f"The sweep under transformers {release} ran longer than {timeout} s on its node and was "
            f"stopped ({len(scenario_dicts)} scenarios; one takes seconds): rerun these scenarios alone "
            "(`qwenvl-diag sweep` without --ray) to see where it hangs."
        ) from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-6:])
        raise SweepError(f"The sweep under transformers {release} did not finish on its node:\n{tail}")
    result = json.loads(lines[-1])
    return result["rows"], result["timing"]


def _task_timeout_s(scenarios: int) -> int:
    """How long a Ray task's side-environment Python may run: the version lab's limit for one run
    (`versions.RUN_TIMEOUT_S`, its start and imports) and a minute per scenario."""
    from .versions import RUN_TIMEOUT_S

    return RUN_TIMEOUT_S + 60 * scenarios


def _sweep_scenarios(scenario_dicts: list[dict]) -> tuple[list[dict], dict]:
    """The local sweep of these scenarios in this Python's transformers, one process: (rows, timing)."""
    _worker_init()
    rows: list[dict] = []
    timing = _sweep_here([Scenario.from_dict(data) for data in scenario_dicts], 1, rows.append)
    return rows, timing


def scenarios_main() -> int:
    """A side environment's Python, started by a Ray task: the scenario dicts on stdin, the rows and
    timing as one JSON line on stdout."""
    import sys

    rows, timing = _sweep_scenarios(json.loads(sys.stdin.read()))
    print(json.dumps({"rows": rows, "timing": timing}, default=str))
    return 0


def _add_task_timing(total: dict, timing: dict) -> dict:
    """A release's timings so far with one more task's (counts and seconds summed; `processes` counts
    the tasks, each one process)."""
    if not total:
        return {**timing, "processes": 1, "tasks": 1}
    summed = ("scenarios", "layouts", "unique_runs", "plan_s", "run_s", "processes", "tasks")
    return {**total, **{key: total[key] + timing.get(key, 1) for key in summed}}


def _sweep_on_ray(scenarios, releases, emit, address, cpus, cache) -> dict[str, dict]:
    """`scenarios` under each of `releases` as Ray tasks (`cluster.run_tasks`), `emit(row)` for each row as
    its task finishes; a task without a result is a "kit error" row per scenario saying why. Returns the
    timings per release."""
    from .cluster import lost_reason, run_tasks
    from .versions import matching_accelerate

    slices: list[tuple[str, list[int]]] = []
    timings: dict[str, dict] = {}

    def calls(cluster_cpus: int) -> list[tuple[str, tuple]]:
        size = max(1, min(TASK_SCENARIOS, math.ceil(len(scenarios) * len(releases) / (2 * cluster_cpus))))
        slices.extend((release, chunk) for release in releases for chunk in _task_chunks(scenarios, size))
        where = None if cache is None else str(cache)
        return [
            (f"qwenvl-diag sweep {release}", ([scenarios[i].to_dict() for i in chunk], release, where))
            for release, chunk in slices
        ]

    def finished(index: int, result: tuple[list[dict], dict]) -> None:
        rows, timing = result
        for row in rows:
            emit(row)
        release = slices[index][0]
        timings[release] = _add_task_timing(timings.get(release, {}), timing)

    def lost(index: int, error: BaseException) -> None:
        release, chunk = slices[index]
        reason = SweepError(lost_reason(error, f"this scenario under transformers {release}"))
        versions = {"transformers": release, "accelerate": matching_accelerate(release)}
        for i in chunk:
            emit(_row(scenarios[i], versions, _kit_error(reason), None, False, 0.0))

    run_tasks(_sweep_task, calls, finished, lost, address=address, cpus=cpus)
    return timings


# ---- the public function ---------------------------------------------------------------------------


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS, dtype=object).astype(
        {"gpus": "int64", "line": "Int64", "reused": "bool", "seconds": "float64"}
    )


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="sweep", unit="scenario")


def sweep(
    models: Sequence[str] | str | None = None,
    gpus: Sequence[int] | int | None = None,
    memory: Sequence[str] | str | None = None,
    strategies: Sequence[str] | str | None = None,
    inputs: Sequence[str] | str | None = None,
    actions: Sequence[str] | str | None = None,
    transformers: Sequence[str] | str | None = None,
    processes: int | None = None,
    progress: bool = True,
    *,
    inputs_on: Sequence[str] | str | None = None,
    cpu_memory: Sequence[str] | str | None = None,
    on_row: Callable[[dict], None] | None = None,
    cache=None,
    build: bool = True,
    cluster: str | None = None,
    address: str | None = None,
) -> pd.DataFrame:
    """Run every scenario of the grid (see `grid` for the axes and their defaults) under each release in
    `transformers` (None: the installed one; else releases as `qd.run_in_versions` takes them) and
    return one row per scenario, columns `SWEEP_COLUMNS`.

    `processes` worker processes run the scenarios (None: one per core; 1: in this process); several
    releases share them. The workers are spawned, so a script that sweeps with several must do so
    under `if __name__ == "__main__":` (notebooks and `python -c` need nothing); without it, `SweepError`
    says so before any worker starts. A worker that dies (killed, out of memory) ends the sweep with
    `SweepError`, never a wait.
    `progress` shows a tqdm bar; `on_row(row)` is called with each row (a dict) as its run finishes, in
    the order they finish. `cache` and `build` choose the side environments as in
    `run_in_versions`. Ctrl-C returns the rows done so far. `attrs` holds `timings` (one dict per release:
    scenarios, layouts, unique runs, seconds planning and running), `seconds` (the whole sweep),
    `interrupted` and `processes`.

    `cluster="ray"` runs the same grid as Ray tasks (`qwenvl_diag.cluster`): on the cluster at `address`
    (else $RAY_ADDRESS, else a local Ray of `processes` CPUs), each release's tasks in its side
    environment made on the node (`cache` there, if given); the rows are the local sweep's. Needs the
    `cluster` extra (`pip install 'qwenvl-diag[cluster]'`).

    >>> frame = qd.sweep(["Qwen/Qwen2.5-VL-7B-Instruct"], gpus=[1, 8], memory="24GiB",
    ...                  strategies="balanced", inputs=["batch", "text"], actions="generate")
    >>> qd.plot_sweep(frame)
    """
    from ._compat import TRANSFORMERS_VERSION
    from .versions import resolve_version, side_env

    began = time.perf_counter()
    axes = _axes(models, gpus, memory, strategies, inputs, actions, inputs_on, cpu_memory)
    scenarios = _scenarios(axes)
    if processes is None:
        processes = os.cpu_count() or 1
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise InvalidArgumentError(f"processes must be a positive int (or None); got {processes!r}.")
    releases = list(
        dict.fromkeys(resolve_version(v) for v in _axis("transformers", transformers, ["installed"]))
    )
    if cluster not in (None, "ray"):
        raise InvalidArgumentError(f'cluster is None (this machine) or "ray"; got {cluster!r}.')
    here = str(TRANSFORMERS_VERSION)
    envs = {} if cluster else {v: side_env(v, cache=cache, build=build) for v in releases if v != here}
    share = max(1, processes // len(releases))

    rows: list[dict] = []
    timings: dict[str, dict] = {}
    failures: list[BaseException] = []
    lock, started = threading.Lock(), []
    bar = _progress_bar(len(scenarios) * len(releases), progress)

    def emit(row: dict) -> None:
        with lock:
            rows.append(row)
            if bar is not None:
                bar.update(1)
            if on_row is not None:
                on_row(row)

    def there(version: str) -> None:
        try:
            timings[version] = _sweep_there(envs[version], axes, len(scenarios), share, emit, started)
        except Exception as error:  # raised in the caller's thread, after the other releases finish
            failures.append(error)

    threads = [threading.Thread(target=there, args=(v,), daemon=True) for v in envs]
    interrupted = False
    try:
        if cluster:
            timings.update(_sweep_on_ray(scenarios, releases, emit, address, processes, cache))
        for thread in threads:
            thread.start()
        if here in releases and not cluster:
            timings[here] = _sweep_here(scenarios, share, emit)
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)
    except KeyboardInterrupt:
        interrupted = True
        for process in started:
            process.ended = True
            process.terminate()
        for thread in threads:
            thread.join()
    finally:
        if bar is not None:
            bar.close()
    if failures and not interrupted:
        raise failures[0]
    frame = _ordered(_frame(rows), scenarios, releases)
    frame.attrs.update(
        timings=[_timing(timings[v], frame, v) for v in releases if v in timings],
        seconds=time.perf_counter() - began,
        interrupted=interrupted,
        processes=processes,
    )
    return frame


def _timing(timing: dict, frame: pd.DataFrame, version: str) -> dict:
    """A release's timings with its counts, read from its rows where its process did not say them."""
    done = frame[frame["transformers"] == version]
    layouts = done[["model", "gpus", "memory", "cpu_memory", "strategy"]].astype(str).drop_duplicates()
    return {
        "scenarios": len(done),
        "layouts": len(layouts),
        "unique_runs": int((~done["reused"] & done["layout"].notna()).sum()),  # planned, and run
        **timing,
    }


SWEEP_SUMMARY_COLUMNS = [
    "transformers",
    "scenarios",
    "unique_runs",
    "seconds",
    "passed",
    "failed",
    "kit_error",
    "failing",
]
"""Columns of `sweep_summary`, one row per release: `scenarios` (rows), `unique_runs` (runs made, the rest
reused), `seconds` (the release's planning and running, from `attrs["timings"]`; None when the frame has
none), the count of each outcome, and `failing`: each catalogue entry the failed rows name (or "not in
the catalogue") with its count, most first ("qwen3_5-inputs-on-cpu 126, qwen2_5_omni-inputs-on-cpu 42")."""


def sweep_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """What a sweep found, per release (`SWEEP_SUMMARY_COLUMNS`): the findings tables of
    docs/findings.md, from one sweep's frame; `qwenvl-diag sweep --format summary` writes it as markdown.

    >>> qd.sweep_summary(qd.sweep("tiny/qwen3_5", gpus=[1, 2], progress=False))
    """
    if not isinstance(frame, pd.DataFrame) or not set(SWEEP_COLUMNS) <= set(frame.columns):
        raise InvalidArgumentError("sweep_summary takes the frame qd.sweep returns (its SWEEP_COLUMNS).")
    timings = {t.get("transformers"): t for t in frame.attrs.get("timings", [])}
    rows = []
    for release, done in frame.groupby("transformers", sort=False):
        outcomes = done["outcome"].value_counts()
        failed = done[done["outcome"] == "failed"]["known_bug"].fillna("not in the catalogue").value_counts()
        timing = timings.get(release)
        seconds = None if timing is None else timing.get("plan_s", 0) + timing.get("run_s", 0)
        rows.append(
            {
                "transformers": release,
                "scenarios": len(done),
                "unique_runs": int((~done["reused"].astype(bool) & done["layout"].notna()).sum()),
                "seconds": None if seconds is None else round(seconds),
                "passed": int(outcomes.get("passed", 0)),
                "failed": int(outcomes.get("failed", 0)),
                "kit_error": int(outcomes.get("kit error", 0)),
                "failing": ", ".join(f"{bug} {count}" for bug, count in failed.items()),
            }
        )
    return pd.DataFrame(rows, columns=SWEEP_SUMMARY_COLUMNS)


def sweep_rows(frame: pd.DataFrame) -> list[dict]:
    """A sweep frame's rows as JSON-ready dicts (None for missing values)."""
    return json.loads(frame.to_json(orient="records"))


def _ordered(frame: pd.DataFrame, scenarios: list[Scenario], releases: list[str]) -> pd.DataFrame:
    """Rows in grid order: release as asked, then the scenarios' order."""
    position = {_key([getattr(s, a) for a in _AXES]): i for i, s in enumerate(scenarios)}
    rank = {v: i for i, v in enumerate(releases)}
    keys = [
        (rank.get(row.transformers, len(rank)), position.get(_key([getattr(row, a) for a in _AXES]), 0))
        for row in frame.itertuples(index=False)
    ]
    order = sorted(range(len(frame)), key=keys.__getitem__)
    return frame.iloc[order].reset_index(drop=True)
