"""check_inputs: per input key, where it is, where the model computes, and a verdict that agrees with
what the model then does (raise or pass) on simulated GPUs."""

from __future__ import annotations

import inspect

import pytest
import torch
from accelerate import dispatch_model
from accelerate.hooks import ModelHook, add_hook_to_module
from conftest import vision_apart_map
from transformers import GPT2Config, GPT2LMHeadModel

import qwenvl_diag as qd
from qwenvl_diag._compat import TRANSFORMERS_VERSION
from qwenvl_diag.bugs import get_bug
from qwenvl_diag.rope import find_rope_index, required_arguments

VIDEO_BUG = get_bug("qwen2_5_vl-video-second-per-grid-ts")
VIDEO_AFFECTED = VIDEO_BUG.affects(TRANSFORMERS_VERSION)


def _inputs_state(inputs) -> list:
    return [(k, id(v), str(v.device) if isinstance(v, torch.Tensor) else repr(v)) for k, v in inputs.items()]


def _model_state(model) -> dict:
    return {
        "dicts": {n: [(k, id(v)) for k, v in vars(m).items()] for n, m in model.named_modules()},
        "params": {n: (str(p.device), p.data_ptr()) for n, p in model.named_parameters()},
    }


def _fresh(kind="video", form="tensor"):
    model, processor = qd.tiny_model("qwen2_5_vl")
    extra = {"second_per_grid_ts": form} if kind == "video" else {}
    return model, qd.sample_inputs(processor, kind, **extra)


def _raises(model, inputs) -> bool:
    try:
        with torch.no_grad():
            model(**inputs)
    except (RuntimeError, TypeError):
        return True
    return False


def test_a_cpu_model_with_cpu_inputs_is_all_ok_and_a_dict_reads_the_same():
    model, inputs = _fresh("image")
    frame = qd.check_inputs(inputs, model)
    assert (
        list(frame.columns) == qd.CHECK_COLUMNS == ["key", "type", "device", "expected_device", "ok", "why"]
    )
    assert frame["key"].tolist() == list(inputs)
    assert frame["ok"].all() and set(frame["expected_device"]) == {"cpu"}
    assert frame.set_index("key").loc["input_ids", "why"] == "On cpu, where the model computes."
    assert frame.equals(qd.check_inputs(dict(inputs), model))


def test_cpu_inputs_for_a_model_moved_to_a_gpu_are_flagged_and_the_run_fails():
    model, inputs = _fresh("video", "tensor")
    with qd.simulated_gpus(1):
        model.to("cuda:0")
        frame = qd.check_inputs(inputs, model).set_index("key")
        assert not frame.loc["input_ids", "ok"]
        assert "not dispatched, so nothing moves inputs" in frame.loc["input_ids", "why"]
        assert "inputs = inputs.to('cuda:0')" in frame.loc["input_ids", "why"]
        assert frame.loc["second_per_grid_ts", "ok"]  # a CPU second_per_grid_ts is right where it is
        assert "stays on the CPU" in frame.loc["second_per_grid_ts", "why"]
        assert _raises(model, inputs)


@pytest.mark.parametrize("form", ["tensor", "list"])
@pytest.mark.parametrize("layout", ["one GPU, inputs.to", "two GPUs, dispatched, CPU inputs"])
def test_the_verdict_predicts_whether_the_run_raises(layout, form):
    model, inputs = _fresh("video", form)
    with qd.simulated_gpus(2):
        if layout.startswith("one"):
            model.to("cuda:0")
            inputs = inputs.to("cuda:0")
        else:
            dispatch_model(model, vision_apart_map(model))
        frame = qd.check_inputs(inputs, model)
        row = frame.set_index("key").loc["second_per_grid_ts"]
        assert set(frame["expected_device"]) == {"cuda:0"}
        if form == "list":
            assert row["ok"] and row["type"] == "list[float]" and row["device"] == ""
            assert f"never triggers the video bug {VIDEO_BUG.id}" in row["why"]
        elif VIDEO_AFFECTED:
            assert not row["ok"] and VIDEO_BUG.id in row["why"] and ".tolist()" in row["why"]
            moved = "accelerate's root hook moves it to cuda:0"
            assert (moved in row["why"]) == layout.startswith("two")
        else:
            assert row["ok"]
        assert frame["ok"].all() == (not _raises(model, inputs))


def test_cpu_inputs_of_a_dispatched_model_are_fine_because_the_root_hook_moves_them():
    model, inputs = _fresh("image")
    with qd.simulated_gpus(2):
        dispatch_model(model, vision_apart_map(model))
        frame = qd.check_inputs(inputs, model).set_index("key")
        assert frame["ok"].all() and set(frame["device"]) == {"cpu"}
        assert "accelerate's root hook moves it to cuda:0" in frame.loc["pixel_values", "why"]
        assert not _raises(model, inputs)
        on_gpu = qd.check_inputs(inputs.to("cuda:0"), model).set_index("key")
        assert on_gpu.loc["input_ids", "why"].startswith("Already on cuda:0")


def test_skip_keys_and_a_sequential_root_hook():
    model, inputs = _fresh("image")
    with qd.simulated_gpus(2):
        dispatch_model(model, vision_apart_map(model), skip_keys=["attention_mask"])
        add_hook_to_module(model, ModelHook(), append=True)  # the root hook is now a SequentialHook
        assert type(model._hf_hook).__name__ == "SequentialHook"
        frame = qd.check_inputs(inputs, model).set_index("key")
        assert set(frame["expected_device"]) == {"cuda:0"}
        assert frame.loc["input_ids", "ok"]
        assert not frame.loc["attention_mask", "ok"]
        assert "not moved by accelerate's hook (a skip key)" in frame.loc["attention_mask", "why"]


def test_a_missing_required_rope_argument_gets_its_own_row():
    model, inputs = _fresh("image")
    inputs = dict(inputs)
    inputs.pop("mm_token_type_ids", None)
    frame = qd.check_inputs(inputs, model)
    required = required_arguments(inspect.signature(find_rope_index(model)[1].get_rope_index))
    missing = frame[frame["type"] == "missing"]
    if "mm_token_type_ids" in required:  # transformers 5.x
        assert missing["key"].tolist() == ["mm_token_type_ids"]
        assert not missing["ok"].any() and "silently uses 1-D text positions" in missing["why"].iloc[0]
    else:
        assert missing.empty
    text_only = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
    assert (
        qd.check_inputs(text_only, model)["type"] != "missing"
    ).all()  # no images: positions are 1-D anyway


def test_a_key_forward_does_not_take_is_flagged_only_where_it_raises():
    model, inputs = _fresh("image")
    inputs = {**inputs, "fps": 2.0}
    row = qd.check_inputs(inputs, model).set_index("key").loc["fps"]
    takes_any = any(
        p.kind is p.VAR_KEYWORD for p in inspect.signature(type(model).forward).parameters.values()
    )
    assert row["ok"] == takes_any
    if not takes_any:
        assert "forward() takes no argument 'fps'" in row["why"]
        with pytest.raises(TypeError, match="fps"):
            model(**inputs)


def test_lists_of_tensors_none_and_numbers():
    model, inputs = _fresh("image")
    with qd.simulated_gpus(1):
        model.to("cuda:0")
        values = {"pixel_values": [inputs["pixel_values"]], "attention_mask": None, "use_cache": True}
        frame = qd.check_inputs(values, model).set_index("key")
        assert (
            frame.loc["pixel_values", "type"] == "list[Tensor]"
            and frame.loc["pixel_values", "device"] == "cpu"
        )
        assert not frame.loc["pixel_values", "ok"]
        assert frame.loc["attention_mask", "why"] == "None: nothing to place."
        assert frame.loc["use_cache", "why"] == "A bool, not a tensor: nothing to place."


def test_a_model_that_is_not_qwen_vl_gets_the_generic_rows():
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32))
    frame = qd.check_inputs({"input_ids": torch.tensor([[1, 2]]), "image_grid_thw": torch.ones(1, 3)}, model)
    assert frame["key"].tolist() == ["input_ids", "image_grid_thw"] and frame["ok"].all()


def test_neither_the_inputs_nor_the_model_change():
    model, inputs = _fresh("video", "tensor")
    with qd.simulated_gpus(2):
        dispatch_model(model, vision_apart_map(model))
        inputs_before, model_before = _inputs_state(inputs), _model_state(model)
        qd.check_inputs(inputs, model)
        assert _inputs_state(inputs) == inputs_before
        assert _model_state(model) == model_before


def test_wrong_kinds_get_the_kits_error():
    model, inputs = _fresh("image")
    with pytest.raises(
        qd.InvalidArgumentError, match="inputs must be a dict or the processor's BatchFeature"
    ):
        qd.check_inputs(inputs["input_ids"], model)
    with pytest.raises(qd.InvalidArgumentError, match="model must be a torch.nn.Module; got str"):
        qd.check_inputs(inputs, "Qwen/Qwen2.5-VL-7B-Instruct")
    with pytest.raises(qd.InvalidArgumentError, match="model must be a torch.nn.Module; got BatchFeature"):
        qd.check_inputs(model, inputs)  # arguments swapped
