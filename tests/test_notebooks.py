"""Every notebook runs top to bottom headless, in this stack's kernel, and shows what matters.

The notebooks teach: their code cells hold the kit's calls and nothing that checks them. What must
hold on each stack is checked here, from the executed notebook: what its outputs show a reader, and
values read from its kernel after the last cell ran (`_execute`'s probe: the notebook's own variables,
e.g. the diagnosis `batched` of 01, as plain data).
"""

from __future__ import annotations

import ast
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
import transformers
from conftest import MASK_CODE, SEED_FIX_VERDICTS, SEED_LINES_4_51_3, VIDEO_CODE, load_script
from nbclient import NotebookClient

import qwenvl_diag as qd
from qwenvl_diag import VERDICT_COLOURS as COLOURS
from qwenvl_diag import versions
from qwenvl_diag._compat import TRANSFORMERS_VERSION, transformers_at_least
from qwenvl_diag.bugs import CATALOGUE as BUGS

NOTEBOOK_DIR = Path(__file__).parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

# both seed failures were fixed in transformers 4.52.1: older stacks must show them, newer ones must pass
SEED_FIXED = transformers_at_least("4.52.1")
# the version lab's side environments, shared with test_versions (in LAB_CACHE/envs; git ignores it)
LAB_CACHE = Path(__file__).resolve().parents[1] / "test-output"
SAME_DEVICE = "Expected all tensors to be on the same device, but found at least two devices, "
QWEN25_FILE = "models/qwen2_5_vl/modeling_qwen2_5_vl.py"
BATCHED_BUG, VIDEO_BUG = "qwen2_5_vl-batched-causal-mask", "qwen2_5_vl-video-second-per-grid-ts"
MASK_FUNCTION = "_prepare_4d_causal_attention_mask_with_cache_position"
executed_notebooks = load_script("notebooks")


@dataclass
class Executed:
    """A notebook after Run All: its outputs as text, the run's seconds, and the probe's values."""

    name: str
    text: str
    seconds: float
    values: dict[str, Any]

    def context(self) -> str:
        return f"{self.name} (transformers {TRANSFORMERS_VERSION}, ran in {self.seconds:.1f} s)"


def _probe_source(probe: dict[str, str]) -> str:
    """A cell that prints, as one JSON line, each expression of `probe` evaluated in the kernel."""
    return (
        "import json as _probe_json\n"
        f"print(_probe_json.dumps({{key: eval(expression) for key, expression in {probe!r}.items()}}, "
        "default=str))"
    )


def _execute(path: Path, probe: dict[str, str]) -> Executed:
    """Execute the notebook in a fresh kernel of this interpreter (scripts/notebooks.py, which keeps the
    run for the documentation site), then, in the same kernel, evaluate `probe`'s expressions (the
    probe cell is not part of the notebook's text)."""
    probe_cell = nbformat.v4.new_code_cell(_probe_source(probe))
    ran = {}

    def read_probe(client: NotebookClient) -> None:
        ran["seconds"] = time.perf_counter() - started
        client.nb.cells.append(probe_cell)  # nbclient writes each executed cell back into the notebook
        client.execute_cell(probe_cell, len(client.nb.cells) - 1)
        client.nb.cells.pop()

    started = time.perf_counter()
    notebook = executed_notebooks.execute(path, after=read_probe)
    seconds = ran["seconds"]
    text = "\n".join(
        output.get("text", "") + json.dumps(output.get("data", {}))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    printed = "".join(
        output.get("text", "") for output in probe_cell.outputs if output.output_type == "stream"
    )
    return Executed(path.name, text, seconds, json.loads(printed.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def executed():
    """Each notebook executed once per test module (the kernel inherits the version lab's cache)."""
    runs: dict[str, Executed] = {}

    def run(name: str) -> Executed:
        if name not in runs:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("QWENVL_DIAG_CACHE", str(LAB_CACHE))
                if name == "01_reproduce.ipynb" and SEED_FIXED:
                    versions.side_env("4.51.3")  # made before the notebook runs, as `make lab` does for users
                runs[name] = _execute(NOTEBOOK_DIR / name, PROBES[name])
            print(
                f"{name}: ran headless in {runs[name].seconds:.1f} s on transformers {TRANSFORMERS_VERSION}"
            )
        return runs[name]

    return run


def _assert_shows(run: Executed, snippets: list[str], absent: list[str] = ()) -> None:
    for snippet in snippets:
        assert snippet in run.text, f"{run.context()}: {snippet!r}"
    for snippet in absent:
        assert snippet not in run.text, f"{run.context()}: {snippet!r} shown"


def _assert_raised_at_library_line(first: dict, code: str, function: str, context: str) -> None:
    """`first` (a diagnosis' first mismatch) is the installed transformers' line holding `code`."""
    assert first is not None, context
    assert first["file"].endswith(QWEN25_FILE) and first["function"] == function, (context, first)
    assert code in first["code"], (context, first)
    source = Path(transformers.__file__).parent / QWEN25_FILE
    lines = [n for n, line in enumerate(source.read_text().splitlines(), 1) if code in line]
    assert lines == [first["line"]], (context, first, lines)  # the real line of the installed release
    if str(TRANSFORMERS_VERSION) == "4.51.3":
        assert first["line"] == SEED_LINES_4_51_3[code], (context, first)


def test_notebooks_are_committed_without_outputs():
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), path.name
        assert all(cell.get("execution_count") is None for cell in notebook.cells if cell.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_code_cells_teach_and_do_not_check(path):
    """No code cell asserts (the checks are here), and none raises-by-tag: expected errors are caught
    in code. Every notebook has a probe here."""
    notebook = nbformat.read(path, as_version=4)
    assert path.name in PROBES, f"{path.name}: no checks in tests/test_notebooks.py"
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        assert "raises-exception" not in tags, (path.name, index)
        tree = ast.parse(
            "\n".join(line for line in cell.source.splitlines() if not line.startswith(("%", "!")))
        )
        asserts = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)]
        assert not asserts, f"{path.name} cell {index}: assert on line(s) {asserts}"


# --- 01_reproduce.ipynb ---------------------------------------------------------------------------

REPRODUCE_PROBE = {
    "fixed": "FIXED",
    "seed_batched": "dataclasses.replace(batched_scenario, devices='auto') "
    "== qd.Scenario.preset('seed-batched')",
    "seed_video": "dataclasses.replace(video_scenario, devices='auto') == qd.Scenario.preset('seed-video')",
    "batched": "{'error': batched.error, 'first': batched.first_mismatch, "
    "'bugs': [bug['id'] for bug in batched.known_bugs]}",
    "video": "{'error': video.error, 'first': video.first_mismatch, "
    "'bugs': [bug['id'] for bug in video.known_bugs]}",
    "video_rope_devices": "sorted(set(video.frames['rope'].query(\"argument == 'second_per_grid_ts'\")"
    "['device']))",
    "plan_flags": "list(qd.flags_frame(plan)['code'])",
    "lab": "lab.to_dict('records') if 'lab' in globals() else None",
}


def test_reproduce_shows_the_seed_failures_or_says_they_are_fixed(executed):
    run = executed("01_reproduce.ipynb")
    values, context = run.values, run.context()
    # the notebook's defaults are the seed's scenarios, and it knows which stack it is on
    assert values["seed_batched"] and values["seed_video"], (context, values)
    assert values["fixed"] == SEED_FIXED, context
    assert "vision_embed_apart" in values["plan_flags"], context  # the layout is risky on every release
    batched, video = values["batched"], values["video"]
    _assert_shows(
        run,
        [
            "vision_embed_apart",
            "image/png",
            "## qwenvl-diag: `Qwen/Qwen2.5-VL-7B-Instruct`",
            "application/vnd.jupyter.widget-view+json",  # the diagnosis panel
        ],
    )
    if SEED_FIXED:
        assert batched["error"] is None and batched["first"] is None and batched["bugs"] == [], context
        assert video["error"] is None and video["first"] is None and video["bugs"] == [], context
        # the version lab shows the batched failure under 4.51.3 (BUG_FACTS.md: line 1334)
        [row] = values["lab"]
        assert row["transformers"] == "4.51.3" and row["outcome"] == "failed", (context, row)
        assert row["file"] == f"transformers/{QWEN25_FILE}" and row["line"] == SEED_LINES_4_51_3[MASK_CODE]
        assert row["known_bug"] == BATCHED_BUG and SAME_DEVICE + "cuda:1 and cuda:0!" in row["error"]
        _assert_shows(
            run,
            [
                f"transformers {TRANSFORMERS_VERSION} is already fixed: both seed failures passed above",
                "generate passed",
                f"version lab: transformers 4.51.3 failed at transformers/{QWEN25_FILE}:1334 ({BATCHED_BUG})",
            ],
        )
        return
    # the batched failure: the error, the library line, the known bug
    assert SAME_DEVICE + "cuda:1 and cuda:0!" in batched["error"], (context, batched)
    _assert_raised_at_library_line(batched["first"], MASK_CODE, MASK_FUNCTION, context)
    assert batched["bugs"] == [BATCHED_BUG], (context, batched)
    # the video failure: second_per_grid_ts arrived on the vision tower's GPU
    assert SAME_DEVICE + "cuda:0 and cpu!" in video["error"], (context, video)
    _assert_raised_at_library_line(video["first"], VIDEO_CODE, "get_rope_index", context)
    assert video["bugs"] == [VIDEO_BUG], (context, video)
    assert values["video_rope_devices"] == ["cuda:0"], (context, values["video_rope_devices"])
    assert values["lab"] is None, context  # "auto": the version lab runs only where transformers is fixed
    _assert_shows(
        run,
        [
            SAME_DEVICE + "cuda:1 and cuda:0!",
            MASK_FUNCTION,
            MASK_CODE,
            f"known bug: {BATCHED_BUG}",
            "in get_rope_index",
            VIDEO_CODE,
            f"known bug: {VIDEO_BUG}",
            "generate FAILED",
            f"transformers {TRANSFORMERS_VERSION} has both bugs",
        ],
        absent=["is already fixed"],
    )


# --- 02_layer_placement.ipynb ---------------------------------------------------------------------

PLACEMENT_PROBE = {
    "seed": "(MODEL, GPUS, MEMORY_GIB, STRATEGY) == ('Qwen/Qwen2.5-VL-7B-Instruct', 8, 24, 'balanced')",
    "sweep": "sweep.to_dict('records')",
    "apart": "apart.to_dict('records')",
    "together_flags": "[flag.code for flag in together.flags]",
    "apart_flags": "[flag.code for flag in apart_plan.flags]",
    "together_run": "{'error': together_run.error}",
    "apart_run": "{'error': apart_run.error, 'first': apart_run.first_mismatch}",
    "panel": "{'strategy': panel.plan.strategy, 'flags': [flag.code for flag in panel.plan.flags]}",
    "outcomes": "_probe_json.loads(outcomes.to_json(orient='records'))",
    "timing": "outcomes.attrs['timings'][0]",
    "heatmap": "[text.get_text() for text in heatmap.axes[0].texts]",
    "heatmap_shape": "list(heatmap.axes[0].images[0].get_array().shape)",
    "failing": "failing['known_bug'].tolist()",
}


def test_placement_sweeps_the_layouts_and_its_heatmap_names_each_failure(executed):
    run = executed("02_layer_placement.ipynb")
    values, context = run.values, run.context()
    rows, timing = values["outcomes"], values["timing"]
    assert len(rows) == 36 and list(rows[0]) == qd.SWEEP_COLUMNS, context  # 3 GPU counts x 2 x 3 x 2
    assert timing["scenarios"] == 36 and timing["unique_runs"] < 36, (context, timing)
    assert timing["unique_runs"] == sum(not row["reused"] for row in rows), context
    by = {(r["gpus"], r["strategy"], r["inputs"], r["inputs_on"]): r for r in rows}
    # one GPU, the inputs moved as the model cards do: every run passes
    carded = [by[1, s, i, "model"] for s in ("balanced", "sequential") for i in ("batch", "text", "image")]
    assert {r["outcome"] for r in carded} == {"passed"}, (context, carded)
    # left on the CPU: no hooks (the catalogue's J) whatever the strategy; 5.x generate moves input_ids
    # itself, so there a text prompt passes and an image fails at the vision tower
    one = [by[1, s, i, "cpu"] for s in ("balanced", "sequential") for i in ("batch", "text", "image")]
    failing = [row for row in one if row["outcome"] == "failed"]
    assert all("on cpu" in r["error"] or "(CPUFloatType)" in r["error"] for r in failing), (context, one)
    if transformers_at_least("5.0"):
        assert {r["inputs"] for r in failing} == {"batch", "image"}, (context, one)
    else:
        assert {r["known_bug"] for r in one} == {"qwen2_5_vl-inputs-on-cpu"}, (context, one)
    seed = {i: by[8, "balanced", i, "model"] for i in ("batch", "text", "image")}
    assert all(row["flags"] == ["vision_embed_apart"] for row in seed.values()), (context, seed)
    expected_batch = None if SEED_FIXED else "qwen2_5_vl-batched-causal-mask"
    expected_text = None if transformers_at_least("4.53.0") else "qwen2_5_vl-text-generate-rope-deltas"
    assert (seed["batch"]["known_bug"], seed["text"]["known_bug"]) == (expected_batch, expected_text), context
    assert seed["image"]["outcome"] == "passed", context
    if str(TRANSFORMERS_VERSION) == "4.51.3":
        assert (seed["batch"]["function"], seed["batch"]["line"]) == (
            MASK_FUNCTION,
            SEED_LINES_4_51_3[MASK_CODE],
        )
    # the heatmap: a cell per scenario, labelled by its known bug, family prefix dropped
    assert values["heatmap_shape"] == [6, 6], context
    assert values["heatmap"] == [
        ""
        if row["outcome"] == "passed"
        else row["known_bug"].split("-", 1)[1]
        if row["known_bug"]
        else f"{row['file'].rsplit('/', 1)[-1]}:{row['line']}"  # no catalogue entry: where it mixed
        for row in rows
    ], context
    assert values["failing"] == [r["known_bug"] for r in rows if r["outcome"] != "passed"], context
    _assert_shows(run, [f"36 scenarios, 6 layouts, {timing['unique_runs']} runs in"])


def test_placement_flags_the_layouts_that_fail(executed):
    run = executed("02_layer_placement.ipynb")
    values, context = run.values, run.context()
    assert values["seed"], context
    # the sweep: every flagged layout really puts the two apart, and the seed's layout is flagged
    sweep, apart = values["sweep"], values["apart"]
    assert apart and all(row["vision"] != row["embed_tokens"] for row in apart), (context, apart)
    assert apart == [row for row in sweep if "vision_embed_apart" in row["flags"]], context
    [seed_row] = [
        row
        for row in sweep
        if (row["checkpoint"], row["gpus"], row["strategy"]) == ("Qwen2.5-VL-7B-Instruct", 8, "balanced")
    ]
    assert "vision_embed_apart" in seed_row["flags"], (context, seed_row)
    checkpoints = {row["checkpoint"] for row in sweep}
    qwen3 = "Qwen3-VL-8B-Instruct" in checkpoints
    assert checkpoints - {"Qwen3-VL-8B-Instruct"} == {"Qwen2.5-VL-3B-Instruct", "Qwen2.5-VL-7B-Instruct"}
    assert qwen3 == transformers_at_least(qd.FAMILIES["qwen3_vl"].since), context
    assert len(sweep) == 6 * len(checkpoints), context  # 2/4/8 GPUs x balanced/sequential each
    # explicit split points: the vision tower with or apart from embed_tokens
    assert values["together_flags"] == [] and values["apart_flags"] == ["vision_embed_apart"], context
    assert values["together_run"]["error"] is None, (context, values["together_run"])
    apart_run = values["apart_run"]
    if SEED_FIXED:
        assert apart_run["error"] is None and apart_run["first"] is None, (context, apart_run)
    else:
        assert SAME_DEVICE + "cuda:0 and cuda:1!" in apart_run["error"], (context, apart_run)
        _assert_raised_at_library_line(apart_run["first"], MASK_CODE, MASK_FUNCTION, context)
    # the panel ends on the flagged explicit layout its last cell set
    assert values["panel"] == {"strategy": "explicit", "flags": ["vision_embed_apart"]}, context
    shown = [
        "application/vnd.jupyter.widget-view+json",  # the placement panel
        "image/png",
        "balanced on 8 GPUs: ['vision_embed_apart']",
        "sequential on 8 GPUs: no flags",
        f"{len(apart)} of {len(sweep)} layouts put the vision tower and embed_tokens on different GPUs",
        "vision on GPU 0: no flags",
        "vision on GPU 1: ['vision_embed_apart']",
        "flags: ['vision_embed_apart']",
    ]
    if SEED_FIXED:
        shown.append(f"transformers {TRANSFORMERS_VERSION} is fixed: the flagged layout passes too")
    else:
        shown += [
            "vision tower apart:             " + SAME_DEVICE + "cuda:0 and cuda:1!",
            f"the flagged layout fails at {MASK_CODE}",
        ]
    _assert_shows(run, shown)


# --- 03_fix_and_verify.ipynb ----------------------------------------------------------------------

FIX_AND_VERIFY_PROBE = {
    "settings": "{'devices': DEVICES, 'atol': ATOL, 'version_lab': RUN_VERSION_LAB}",
    "fixes": "FIXES",
    "reports": "{preset: report.to_dict('records') for preset, report in "
    "(('seed-batched', batched_report), ('seed-video', video_report))}",
    "limits": "sorted(LIMITS)",
    "catalogue": "sorted(catalogue.index)",
    "bug_table": "{bug: {'fixes': row['fixes'], 'here': bool(row.iloc[3])} "
    "for bug, row in catalogue_table.iterrows()}",
    "red": "[(preset, row.fix, row.why) for preset, row in red]",
    "fixed_batched": "{'error': fixed_batched.error, "
    "'flags': list(qd.flags_frame(fixed_batched.plan)['code'])}",
    "positions_equal": "bool(positions.equals(reference_positions))",
    "unfixed_equal": "None if unfixed is None else bool(unfixed.equals(reference_positions))",
    "steps": "steps",
    "step": "seconds * per_second",
}


def _expected_verdicts(preset: str) -> dict[str, str]:
    return {
        fix: "not needed" if SEED_FIXED else verdict for fix, verdict in SEED_FIX_VERDICTS[preset].items()
    }


def test_fix_and_verify_gives_each_fix_its_verdict(executed):
    run = executed("03_fix_and_verify.ipynb")
    values, context = run.values, run.context()
    assert values["settings"] == {"devices": "auto", "atol": 1e-4, "version_lab": False}, context
    assert values["fixes"] == [fix for fix in qd.fixes()["name"] if fix != "upgrade_transformers"], context
    red = ("not fixed", "breaks results")
    for preset, rows in values["reports"].items():
        verdicts = {row["fix"]: row["verdict"] for row in rows}
        assert verdicts == _expected_verdicts(preset), (context, preset, verdicts)
        for row in rows:
            if row["verdict"] in red:  # still the seed's error, and the reason names the bug left in place
                assert "Expected all tensors to be on the same device" in row["error_after"], (context, row)
                assert "in place" in row["why"] and f"{row['fix']} does not address" in row["why"], row
            else:  # no error and exactly the reference's numbers and tokens
                assert row["error_after"] is None and row["max_abs_logit_diff"] == 0.0, (context, row)
                assert row["same_generated_ids"] is True, (context, row)
    # every catalogue fix has its limits written down; red rows are listed exactly where there are bugs
    assert values["limits"] == values["catalogue"] == sorted(qd.fixes()["name"]), context
    listed = {(preset, fix) for preset, fix, _ in values["red"]}
    assert listed == {
        (preset, row["fix"])
        for preset, rows in values["reports"].items()
        for row in rows
        if row["verdict"] in red
    }
    assert bool(listed) != SEED_FIXED, (context, listed)
    left = {"seed-batched": BATCHED_BUG, "seed-video": VIDEO_BUG}  # the bug each red row leaves in place
    assert all(f"leaves {left[preset]} in place" in why for preset, _, why in values["red"]), values["red"]
    # the catalogue table: every entry, whether the installed release has it, the fixes meant for it
    fixes = qd.fixes()
    assert values["bug_table"] == {
        bug.id: {
            "fixes": [f for f, a in zip(fixes["name"], fixes["addresses"], strict=True) if bug.id in a],
            "here": bug.affects(TRANSFORMERS_VERSION),
        }
        for bug in BUGS
    }, context
    # the scenario carrying vision_with_embeddings passes, on a layout that is no longer flagged
    assert values["fixed_batched"] == {"error": None, "flags": []}, context
    # rope positions: with the list form equal to the single-device reference; without it, none where
    # the bug is, the same positions where it is fixed
    assert values["positions_equal"] is True, context
    assert values["unfixed_equal"] is (True if SEED_FIXED else None), context
    steps = values["steps"]
    assert len(steps) == 2 and steps[1] - steps[0] == values["step"] == 2, (context, steps)  # 2 s x 1/s

    green, grey, red_colour = (
        f"background-color: {COLOURS[v]}" for v in ("fixed", "not needed", "not fixed")
    )
    shown = [
        "image/png",  # the rope positions plot
        "application/vnd.jupyter.widget-view+json",  # the verify panel
        "rope positions with second_per_grid_ts_as_list equal the single-device reference: True",
        "video tokens 45-52: t takes [45, 47]",
        "error: none, generate passed",  # the scenario that carries vision_with_embeddings
        "flags: none: the vision tower and embed_tokens share a GPU",
    ]
    if SEED_FIXED:
        _assert_shows(run, shown + [grey, "no red rows on transformers"], absent=[red_colour, green])
        return
    _assert_shows(
        run,
        shown
        + [
            green,
            red_colour,
            "seed-batched: fixed by single_device, vision_with_embeddings, rope_mask_hotfix",
            "seed-video: fixed by second_per_grid_ts_as_list, rope_mask_hotfix",
            "without a fix: no positions: No Qwen2_5_VLForConditionalGeneration.get_rope_index call returned",
        ],
        absent=[grey],
    )


# --- 04_triage.ipynb -------------------------------------------------------------------------------

TRIAGE_PROBE = {
    "best": "result.best['id']",
    "answer": "result.answer",
    "scenario": "result.scenario",
    "facts": "{key: result.facts[key] for key in ('devices', 'device_pair', 'family', 'versions', 'engine')}",
    "library_frame": "result.facts['library_frame']",
    "reproduced": "{'error': reproduced.error, 'first': reproduced.first_mismatch, "
    "'bugs': [b['id'] for b in reproduced.known_bugs]} if isinstance(reproduced, qd.Diagnosis) "
    "else reproduced.to_dict('records')",
    "bisection": "[found.last, found.first] if 'found' in globals() else None",
    "reply": "result.reply",
    "panel": "{'best': panel.explanation.best['id'], "
    "'reproducible': not panel.buttons['reproduce'].disabled}",
    "partial": "rows",
}


def test_triage_explains_reproduces_and_bisects_the_report(executed):
    run = executed("04_triage.ipynb")
    values, context = run.values, run.context()
    assert values["best"] == BATCHED_BUG and values["scenario"]["preset"] == "seed-batched", context
    assert (values["answer"]["label"], values["answer"]["confidence"]) == (BATCHED_BUG, "high"), context
    assert values["facts"] == {
        "devices": ["cuda:1", "cuda:0"],
        "device_pair": "gpu/gpu",
        "family": "qwen2_5_vl",
        "versions": {
            "accelerate": "1.6.0",
            "qwen-vl-utils": "0.0.10",
            "torch": "2.6.0+cu124",
            "transformers": "4.51.3",
        },
        "engine": ["device_map", "torchrun"],
    }, context
    frame = values["library_frame"]
    assert (frame["line"], frame["function"], frame["code"]) == (1334, MASK_FUNCTION, MASK_CODE), frame
    reproduced = values["reproduced"]
    if str(TRANSFORMERS_VERSION) == "4.51.3":  # the reported release: reproduced here
        assert SAME_DEVICE + "cuda:1 and cuda:0!" in reproduced["error"], (context, reproduced)
        _assert_raised_at_library_line(reproduced["first"], MASK_CODE, MASK_FUNCTION, context)
        assert reproduced["bugs"] == [BATCHED_BUG], context
    else:  # in the version lab's 4.51.3
        [row] = reproduced
        assert (row["transformers"], row["outcome"], row["line"], row["known_bug"]) == (
            "4.51.3",
            "failed",
            1334,
            BATCHED_BUG,
        ), (context, row)
    assert values["bisection"] == ["4.51.3", "4.52.1"], context  # the catalogue's "fixed in", found
    assert "**qwen2_5_vl-batched-causal-mask**" in values["reply"] and "fixed in 4.52.1" in values["reply"]
    assert values["panel"] == {"best": BATCHED_BUG, "reproducible": True}, context
    answers = {row["pasted"]: (row["answer"], row["confidence"]) for row in values["partial"]}
    assert answers == {
        "the error and the quoted line": (VIDEO_BUG, "high"),
        "a file and line, and a release": (BATCHED_BUG, "high"),
        "told in words": (BATCHED_BUG, "low"),
        "through a quantizer": ("tool:autoawq", "medium"),
        "out of memory": ("not recognised", None),
        "another model": ("not recognised", None),
    }, context
    [quantizer] = [row for row in values["partial"] if row["pasted"] == "through a quantizer"]
    assert quantizer["first line of the reply"].startswith("Not a known transformers bug of the catalogue")
    _assert_shows(
        run, ["application/vnd.jupyter.widget-view+json", "last failing: 4.51.3, first passing: 4.52.1"]
    )


PROBES = {
    "01_reproduce.ipynb": REPRODUCE_PROBE,
    "02_layer_placement.ipynb": PLACEMENT_PROBE,
    "03_fix_and_verify.ipynb": FIX_AND_VERIFY_PROBE,
    "04_triage.ipynb": TRIAGE_PROBE,
}
