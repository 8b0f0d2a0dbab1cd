"""split_device_map: explicit maps cut at given decoder layers, from the model's own names, in both stacks."""

from __future__ import annotations

import bisect

import pytest
import torch
from conftest import vision_apart_map

import qwenvl_diag as qd

CHECKPOINT = "Qwen/Qwen2.5-VL-7B-Instruct"  # 28 decoder layers


@pytest.fixture(scope="module")
def twin_model():
    return qd.twin(CHECKPOINT)[0]


def test_no_split_with_the_vision_tower_apart_is_the_seed_layout_with_gpus_swapped(twin_model):
    device_map = qd.split_device_map(twin_model, [], vision_gpu=1)
    assert {key: 1 - gpu for key, gpu in device_map.items()} == vision_apart_map(twin_model)


@pytest.mark.parametrize("splits", [[14], [7, 14, 21], [1, 27]])
def test_layers_go_to_the_gpu_of_their_segment_and_the_rest_follows_its_neighbours(twin_model, splits):
    device_map = qd.split_device_map(twin_model, splits)
    layers = twin_model.get_submodule(
        next(n for n, _ in twin_model.named_modules() if n.endswith("embed_tokens")).rsplit(".", 1)[0]
    ).layers
    assert len(layers) == 28
    for name, module in twin_model.named_modules():
        if module in list(layers):
            assert device_map[name] == bisect.bisect_right(splits, list(layers).index(module)), name
        elif name.endswith("embed_tokens"):
            assert device_map[name] == 0
        elif name.endswith(("norm", "rotary_emb", "lm_head")) and name in device_map:
            assert device_map[name] == len(splits), name
    assert max(device_map.values()) == len(splits)


def test_a_checkpoint_name_a_plan_and_the_twin_give_the_same_map(twin_model):
    plan = qd.plan_device_map(CHECKPOINT, 2, "24GiB")
    by_name = qd.split_device_map(CHECKPOINT, [10], vision_gpu=1)
    assert by_name == qd.split_device_map(plan, [10], vision_gpu=1)
    assert by_name == qd.split_device_map(twin_model, [10], vision_gpu=1)


def test_the_map_plans_completely_and_is_flagged_when_the_vision_tower_is_apart():
    together = qd.plan_device_map(CHECKPOINT, 2, "24GiB", qd.split_device_map(CHECKPOINT, [14]))
    assert together.unplaced == [] and together.flags == []
    assert set(together.device_map.values()) == {0, 1}
    apart = qd.plan_device_map(CHECKPOINT, 2, "24GiB", qd.split_device_map(CHECKPOINT, [14], vision_gpu=1))
    assert [flag.code for flag in apart.flags] == ["vision_embed_apart"]


@pytest.mark.parametrize(
    "splits,vision_gpu,message",
    [
        ([30], 0, "lie in 1..27 (the model has 28 decoder layers)"),
        ([0], 0, "lie in 1..27"),
        ([14, 7], 0, "increase strictly"),
        ([14, 14], 0, "increase strictly"),
        (["14"], 0, "a list of ints"),
        ([True], 0, "a list of ints"),
        ([14], -1, "vision_gpu must be a GPU index"),
        ([14], "1", "vision_gpu must be a GPU index"),
    ],
)
def test_bad_split_points_say_what_is_expected(splits, vision_gpu, message):
    with pytest.raises(qd.PlacementError, match=message.replace("(", r"\(").replace(")", r"\)")):
        qd.split_device_map(CHECKPOINT, splits, vision_gpu=vision_gpu)


def test_a_model_without_a_vision_tower_or_of_the_wrong_kind_is_refused():
    with pytest.raises(qd.PlacementError, match="needs a Qwen-VL model"):
        qd.split_device_map(torch.nn.Linear(2, 2), [1])
    with pytest.raises(qd.PlacementError, match="shipped checkpoint name, a DevicePlan"):
        qd.split_device_map(42, [1])
    with pytest.raises(qd.UnknownCheckpointError):
        qd.split_device_map("Qwen/NotAModel", [1])


def test_a_plan_says_where_a_module_lands_by_path_or_last_name():
    apart = qd.plan_device_map(CHECKPOINT, 2, "24GiB", qd.split_device_map(CHECKPOINT, [14], vision_gpu=1))
    assert apart.devices_of("visual") == ["cuda:1"] and apart.devices_of("embed_tokens") == ["cuda:0"]
    vision_path = next(name for name in apart.module_names if name.endswith("visual"))
    assert apart.devices_of(vision_path) == ["cuda:1"]
    assert apart.devices_of(f"{vision_path}.blocks.0") == ["cuda:1"]  # inside a placed module
    everything = next(
        name for name in apart.module_names if name.endswith("language_model") or name == "model"
    )
    assert apart.devices_of(everything) == ["cuda:0", "cuda:1"]  # split: every device, GPUs in order
    with pytest.raises(qd.PlacementError, match="has no module 'vision_tower'"):
        apart.devices_of("vision_tower")
