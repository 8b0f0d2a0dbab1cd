"""trace_devices: module calls, transfers and the op that mixed devices, on simulated GPUs."""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

import pytest
import torch
from accelerate import dispatch_model
from conftest import vision_apart_map
from transformers import LlamaConfig, LlamaForCausalLM

import qwenvl_diag as qd
from qwenvl_diag._compat import transformers_at_least
from qwenvl_diag.trace import MISMATCH_COLUMNS, TENSOR_COLUMNS, TRANSFER_COLUMNS, trace_devices

AFFECTED = not transformers_at_least("4.52.1")
MASK_LINE = (
    "diagonal_attend_mask = torch.arange(target_length, device=device) > cache_position.reshape(-1, 1)"
)


def _line_of(path: str, text: str) -> int:
    return next(i for i, line in enumerate(Path(path).read_text().splitlines(), 1) if text in line)


def _model_state(model) -> dict:
    return {
        "forward": {n: m.__dict__.get("forward") for n, m in model.named_modules()},
        "hooks": {n: (dict(m._forward_hooks), dict(m._forward_pre_hooks)) for n, m in model.named_modules()},
        "params": {n: (p.device, p.data_ptr()) for n, p in model.named_parameters()},
    }


def _torch_state() -> dict:
    module = torch.nn.modules.module
    return {
        "global_hooks": (dict(module._global_forward_hooks), dict(module._global_forward_pre_hooks)),
        "function_modes": torch._C._len_torch_function_stack(),
        "dispatch_modes": torch._C._len_torch_dispatch_stack(),
        "grad": torch.is_grad_enabled(),
        "rng": torch.get_rng_state(),
    }


def _assert_unchanged(before_model, before_torch, model) -> None:
    after_model, after_torch = _model_state(model), _torch_state()
    assert after_model == before_model
    assert after_torch["global_hooks"] == before_torch["global_hooks"]
    for key in ("function_modes", "dispatch_modes", "grad"):
        assert after_torch[key] == before_torch[key], key
    assert torch.equal(after_torch["rng"], before_torch["rng"])


def test_batched_failure_is_traced_to_its_line_and_the_model_is_left_as_it_was():
    model, processor = qd.twin("Qwen/Qwen2.5-VL-7B-Instruct")
    inputs = qd.sample_inputs(processor, "batch")
    saved_inputs = {k: v.clone() for k, v in inputs.items()}
    with qd.simulated_gpus(2):
        dispatch_model(model, vision_apart_map(model))
        before_model, before_torch = _model_state(model), _torch_state()
        trace = trace_devices(model, inputs, action="generate", max_new_tokens=2)
        _assert_unchanged(before_model, before_torch, model)
    assert all(torch.equal(inputs[k], v) and inputs[k].device == v.device for k, v in saved_inputs.items())
    assert list(trace.tensors.columns) == TENSOR_COLUMNS
    assert list(trace.transfers.columns) == TRANSFER_COLUMNS
    assert list(trace.mismatches.columns) == MISMATCH_COLUMNS
    vision = trace.tensors[trace.tensors["kind"] == "vision"]
    assert set(vision["execution_device"]) == {"cuda:0"}
    embed = trace.tensors[trace.tensors["kind"] == "embed"]
    assert set(embed["execution_device"]) == {"cuda:1"} and set(embed["input_devices"]) == {"cuda:0"}
    moves = set(zip(trace.transfers["from"], trace.transfers["to"], strict=True))
    assert ("cpu", "cuda:0") in moves and ("cuda:0", "cuda:1") in moves
    source = inspect.getsourcefile(type(model))
    if AFFECTED:
        assert isinstance(trace.error, RuntimeError)
        first = trace.first_mismatch
        code = MASK_LINE
        assert first["op"] == "Tensor.gt" and first["devices"] == "cuda:0, cuda:1"
        assert first["file"] == source and first["line"] == _line_of(source, code) and first["code"] == code
        assert first["function"] == "_prepare_4d_causal_attention_mask_with_cache_position"
        assert first["raised"] and first["error"] == str(trace.error)
        assert len(trace.mismatches) == 1  # the replay finds no false alarm before it
    else:
        assert trace.error is None and trace.first_mismatch is None and trace.mismatches.empty
        assert trace.output.shape[1] == inputs["input_ids"].shape[1] + 2


def test_video_failure_is_traced_to_get_rope_index():
    model, processor = qd.tiny_model("qwen2_5_vl")
    inputs = qd.sample_inputs(processor, "video", second_per_grid_ts="tensor")
    with qd.simulated_gpus(1):
        model.to("cuda:0")
        trace = trace_devices(model, inputs.to("cuda:0"))
    if AFFECTED:
        first = trace.first_mismatch
        assert first["devices"] == "cpu, cuda:0" and first["function"] == "get_rope_index"
        assert "time_tensor = expanded_range * second_per_grid_t" in first["code"]
        assert first["raised"]
    else:
        assert trace.error is None and trace.mismatches.empty


def test_a_non_qwen_model_gets_the_generic_frames_and_its_mismatch():
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    inputs = {"input_ids": torch.tensor([[1, 2, 3, 4]])}
    with qd.simulated_gpus(2):
        model.to("cuda:0")
        model.model.layers[1].to("cuda:1")  # moved by hand: no accelerate hook re-aligns its inputs
        trace = trace_devices(model, {k: v.to("cuda:0") for k, v in inputs.items()})
    assert isinstance(trace.error, RuntimeError)
    first = trace.first_mismatch
    assert first["module"].startswith("model.layers.1.")
    assert first["devices"] == "cuda:0, cuda:1" and first["raised"]
    assert first["error"] == str(trace.error)
    layer_rows = trace.tensors[trace.tensors["module"] == "model.layers.1"]
    assert list(layer_rows["execution_device"]) == ["cuda:1"]
    assert list(layer_rows["input_devices"]) == ["cuda:0"]  # its weights on cuda:1, its inputs on cuda:0


def test_a_passing_run_records_no_mismatch():
    model, processor = qd.tiny_model("qwen2_5_vl")
    inputs = qd.sample_inputs(processor, "image")
    with torch.no_grad():
        expected = model(**inputs).logits
    placed = copy.deepcopy(model)
    with qd.simulated_gpus(2):
        dispatch_model(placed, {"model.visual" if hasattr(placed.model, "visual") else "visual": 0, "": 1})
        trace = trace_devices(placed, inputs)
    assert trace.error is None and trace.mismatches.empty
    assert torch.equal(trace.output.logits, expected)


@pytest.mark.parametrize(
    "args, message",
    [
        (("not a model", {}), "nn.Module"),
        ((torch.nn.Linear(2, 2), [1, 2]), "dict or BatchFeature"),
        ((torch.nn.Linear(2, 2), {}, "backward"), "Unknown action"),
        ((torch.nn.Linear(2, 2), {}, "generate"), "has no generate"),
    ],
)
def test_bad_arguments_get_the_kits_error(args, message):
    before = _torch_state()
    with pytest.raises(qd.QwenVLDiagError, match=message):
        trace_devices(*args)
    after = _torch_state()
    assert after["global_hooks"] == before["global_hooks"]
    assert after["function_modes"] == before["function_modes"]


def test_a_convolution_type_error_is_a_device_mismatch_at_the_patch_embedding():
    # Convolution.cpp: a CUDA input takes cuDNN, whose branch refuses a CPU weight with a type error
    model, processor = qd.tiny_model("qwen2_5_vl")
    inputs = qd.sample_inputs(processor, "image")
    visual = model.model.visual if hasattr(model.model, "visual") else model.visual
    with qd.simulated_gpus(2):
        model.to("cuda:0")
        visual.patch_embed.proj.to("cpu")  # by hand: no hook moves the pixels to the weight
        trace = trace_devices(model, {k: v.to("cuda:0") for k, v in inputs.items()})
    assert str(trace.error) == "Input type (CUDAFloatType) and weight type (CPUFloatType) should be the same"
    first = trace.first_mismatch
    assert (first["op"], first["devices"], first["raised"]) == ("torch.conv3d", "cpu, cuda:0", True)
    assert first["module"].endswith("patch_embed.proj")
    assert first["file"] == inspect.getsourcefile(type(visual.patch_embed)) and "self.proj(" in first["code"]
