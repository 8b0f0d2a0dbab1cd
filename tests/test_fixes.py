"""The fix catalogue and verify: the right fixes are green and the wrong ones red on the legacy stack,
everything is "not needed" on the current one, and every fix is undone exactly."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import SEED_FIX_VERDICTS, family_available, vision_apart_map

import qwenvl_diag as qd
from qwenvl_diag._compat import TRANSFORMERS_VERSION, transformers_at_least
from qwenvl_diag.bugs import CATALOGUE as BUGS
from qwenvl_diag.bugs import get_bug
from qwenvl_diag.diagnose import _advice
from qwenvl_diag.fixes import CATALOGUE, fix_names, fixes_for
from qwenvl_diag.hotfix import MASK_BUGS, VIDEO_BUG
from qwenvl_diag.input_check import compute_device
from qwenvl_diag.models.tiny import tiny_config
from qwenvl_diag.rope import ROPE_FUNCTION, find_rope_index
from qwenvl_diag.scenario import materials
from qwenvl_diag.verify import LOGIT_ATOL, Outcome, _judge, _verdict, _why

AFFECTED = not transformers_at_least("4.52.1")
BATCHED_BUG = "qwen2_5_vl-batched-causal-mask"
IN_PROCESS = [fix.name for fix in CATALOGUE if fix.stage != "environment"]  # upgrade: test_versions.py
PLACED_FIXES = [fix.name for fix in CATALOGUE if fix.stage == "placed"]
PLAN_FIXES = [fix.name for fix in CATALOGUE if fix.stage == "plan"]

EXPECTED = SEED_FIX_VERDICTS
REMAINING_BUG = {"seed-batched": BATCHED_BUG, "seed-video": VIDEO_BUG}


def _scenario(preset: str) -> qd.Scenario:
    return dataclasses.replace(qd.Scenario.preset(preset), max_new_tokens=2)


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def table(request):
    return request.param, qd.verify(_scenario(request.param), fix=IN_PROCESS)


def test_catalogue_frame_names_the_bugs_each_fix_addresses():
    frame = qd.fixes()
    assert list(frame.columns) == qd.FIX_COLUMNS
    assert list(frame["name"]) == fix_names() == [*EXPECTED["seed-batched"], "upgrade_transformers"]
    bug_ids = {bug.id for bug in BUGS}
    for row in frame.itertuples():
        assert set(row.addresses) <= bug_ids, row.name
        assert row.title and row.costs.endswith(".")
    assert set(qd.get_fix("upgrade_transformers").addresses) == {b.id for b in BUGS if b.fixed_in}
    assert qd.get_fix("rope_mask_hotfix").addresses == (
        VIDEO_BUG,
        BATCHED_BUG,
        "qwen2_vl-batched-causal-mask",
    )
    assert qd.get_fix("second_per_grid_ts_as_list").addresses == (VIDEO_BUG,)
    # inputs left on the CPU: a one-GPU model's, and those 5.18+'s generate encodes outside the hooks
    usage = {b.id for b in BUGS if b.kind == "usage"} | {"qwen3_vl-generate-split-vision-cpu-grid"}
    assert set(qd.get_fix("inputs_to_execution_device").addresses) == usage
    every_error = {b.id for b in BUGS if b.kind != "silent"}
    assert {bug for fix in frame["addresses"] for bug in fix} >= every_error  # each has a fix


def test_unknown_fix_names_the_close_ones():
    with pytest.raises(qd.UnknownFixError, match=r"Did you mean 'single_device'\?.*Known fixes"):
        qd.get_fix("single_devices")
    with pytest.raises(qd.UnknownFixError, match="rope_mask_hotfix"):
        qd.verify(qd.Scenario.preset("seed-video"), fix="rope_hotfix")
    with pytest.raises(qd.UnknownFixError):
        qd.Scenario(fixes=["upgrade"])


def test_verify_table_green_and_red_with_the_reason(table):
    preset, frame = table
    assert list(frame.columns) == qd.VERIFY_COLUMNS
    assert list(frame["fix"]) == IN_PROCESS
    verdicts = dict(zip(frame["fix"], frame["verdict"], strict=True))
    if AFFECTED:
        assert verdicts == EXPECTED[preset]
        assert frame["error_before"].str.contains("Expected all tensors to be on the same device").all()
    else:
        assert set(verdicts.values()) == {"not needed"}
        assert frame["error_before"].isna().all() and frame["error_after"].isna().all()
    for row in frame.itertuples():
        if row.verdict in ("fixed", "not needed"):
            assert row.error_after is None
            assert row.max_abs_logit_diff <= LOGIT_ATOL and row.same_generated_ids is True
        else:
            assert "Expected all tensors to be on the same device" in row.error_after
            assert row.same_generated_ids is None
            assert f"leaves {REMAINING_BUG[preset]} in place" in row.why
            assert f"{row.fix} does not address" in row.why


def test_verify_reasons_say_what_each_fix_did(table):
    preset, frame = table
    why = dict(zip(frame["fix"], frame["why"], strict=True))
    assert "root-hook execution device" in why["inputs_to_execution_device"]
    assert "device_map={'': 0}" in why["single_device"]
    if preset == "seed-batched":
        assert "re-planned with embed_tokens on cuda:0" in why["vision_with_embeddings"]
        assert "no tensor second_per_grid_ts" in why["second_per_grid_ts_as_list"]
    else:
        assert "already share cuda:0" in why["vision_with_embeddings"]
        form = "a list of floats" if AFFECTED else "a CPU tensor"
        assert form in why["second_per_grid_ts_as_list"]
    hotfix = "wrapped get_rope_index" if AFFECTED else "rope_mask_hotfix is a no-op"
    assert hotfix in why["rope_mask_hotfix"]


def test_a_silent_numeric_difference_counts_as_a_failure():
    """A fix that hides the error but changes the numbers: "breaks results", not "fixed"."""
    reference = Outcome(None, torch.zeros(2, 5), torch.tensor([1, 2]))
    failed = _judge(Outcome(RuntimeError("Expected all tensors to be on the same device")), reference, None)
    drifted = _judge(Outcome(None, torch.full((2, 5), 0.5), torch.tensor([1, 2])), reference, None)
    other_ids = _judge(Outcome(None, torch.zeros(2, 5), torch.tensor([1, 3])), reference, None)
    equal = _judge(reference, reference, None)
    assert (drifted.diff, drifted.same, equal.diff, equal.same) == (0.5, True, 0.0, True)
    assert other_ids.same is False and failed.same is None and failed.error is not None
    assert _verdict(failed, drifted, LOGIT_ATOL) == "breaks results"
    assert _verdict(equal, other_ids, LOGIT_ATOL) == "breaks results"
    assert _verdict(equal, failed, LOGIT_ATOL) == "breaks results"
    assert _verdict(failed, equal, LOGIT_ATOL) == "fixed"
    assert _verdict(drifted, drifted, LOGIT_ATOL) == "not fixed"
    assert _verdict(equal, equal, LOGIT_ATOL) == "not needed"
    why = _why(qd.get_fix("single_device"), "breaks results", ["x"], drifted, LOGIT_ATOL)
    assert "logits differ by 0.5" in why and "silent failure" in why


def test_scenario_fixes_round_trip_and_run_applies_them():
    scenario = dataclasses.replace(qd.Scenario.preset("seed-video"), fixes=["second_per_grid_ts_as_list"])
    assert qd.Scenario.from_json(scenario.to_json()) == scenario
    assert qd.Scenario.from_dict(json.loads(json.dumps(scenario.to_dict()))).fixes == scenario.fixes
    assert qd.Scenario.preset("seed-video").fixes == []
    diagnosis = qd.run(scenario)
    assert diagnosis.ok, diagnosis.error
    assert json.loads(diagnosis.to_json())["scenario"]["fixes"] == ["second_per_grid_ts_as_list"]


def test_diagnosis_advice_lists_the_catalogue_fixes_for_the_matched_bug():
    import pandas as pd

    bug = next(b for b in BUGS if b.id == VIDEO_BUG).row()
    advice = _advice(RuntimeError("x"), [bug], pd.DataFrame(columns=["code"]), None)
    listed = [name for name in fix_names() if any(f"fix={name!r}" in line for line in advice)]
    assert listed == ["second_per_grid_ts_as_list", "rope_mask_hotfix", "upgrade_transformers"]


def _state(model: torch.nn.Module) -> dict:
    """Every module's __dict__ (keys and object identities; `rope_deltas`, which a run re-caches, by key
    only), hooks, forward methods and parameter devices, plus torch's global state."""
    module = torch.nn.modules.module
    return {
        "dicts": {
            n: [(k, None if k == "rope_deltas" else id(v)) for k, v in vars(m).items()]
            for n, m in model.named_modules()
        },
        "forward": {n: vars(m).get("forward") for n, m in model.named_modules()},
        "hooks": {n: (vars(m).get("_hf_hook"), dict(m._forward_hooks)) for n, m in model.named_modules()},
        "params": {n: (str(p.device), p.data_ptr()) for n, p in model.named_parameters()},
        "global_hooks": (dict(module._global_forward_hooks), dict(module._global_forward_pre_hooks)),
        "modes": (torch._C._len_torch_function_stack(), torch._C._len_torch_dispatch_stack()),
        "grad": torch.is_grad_enabled(),
        "dtype": torch.get_default_dtype(),
    }


def _inputs_state(inputs) -> list:
    return [(k, id(v), str(getattr(v, "device", ""))) for k, v in inputs.items()]


@pytest.fixture()
def placed_video():
    """A tiny Qwen2.5-VL placed in the seed's layout on two simulated GPUs, with a tensor
    second_per_grid_ts (the video failure on 4.49-4.51.3)."""
    model, processor = qd.tiny_model("qwen2_5_vl")
    inputs = qd.sample_inputs(processor, "video", second_per_grid_ts="tensor")
    config = tiny_config("qwen2_5_vl")[0]
    plan = qd.plan_device_map(config, 2, "24GiB", vision_apart_map(model))
    with qd.simulated_gpus(2):
        setup = qd.Setup(model, inputs, plan)
        setup.place()
        yield setup


@pytest.mark.filterwarnings("ignore::qwenvl_diag.errors.FixNotApplicableWarning")  # asserted below
@pytest.mark.parametrize("name", PLACED_FIXES)
def test_a_placed_fix_is_undone_exactly(placed_video, name):
    setup = placed_video
    model, inputs, plan = setup.model, setup.inputs, setup.plan
    before, inputs_before, rng = _state(model), _inputs_state(inputs), torch.get_rng_state()
    with qd.get_fix(name).applied(setup):
        if name == "rope_mask_hotfix" and AFFECTED:
            assert _state(model)["dicts"] != before["dicts"]  # wrapped on the instance while applied
        try:
            with torch.no_grad():
                model(**setup.inputs)
            failed = False
        except RuntimeError:  # the fix is undone after a failing run too
            failed = True
    # the tensor second_per_grid_ts fails the video on 4.49-4.51.3 unless the fix is for that bug
    assert failed == (AFFECTED and VIDEO_BUG not in qd.get_fix(name).addresses)
    assert setup.inputs is inputs and setup.plan is plan
    assert _state(model) == before
    assert _inputs_state(inputs) == inputs_before
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.fixture(scope="module")
def seed_layout():
    model, processor = qd.twin("Qwen/Qwen2.5-VL-7B-Instruct")
    inputs = qd.sample_inputs(processor, "batch")
    return model, inputs, qd.plan_device_map("Qwen/Qwen2.5-VL-7B-Instruct", 8, "24GiB", "balanced")


@pytest.mark.parametrize("name", PLAN_FIXES)
def test_a_plan_fix_rewrites_only_the_setup_and_is_undone(seed_layout, name):
    model, inputs, plan = seed_layout
    device_map, before, inputs_before = dict(plan.device_map), _state(model), _inputs_state(inputs)
    with qd.simulated_gpus(8):
        setup = qd.Setup(model, inputs, plan)
        with qd.get_fix(name).applied(setup):
            assert setup.plan is not plan
            flags = {flag.code for flag in setup.plan.flags}
            assert "vision_embed_apart" not in flags and "offloaded" not in flags
            if name == "single_device":
                assert setup.plan.device_map == {"": 0}
                assert {v.device for v in setup.inputs.values()} == {torch.device("cuda:0")}
        assert setup.plan is plan and setup.inputs is inputs and plan.device_map == device_map
    assert _state(model) == before and _inputs_state(inputs) == inputs_before
    assert "vision_embed_apart" in {flag.code for flag in plan.flags}


@pytest.mark.filterwarnings("ignore::qwenvl_diag.errors.FixNotApplicableWarning")  # asserted below
def test_applying_places_between_the_stages_and_undoes_in_reverse(placed_video):
    placed = placed_video
    with pytest.raises(qd.FixError, match="before the model is placed"):
        qd.get_fix("single_device").apply(placed)
    unplaced = qd.Setup(placed.model, placed.inputs, placed.plan)
    with pytest.raises(qd.FixError, match="setup.place"):
        qd.get_fix("rope_mask_hotfix").apply(unplaced)
    before, inputs = _state(placed.model), placed.inputs
    with qd.applying(placed, PLACED_FIXES) as setup:
        assert setup is placed and setup.inputs is not inputs
        assert isinstance(setup.inputs["second_per_grid_ts"], list if AFFECTED else torch.Tensor)
        assert len(setup.notes) == len(PLACED_FIXES)
    assert placed.inputs is inputs and _state(placed.model) == before


def test_hotfix_is_version_gated_and_refuses_an_out_of_order_undo(placed_video):
    setup = placed_video
    path, owner = find_rope_index(setup.model)
    if not AFFECTED:
        with pytest.warns(qd.FixNotApplicableWarning, match="no-op"):
            undo = qd.get_fix("rope_mask_hotfix").apply(setup)
        assert ROPE_FUNCTION not in vars(owner)
        undo()
        return
    undo = qd.get_fix("rope_mask_hotfix").apply(setup)
    wrapped = vars(owner)[ROPE_FUNCTION]
    masks = [
        m for m in setup.model.modules() if "_prepare_4d_causal_attention_mask_with_cache_position" in vars(m)
    ]
    assert len(masks) == 1 and set(MASK_BUGS) <= set(qd.get_fix("rope_mask_hotfix").addresses)
    vars(owner)[ROPE_FUNCTION] = lambda *a, **k: None  # someone else wraps it after the hotfix
    with pytest.raises(qd.FixError, match="reverse order"):
        undo()
    vars(owner)[ROPE_FUNCTION] = wrapped
    undo()
    assert ROPE_FUNCTION not in vars(owner) and not any(
        "_prepare_4d_causal_attention_mask_with_cache_position" in vars(m) for m in setup.model.modules()
    )


SEED_PRESETS = set(EXPECTED)  # their whole tables are checked above


@pytest.mark.filterwarnings("ignore::qwenvl_diag.errors.FixNotApplicableWarning")
@pytest.mark.parametrize(
    "bug",
    [
        b
        for b in BUGS
        if b.kind != "silent"
        and b.scenario not in SEED_PRESETS
        and b.affects(TRANSFORMERS_VERSION)
        and family_available(b.families[0])
    ],
    ids=lambda b: b.id,
)
def test_every_fix_an_entry_names_is_verified_on_its_scenario(bug):
    """On the installed release, each in-process fix that addresses the entry makes its scenario pass with
    the single-device reference's logits and tokens."""
    names = [fix.name for fix in fixes_for(bug.id) if fix.stage != "environment"]
    frame = qd.verify(_scenario(bug.scenario), fix=names)
    assert dict(zip(frame["fix"], frame["verdict"], strict=True)) == dict.fromkeys(names, "fixed"), frame


@pytest.mark.filterwarnings("ignore::qwenvl_diag.errors.FixNotApplicableWarning")  # asserted below
def test_the_rope_deltas_fix_is_gated_by_release_and_undone_exactly():
    scenario = _scenario("text-generate")
    model, source, plan, inputs = materials(scenario)
    affected = get_bug("qwen2_5_vl-text-generate-rope-deltas").affects(TRANSFORMERS_VERSION)
    with qd.simulated_gpus(scenario.gpus):
        setup = qd.Setup(model, inputs, plan, source)
        setup.place()
        path, owner = find_rope_index(model)
        before = _state(model)
        if not affected:
            with pytest.warns(qd.FixNotApplicableWarning, match="rope_deltas_to_cache_device is a no-op"):
                undo = qd.get_fix("rope_deltas_to_cache_device").apply(setup)
            assert ROPE_FUNCTION not in vars(owner)
        else:
            undo = qd.get_fix("rope_deltas_to_cache_device").apply(setup)
            assert ROPE_FUNCTION in vars(owner)
            model.generate(**setup.inputs, max_new_tokens=2, do_sample=False)  # the failing call passes
            assert owner.rope_deltas.device == compute_device(model)  # where cache_position is
        undo()
        assert _state(model) == before
