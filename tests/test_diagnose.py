"""diagnose, Scenario/run and the doctor CLI on the seed's two failures, in both stacks."""

from __future__ import annotations

import json

import pytest
import torch

import qwenvl_diag as qd
from qwenvl_diag import cli
from qwenvl_diag._compat import TRANSFORMERS_VERSION, transformers_at_least
from qwenvl_diag.bugs import get_bug, known_bugs
from qwenvl_diag.diagnose import FRAMES

AFFECTED = not transformers_at_least("4.52.1")
MASK_CODE = (
    "diagonal_attend_mask = torch.arange(target_length, device=device) > cache_position.reshape(-1, 1)"
)
VIDEO_CODE = "time_tensor = expanded_range * second_per_grid_t"


def _catalogue_id(function: str) -> str:
    bugs = known_bugs()
    return bugs[bugs["location"].str.contains(function)].iloc[0]["id"]


@pytest.fixture(scope="module")
def batched():
    return qd.run(qd.Scenario.preset("seed-batched"))


@pytest.fixture(scope="module")
def video():
    return qd.run(qd.Scenario.preset("seed-video"))


def test_batched_scenario_names_op_devices_module_line_and_bug(batched):
    assert set(batched.frames) == set(FRAMES)
    assert "vision_embed_apart" in set(batched.frames["flags"]["code"])
    assert batched.environment["devices"]["kind"] == "simulated"
    assert batched.environment["devices"]["gpus"] == 8
    markdown = batched.to_markdown()
    if AFFECTED:
        assert batched.device_error and not batched.ok
        first = batched.first_mismatch
        assert first["op"] == "Tensor.gt" and first["devices"] == "cuda:0, cuda:1"
        assert first["code"] == MASK_CODE and first["file"].endswith("qwen2_5_vl/modeling_qwen2_5_vl.py")
        assert first["function"] == "_prepare_4d_causal_attention_mask_with_cache_position"
        bug_id = _catalogue_id("_prepare_4d_causal_attention_mask_with_cache_position")
        assert [b["id"] for b in batched.known_bugs] == [bug_id]
        for text in (MASK_CODE, f"modeling_qwen2_5_vl.py:{first['line']}", bug_id, "FAILED", "Tensor.gt"):
            assert text in markdown
        assert any("Upgrade transformers" in a for a in batched.advice)
    else:
        assert batched.ok and batched.first_mismatch is None and batched.known_bugs == []
        assert "passed" in markdown and "No device error" in markdown


def test_video_scenario_names_get_rope_index(video):
    if AFFECTED:
        first = video.first_mismatch
        assert first["function"] == "get_rope_index" and VIDEO_CODE in first["code"]
        assert first["devices"] == "cpu, cuda:0"
        assert [b["id"] for b in video.known_bugs] == [_catalogue_id("get_rope_index")]
        assert VIDEO_CODE in video.to_markdown()
    else:
        assert video.ok and video.known_bugs == []
    rope = video.frames["rope"]
    assert not rope.empty  # the rope-index function ran (and, on 4.x, raised) with its arguments recorded


def test_json_and_html_carry_the_same_facts(batched):
    data = json.loads(batched.to_json())
    assert data["error"] == batched.error and data["first_mismatch"] == batched.first_mismatch
    assert data["scenario"] == qd.Scenario.preset("seed-batched").to_dict()
    assert set(data["frames"]) == set(FRAMES)
    html = batched._repr_html_()
    assert "qwenvl-diag" in html and ("Tensor.gt" in html) == AFFECTED


def _state(model) -> tuple:
    module = torch.nn.modules.module
    return (
        {n: dict(vars(m)) for n, m in model.named_modules()},
        dict(module._global_forward_hooks),
        dict(module._global_forward_pre_hooks),
        torch._C._len_torch_function_stack(),
        torch.get_rng_state(),
    )


def test_diagnosis_leaves_model_inputs_and_torch_as_before():
    model, processor = qd.twin("Qwen/Qwen2.5-VL-7B-Instruct")
    inputs = qd.sample_inputs(processor, "video", second_per_grid_ts="tensor")
    saved = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
    with qd.simulated_gpus(1):
        qd.dispatch(model, {"": 0})
        gpu_inputs = qd.sample_inputs(processor, "video", second_per_grid_ts="tensor").to("cuda:0")
        before = _state(model)
        diagnosis = qd.diagnose(model, gpu_inputs, action="generate", max_new_tokens=2)
        after = _state(model)
    assert after[0] == before[0]  # no wrapped forward or rope method left on any module
    assert after[1:4] == before[1:4] and torch.equal(after[4], before[4])
    assert diagnosis.ok != AFFECTED
    for key, value in saved.items():
        assert (torch.equal(inputs[key], value)) if isinstance(value, torch.Tensor) else inputs[key] == value


def test_scenarios_round_trip_and_refuse_bad_fields():
    scenario = qd.Scenario.preset("seed-video")
    assert qd.Scenario.from_json(scenario.to_json()) == scenario
    for bad in (
        {"inputs": "speech"},
        {"action": "train"},
        {"gpus": 0},
        {"colour": "red"},
        {"devices": "tpu"},
    ):
        with pytest.raises(qd.QwenVLDiagError):
            qd.Scenario.from_dict({**scenario.to_dict(), **bad})
    # audio is a kind of its own: only an Omni thinker's scenario takes it, the others say so when run
    with pytest.raises(qd.UnknownInputKindError, match="'audio' inputs need an Omni thinker's processor"):
        qd.run(qd.Scenario.from_dict({**scenario.to_dict(), "inputs": "audio"}))
    with pytest.raises(qd.QwenVLDiagError, match="preset"):
        qd.Scenario.preset("nope")
    with pytest.raises(qd.QwenVLDiagError, match="Scenario"):
        qd.run({"model": "x"})


def test_doctor_cli_prints_the_report_and_exits_nonzero_on_failure(capsys):
    status = cli.main(["doctor", "--preset", "seed-video", "--format", "markdown"])
    out = capsys.readouterr().out
    assert status == (1 if AFFECTED else 0)
    assert "## qwenvl-diag" in out and ("get_rope_index" in out) == AFFECTED
    status = cli.main(
        ["doctor", "--model", "tiny/qwen2_5_vl", "--gpus", "2", "--inputs", "text", "--format", "json"]
    )
    assert status == 0 and json.loads(capsys.readouterr().out)["error"] is None
    status = cli.main(["doctor", "--model", "Qwen/Nope-VL", "--gpus", "2"])
    assert status == 2 and "Nope-VL" in capsys.readouterr().err


def test_a_non_qwen_model_gets_the_generic_frames_and_its_mismatch():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with qd.simulated_gpus(2):
        model.to("cuda:0")
        model.model.layers[1].to("cuda:1")  # moved by hand: nothing re-aligns its inputs
        diagnosis = qd.diagnose(model, {"input_ids": torch.tensor([[1, 2, 3]], device="cuda:0")})
    assert diagnosis.device_error
    assert diagnosis.first_mismatch["module"].startswith("model.layers.1.")
    assert diagnosis.known_bugs == [] and diagnosis.frames["rope"].empty
    assert not diagnosis.frames["tensors"].empty and not diagnosis.frames["placement"].empty
    assert any("move the tensor" in advice for advice in diagnosis.advice)
    assert "model.layers.1." in diagnosis.to_markdown()


def test_a_diagnosis_comes_back_from_its_json_with_its_frames(batched):
    again = qd.Diagnosis.from_dict(json.loads(batched.to_json()))
    assert (again.error, again.first_mismatch, again.known_bugs) == (
        batched.error,
        batched.first_mismatch,
        batched.known_bugs,
    )
    assert again.advice == batched.advice and again.environment == batched.environment
    assert again.scenario == batched.scenario and again.plan is None
    for name, frame in batched.frames.items():
        assert list(again.frames[name].columns) == list(frame.columns), name  # empty frames too
        assert len(again.frames[name]) == len(frame), name


@pytest.mark.parametrize("fps", [4.0, 2.0])
def test_the_silent_temporal_ids_bug_is_reported_only_where_the_release_has_it(fps):
    """A video at fps 4 on the installed release: the fps>2 entry is a known bug of the run exactly when
    the release is affected (4.51.3 and 5.24 are not), with the ids it gave; never at fps 2."""
    bug = get_bug("qwen2_5_vl-video-fps-temporal-ids")
    diagnosis = qd.run(qd.Scenario.preset("video-fps4", fps=fps))
    assert diagnosis.ok, diagnosis.error
    found = [b for b in diagnosis.known_bugs if b["id"] == bug.id]
    assert bool(found) == (fps > 2 and bug.affects(TRANSFORMERS_VERSION)), found
    # the rope-index function ran, and was given the seconds per step of that frame rate
    seconds = diagnosis.frames["rope"].query("argument == 'second_per_grid_ts'")["summary"].tolist()
    assert seconds and all(str(2 / fps) in text for text in seconds), seconds
