"""Sweeps on a Ray cluster (`qd.sweep(..., cluster="ray")`: qwenvl_diag/cluster.py and the sweep's tasks).

Both stacks: without Ray the kit's error says what to install (the import made to fail, as on a machine
without the extra), what the job ships to the nodes, and how the grid is cut into tasks. The legacy stack
installs the `cluster` extra and starts a local Ray of 2 CPUs: the rows of a grid over its release and
another one (in that release's side environment, made by the task) equal the local sweep's, and a task
whose worker is killed every time it starts ends as a row saying so, not a wait.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

import psutil
import pytest

import qwenvl_diag as qd
from qwenvl_diag import cli, cluster
from qwenvl_diag._compat import TRANSFORMERS_5, TRANSFORMERS_VERSION
from qwenvl_diag.scenario import Scenario

sweep_module = importlib.import_module("qwenvl_diag.sweep")  # the package's `sweep` is the function
CACHE = Path(__file__).resolve().parents[1] / "test-output" / "envs"
RAY_HERE = not TRANSFORMERS_5  # the legacy stack installs the cluster extra and runs Ray
OTHER = "4.52.4"  # the batched mask bug fixed, the text-only rope deltas not yet (4.53.0)
GRID = dict(
    models="Qwen/Qwen2.5-VL-7B-Instruct",
    gpus=[1, 8],
    memory="24GiB",
    strategies="balanced",
    inputs=["batch", "text"],
    actions="generate",
    progress=False,
)
COMPARED = [column for column in qd.SWEEP_COLUMNS if column != "seconds"]  # the run's own time differs
ray_here = pytest.mark.skipif(not RAY_HERE, reason="Ray runs in the legacy stack (the cluster extra)")


def test_without_ray_a_cluster_sweep_is_the_kits_error_saying_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # `import ray` fails, as without the extra
    with pytest.raises(qd.SweepError, match=r"pip install 'qwenvl-diag\[cluster\]'"):
        qd.sweep("tiny/qwen2_5_vl", gpus=1, inputs="text", actions="forward", cluster="ray", progress=False)
    assert cli.main(["sweep", "--model", "tiny/qwen2_5_vl", "--gpus", "1", "--ray", "--no-progress"]) == 2
    assert "qwenvl-diag[cluster]" in capsys.readouterr().err
    with pytest.raises(qd.InvalidArgumentError, match='cluster is None .* or "ray"'):
        qd.sweep("tiny/qwen2_5_vl", gpus=1, cluster="dask", progress=False)


def test_the_job_ships_the_running_kit_to_the_nodes():
    env = cluster.job_env()
    assert env["py_modules"] == [str(Path(qd.__file__).parent)]  # this kit's code, not a node's install
    assert "pip" not in env  # releases come from side environments made on the node (module docstring)


def test_a_task_holds_whole_layouts_so_its_runs_are_deduplicated_as_locally():
    scenarios = [
        Scenario(model, gpus=gpus, memory="24GiB", strategy="balanced", inputs=kind)
        for model in ("Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2-VL-2B-Instruct")
        for gpus in (1, 2, 4, 8)
        for kind in ("image", "batch", "video", "text")
    ]
    chunks = sweep_module._task_chunks(scenarios, size=6)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(scenarios)))
    layouts = [{(scenarios[i].model, scenarios[i].gpus) for i in chunk} for chunk in chunks]
    assert all(len(found) == 1 for found in layouts)  # 4 scenarios a layout; 6 fit one layout a task
    assert len(chunks) == 8
    assert [len(chunk) for chunk in sweep_module._task_chunks(scenarios)] == [32]  # sweep.TASK_SCENARIOS: 64


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs for this module, the kit shipped as the job's module (as the sweep does)."""
    import ray

    ray.init(num_cpus=2, runtime_env=cluster.job_env(), include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@ray_here
def test_ray_gives_the_local_sweeps_rows_across_two_releases(local_ray):
    releases = ["installed", OTHER]
    on_ray = qd.sweep(**GRID, transformers=releases, cluster="ray", cache=CACHE)
    here = qd.sweep(**GRID, transformers=releases, cache=CACHE, processes=1)
    assert len(on_ray) == len(here) == 8
    assert on_ray[COMPARED].astype(str).to_dict("records") == here[COMPARED].astype(str).to_dict("records")
    assert set(on_ray["transformers"]) == {str(TRANSFORMERS_VERSION), OTHER}
    failed = on_ray[on_ray["outcome"] == "failed"]
    # 4.51.3 has both bugs at 8 GPUs; 4.52.4 only the text-only one (the mask fix shipped in 4.52.1)
    assert sorted(zip(failed["transformers"], failed["known_bug"], strict=True)) == [
        ("4.51.3", "qwen2_5_vl-batched-causal-mask"),
        ("4.51.3", "qwen2_5_vl-text-generate-rope-deltas"),
        (OTHER, "qwen2_5_vl-text-generate-rope-deltas"),
    ]
    assert [t["transformers"] for t in on_ray.attrs["timings"]] == ["4.51.3", OTHER]
    # 8 scenarios on 2 CPUs: a task per layout (1 and 8 GPUs), two per release
    assert all(t["tasks"] == 2 and t["scenarios"] == 4 for t in on_ray.attrs["timings"])


@ray_here
def test_a_task_killed_each_time_it_runs_is_a_row_saying_so_not_a_wait(local_ray):
    done, killed = threading.Event(), []

    def kill_sweep_tasks() -> None:  # the out-of-memory killer, at every attempt of the task
        while not done.is_set():
            for process in psutil.process_iter(["cmdline"]):
                if any("qwenvl-diag sweep" in part for part in process.info["cmdline"] or []):
                    try:
                        process.kill()
                        killed.append(process.pid)
                    except psutil.Error:
                        pass
            done.wait(0.05)

    killer = threading.Thread(target=kill_sweep_tasks, daemon=True)
    killer.start()
    try:
        frame = qd.sweep(
            "tiny/qwen2_5_vl",
            gpus=[1, 2],
            memory="24GiB",
            strategies="balanced",
            inputs="text",
            actions="forward",
            cluster="ray",
            progress=False,
        )
    finally:
        done.set()
        killer.join()
    # two tasks (a layout each, on 2 CPUs), each killed at its first try and at its one retry
    assert len(set(killed)) == 2 * (cluster.RETRIES + 1)
    assert list(frame["outcome"]) == ["kit error", "kit error"]
    assert all(f"was lost {cluster.RETRIES + 1} times" in error for error in frame["error"])
    assert all("qd.run" in error for error in frame["error"])  # what to do next


@ray_here  # the legacy stack has OTHER's side environment (made by the tests above); no Ray is needed
def test_a_tasks_side_environment_python_that_runs_too_long_is_stopped_and_said(monkeypatch):
    monkeypatch.setattr(sweep_module, "_task_timeout_s", lambda scenarios: 0.5)  # less than its imports
    scenario = Scenario("tiny/qwen2_5_vl", gpus=1, memory="24GiB", strategy="balanced", inputs="text")
    with pytest.raises(
        qd.SweepError, match=rf"under transformers {OTHER} ran longer than 0.5 s .* was stopped"
    ):
        sweep_module._sweep_task([scenario.to_dict()], OTHER, str(CACHE))
