"""The rope-index capture: found by introspection, calls bound by name, the instance restored exactly,
positions per token, the plot, and the failing video call recorded with its arguments."""

from __future__ import annotations

import inspect
import sys

import matplotlib
import pytest
import torch
from accelerate import dispatch_model
from conftest import family_available, vision_apart_map
from test_seed_failures import SAME_DEVICE
from transformers import GPT2Config, GPT2LMHeadModel

import qwenvl_diag as qd
from qwenvl_diag._compat import TRANSFORMERS_VERSION
from qwenvl_diag.bugs import get_bug
from qwenvl_diag.rope import ROPE_FUNCTION, RopeCall, find_rope_index, required_arguments
from qwenvl_diag.values import value_summary

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

VIDEO_AFFECTED = get_bug("qwen2_5_vl-video-second-per-grid-ts").affects(TRANSFORMERS_VERSION)
FAMILIES = [f for f in qd.FAMILIES if family_available(f)]


@pytest.fixture(scope="module")
def qwen25():
    return qd.tiny_model("qwen2_5_vl")


def _video(processor, form="tensor", fps=2.0):
    return qd.sample_inputs(processor, "video", second_per_grid_ts=form, fps=fps)


def _instance_state(model, run_cache: bool = True) -> dict:
    """Every module's __dict__ as (key, object identity) pairs, in order. `run_cache=False` leaves out
    the identity of `rope_deltas`, which the model's own run re-caches (its key and place still count)."""
    return {
        name: [(k, id(v) if run_cache or k != "rope_deltas" else None) for k, v in vars(m).items()]
        for name, m in model.named_modules()
    }


def _tiny_gpt2():
    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_rope_function_is_found_where_the_release_defines_it(family):
    model, _ = qd.tiny_model(family)
    path, owner = find_rope_index(model)
    assert owner is model.get_submodule(path)
    # the deepest owner, not a wrapper delegating to it (the Omni thinkers inherit it from a mixin)
    assert not any(callable(getattr(m, ROPE_FUNCTION, None)) for name, m in owner.named_modules() if name)
    signature = inspect.signature(getattr(owner, ROPE_FUNCTION))
    assert "input_ids" in signature.parameters
    assert find_rope_index(_tiny_gpt2()) is None


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_records_one_call_per_forward_with_its_arguments_by_name(family):
    model, processor = qd.tiny_model(family)
    inputs = qd.sample_inputs(processor, "image")
    frame = qd.rope_inputs_frame(model, inputs)
    assert list(frame.columns) == qd.ROPE_INPUT_COLUMNS
    assert frame["call"].unique().tolist() == [0]
    rows = frame.set_index("argument")
    assert rows.loc["input_ids", "shape"] == tuple(inputs["input_ids"].shape)
    assert rows.loc["input_ids", "device"] == "cpu" and rows.loc["input_ids", "dtype"] == "int64"
    assert rows.loc["image_grid_thw", "summary"] == str(inputs["image_grid_thw"].tolist())
    assert rows.loc["video_grid_thw", "type"] == "NoneType" and rows.loc["video_grid_thw", "device"] == ""
    assert frame.attrs["error"] is None and frame.attrs["errors"] == [None]
    positions = qd.rope_positions_frame(model, inputs)
    assert (positions["token_type"] == "image").sum() == int(inputs["image_grid_thw"].prod()) // 4


def test_capture_binds_every_call_and_restores_the_instance_exactly(qwen25):
    model, processor = qwen25
    inputs = _video(processor)
    path, owner = find_rope_index(model)
    before = _instance_state(model, run_cache=False)
    with qd.capture_rope(model) as rope, torch.no_grad():
        assert vars(owner)[ROPE_FUNCTION] is not None  # wrapped on the instance while recording
        model(**inputs)
        model(**inputs)
    assert _instance_state(model, run_cache=False) == before
    assert ROPE_FUNCTION not in vars(owner)
    assert [call.index for call in rope] == [0, 1] and rope.module == path
    call = rope.calls[0]
    assert call.arguments["second_per_grid_ts"] is inputs["second_per_grid_ts"]
    assert call.arguments["video_grid_thw"] is inputs["video_grid_thw"]
    assert call.returned and call.error is None
    assert call.position_ids.shape == (3, *inputs["input_ids"].shape)
    assert rope.function.endswith("." + ROPE_FUNCTION)


def test_capture_restores_a_user_wrapper_and_unwinds_when_the_block_raises(qwen25):
    model, processor = qwen25
    _, owner = find_rope_index(model)
    users_own = getattr(owner, ROPE_FUNCTION)
    vars(owner)[ROPE_FUNCTION] = users_own  # a user who already wrapped it on the instance
    try:
        before = _instance_state(model)
        with pytest.raises(ValueError, match="boom"), qd.capture_rope(model):
            raise ValueError("boom")
        assert _instance_state(model) == before
        assert vars(owner)[ROPE_FUNCTION] is users_own
    finally:
        del vars(owner)[ROPE_FUNCTION]


def test_the_failing_video_call_is_recorded_with_its_arguments_and_the_error_is_attached(qwen25):
    model, processor = qwen25
    inputs = _video(processor)
    rope_deltas = {n: vars(m).get("rope_deltas") for n, m in model.named_modules()}
    with qd.simulated_gpus(1):
        model.to("cuda:0")
        gpu_inputs = inputs.to("cuda:0")
        before = _instance_state(model)
        frame = qd.rope_inputs_frame(model, gpu_inputs)
        assert _instance_state(model) == before
        assert {n: vars(m).get("rope_deltas") for n, m in model.named_modules()} == rope_deltas
        row = frame.set_index("argument").loc["second_per_grid_ts"]
        assert (row["type"], row["device"], row["dtype"], row["summary"]) == (
            "Tensor",
            "cuda:0",
            "float32",
            "[1.0]",
        )
        error = frame.attrs["error"]
        if VIDEO_AFFECTED:
            assert isinstance(error, RuntimeError) and str(error) == f"{SAME_DEVICE}cuda:0 and cpu!"
            assert frame.attrs["errors"] == [f"RuntimeError: {error}"]
            with pytest.raises(qd.NoRopePositionsError, match="raised RuntimeError: Expected all tensors"):
                qd.rope_positions_frame(model, gpu_inputs)
        else:
            assert error is None and frame.attrs["errors"] == [None]
            assert not qd.rope_positions_frame(model, gpu_inputs).empty
        model.to("cpu")


def test_generate_is_captured_and_kwargs_entries_are_named(qwen25):
    model, processor = qwen25
    inputs = _video(processor, form="list")
    frame = qd.rope_inputs_frame(model, inputs, action="generate", max_new_tokens=2)
    assert frame.attrs["error"] is None and len(frame.attrs["errors"]) >= 1
    row = frame[frame["argument"] == "second_per_grid_ts"].iloc[0]
    assert (row["type"], row["device"], row["shape"], row["summary"]) == ("list[float]", "", (1,), "[1.0]")
    variadic = [p.name for p in find_rope_signature(model).parameters.values() if p.kind is p.VAR_KEYWORD]
    extra = [a for a in frame["argument"] if "." in a]
    assert all(a.split(".")[0] in variadic for a in extra)


def find_rope_signature(model) -> inspect.Signature:
    return inspect.signature(getattr(find_rope_index(model)[1], ROPE_FUNCTION))


def test_inputs_without_a_required_argument_leave_a_note_instead_of_calls(qwen25):
    model, processor = qwen25
    inputs = dict(qd.sample_inputs(processor, "image"))
    inputs.pop("mm_token_type_ids", None)
    frame = qd.rope_inputs_frame(model, inputs)
    if "mm_token_type_ids" in required_arguments(find_rope_signature(model)):  # transformers 5.x
        assert frame.empty and "mm_token_type_ids" in frame.attrs["note"]
        assert list(frame.columns) == qd.ROPE_INPUT_COLUMNS
    else:
        assert not frame.empty and "note" not in frame.attrs


@pytest.mark.parametrize("fps", [2.0, 1.0])
def test_video_frames_are_spaced_by_tokens_per_second_times_seconds_per_grid(qwen25, fps):
    model, processor = qwen25
    inputs = _video(processor, form="list", fps=fps)
    positions = qd.rope_positions_frame(model, inputs)
    assert list(positions.columns) == qd.ROPE_POSITION_COLUMNS
    video = positions[positions["token_type"] == "video"]
    grid_t, grid_h, grid_w = inputs["video_grid_thw"][0].tolist()
    assert len(video) == grid_t * grid_h * grid_w // 4
    step = model.config.vision_config.tokens_per_second * inputs["second_per_grid_ts"][0]
    times = sorted(set(video["t"]))
    assert len(times) == grid_t and times[1] - times[0] == int(step)
    kinds = positions["token_type"].tolist()
    assert kinds[kinds.index("video") - 1] == "vision_start"
    assert kinds[len(kinds) - 1 - kinds[::-1].index("video") + 1] == "vision_end"
    text = positions[positions["token_type"] == "text"]
    assert (text["t"] == text["h"]).all() and (text["h"] == text["w"]).all()


def test_padded_rows_are_marked_and_calls_can_be_chosen(qwen25):
    model, processor = qwen25
    inputs = qd.sample_inputs(processor, "batch")
    with qd.capture_rope(model) as rope, torch.no_grad():
        model(**inputs)
    positions = qd.rope_positions_frame(rope)
    assert positions.equals(qd.rope_positions_frame(rope.calls[0]))
    assert positions.equals(qd.rope_positions_frame(rope, call=0))
    assert len(positions) == inputs["input_ids"].numel()
    assert (positions["token_type"] == "pad").sum() == int((inputs["attention_mask"] == 0).sum())
    assert set(positions["batch"]) == {0, 1}
    with pytest.raises(qd.InvalidArgumentError, match="call must be an index below 1"):
        qd.rope_positions_frame(rope, call=3)
    with pytest.raises(qd.InvalidArgumentError, match="Expected a RopeCapture"):
        qd.rope_positions_frame("positions")
    with pytest.raises(qd.InvalidArgumentError, match="pass the inputs"):
        qd.rope_positions_frame(model)
    raised = RopeCall(0, {"input_ids": inputs["input_ids"]}, error=RuntimeError("x"))
    with pytest.raises(qd.NoRopePositionsError, match="Call 0 raised RuntimeError: x"):
        qd.rope_positions_frame(raised)


def test_the_plot_shows_three_streams_and_marks_video_time_steps(qwen25):
    model, processor = qwen25
    inputs = _video(processor, form="list")
    positions = qd.rope_positions_frame(model, inputs)
    figure = qd.plot_rope_positions(positions)
    ax = figure.axes[0]
    assert [line.get_label() for line in ax.lines[:3]] == ["t", "h", "w"]
    assert [p.get_label() for p in ax.patches] == ["video tokens"]
    steps = [line for line in ax.lines[3:] if line.get_linestyle() == "-."]
    assert len(steps) == inputs["video_grid_thw"][0, 0].item() - 1
    plt.close(figure)
    _, ax = plt.subplots()
    assert qd.plot_rope_positions(positions, ax=ax) is ax.figure
    plt.close(ax.figure)
    with pytest.raises(qd.InvalidArgumentError, match="No tokens for batch 5"):
        qd.plot_rope_positions(positions, batch=5)
    with pytest.raises(qd.InvalidArgumentError, match="takes the frame of qd.rope_positions_frame"):
        qd.plot_rope_positions(positions.drop(columns="t"))


def test_the_plot_without_matplotlib_says_how_to_install_it(qwen25, monkeypatch):
    model, processor = qwen25
    positions = qd.rope_positions_frame(model, qd.sample_inputs(processor, "image"))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(qd.QwenVLDiagError, match=r"Plots need matplotlib: pip install"):
        qd.plot_rope_positions(positions)


def test_a_model_without_a_rope_function_gets_not_qwen_vl():
    model = _tiny_gpt2()
    before = _instance_state(model)
    inputs = {"input_ids": torch.tensor([[1, 2, 3]])}
    for call in (lambda: qd.rope_inputs_frame(model, inputs), lambda: qd.capture_rope(model).__enter__()):
        with pytest.raises(
            qd.NotQwenVLError, match="GPT2LMHeadModel has no get_rope_index.*qd.trace_devices"
        ):
            call()
    assert _instance_state(model) == before


def test_bad_arguments_get_the_kits_errors(qwen25):
    model, processor = qwen25
    inputs = qd.sample_inputs(processor, "image")
    with pytest.raises(qd.InvalidArgumentError, match="inputs must be a dict"):
        qd.rope_inputs_frame(model, [inputs["input_ids"]])
    with pytest.raises(qd.InvalidArgumentError, match="action must be one of forward, generate"):
        qd.rope_inputs_frame(model, inputs, action="train")
    with pytest.raises(qd.InvalidArgumentError, match="Expected a torch.nn.Module"):
        qd.rope_inputs_frame("Qwen/Qwen2.5-VL-7B-Instruct", inputs)


def test_a_dispatched_model_is_captured_and_left_as_it_was():
    model, processor = qd.tiny_model("qwen2_5_vl")
    inputs = qd.sample_inputs(processor, "image")
    with qd.simulated_gpus(2):
        dispatch_model(model, vision_apart_map(model))
        forwards = {n: vars(m).get("forward") for n, m in model.named_modules()}
        before = _instance_state(model)
        frame = qd.rope_inputs_frame(model, inputs)
        assert _instance_state(model) == before
        assert {n: vars(m).get("forward") for n, m in model.named_modules()} == forwards
        devices = frame.set_index("argument")["device"]
        assert devices["input_ids"] == devices["image_grid_thw"] == "cuda:0"  # moved by the root hook


def test_value_summaries():
    assert value_summary(torch.arange(20)) == "min=0 max=19 first=[0, 1, 2, 3, ...]"
    assert value_summary(torch.tensor(2.5)) == "2.5"
    assert value_summary(torch.zeros(0)) == "empty"
    assert value_summary([0.5] * 10) == "[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, ... (10 items)]"
    assert value_summary([torch.ones(2, 3)]) == "1 tensors of shapes (2, 3)"
    assert value_summary(torch.ones(2, device="meta")) == "no data (meta device)"
    assert value_summary(object()) == "object"
    with qd.simulated_gpus(1):
        on_gpu = torch.tensor([[1, 4, 4]], device="cuda:0")
        assert value_summary(on_gpu) == "[[1, 4, 4]]"
