"""Sweeps on a Ray cluster (`qd.sweep(..., cluster="ray")`, qwenvl_diag/cluster.py).

Both stacks: without Ray the kit's error says what to install (the import made to fail, as on a machine
without the extra), what a node installs per release, and how the grid is cut into tasks. The legacy
stack installs the `cluster` extra and starts a local Ray of 2 CPUs: the rows of a grid over its release
and another one equal the local sweep's, and a task whose worker is killed every time it starts ends as a
row saying so, not a wait. (One stack runs Ray: each Ray run builds its releases' runtime environments.)
"""

from __future__ import annotations

import threading
from importlib.metadata import version
from pathlib import Path

import psutil
import pytest

import qwenvl_diag as qd
from qwenvl_diag import cli, cluster
from qwenvl_diag._compat import TRANSFORMERS_5, TRANSFORMERS_VERSION
from qwenvl_diag.scenario import Scenario
from qwenvl_diag.versions import matching_accelerate

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
COMPARED = [
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
    "flags",
    "layout",
]
ray_here = pytest.mark.skipif(not RAY_HERE, reason="Ray runs in the legacy stack (the cluster extra)")


def test_without_ray_a_cluster_sweep_is_the_kits_error_saying_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # `import ray` fails, as without the extra
    with pytest.raises(qd.SweepError, match=r"pip install 'qwenvl-diag\[cluster\]'"):
        qd.sweep("tiny/qwen2_5_vl", gpus=1, inputs="text", actions="forward", cluster="ray", progress=False)
    assert cli.main(["sweep", "--model", "tiny/qwen2_5_vl", "--gpus", "1", "--ray", "--no-progress"]) == 2
    assert "qwenvl-diag[cluster]" in capsys.readouterr().err
    with pytest.raises(qd.InvalidArgumentError, match='cluster is None .* or "ray"'):
        qd.sweep("tiny/qwen2_5_vl", gpus=1, cluster="dask", progress=False)


def test_a_node_installs_the_release_its_accelerate_and_the_drivers_torch():
    packages = cluster.node_packages(OTHER)
    assert packages[:2] == [f"transformers=={OTHER}", f"accelerate=={matching_accelerate(OTHER)}"]
    assert f"torch=={version('torch')}" in packages  # the driver's release: the same device rules
    assert not any(p.startswith(("uv", "jupyterlab", "pytest")) for p in packages)  # no side envs, no extras
    env = cluster.runtime_env(OTHER)
    assert env["pip"]["packages"] == packages and "py_modules" not in env  # the kit ships with the job
    assert cluster.job_env()["py_modules"] == [str(Path(qd.__file__).parent)]


def test_a_task_holds_whole_layouts_so_its_runs_are_deduplicated_as_locally():
    scenarios = [
        Scenario(model, gpus=gpus, memory="24GiB", strategy="balanced", inputs=kind)
        for model in ("Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2-VL-2B-Instruct")
        for gpus in (1, 2, 4, 8)
        for kind in ("image", "batch", "video", "text")
    ]
    before = cluster.TASK_SCENARIOS
    try:
        cluster.TASK_SCENARIOS = 6
        chunks = cluster.task_chunks(scenarios)
    finally:
        cluster.TASK_SCENARIOS = before
    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(scenarios)))
    layouts = [{(scenarios[i].model, scenarios[i].gpus) for i in chunk} for chunk in chunks]
    assert all(len(found) == 1 for found in layouts)  # 4 scenarios a layout; 6 fit one layout a task
    assert len(chunks) == 8


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
    on_ray = qd.sweep(**GRID, transformers=releases, cluster="ray")
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
    assert all(t["tasks"] == 1 and t["scenarios"] == 4 for t in on_ray.attrs["timings"])


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
    assert len(set(killed)) == cluster.RETRIES + 1  # the first try and one retry, each killed
    assert list(frame["outcome"]) == ["kit error", "kit error"]
    assert all(f"was lost {cluster.RETRIES + 1} times" in error for error in frame["error"])
    assert all("qd.run" in error for error in frame["error"])  # what to do next
