"""Sweeps: a grid of scenarios, one row per scenario, identical layouts run once, a twin re-placed per
layout giving what a fresh `qd.run` gives, workers, other releases, interrupts, the heatmap, the CLI."""

from __future__ import annotations

import csv
import dataclasses
import importlib
import io
import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

import qwenvl_diag as qd
from qwenvl_diag._compat import transformers_at_least
from qwenvl_diag.bugs import find_in_source, get_bug
from qwenvl_diag.explain.lines import newest_indexed
from qwenvl_diag.running import run_with
from qwenvl_diag.scenario import materials, plan_scenario

sweep_module = importlib.import_module("qwenvl_diag.sweep")

CHECKPOINT = "Qwen/Qwen2.5-VL-7B-Instruct"
MASK, ROPE_DELTAS = "qwen2_5_vl-batched-causal-mask", "qwen2_5_vl-text-generate-rope-deltas"
ON_CPU = "qwen2_5_vl-inputs-on-cpu"
AFFECTED = not transformers_at_least("4.52.1")  # the legacy stack, 4.51.3: both B and C
RESULT = ["transformers", "accelerate", "outcome", "error", "file", "line", "function", "known_bug", "note"]
CACHE = Path(__file__).resolve().parents[1] / "test-output" / "envs"
# the side environment test_versions makes: the newest release the kit has indexed (not the index's newest)
SIDE_VERSION = newest_indexed() if AFFECTED else "4.51.3"


@pytest.fixture(scope="module")
def seed_sweep():
    """Qwen2.5-VL-7B over 1 and 8 GPUs (auto and balanced plan alike) x batch/text/image x inputs moved
    the model cards' way or left on the CPU x generate."""
    return qd.sweep(
        [CHECKPOINT],
        gpus=[1, 8],
        memory="24GiB",
        strategies=["auto", "balanced"],
        inputs=["batch", "text", "image"],
        inputs_on=["model", "cpu"],
        actions="generate",
        processes=1,
        progress=False,
    )


def _row(frame, **where) -> dict:
    chosen = frame
    for column, value in where.items():
        chosen = chosen[chosen[column] == value]
    assert len(chosen) >= 1, where
    return chosen.iloc[0].to_dict()


def test_the_seed_sweep_finds_the_batched_and_text_only_failures_at_8_gpus_and_neither_at_1(seed_sweep):
    frame = seed_sweep
    assert list(frame.columns) == qd.SWEEP_COLUMNS and len(frame) == 24
    assert list(frame["gpus"]) == [1] * 12 + [8] * 12  # grid order
    assert list(frame["inputs_on"][:2]) == ["model", "cpu"]
    eight = frame[frame["gpus"] == 8]
    assert set(eight["flags"].map(tuple)) == {("vision_embed_apart",)}
    for place in ("model", "cpu"):  # the root hook moves the inputs either way: the library's bugs
        batch, text, image = (
            _row(eight, inputs=kind, strategy="balanced", inputs_on=place)
            for kind in ("batch", "text", "image")
        )
        if AFFECTED:
            assert batch["outcome"] == "failed" and batch["known_bug"] == MASK
            line = find_in_source(get_bug(ROPE_DELTAS))[1]
            assert (text["outcome"], text["function"], text["line"]) == ("failed", "forward", line)
            assert text["file"] == "transformers/models/qwen2_5_vl/modeling_qwen2_5_vl.py"
            assert text["known_bug"] == ROPE_DELTAS
            assert "Expected all tensors to be on the same device" in text["error"]
        else:  # both fixed on the current stack
            assert (batch["outcome"], text["outcome"]) == ("passed", "passed")
        assert image["outcome"] == "passed"
    one = frame[frame["gpus"] == 1]
    # one GPU, inputs moved as the model cards do: nothing fails
    assert set(one[one["inputs_on"] == "model"]["outcome"]) == {"passed"}
    # left on the CPU: no hooks, so they meet cuda:0 (the catalogue's J), never the two-GPU bugs. 4.x
    # fails at the first embedding; 5.x generate moves input_ids itself, so a text prompt passes and an
    # image's pixel_values meet the vision tower's convolution
    one = one[one["inputs_on"] == "cpu"]
    assert not set(one["known_bug"]) & {MASK, ROPE_DELTAS}
    failing = one[one["outcome"] == "failed"]
    assert all("on cpu" in e or "(CPUFloatType)" in e for e in failing["error"]), list(failing["error"])
    assert set(failing["file"]) == {"transformers/models/qwen2_5_vl/modeling_qwen2_5_vl.py"}
    if AFFECTED:
        assert len(failing) == 6 and set(failing["known_bug"]) == {ON_CPU}
    else:
        assert set(failing["inputs"]) == {"batch", "image"} and "(CPUFloatType)" in failing["error"].iat[0]


def test_identical_layouts_run_once_and_are_reported_for_each(seed_sweep):
    frame = seed_sweep
    timing = frame.attrs["timings"][0]
    # auto and balanced give one map per GPU count: 2 layouts x 3 inputs x 2 places runs for 24 scenarios
    assert frame.groupby("gpus")["layout"].nunique().to_dict() == {1: 1, 8: 1}
    assert timing["unique_runs"] == 12 == int((~frame["reused"]).sum())
    assert (timing["scenarios"], timing["layouts"]) == (24, 4)
    for _, group in frame.groupby(["layout", "inputs", "inputs_on", "action"]):
        assert list(group["reused"]) == [False, True]
        assert group[RESULT + ["seconds"]].astype(str).nunique().max() == 1
    assert frame.attrs["interrupted"] is False and frame.attrs["seconds"] > timing["run_s"] > 0


def test_a_row_from_the_sweep_is_the_row_a_fresh_run_gives(seed_sweep):
    # the sweep placed one twin six times over two layouts; each fresh run builds its own
    rows = sweep_module.sweep_rows(seed_sweep)
    assert len(rows) == 24
    for row in rows:
        scenario = qd.Scenario(
            **{k: row[k] for k in ("model", "gpus", "memory", "strategy", "inputs", "inputs_on", "action")}
        )
        if row["reused"] and row["gpus"] == 8:
            continue  # the 8-GPU runs are slow enough; one reused layout (1 GPU) is checked
        fresh = sweep_module.diagnosis_row(qd.run(scenario))
        assert {k: row[k] for k in fresh} == fresh


def test_a_sweep_leaves_torch_and_no_twin_behind():
    import torch

    threads = torch.get_num_threads()
    frame = qd.sweep(
        "tiny/qwen2_5_vl",
        gpus=2,
        memory="1GiB",
        strategies="balanced",
        inputs="text",
        actions="forward",
        processes=1,
        progress=False,
    )
    assert torch.get_num_threads() == threads and torch.cuda.device_count() == 0
    assert list(frame["outcome"]) == ["passed"]


def test_worker_processes_give_the_rows_one_process_gives():
    axes = dict(
        gpus=[1, 2],
        memory="1GiB",
        strategies=["balanced", "sequential"],
        inputs=["text", "image"],
        actions="forward",
        progress=False,
    )
    here = qd.sweep("tiny/qwen2_5_vl", processes=1, **axes)
    spread = qd.sweep("tiny/qwen2_5_vl", processes=2, **axes)
    assert spread.attrs["timings"][0]["processes"] == 2 and here.attrs["timings"][0]["processes"] == 1
    columns = [c for c in qd.SWEEP_COLUMNS if c != "seconds"]
    assert spread[columns].astype(str).equals(here[columns].astype(str))


def test_the_summary_is_the_findings_table_of_one_sweep():
    axes = dict(
        gpus=[1, 2], memory="1GiB", strategies="balanced", inputs=["text", "image"], actions="forward"
    )
    frame = qd.sweep("tiny/qwen2_5_vl", inputs_on=["model", "cpu"], processes=1, progress=False, **axes)
    [row] = qd.sweep_summary(frame).to_dict("records")
    outcomes = frame["outcome"].value_counts()
    assert list(row) == qd.SWEEP_SUMMARY_COLUMNS and row["scenarios"] == len(frame) == 8
    assert (row["passed"], row["failed"], row["kit_error"]) == (
        outcomes.get("passed", 0),
        outcomes.get("failed", 0),
        outcomes.get("kit error", 0),
    )
    failed = frame[frame["outcome"] == "failed"]["known_bug"].value_counts()
    assert row["failing"] == ", ".join(f"{bug} {count}" for bug, count in failed.items()) and len(failed)
    assert row["unique_runs"] == frame.attrs["timings"][0]["unique_runs"] and row["seconds"] is not None
    with pytest.raises(qd.InvalidArgumentError, match="takes the frame qd.sweep returns"):
        qd.sweep_summary(frame.drop(columns="outcome"))


def test_a_worker_that_dies_ends_the_sweep_with_a_clear_error_not_a_wait():
    killed = []

    def kill_a_worker(row: dict) -> None:  # at the first row, a worker is lost as to the OOM killer
        workers = _pool_workers()
        if not killed and workers:
            killed.append(workers[0].pid)
            workers[0].kill()

    with pytest.raises(qd.SweepError, match="a sweep worker process died after") as raised:
        _sweep_on_two_workers(kill_a_worker)
    assert killed and "processes=1" in str(raised.value)
    assert not _pool_workers(), "no worker is left behind"


def test_an_interrupt_stops_the_busy_workers_too():
    def interrupt(row: dict) -> None:  # Ctrl-C at the first row, while the other worker runs its chunk
        raise KeyboardInterrupt

    frame = _sweep_on_two_workers(interrupt)
    assert frame.attrs["interrupted"] is True and len(frame) < 24
    assert not _pool_workers(), "no worker is left running its chunk"


def _sweep_on_two_workers(on_row):
    """A 24-scenario sweep of the tiny Qwen2.5-VL on two worker processes, `on_row` called at each row."""
    return qd.sweep(
        "tiny/qwen2_5_vl",
        gpus=[1, 2, 4],
        memory=["1GiB", "2GiB"],
        strategies=["balanced", "sequential"],
        inputs=["text", "image"],
        actions="forward",
        processes=2,
        progress=False,
        on_row=on_row,
    )


def _pool_workers() -> list[psutil.Process]:
    """This process's live spawned workers (a zombie is dead: only not yet reaped)."""
    workers = []
    for child in psutil.Process().children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline()):
                workers.append(child)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return workers


def test_a_script_without_a_main_guard_is_refused_before_any_worker_starts(tmp_path):
    script = tmp_path / "sweep_script.py"
    script.write_text(
        "import qwenvl_diag as qd\n"
        'qd.sweep("tiny/qwen2_5_vl", gpus=[1, 2], inputs="text", actions="forward", processes=2, '
        "progress=False)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "SweepError" in done.stderr and 'has no `if __name__ == "__main__":` guard' in done.stderr
    # guarded, the same sweep runs
    script.write_text(
        'if __name__ == "__main__":\n    import qwenvl_diag as qd\n'
        '    frame = qd.sweep("tiny/qwen2_5_vl", gpus=[1, 2], memory="1GiB", strategies="balanced", '
        'inputs="text", actions="forward", processes=2, progress=False)\n    print(len(frame))\n'
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.split()[-1] == "2", done.stderr[-2000:]


def test_a_sweep_over_two_releases_runs_the_other_in_its_side_environment():
    frame = qd.sweep(
        CHECKPOINT,
        gpus=8,
        memory="24GiB",
        strategies="balanced",
        inputs="batch",
        actions="generate",
        transformers=["installed", SIDE_VERSION],
        cache=CACHE,
        progress=False,
    )
    assert len(frame) == 2 and frame["transformers"].nunique() == 2
    mine, other = frame.iloc[0], frame.iloc[1]
    import transformers

    assert mine["transformers"] == transformers.__version__ and other["transformers"] != mine["transformers"]
    # the batched mask bug is in exactly one of the two releases
    failing = frame[frame["outcome"] == "failed"]
    assert list(failing["known_bug"]) == [MASK]
    assert (mine["outcome"] == "failed") == AFFECTED and (other["outcome"] == "failed") != AFFECTED
    assert [t["transformers"] for t in frame.attrs["timings"]] == list(frame["transformers"])


def test_an_interrupt_keeps_the_rows_done_so_far(monkeypatch):
    real, calls = sweep_module._run_one, []

    def interrupted_at_the_third(*args):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(sweep_module, "_run_one", interrupted_at_the_third)
    frame = qd.sweep(
        "tiny/qwen2_5_vl",
        gpus=[1, 2],
        memory="1GiB",
        strategies="balanced",
        inputs=["text", "image"],
        actions="forward",
        processes=1,
        progress=False,
    )
    assert frame.attrs["interrupted"] is True
    assert len(frame) == 2 and set(frame["outcome"]) <= {"passed", "failed"}
    assert list(frame.columns) == qd.SWEEP_COLUMNS


def test_bad_axes_are_the_kits_errors_before_anything_runs():
    with pytest.raises(qd.UnknownCheckpointError, match="Did you mean"):
        qd.sweep("Qwen/Qwen2.5-VL-7B-Instructt", progress=False)
    with pytest.raises(qd.PlacementError, match="Cannot read memory per GPU"):
        qd.sweep(CHECKPOINT, memory=["24GiB", "lots"], progress=False)
    with pytest.raises(qd.InvalidArgumentError, match="Unknown strategy 'fastest'"):
        qd.sweep(CHECKPOINT, strategies="fastest", progress=False)
    with pytest.raises(qd.QwenVLDiagError, match="Unknown inputs 'speech'"):
        qd.sweep(CHECKPOINT, inputs=["text", "speech"], progress=False)
    with pytest.raises(qd.QwenVLDiagError, match="gpus must be a positive int"):
        qd.sweep(CHECKPOINT, gpus=[0], progress=False)
    with pytest.raises(qd.QwenVLDiagError, match="Unknown inputs_on 'gpu'; use one of cpu, model"):
        qd.sweep(CHECKPOINT, inputs_on=["model", "gpu"], progress=False)
    with pytest.raises(qd.PlacementError, match="Cannot read cpu_memory"):
        qd.sweep(CHECKPOINT, cpu_memory=["available", "lots"], progress=False)
    with pytest.raises(qd.InvalidArgumentError, match="processes must be a positive int"):
        qd.sweep(CHECKPOINT, gpus=1, processes=0, progress=False)
    with pytest.raises(qd.InvalidArgumentError, match="non-empty list"):
        qd.sweep(CHECKPOINT, gpus=[], progress=False)


def test_the_default_grid_is_every_shipped_checkpoint_over_the_realistic_layouts():
    scenarios = sweep_module.grid()
    checkpoints = list(qd.twins()["checkpoint"])
    assert len(scenarios) == len(checkpoints) * 4 * 3 * 4 * 4 * 2
    assert [s.model for s in scenarios[:: 4 * 3 * 4 * 4 * 2]] == checkpoints


def test_the_heatmap_has_a_cell_per_scenario_coloured_by_outcome_and_named_by_its_bug(seed_sweep):
    import matplotlib

    matplotlib.use("Agg")
    figure = qd.plot_sweep(seed_sweep)
    ax = figure.axes[0]
    image = ax.images[0].get_array()
    assert image.shape == (4, 6)  # 4 layouts x (batch, text, image) x (model, cpu) generate
    assert [t.get_text() for t in ax.get_xticklabels()][:2] == [
        "batch\ngenerate\non model",
        "batch\ngenerate\non cpu",
    ]
    labels = [t.get_text() for t in ax.texts]
    expected = [
        ""
        if r.outcome == "passed"
        else r.known_bug.split("-", 1)[1]
        if isinstance(r.known_bug, str)
        else f"{r.file.rsplit('/', 1)[-1]}:{r.line}"  # no catalogue entry: where it mixed devices
        for r in seed_sweep.itertuples()
    ]
    assert labels == expected
    assert ("batched-causal-mask" in labels) == AFFECTED == ("inputs-on-cpu" in labels)
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "Qwen2.5-VL-7B-Instruct  8x24GiB  balanced"
    with pytest.raises(qd.QwenVLDiagError, match="frame from qd.sweep"):
        qd.plot_sweep(seed_sweep[["model", "outcome"]])


def test_the_cli_prints_the_sweep_as_json_csv_markdown_or_its_summary_and_says_whether_all_passed(capsys):
    from qwenvl_diag import cli

    args = [
        "sweep",
        "--model",
        "tiny/qwen2_5_vl",
        "--gpus",
        "1",
        "2",
        "--memory",
        "1GiB",
        "--strategy",
        "balanced",
        "--inputs",
        "text",
        "--inputs-on",
        "cpu",
        "--action",
        "forward",
        "--processes",
        "1",
        "--no-progress",
    ]
    assert cli.main([*args, "--format", "json"]) == 1  # one GPU: the inputs stay on the CPU (J)
    rows = json.loads(capsys.readouterr().out)
    assert [r["gpus"] for r in rows] == [1, 2] and list(rows[0]) == qd.SWEEP_COLUMNS
    assert [r["outcome"] for r in rows] == ["failed", "passed"]
    assert cli.main([*args[:4], "2", *args[6:], "--format", "csv"]) == 0
    [row] = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(row) == qd.SWEEP_COLUMNS and row["flags"] == ";".join(rows[1]["flags"])
    assert row["layout"] == rows[1]["layout"] and row["outcome"] == "passed"
    assert cli.main([*args, "--format", "markdown"]) == 1
    assert capsys.readouterr().out.startswith("| " + " | ".join(qd.SWEEP_COLUMNS))
    assert cli.main([*args, "--format", "summary"]) == 1  # the findings: docs/findings.md's tables
    header, _, line = capsys.readouterr().out.strip().splitlines()
    assert header == "| " + " | ".join(qd.SWEEP_SUMMARY_COLUMNS) + " |" and line.split(" | ")[1] == "2", line
    assert cli.main(["sweep", "--model", "Qwen/nothing", "--no-progress"]) == 2
    assert "No config for 'Qwen/nothing'" in capsys.readouterr().err


def test_the_jsonl_format_streams_one_row_a_line_from_a_fresh_process():
    axes = [
        "--model",
        "tiny/qwen2_5_vl",
        "--gpus",
        "2",
        "--memory",
        "1GiB",
        "--strategy",
        "auto",
        "balanced",
        "--inputs",
        "text",
        "--action",
        "forward",
        "generate",
    ]
    command = [sys.executable, "-m", "qwenvl_diag.cli", "sweep", *axes, "--format", "jsonl", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 4 and list(rows[0]) == qd.SWEEP_COLUMNS, done.stderr[-2000:]
    assert done.returncode == (0 if {r["outcome"] for r in rows} == {"passed"} else 1)
    assert sorted(r["reused"] for r in rows) == [False, False, True, True]  # auto plans as balanced does


def test_a_family_this_release_lacks_is_a_kit_error_row_not_the_end_of_the_sweep():
    frame = qd.sweep(
        ["tiny/qwen3_vl", "tiny/qwen2_5_vl"],
        gpus=2,
        memory="1GiB",
        strategies="balanced",
        inputs="text",
        actions="forward",
        processes=1,
        progress=False,
    )
    qwen3, qwen25 = frame.iloc[0], frame.iloc[1]
    assert qwen25["outcome"] == "passed"
    if transformers_at_least(qd.FAMILIES["qwen3_vl"].since):
        assert qwen3["outcome"] == "passed"
    else:
        assert qwen3["outcome"] == "kit error" and "qwen3_vl needs transformers >= 4.57.0" in qwen3["error"]
        assert qwen3["layout"] is None and not qwen3["reused"]


def test_one_map_shared_by_two_gpu_counts_is_run_once_and_is_each_ones_fresh_row():
    # sequential on 80 GiB GPUs: the 7B fits GPU 0, so 1 and 2 GPUs plan the same {"": 0}
    frame = qd.sweep(
        CHECKPOINT,
        gpus=[1, 2],
        memory="80GiB",
        strategies="sequential",
        inputs="image",
        actions="forward",
        processes=1,
        progress=False,
    )
    assert frame["layout"].nunique() == 1 and list(frame["reused"]) == [False, True]
    for row in sweep_module.sweep_rows(frame):
        fields = {k: row[k] for k in ("model", "gpus", "memory", "strategy", "inputs", "inputs_on", "action")}
        fresh = sweep_module.diagnosis_row(qd.run(qd.Scenario(**fields)))  # on its own GPU count
        assert {k: row[k] for k in fresh} == fresh


def test_inputs_moved_the_model_cards_way_pass_on_one_gpu_where_left_on_the_cpu_they_fail():
    """inputs_on="model" is `inputs.to(model.device)` after loading: on one GPU (no hooks) the run passes
    with the inputs on cuda:0, where the processor's CPU tensors fail at the catalogue's J; the caller's
    inputs are not changed."""
    scenario = qd.Scenario(CHECKPOINT, gpus=1, memory="80GiB", inputs="image", action="forward")
    model, source, plan, inputs = materials(scenario)
    before = {k: (v.device, v.clone()) for k, v in inputs.items() if hasattr(v, "device")}
    carded = run_with(
        dataclasses.replace(scenario, inputs_on="model"), model, source, plan, inputs, unplace=True
    )
    assert carded.ok, carded.error
    assert set(carded.frames["inputs"]["device"]) == {"cuda:0"}
    left = run_with(scenario, model, source, plan, inputs, unplace=True)
    assert [b["id"] for b in left.known_bugs] == [ON_CPU]
    assert all(inputs[k].device == d and inputs[k].equal(v) for k, (d, v) in before.items())


def test_the_cpu_budget_is_the_scenarios_cpu_memory_or_the_ram_free_now():
    """A 32B on one 24 GiB GPU: with a GPU server's RAM the plan offloads to the CPU (and the run passes on
    the twin); "available" plans with what is free on this machine, as from_pretrained does."""
    server = qd.Scenario("Qwen/Qwen2.5-VL-32B-Instruct", gpus=1, cpu_memory="1024GiB", inputs="text")
    plan = plan_scenario(server)
    assert plan.max_memory == {0: 24 * 2**30, "cpu": 1024 * 2**30}
    assert set(plan.device_map.values()) == {0, "cpu"}
    here = plan_scenario(dataclasses.replace(server, cpu_memory="available"))
    assert 0 < here.max_memory["cpu"] <= psutil.virtual_memory().total
    row = sweep_module.sweep_rows(
        qd.sweep(
            server.model,
            gpus=1,
            memory="24GiB",
            cpu_memory="1024GiB",
            strategies="auto",
            inputs="text",
            actions="forward",
            processes=1,
            progress=False,
        )
    )
    assert [(r["cpu_memory"], r["outcome"]) for r in row] == [("1024GiB", "passed")]


def test_undispatch_takes_a_placed_model_back_to_the_cpu_as_it_was_built():
    from accelerate.hooks import AlignDevicesHook

    from qwenvl_diag.models.tiny import tiny_config
    from qwenvl_diag.placement.dispatch import undispatch

    model, _ = qd.tiny_model("qwen2_5_vl")
    built = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    forwards = {name: module.forward for name, module in model.named_modules()}
    config = tiny_config("qwen2_5_vl")[0]
    spread = qd.plan_device_map(config, 2, "1GiB", "balanced").device_map
    offloading = {name: "cpu" if device == 1 else device for name, device in spread.items()}
    assert {0, 1} <= set(spread.values()) and "cpu" in offloading.values()
    with qd.simulated_gpus(2):
        for device_map in (spread, offloading):
            qd.dispatch(model, device_map)
            assert undispatch(model) is model
            assert not hasattr(model, "hf_device_map")
            assert not any(
                isinstance(getattr(m, "_hf_hook", None), AlignDevicesHook) for m in model.modules()
            )
            assert {name: module.forward for name, module in model.named_modules()} == forwards
            state = model.state_dict()
            assert {t.device.type for t in state.values()} == {"cpu"}
            assert state.keys() == built.keys() and all(state[k].equal(built[k]) for k in built)
