"""Placement: plans equal the installed from_pretrained's maps, fit the twins name for name, flag risky
layouts, and show as frames and plots. No weights are loaded and nothing is dispatched to GPUs here.

The reference maps are computed without the kit (tests/planner_reference.py, which also checks every
minor release in the version lab: tests/test_releases.py).
"""

from __future__ import annotations

import copy
import json
import re
import sys
from contextlib import contextmanager

import matplotlib
import psutil
import pytest
import torch
import transformers
from conftest import checkpoint_available, refusal
from planner_reference import reference_map as _reference_map
from planner_reference import reference_model as _reference_model
from transformers import AutoConfig

import qwenvl_diag as qd
from qwenvl_diag._compat import TRANSFORMERS_5
from qwenvl_diag.models.catalog import checkpoint_config
from qwenvl_diag.placement.plan import _meta_model

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GIB = 2**30
GPUS = (1, 2, 4, 8)
MEMORY = ("24GiB", "40GiB", "80GiB")
LAYOUTS = [(g, m, s) for g in GPUS for m in MEMORY for s in qd.STRATEGIES]
SMALL, MID = "Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct"


def _max_memory(gpus: int, memory: str, cpu: int) -> dict:
    per_gpu = int(memory.removesuffix("GiB")) * GIB
    return {i: per_gpu for i in range(gpus)} | {"cpu": cpu}


def _placing_key(name: str, device_map: dict) -> str | None:
    """The longest key of `device_map` that is `name` or one of its ancestors."""
    keys = [k for k in device_map if k == "" or name == k or name.startswith(k + ".")]
    return max(keys, key=len) if keys else None


def _devices_of(module: str, device_map: dict, model: torch.nn.Module) -> set:
    inside = [n for n, _ in model.named_parameters(remove_duplicate=False) if n.startswith(module + ".")]
    return {device_map[_placing_key(n, device_map)] for n in inside}


def _named(model: torch.nn.Module, last: str) -> str:
    return min((n for n, _ in model.named_modules() if n.split(".")[-1] == last), key=len)


# ---------------------------------------------------------------- (a) plans equal the installed planner


@pytest.mark.parametrize("gpus,memory,strategy", LAYOUTS, ids=[f"{g}x{m}-{s}" for g, m, s in LAYOUTS])
@pytest.mark.parametrize("checkpoint", list(qd.twins()["checkpoint"]))
def test_plan_equals_the_installed_planner(checkpoint, gpus, memory, strategy):
    if not checkpoint_available(checkpoint):
        with pytest.raises(qd.UnsupportedReleaseError, match=refusal(checkpoint)):
            qd.plan_device_map(checkpoint, gpus, memory, strategy)
        return
    plan = qd.plan_device_map(checkpoint, gpus=gpus, memory=memory, strategy=strategy)
    cpu = plan.max_memory["cpu"]
    assert plan.max_memory == _max_memory(gpus, memory, cpu)
    assert 0.5 < cpu / psutil.virtual_memory().available < 2  # the RAM accelerate reads, not a made-up figure
    model = _reference_model(checkpoint)
    expected = _reference_map(model, strategy, plan.max_memory)
    assert list(plan.device_map.items()) == list(expected.items())  # order too: dispatch's main device
    params = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    assert [n for n in params if _placing_key(n, plan.device_map) is None] == []
    assert set(plan.device_map.values()) <= {*range(gpus), "cpu", "disk"}
    assert (plan.strategy, plan.gpus, plan.memory, plan.dtype) == (
        strategy,
        gpus,
        plan.max_memory[0],
        "bfloat16",
    )
    vision, embed = _named(model, "visual"), _named(model, "embed_tokens")
    apart = _devices_of(vision, expected, model) != _devices_of(embed, expected, model)
    assert ("vision_embed_apart" in {f.code for f in plan.flags}) == apart


@pytest.mark.parametrize("checkpoint", [c for c in list(qd.twins()["checkpoint"]) if checkpoint_available(c)])
def test_plans_are_made_on_the_meta_device_without_weights(checkpoint):
    plan = qd.plan_device_map(checkpoint, 2, "24GiB", "balanced")
    model = _meta_model(
        json.dumps(checkpoint_config(checkpoint), sort_keys=True, default=str), "bfloat16", None
    )
    assert {p.device.type for p in model.parameters()} == {"meta"}
    # the model's own config says (an Omni thinker's config.json has no such key: its class's default)
    tied = model.config.tie_word_embeddings
    assert plan.tie_word_embeddings is tied
    named = _reference_model(checkpoint).named_parameters()
    real = sum(p.numel() for n, p in named if not (tied and n == "lm_head.weight"))  # a tied weight once
    assert sum(plan.module_params.values()) == real > 5e8  # 0.8B to 72B parameters, no memory
    assert sum(plan.module_bytes.values()) >= 2 * real  # bfloat16 weights (+ float32 rotary buffers)


@pytest.mark.parametrize("dtype,size", [("float16", 2), ("float32", 4), (torch.float32, 4)])
def test_plans_in_other_dtypes_equal_the_installed_planner(dtype, size):
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    plan = qd.plan_device_map(SMALL, 4, "24GiB", "balanced", dtype=dtype)
    model = _reference_model(SMALL, torch_dtype)
    assert plan.device_map == _reference_map(model, "balanced", plan.max_memory, torch_dtype)
    assert plan.dtype == str(torch_dtype).removeprefix("torch.")
    frame = qd.device_map_frame(plan)
    decoder = frame[frame["kind"] == "decoder"].iloc[0]
    buffers = sum(b.numel() * b.element_size() for b in model.get_submodule(decoder["module"]).buffers())
    assert decoder["bytes"] == size * decoder["params"] + buffers  # 4.51.3 layers hold a float32 rotary_emb
    assert decoder["dtype"] == plan.dtype


def test_a_config_dict_object_or_directory_plans_like_the_checkpoint_name(tmp_path):
    by_name = qd.plan_device_map(MID, 8, "24GiB", "balanced")
    raw = checkpoint_config(MID)
    (tmp_path / "config.json").write_text(json.dumps(raw))
    for source in (raw, AutoConfig.for_model(**copy.deepcopy(raw)), tmp_path, str(tmp_path)):
        assert qd.plan_device_map(source, 8, "24GiB", "balanced").device_map == by_name.device_map
    assert raw == checkpoint_config(MID)  # the caller's dict is not modified


def test_no_split_override_changes_the_plan_and_leaves_the_cached_default_alone():
    default = qd.plan_device_map(MID, 4, "24GiB", "balanced")
    block = "Qwen2_5_VLVisionBlock"
    override = qd.plan_device_map(MID, 4, "24GiB", "balanced", no_split_module_classes=[block])
    assert override.no_split_module_classes == [block]
    expected = _reference_map(_reference_model(MID), "balanced", override.max_memory, no_split=[block])
    assert override.device_map == expected
    # decoder layers may now be split: the map reaches inside model(.language_model).layers.N
    assert any(re.search(r"\.layers\.\d+\.", k) for k in override.device_map)
    assert not any(re.search(r"\.layers\.\d+\.", k) for k in default.device_map)
    again = qd.plan_device_map(MID, 4, "24GiB", "balanced")
    assert again.device_map == default.device_map
    assert again.no_split_module_classes == sorted(_reference_model(MID)._no_split_modules)


def test_plan_to_json_round_trips_the_map():
    plan = qd.plan_device_map(MID, 4, "24GiB", "balanced_low_0")
    data = json.loads(plan.to_json())
    assert data["device_map"] == plan.device_map
    assert data["max_memory"]["0"] == 24 * GIB
    assert [f["code"] for f in data["flags"]] == [f.code for f in plan.flags]
    assert "module_names" not in data and data["versions"]["transformers"] == transformers.__version__


# ---------------------------------------------------------------- (b) plans apply to twins name for name


@pytest.fixture(scope="module")
def twins_by_checkpoint():
    return {}


def _twin(cache: dict, checkpoint: str) -> torch.nn.Module:
    if checkpoint not in cache:
        cache[checkpoint] = qd.twin(checkpoint)[0]
    return cache[checkpoint]


@pytest.mark.parametrize("checkpoint", [c for c in list(qd.twins()["checkpoint"]) if checkpoint_available(c)])
def test_every_planned_key_is_a_name_of_the_twin(checkpoint, twins_by_checkpoint):
    twin = _twin(twins_by_checkpoint, checkpoint)
    names = {n for n, _ in twin.named_modules()} | {
        n for n, _ in twin.named_parameters(remove_duplicate=False)
    }
    keys = set()
    for gpus, memory, strategy in LAYOUTS:
        keys |= set(qd.plan_device_map(checkpoint, gpus, memory, strategy).device_map)
    assert keys - names == set()
    assert any(".layers." in k for k in keys) and any("visual" in k for k in keys)
    # dispatching to GPUs needs simulated ones: the names pass, the missing GPUs are the refusal
    host = dict.fromkeys(range(8), "40GiB") | {"cpu": "1024GiB"}  # 397B: the rest in RAM, not on disk
    plan = qd.plan_device_map(checkpoint, 8, "40GiB", "balanced", max_memory=host)
    with pytest.raises(
        qd.PlacementError, match=r"uses cuda:\d, but this machine has 0 GPU\(s\).*simulated_gpus"
    ):
        qd.dispatch(twin, plan)
    assert not hasattr(twin, "hf_device_map")
    assert {p.device.type for p in twin.parameters()} == {"cpu"}


def test_dispatch_by_an_all_cpu_map_places_the_twin_and_the_frame_reads_it(twins_by_checkpoint):
    twin = _twin(twins_by_checkpoint, MID)
    plan = qd.plan_device_map(MID, 8, "24GiB", "balanced")
    cpu_map = {k: "cpu" for k in plan.device_map}
    assert qd.dispatch(twin, cpu_map) is twin
    assert twin.hf_device_map == cpu_map
    frame = qd.device_map_frame(twin)
    assert frame["module"].tolist() == list(plan.device_map)  # planned maps come in model order
    assert set(frame["device"]) == {"cpu"}
    assert frame["params"].sum() == sum(p.numel() for p in twin.parameters())
    del twin.hf_device_map


def test_dispatch_refuses_a_map_of_another_checkpoint_and_leaves_the_model(twins_by_checkpoint):
    twin = _twin(twins_by_checkpoint, MID)
    wrong = {_named(twin, "visual"): "cpu", "nonexistent.layers.0": "cpu"}
    with pytest.raises(qd.PlacementError, match=r"does not have: \['nonexistent.layers.0'\].*another"):
        qd.dispatch(twin, wrong)
    without_head = {k: "cpu" for k, _ in twin.named_children() if k != "lm_head"}
    with pytest.raises(qd.PlacementError, match=r"gives no device to \['lm_head'\]"):
        qd.dispatch(twin, without_head)
    with pytest.raises(qd.PlacementError, match="does not offload to disk"):
        qd.dispatch(twin, {"": "disk"})
    with pytest.raises(qd.PlacementError, match="takes a plan"):
        qd.dispatch(twin, ["model"])
    assert not hasattr(twin, "hf_device_map")


# ---------------------------------------------------------------- (c) explicit maps and bad arguments


@pytest.fixture(scope="module")
def mid_names():
    model = _reference_model(MID)
    return {
        "vision": _named(model, "visual"),
        "embed": _named(model, "embed_tokens"),
        "layers": min((n for n, _ in model.named_modules() if n.endswith(".layers")), key=len),
        "norm": min(
            (n for n, _ in model.named_modules() if n.endswith(".norm") and "visual" not in n), key=len
        ),
        "rotary": min(
            (n for n, _ in model.named_modules() if n.endswith(".rotary_emb") and "visual" not in n), key=len
        ),
    }


def _explicit(names: dict, layers: range, **extra) -> dict:
    return {
        names["vision"]: 0,
        names["embed"]: 0,
        **{f"{names['layers']}.{i}": 0 if i < 14 else 1 for i in layers},
        names["norm"]: 1,
        names["rotary"]: 1,
        "lm_head": 1,
    } | extra


def test_a_complete_explicit_map_is_kept_as_given_in_accelerate_form(mid_names):
    given = _explicit(mid_names, range(28))
    given[mid_names["vision"]] = "cuda:0"
    given["lm_head"] = torch.device("cuda", 1)
    before = copy.copy(given)
    plan = qd.plan_device_map(MID, 2, "24GiB", given)
    assert given == before  # the caller's map is not modified
    assert plan.strategy == "explicit" and plan.unplaced == [] and plan.flags == []
    assert plan.device_map[mid_names["vision"]] == 0 and plan.device_map["lm_head"] == 1
    assert list(plan.device_map) == list(given)


def test_modules_left_out_of_an_explicit_map_are_flagged(mid_names):
    given = _explicit(mid_names, [i for i in range(28) if i != 5])
    del given["lm_head"]
    plan = qd.plan_device_map(MID, 2, "24GiB", given)
    assert plan.unplaced == [f"{mid_names['layers']}.5", "lm_head"]
    (flag,) = [f for f in plan.flags if f.code == "unplaced_modules"]
    assert flag.modules == (f"{mid_names['layers']}.5", "lm_head")
    assert "Add them, or a parent module" in flag.why


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"strategy": {"model.vision_tower": 0}}, r"does not have: \['model.vision_tower'\]"),
        ({"strategy": {"lm_head": 4}}, r"Device 4 is beyond this layout's 2 GPU\(s\)"),
        ({"strategy": {"lm_head": "tpu"}}, r"Unknown device 'tpu'"),
        ({"strategy": {}}, "must name at least one module"),
        (
            {"strategy": "balance"},
            "Unknown strategy 'balance': use one of auto, balanced, balanced_low_0, sequential",
        ),
        ({"memory": "24 gigs"}, r"Cannot read memory per GPU '24 gigs'.*'24GiB'"),
        ({"memory": "24"}, r"Cannot read memory per GPU '24'"),
        ({"memory": -1}, "must be positive"),
        ({"memory": 24.5}, "must be an int of bytes or a string"),
        ({"max_memory": {0: "lots"}}, r"Cannot read max_memory\[0\] 'lots'"),
        ({"max_memory": {2: "20GiB"}}, r"Device 2 is beyond this layout's 2 GPU\(s\)"),
        ({"max_memory": ["20GiB"]}, "max_memory must be a dict"),
        ({"dtype": "bf16"}, "Unknown dtype 'bf16': use one of bfloat16, float16, float32"),
        ({"dtype": "int8"}, "Unknown dtype 'int8'"),
        ({"gpus": 0}, "gpus must be a positive int"),
        ({"gpus": True}, "gpus must be a positive int"),
        (
            {"no_split_module_classes": ["LlamaDecoderLayer"]},
            r"does not have: \['LlamaDecoderLayer'\].*keeps",
        ),
        ({"no_split_module_classes": "Qwen2_5_VLDecoderLayer"}, "must be a list of class names"),
        ({"no_split_module_classes": 3}, "must be a list of class names"),
    ],
)
def test_bad_arguments_raise_placement_errors_that_say_what_to_do(kwargs, message):
    before = qd.plan_device_map(MID, 2, "24GiB", "balanced")
    arguments = {"gpus": 2, "memory": "24GiB", "strategy": "balanced"} | kwargs
    snapshot = copy.deepcopy(kwargs)
    with pytest.raises(qd.PlacementError, match=message):
        qd.plan_device_map(MID, **arguments)
    assert kwargs == snapshot
    assert qd.plan_device_map(MID, 2, "24GiB", "balanced").device_map == before.device_map


def test_a_config_that_is_not_qwen_vl_is_refused():
    llama = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2}
    with pytest.raises(qd.PlacementError, match=r"model_type 'llama' is not Qwen-VL.*infer_auto_device_map"):
        qd.plan_device_map(llama, 2, "24GiB")
    with pytest.raises(qd.PlacementError, match="'llama' is not Qwen-VL"):
        qd.plan_device_map(transformers.LlamaConfig(num_hidden_layers=2), 2, "24GiB")
    with pytest.raises(qd.PlacementError, match="takes a shipped checkpoint name"):
        qd.plan_device_map(42, 2, "24GiB")
    with pytest.raises(qd.UnknownCheckpointError, match="Did you mean 'Qwen/Qwen2.5-VL-7B-Instruct'"):
        qd.plan_device_map("Qwen/Qwen2.5-VL-14B-Instruct", 2, "24GiB")  # no such checkpoint


# ---------------------------------------------------------------- (d) risk flags on known layouts


def _codes(plan) -> set[str]:
    return {f.code for f in plan.flags}


def test_3b_on_four_24gib_gpus_balanced_flags_as_the_stack_plans_it():
    plan = qd.plan_device_map(SMALL, 4, "24GiB", "balanced")
    model = _reference_model(SMALL)
    vision, embed = _named(model, "visual"), _named(model, "embed_tokens")
    # 4.51.3 counts the tied lm_head with embed_tokens and moves both to GPU 1; 5.24.0 keeps them on GPU 0
    assert plan.device_map[vision] == 0
    assert plan.device_map[embed] == (0 if TRANSFORMERS_5 else 1)
    assert ("vision_embed_apart" in _codes(plan)) is (not TRANSFORMERS_5)
    # on 8 GPUs both stacks put them apart (and split the vision tower)
    eight = qd.plan_device_map(SMALL, 8, "24GiB", "balanced")
    assert {"vision_embed_apart", "vision_split"} <= _codes(eight)


def test_7b_on_eight_24gib_gpus_balanced_puts_vision_and_embeddings_apart():
    plan = qd.plan_device_map(MID, 8, "24GiB", "balanced")
    (flag,) = [f for f in plan.flags if f.code == "vision_embed_apart"]
    model = _reference_model(MID)
    assert flag.modules == (_named(model, "visual"), _named(model, "embed_tokens"))
    assert flag.devices == ("cuda:0", "cuda:1")
    assert "batched-inference failure" in flag.why
    assert qd.flags_frame(plan)["code"].tolist() == ["vision_embed_apart"]


@pytest.mark.parametrize("strategy", qd.STRATEGIES)
def test_7b_on_two_gpus_keeps_vision_and_embeddings_together(strategy):
    plan = qd.plan_device_map(MID, 2, "24GiB", strategy)
    assert "vision_embed_apart" not in _codes(plan)
    model = _reference_model(MID)
    vision = _devices_of(_named(model, "visual"), plan.device_map, model)
    assert len(vision) == 1  # GPU 1 for balanced_low_0, which keeps GPU 0 for generate()'s work
    assert _devices_of(_named(model, "embed_tokens"), plan.device_map, model) == vision


def test_lm_head_apart_from_tied_embeddings_is_flagged_only_when_tied():
    model = _reference_model(SMALL)
    vision, embed = _named(model, "visual"), _named(model, "embed_tokens")
    tied = qd.plan_device_map(SMALL, 2, "24GiB", {"": 0, "lm_head": 1})
    assert tied.tie_word_embeddings and checkpoint_config(SMALL)["tie_word_embeddings"]
    (flag,) = [f for f in tied.flags if f.code == "lm_head_apart_from_tied_embeddings"]
    assert flag.modules == ("lm_head", embed) and flag.devices == ("cuda:0", "cuda:1")
    untied = qd.plan_device_map(MID, 2, "24GiB", {"": 0, "lm_head": 1})
    assert not untied.tie_word_embeddings and untied.flags == []
    assert "lm_head_apart_from_tied_embeddings" not in _codes(
        qd.plan_device_map(SMALL, 4, "24GiB", "balanced")
    )
    together = qd.plan_device_map(SMALL, 2, "24GiB", {vision: 0, "": 1})
    assert "lm_head_apart_from_tied_embeddings" not in _codes(together)


def test_a_vision_tower_split_by_an_explicit_map_is_flagged(mid_names):
    vision = mid_names["vision"]
    given = {f"{vision}.patch_embed": 0, f"{vision}.rotary_pos_emb": 0, f"{vision}.merger": 1, "": 1}
    given |= {f"{vision}.blocks.{i}": 0 if i < 16 else 1 for i in range(32)}
    plan = qd.plan_device_map(MID, 2, "24GiB", given)
    (flag,) = [f for f in plan.flags if f.code == "vision_split"]
    assert flag.modules == (vision,) and flag.devices == ("cuda:0", "cuda:1")
    assert "vision_embed_apart" in _codes(plan)  # the vision tower is on 0 and 1, embed_tokens on 1
    whole = qd.plan_device_map(MID, 2, "24GiB", {vision: 0, "": 1})
    assert "vision_split" not in _codes(whole) and "vision_embed_apart" in _codes(whole)


def test_offloaded_modules_are_flagged():
    plan = qd.plan_device_map(MID, 1, "8GiB", "auto")
    offloaded = sorted(k for k, d in plan.device_map.items() if d in ("cpu", "disk"))
    assert offloaded  # 16 GB of weights do not fit 8 GiB
    (flag,) = [f for f in plan.flags if f.code == "offloaded"]
    assert list(flag.modules) == offloaded
    assert "offloaded" not in _codes(qd.plan_device_map(MID, 1, "80GiB", "auto"))
    everything = qd.plan_device_map(MID, 1, "24GiB", {"": "cpu"})  # planned for a GPU, all on the CPU
    assert [f.modules for f in everything.flags if f.code == "offloaded"] == [("",)]


# ---------------------------------------------------------------- (e) frames


def test_device_map_frame_of_a_plan_has_real_sizes_kinds_and_layers():
    plan = qd.plan_device_map(MID, 4, "24GiB", "balanced")
    frame = qd.device_map_frame(plan)
    model = _reference_model(MID)
    assert list(frame.columns) == qd.PLACEMENT_COLUMNS
    assert set(frame["module"]) == set(plan.device_map) and len(frame) == len(plan.device_map)
    assert dict(zip(frame["module"], frame["device"], strict=True)) == {
        k: f"cuda:{d}" for k, d in plan.device_map.items()
    }
    params = sum(p.numel() for p in model.parameters())
    assert frame["params"].sum() == params
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert frame["bytes"].sum() == 2 * params + buffers
    by_module = frame.set_index("module")
    vision, embed = _named(model, "visual"), _named(model, "embed_tokens")
    assert by_module.loc[vision, "kind"] == "vision" and by_module.loc[embed, "kind"] == "embed"
    assert by_module.loc[embed, "params"] == model.get_input_embeddings().weight.numel()
    assert by_module.loc["lm_head", "kind"] == "head"
    decoders = frame[frame["kind"] == "decoder"]
    assert decoders["layer"].tolist() == list(range(28))
    assert frame["layer"].isna().sum() == len(frame) - 28
    assert set(frame["dtype"]) == {"bfloat16", "float32"}  # float32: the rotary inv_freq buffer
    assert set(frame.loc[frame["dtype"] == "float32", "kind"]) == {"rotary"}
    assert frame["module"].tolist()[:2] == [vision, embed] and frame["module"].iat[-1] == "lm_head"


def test_device_summary_frame_of_a_plan_lists_each_gpu_against_its_memory():
    plan = qd.plan_device_map(SMALL, 4, "24GiB", "balanced")
    frame, summary = qd.device_map_frame(plan), qd.device_summary_frame(plan)
    assert list(summary.columns) == qd.SUMMARY_COLUMNS
    assert summary["device"].tolist() == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    per_device = frame.groupby("device")["bytes"].sum()
    for row in summary.itertuples():
        assert row.bytes == per_device.get(row.device, 0)
        assert row.modules == (frame["device"] == row.device).sum()
        assert row.capacity == 24 * GIB
        assert row.share == pytest.approx(row.bytes / (24 * GIB))
    assert summary["bytes"].sum() == frame["bytes"].sum()


def test_frames_of_a_plain_cpu_twin_read_its_parameter_devices():
    twin = qd.twin(MID)[0]
    frame = qd.device_map_frame(twin)
    assert list(frame.columns) == qd.PLACEMENT_COLUMNS and frame["layer"].isna().all()
    assert frame.drop(columns="layer").to_dict("records") == [
        {
            "module": "",
            "kind": "other",
            "device": "cpu",
            "params": sum(p.numel() for p in twin.parameters()),
            "bytes": sum(t.numel() * t.element_size() for t in [*twin.parameters(), *twin.buffers()]),
            "dtype": "float32",
        }
    ]
    summary = qd.device_summary_frame(twin)
    assert summary["device"].tolist() == ["cpu"] and summary["capacity"].isna().all()
    assert qd.flags_frame(twin).empty
    vision = _named(twin, "visual")
    twin.get_submodule(vision).to("meta")  # a second device without GPUs: the frame follows the tensors
    moved = qd.device_map_frame(twin).set_index("module")["device"]
    assert moved[vision] == "meta"
    assert set(moved.drop(vision)) == {"cpu"}


def test_frames_refuse_other_objects():
    for function in (qd.device_map_frame, qd.device_summary_frame, qd.flags_frame):
        with pytest.raises(qd.PlacementError, match="takes a model or a plan"):
            function({"": 0})


# ---------------------------------------------------------------- (f) plots


@contextmanager
def _drawn(plot, plan):
    """The single axes of the figure `plot(plan)` returns; the figure is closed afterwards."""
    figure = plot(plan)
    try:
        assert isinstance(figure, matplotlib.figure.Figure)
        (ax,) = figure.axes
        yield ax
    finally:
        plt.close(figure)


def test_plot_placement_draws_one_bar_per_module_coloured_by_device():
    plan = qd.plan_device_map(MID, 8, "24GiB", "balanced")
    frame = qd.device_map_frame(plan)
    with _drawn(qd.plot_placement, plan) as ax:
        modules, flagged = ax.containers
        assert len(modules) == len(frame)
        colours = {}
        for bar, device in zip(modules, frame["device"], strict=True):
            colours.setdefault(device, bar.get_facecolor())
            assert bar.get_facecolor() == colours[device]
        assert len(set(colours.values())) == frame["device"].nunique() > 3
        assert [t.get_text() for t in ax.get_legend().get_texts()] == sorted(
            colours, key=lambda d: int(d[5:])
        )
        assert flagged.get_label() == "flagged" and len(flagged) == 2  # the vision tower and embed_tokens
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert ticks == ["vision", "embed", "decoder", "norm", "rotary", "head"]
        assert plan.model in ax.get_title()


def test_plot_memory_draws_capacity_and_placed_gib_per_device():
    plan = qd.plan_device_map(SMALL, 4, "24GiB", "balanced")
    summary = qd.device_summary_frame(plan)
    with _drawn(qd.plot_memory, plan) as ax:
        capacity, placed = ax.containers
        assert [b.get_height() for b in capacity] == [24.0] * 4
        assert [b.get_height() for b in placed] == pytest.approx(list(summary["bytes"] / GIB))
        assert [t.get_text() for t in ax.get_xticklabels()] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
        assert ax.get_ylabel() == "GiB"


def test_plots_without_matplotlib_say_how_to_install_it(monkeypatch):
    plan = qd.plan_device_map(MID, 2, "24GiB", "balanced")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    for plot in (qd.plot_placement, qd.plot_memory):
        with pytest.raises(qd.QwenVLDiagError, match=r"Plots need matplotlib: pip install"):
            plot(plan)
