"""Sample inputs: built through qwen-vl-utils and the real processor, deterministic, per release."""

from __future__ import annotations

import pytest
import torch

import qwenvl_diag as qd
from qwenvl_diag._compat import transformers_at_least


def test_batch_is_two_prompts_left_padded(tiny_qwen25):
    _, processor = tiny_qwen25
    inputs = qd.sample_inputs(processor, "batch")
    mask = inputs["attention_mask"]
    assert mask.shape[0] == 2
    lengths = mask.sum(dim=1).tolist()
    assert lengths[0] != lengths[1]
    shorter = min(range(2), key=lambda i: lengths[i])
    assert mask[shorter, 0] == 0 and mask[shorter, -1] == 1  # padding on the left
    assert inputs["image_grid_thw"][0].tolist() != inputs["image_grid_thw"][1].tolist()


def test_inputs_are_deterministic(tiny_qwen25):
    _, processor = tiny_qwen25
    first, second = qd.sample_inputs(processor, "video"), qd.sample_inputs(processor, "video")
    assert torch.equal(first["pixel_values_videos"], second["pixel_values_videos"])
    assert torch.equal(first["input_ids"], second["input_ids"])


def test_second_per_grid_ts_as_the_installed_processor_returns_it(tiny_qwen25):
    _, processor = tiny_qwen25
    value = qd.sample_inputs(processor, "video")["second_per_grid_ts"]
    if transformers_at_least("4.52.0"):  # from 4.52 the processor returns a float32 CPU tensor
        assert isinstance(value, torch.Tensor) and value.dtype == torch.float32
        assert value.tolist() == [1.0]
    else:  # through 4.51.3 a Python list, which inputs.to(...) leaves alone
        assert value == [1.0]


@pytest.mark.parametrize("fps, expected", [(2.0, 1.0), (4.0, 0.5)])
def test_second_per_grid_ts_is_temporal_patch_over_fps(tiny_qwen25, fps, expected):
    _, processor = tiny_qwen25
    as_tensor = qd.sample_inputs(processor, "video", second_per_grid_ts="tensor", fps=fps)[
        "second_per_grid_ts"
    ]
    as_list = qd.sample_inputs(processor, "video", second_per_grid_ts="list", fps=fps)["second_per_grid_ts"]
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.device.type == "cpu"
    assert as_tensor.tolist() == [expected]
    assert as_list == [expected]


def test_text_inputs_carry_no_pixels(tiny_qwen25):
    _, processor = tiny_qwen25
    inputs = qd.sample_inputs(processor, "text")
    assert not any(key.startswith("pixel_values") for key in inputs)
