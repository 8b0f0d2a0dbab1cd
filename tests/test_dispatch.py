"""Dispatch: twins placed by real plans on simulated GPUs hold every tensor where the plan puts it, the
frames report the plan, re-dispatching is sound, plans equal the maps from_pretrained(device_map=...)
loads with, and a dispatched twin computes what the same twin computes on the CPU.

Each twin is built once (a module-scoped cache) and only its copies are dispatched, so the reference
stays on the CPU. What a dispatch does depends on the model and the map alone (the simulated GPUs only
have to include the map's; accelerate never reads a device's memory when it dispatches, and the twins
are megabytes), so the layouts of a checkpoint that plan the same map (key order included) share one
dispatch: 54 dispatches cover the 288 layouts of transformers 5.x, 14 the 96 of 4.51.3."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from accelerate.hooks import AlignDevicesHook
from conftest import checkpoint_available, family_available, refusal

import qwenvl_diag as qd
from qwenvl_diag._compat import TRANSFORMERS_5
from qwenvl_diag.placement.devices import device_label
from qwenvl_diag.placement.modules import covering_key

GIB = 2**30
GPUS = (1, 2, 4, 8)
MEMORY = ("24GiB", "40GiB", "80GiB")
LAYOUTS = [(g, m, s) for g in GPUS for m in MEMORY for s in qd.STRATEGIES]
MID = "Qwen/Qwen2.5-VL-7B-Instruct"
QWEN3 = "Qwen/Qwen3-VL-8B-Instruct"
LARGE = (
    "Qwen/Qwen2.5-VL-32B-Instruct",
    "Qwen/Qwen3-VL-30B-A3B-Instruct",
    "Qwen/Qwen3-VL-32B-Instruct",
    "Qwen/Qwen3.5-27B",
    "Qwen/Qwen3.5-35B-A3B",
    "Qwen/Qwen3-Omni-30B-A3B-Instruct",  # its thinker: ~32B
)
HUGE = ("Qwen/Qwen2-VL-72B-Instruct", "Qwen/Qwen2.5-VL-72B-Instruct")
GIANT = ("Qwen/Qwen3.5-397B-A17B",)  # ~800 GB in bfloat16: more than 8 x 80 GiB, offloads on every layout


def _assert_unsupported(checkpoint: str) -> None:
    """This transformers lacks the checkpoint's family: the kit says which release it needs."""
    with pytest.raises(qd.UnsupportedReleaseError, match=refusal(checkpoint)):
        qd.twin(checkpoint)
    with pytest.raises(qd.UnsupportedReleaseError, match=refusal(checkpoint)):
        qd.plan_device_map(checkpoint, 2, "24GiB", "balanced")


# ---------------------------------------------------------------- helpers


def _tensors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every parameter and buffer under every name that holds it (a tied weight under each name)."""
    return [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]


def _gpus(device_map: dict) -> list[int]:
    return [d for d in device_map.values() if isinstance(d, int)]


def _main_device(model: torch.nn.Module) -> int | str | None:
    """accelerate's main device: where the root hook sends the forward's inputs (None: no hooks)."""
    hook = getattr(model, "_hf_hook", None)
    return None if hook is None else hook.execution_device


def _hooks(model: torch.nn.Module) -> dict[str, AlignDevicesHook]:
    hooks = {name: getattr(m, "_hf_hook", None) for name, m in model.named_modules()}
    assert all(isinstance(h, AlignDevicesHook) for h in hooks.values() if h is not None)
    return {name: h for name, h in hooks.items() if h is not None}


def _offloaded_weight(model: torch.nn.Module, name: str) -> torch.Tensor:
    """The weight accelerate holds for an offloaded parameter: in the hook of the module that owns it,
    loaded onto the main device only while that module runs."""
    owner, _, local = name.rpartition(".")
    return model.get_submodule(owner)._hf_hook.weights_map[local]


def _misplaced(
    model: torch.nn.Module, reference: torch.nn.Module, device_map: dict, full: bool = True
) -> list[tuple]:
    """(tensor, where it is, where the map puts it) for every parameter and buffer of a dispatched
    `model` that is not where `device_map` says, or whose values differ from `reference` (the same
    model, never dispatched): all its values, or with `full=False` its first few (a wrong tensor,
    not a corrupted one; cheap enough for the sweep).

    A GPU entry means the tensor is on that GPU. An offloaded ("cpu") entry of a map that also uses
    GPUs means what accelerate's dispatch_model does with it: each parameter is a meta placeholder and
    its weight sits on the CPU in the owning module's hook; buffers go to the main device (not
    offloaded, accelerate's default). A map with no GPU keeps everything on the CPU.
    """
    values = dict(_tensors(reference))
    gpus = _gpus(device_map)
    wrong = []
    for name, tensor in _tensors(model):
        device = device_map[covering_key(name, device_map)]
        value = tensor
        if isinstance(device, int):
            want = torch.device("cuda", device)
        elif not gpus:
            want = torch.device("cpu")
        elif isinstance(tensor, torch.nn.Parameter):
            want, value = torch.device("meta"), _offloaded_weight(model, name)
            if value.device.type != "cpu":
                wrong.append((name, f"offloaded weight on {value.device}", "cpu"))
        else:
            want = torch.device("cuda", _main_device(model))
        if tensor.device != want:
            wrong.append((name, str(tensor.device), str(want)))
            continue
        expected = values[name] if full else values[name].reshape(-1)[:8]
        if not torch.equal((value if full else value.reshape(-1)[:8]).cpu(), expected):
            wrong.append((name, "changed values", str(want)))
    return wrong


def _wrong_hooks(model: torch.nn.Module, device_map: dict) -> list[tuple]:
    """(module, hook's device, map's device) for every hook that runs a module elsewhere than the map
    says; a map on one device leaves no hooks at all (accelerate moves the model instead)."""
    hooks = _hooks(model)
    if len(set(device_map.values())) == 1:
        return [(name, h.execution_device, "no hook") for name, h in hooks.items()]
    main = _main_device(model)
    wrong = []
    for name, hook in hooks.items():
        key = covering_key(name, device_map)
        want = main if key is None or not isinstance(device_map[key], int) else device_map[key]
        if hook.execution_device != want:
            wrong.append((name, hook.execution_device, want))
    return wrong


def _untouched(model: torch.nn.Module) -> bool:
    """Whether a model a refused dispatch was given is as it was: on the CPU, no hooks, no map."""
    return (
        not hasattr(model, "hf_device_map")
        and not _hooks(model)
        and {t.device.type for _, t in _tensors(model)} == {"cpu"}
    )


def _frame_devices(frame) -> dict:
    return dict(zip(frame["module"], frame["device"], strict=True))


def _labels(device_map: dict) -> dict:
    return {k: device_label(d) for k, d in device_map.items()}


def _assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal logits (the simulated GPUs run the CPU's kernels, so they are equal bit for bit; the
    tolerant comparison only runs to describe a difference)."""
    if not torch.equal(actual, expected):
        torch.testing.assert_close(actual, expected)


class _Logits:
    """Logits that compare equal (`_assert_same`) and show their shape in a diff."""

    def __init__(self, value: torch.Tensor):
        self.value = value

    def __eq__(self, other) -> bool:
        if not isinstance(other, _Logits) or other.value.shape != self.value.shape:
            return False
        _assert_same(self.value, other.value)
        return True

    def __repr__(self) -> str:
        return f"logits{tuple(self.value.shape)}"


def _forward(model: torch.nn.Module, inputs) -> tuple[str, object]:
    """("logits", logits) or ("error", the device error's text) of a forward."""
    try:
        return "logits", _Logits(_logits(model, inputs))
    except RuntimeError as error:
        return "error", str(error)


def _logits(model: torch.nn.Module, inputs) -> torch.Tensor:
    """The logits, on the CPU. Inputs go where a model on one device is (one without accelerate's hooks,
    as users must move them); a root hook moves them to the main device itself."""
    if not hasattr(model, "_hf_hook"):
        inputs = inputs.to(next(model.parameters()).device)
    with torch.no_grad():
        return model(**inputs).logits.cpu()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def twins():
    """{checkpoint: (twin, processor)}, built on first use; the twins are never dispatched."""
    cache = {}

    def get(checkpoint: str):
        if checkpoint not in cache:
            cache[checkpoint] = qd.twin(checkpoint)
        return cache[checkpoint]

    return get


def _host_plan(checkpoint: str, gpus: int, memory: str, strategy: str) -> qd.DevicePlan:
    """The plan a host with RAM enough for what the GPUs cannot hold gets (the default CPU budget is
    the RAM free now, which on a small host sends part of the large checkpoints to "disk")."""
    host = dict.fromkeys(range(gpus), memory) | {"cpu": "1024GiB"}
    return qd.plan_device_map(checkpoint, gpus, memory, strategy, max_memory=host)


@pytest.fixture(scope="module")
def sweep(twins):
    """{layout: (plan, what dispatching by it did)} for every layout of a checkpoint, on first use."""
    cache = {}

    def get(checkpoint: str) -> dict:
        if checkpoint not in cache:
            cache[checkpoint] = _sweep(checkpoint, twins(checkpoint)[0])
        return cache[checkpoint]

    return get


def _sweep(checkpoint: str, reference: torch.nn.Module) -> dict:
    """Plan every layout; dispatch by each distinct map once, under the simulated GPUs (count and
    memory) of the first layout that plans it. Within one simulation one copy of the twin is
    re-dispatched from map to map (offloading ones included), as a user re-dispatches in a notebook."""
    plans = {layout: _host_plan(checkpoint, *layout) for layout in LAYOUTS}
    outcomes: dict[tuple, dict] = {}
    for gpus, memory in [(g, m) for g in GPUS for m in MEMORY]:
        new = {}
        for strategy in qd.STRATEGIES:
            plan = plans[(gpus, memory, strategy)]
            new.setdefault(tuple(plan.device_map.items()), plan)
        new = {key: plan for key, plan in new.items() if key not in outcomes}
        if not new:
            continue
        model = copy.deepcopy(reference)
        with qd.simulated_gpus(gpus, memory=memory):
            for key, plan in new.items():
                outcomes[key] = _dispatch_outcome(model, reference, plan)
    return {layout: (plan, outcomes[tuple(plan.device_map.items())]) for layout, plan in plans.items()}


def _dispatch_outcome(model: torch.nn.Module, reference: torch.nn.Module, plan: qd.DevicePlan) -> dict:
    """What `qd.dispatch(model, plan)` did (under the running simulation), as plain data."""
    try:
        returned = qd.dispatch(model, plan)
    except qd.PlacementError as error:
        return {"error": str(error), "untouched": _untouched(model)}
    frame = qd.device_map_frame(model)
    return {
        "error": None,
        "returned_itself": returned is model,
        "hf_device_map": list(model.hf_device_map.items()),
        "misplaced": _misplaced(model, reference, plan.device_map, full=False),
        "wrong_hooks": _wrong_hooks(model, plan.device_map),
        "main": _main_device(model),
        "frame": _frame_devices(frame),
        "frame_params": int(frame["params"].sum()),
    }


# ---------------------------------------------------------------- 1. every shipped layout, dispatched


def _check_outcome(outcome: dict, plan: qd.DevicePlan, reference: torch.nn.Module) -> None:
    values = set(plan.device_map.values())
    if "disk" in values:  # planned when the host's free RAM cannot take what the GPUs cannot
        assert outcome["error"] is not None
        assert "qd.dispatch does not offload to disk; map those modules to 'cpu' instead" in outcome["error"]
        assert outcome["untouched"]
        return
    assert outcome["error"] is None and outcome["returned_itself"]
    assert outcome["misplaced"] == []
    assert outcome["wrong_hooks"] == []
    assert outcome["hf_device_map"] == list(plan.device_map.items())
    assert outcome["frame"] == _labels(plan.device_map)  # one row per planned module, its planned device
    assert outcome["frame_params"] == sum(p.numel() for p in reference.parameters())
    gpus = _gpus(plan.device_map)
    if len(values) > 1:
        # accelerate 1.15 (the 5.x stack) takes the lowest GPU index of the map as its main device,
        # 1.6.0 (4.51.3) the first GPU in map order; they differ for Qwen2-VL-2B on 4 GPUs with
        # balanced_low_0 (its map starts on GPU 2, GPU 1 holds layers further on)
        assert outcome["main"] == (min(gpus) if TRANSFORMERS_5 else gpus[0])
    else:
        assert outcome["main"] is None  # one device: moved there, no hooks


# The layouts whose plans offload to the CPU: the large (27B to 35B) on one GPU, or on two of 24 GiB
# (on two of 40 GiB only balanced_low_0, which keeps GPU 0 light). The others fit on their GPUs.
OFFLOADING = {
    (gpus, memory, strategy)
    for gpus, memory in ((1, "24GiB"), (1, "40GiB"), (2, "24GiB"))
    for strategy in qd.STRATEGIES
} | {(2, "40GiB", "balanced_low_0")}
# The 72B ones (~147 GB in bfloat16) on up to 96 GiB of GPUs, or on 160 GiB with GPU 0 kept light.
OFFLOADING_HUGE = {
    (gpus, memory, strategy)
    for gpus, memory in ((1, "24GiB"), (1, "40GiB"), (1, "80GiB"), (2, "24GiB"), (2, "40GiB"), (4, "24GiB"))
    for strategy in qd.STRATEGIES
} | {(2, "80GiB", "balanced_low_0"), (4, "40GiB", "balanced_low_0")}


@pytest.mark.parametrize("gpus,memory,strategy", LAYOUTS, ids=[f"{g}x{m}-{s}" for g, m, s in LAYOUTS])
@pytest.mark.parametrize("checkpoint", list(qd.twins()["checkpoint"]))
def test_a_dispatched_twin_holds_every_tensor_where_its_plan_puts_it(
    checkpoint, gpus, memory, strategy, twins, sweep
):
    if not checkpoint_available(checkpoint):
        _assert_unsupported(checkpoint)
        return
    plan, outcome = sweep(checkpoint)[(gpus, memory, strategy)]
    assert (plan.model, plan.gpus, plan.strategy) == (checkpoint, gpus, strategy)
    used = set(plan.device_map.values())
    assert used <= {*range(gpus), "cpu"} and _gpus(plan.device_map)
    offloads = (
        OFFLOADING
        if checkpoint in LARGE
        else OFFLOADING_HUGE
        if checkpoint in HUGE
        else set(LAYOUTS)
        if checkpoint in GIANT
        else set()
    )
    assert ("cpu" in used) == ((gpus, memory, strategy) in offloads)
    _check_outcome(outcome, plan, twins(checkpoint)[0])


@pytest.mark.parametrize("checkpoint", LARGE)
def test_a_large_checkpoint_on_one_gpu_with_the_hosts_free_ram_dispatches_or_is_refused_for_disk(
    checkpoint, twins
):
    if not checkpoint_available(checkpoint):
        _assert_unsupported(checkpoint)
        return
    plan = qd.plan_device_map(checkpoint, 1, "24GiB", "auto")  # CPU budget: the RAM free now
    on_cpu = sum(plan.module_bytes[k] for k, d in plan.device_map.items() if d == "cpu")
    assert "cpu" in plan.device_map.values() and on_cpu <= plan.max_memory["cpu"]
    reference = twins(checkpoint)[0]
    model = copy.deepcopy(reference)
    with qd.simulated_gpus(1, memory="24GiB"):
        outcome = _dispatch_outcome(model, reference, plan)
    _check_outcome(outcome, plan, reference)


def test_a_plan_that_reaches_disk_is_refused_clearly_and_leaves_the_twin(twins):
    plan = qd.plan_device_map(MID, 1, "4GiB", "sequential", max_memory={0: "4GiB", "cpu": "4GiB"})
    assert {"disk", "cpu", 0} <= set(plan.device_map.values())
    twin = copy.deepcopy(twins(MID)[0])
    with qd.simulated_gpus(1):
        with pytest.raises(qd.PlacementError, match="does not offload to disk; map those modules to 'cpu'"):
            qd.dispatch(twin, plan)
        assert _untouched(twin)
        # mapping the disk entries to the CPU, as the message says, dispatches
        on_cpu = {k: "cpu" if d == "disk" else d for k, d in plan.device_map.items()}
        qd.dispatch(twin, on_cpu)
        assert _misplaced(twin, twins(MID)[0], on_cpu) == [] and _wrong_hooks(twin, on_cpu) == []


def test_redispatching_the_same_twin_moves_every_tensor_and_replaces_every_hook(twins):
    reference, processor = twins(MID)
    twin = copy.deepcopy(reference)
    inputs = qd.sample_inputs(processor, "text")
    expected = _logits(reference, inputs)

    def offloading(gpus: int, per_gpu: str) -> dict:
        host = dict.fromkeys(range(gpus), per_gpu) | {"cpu": "64GiB"}
        return qd.plan_device_map(MID, gpus, per_gpu, "sequential", max_memory=host).device_map

    layouts = [
        qd.plan_device_map(MID, 8, "24GiB", "balanced").device_map,
        offloading(2, "6GiB"),  # from GPUs to an offloading map
        qd.plan_device_map(MID, 4, "24GiB", "balanced_low_0").device_map,
        offloading(2, "6GiB"),
        offloading(1, "8GiB"),  # from one offloading map to another
        {"": 3},
        {"": "cpu"},
        qd.plan_device_map(MID, 2, "24GiB", "balanced").device_map,
        offloading(2, "6GiB"),
    ]
    assert len({tuple(m.items()) for m in layouts}) == 7
    assert {0, 1, "cpu"} == set(layouts[1].values()) and {0, "cpu"} == set(layouts[4].values())
    with qd.simulated_gpus(8) as gpus:
        for device_map in layouts:
            assert qd.dispatch(twin, device_map) is twin
            assert twin.hf_device_map == device_map
            assert _misplaced(twin, reference, device_map) == []  # every value, offloaded ones too
            assert _wrong_hooks(twin, device_map) == []
            assert _frame_devices(qd.device_map_frame(twin)) == _labels(device_map)
            # nothing left behind on GPUs the map does not use (offloaded weights wait on the CPU)
            assert [i for i in range(8) if i not in device_map.values() and gpus.memory_allocated(i)] == []
        # re-dispatched, offloading or not, the twin computes the CPU's logits (forwards come last:
        # 4.51.3 keeps a forward's rope_deltas on the model, where no dispatch moves it)
        _assert_same(_logits(twin, inputs), expected)
        qd.dispatch(twin, layouts[-2])
        _assert_same(_logits(twin, inputs), expected)


def test_without_its_map_the_frame_of_a_dispatched_twin_reads_every_tensor_tied_head_included(twins):
    checkpoint = "Qwen/Qwen2.5-VL-3B-Instruct"  # lm_head shares embed_tokens' weight
    reference = twins(checkpoint)[0]
    assert reference.lm_head.weight is reference.get_input_embeddings().weight
    plan = qd.plan_device_map(checkpoint, 8, "24GiB", "balanced_low_0")
    assert len(set(_gpus(plan.device_map))) >= 4
    model = copy.deepcopy(reference)
    with qd.simulated_gpus(8):
        qd.dispatch(model, plan)
        del model.hf_device_map  # as for modules placed by hand: the frame reads where the tensors are
        read = _frame_devices(qd.device_map_frame(model))
        assert {n: read[covering_key(n, read)] for n, _ in _tensors(model)} == {
            n: str(t.device) for n, t in _tensors(model)
        }
        assert read[covering_key("lm_head.weight", read)] == device_label(plan.device_map["lm_head"])
        # the flags read from the placed twin are the plan's (no tied lm_head taken for a missing one)
        assert set(qd.flags_frame(model)["code"]) == {f.code for f in plan.flags}


# ---------------------------------------------------------------- 2. plans equal from_pretrained's maps

FAMILY_NAMES = ("qwen2_5_vl", "qwen3_vl")
# (GPUs, share of the tiny model's bytes each GPU may hold, with 1 GiB of CPU); None: the defaults
# (24 GiB per GPU, the RAM free now)
SETTINGS = {
    "default-4": (4, None),
    "split-2": (2, 0.6),
    "split-4": (4, 0.45),
    "offload-2": (2, 0.4),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{family: (directory, tiny model, processor, saved dtype, bytes)}: each tiny model saved once."""
    cache = {}

    def get(family: str):
        if family not in cache:
            model, processor = qd.tiny_model(family)
            directory = tmp_path_factory.mktemp(family)
            model.save_pretrained(directory)
            config = json.loads((directory / "config.json").read_text())
            dtype = config.get("dtype") or config.get("torch_dtype")
            size = sum(t.numel() * t.element_size() for t in {id(t): t for _, t in _tensors(model)}.values())
            cache[family] = (directory, model, processor, dtype, size)
        return cache[family]

    return get


def _hook_signature(model: torch.nn.Module) -> dict:
    def skip(keys):
        return sorted([keys] if isinstance(keys, str) else keys or [])

    return {
        name: (
            h.execution_device,
            h.offload,
            h.offload_buffers,
            h.io_same_device,
            h.place_submodules,
            skip(h.skip_keys),
        )
        for name, h in _hooks(model).items()
    }


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_plans_equal_the_maps_from_pretrained_loads_and_dispatch_matches_its_placement(
    family, setting, saved
):
    if not family_available(family):
        with pytest.raises(qd.UnsupportedReleaseError, match=f"{family} needs transformers >= "):
            qd.tiny_model(family)
        return
    directory, tiny, processor, dtype, size = saved(family)
    gpus, share = SETTINGS[setting]
    max_memory = None if share is None else dict.fromkeys(range(gpus), int(share * size)) | {"cpu": GIB}
    inputs = qd.sample_inputs(processor, "image")
    expected = _logits(tiny, inputs)
    maps = {}
    for strategy in qd.STRATEGIES:
        kwargs = {} if max_memory is None else {"max_memory": dict(max_memory)}
        with qd.simulated_gpus(gpus):
            loaded = type(tiny).from_pretrained(directory, device_map=strategy, **kwargs)
            plan = qd.plan_device_map(directory, gpus, "24GiB", strategy, dtype=dtype, **kwargs)
            assert str(loaded.dtype).removeprefix("torch.") == dtype == plan.dtype
            loaded_map = getattr(loaded, "hf_device_map", None)
            if loaded_map is None:
                # 5.x loads a one-device map straight onto that device, without dispatch_model
                assert TRANSFORMERS_5 and len(set(plan.device_map.values())) == 1
                (device,) = set(plan.device_map.values())
                assert {t.device for _, t in _tensors(loaded)} == {torch.device(device_label(device))}
            else:
                assert list(loaded_map.items()) == list(plan.device_map.items())  # order too: the main device
            dispatched = qd.dispatch(copy.deepcopy(tiny), plan)
            assert {n: t.device for n, t in _tensors(dispatched)} == {
                n: t.device for n, t in _tensors(loaded)
            }
            assert _hook_signature(dispatched) == _hook_signature(loaded)
            assert _misplaced(dispatched, tiny, plan.device_map) == []
            if strategy == "sequential":
                # the same forward: the CPU's logits, or the same device error where the plan splits
                # the vision tower between modules its forward mixes (Qwen3-VL's patch_embed, pos_embed)
                ran = _forward(loaded, inputs)
                assert _forward(dispatched, inputs) == ran
                if ran[0] == "logits":
                    _assert_same(ran[1].value, expected)
                else:
                    assert "Expected all tensors to be on the same device" in ran[1]
                    assert "vision_split" in {f.code for f in plan.flags}
            maps[strategy] = plan.device_map
    used = {s: set(m.values()) for s, m in maps.items()}
    if setting.startswith("split"):
        # too little memory on each GPU for the model: every strategy spreads it over several devices
        # (balanced_low_0, keeping GPU 0 light, may offload some), sequential over the GPUs alone
        assert all(len(u) >= 2 for u in used.values()), used
        assert "cpu" not in used["sequential"] and len(used["sequential"]) >= gpus - 1 >= 1, used
    elif setting.startswith("offload"):
        assert all("cpu" in u and len(u) >= 2 for u in used.values()), used


# ---------------------------------------------------------------- 3. dispatched forward == CPU forward

FORWARDS = [
    pytest.param(MID, 8, "24GiB", "balanced", None, "image", id="7B-8x24-balanced-image"),
    pytest.param(MID, 8, "24GiB", "balanced", None, "batch", id="7B-8x24-balanced-batch"),
    pytest.param(
        MID,
        2,
        "24GiB",
        "sequential",
        {0: "6GiB", 1: "6GiB", "cpu": "64GiB"},
        "image",
        id="7B-2-offload-image",
    ),
    pytest.param(QWEN3, 4, "24GiB", "balanced", None, "image", id="qwen3-8B-4x24-balanced-image"),
]


@pytest.mark.parametrize("checkpoint,gpus,memory,strategy,max_memory,kind", FORWARDS)
def test_a_twin_dispatched_across_gpus_computes_the_logits_it_computes_on_the_cpu(
    checkpoint, gpus, memory, strategy, max_memory, kind, twins
):
    if not checkpoint_available(checkpoint):
        _assert_unsupported(checkpoint)
        return
    reference, processor = twins(checkpoint)
    plan = qd.plan_device_map(checkpoint, gpus, memory, strategy, max_memory=max_memory)
    assert len(set(_gpus(plan.device_map))) >= 2  # a real split
    inputs = qd.sample_inputs(processor, kind)
    expected = _logits(reference, inputs)
    with qd.simulated_gpus(gpus, memory=memory):
        twin = qd.dispatch(copy.deepcopy(reference), plan)
        logits = _logits(twin, inputs)
    assert logits.shape == expected.shape
    if TRANSFORMERS_5:
        _assert_same(logits, expected)
    else:
        # 4.51.3 builds the padded batch's mask in a branch it takes on CUDA only, so padded positions
        # differ from the CPU run; every real token's logits are equal
        real = inputs["attention_mask"].bool()
        _assert_same(logits[real], expected[real])


# ---------------------------------------------------------------- 4. refusals


def _split_map(model: torch.nn.Module, first: int, rest: int) -> dict:
    """The model's top-level modules: the first on GPU `first`, the others on GPU `rest`."""
    return {name: first if i == 0 else rest for i, (name, _) in enumerate(model.named_children())}


def test_dispatch_refuses_a_model_whose_weights_are_on_the_meta_device(tiny_qwen25):
    tiny, _ = tiny_qwen25
    with torch.device("meta"):
        empty = type(tiny)._from_config(tiny.config)
    half = copy.deepcopy(tiny)
    vision = min((n for n, _ in half.named_modules() if n.endswith("visual")), key=len)
    half.get_submodule(vision).to("meta")
    for model, count in ((empty, len(_tensors(empty))), (half, len(_tensors(half.get_submodule(vision))))):
        for device_map in ({"": "cpu"}, {"": 0}, _split_map(model, 1, 0)):
            with qd.simulated_gpus(2):
                with pytest.raises(
                    qd.PlacementError,
                    match=rf"^{count} weights of this model are on the meta device .*: it was never loaded\. "
                    r"Dispatch a model with weights \(qd\.twin, qd\.tiny_model, qd\.load_model\)\.$",
                ):
                    qd.dispatch(model, device_map)
            assert not hasattr(model, "hf_device_map") and not _hooks(model)
    assert {t.device.type for _, t in _tensors(empty)} == {"meta"}


def test_dispatch_to_gpus_outside_a_simulation_says_to_simulate_them(tiny_qwen25):
    tiny, _ = tiny_qwen25
    model = copy.deepcopy(tiny)
    device_map = _split_map(model, 3, 0)
    with pytest.raises(
        qd.PlacementError,
        match=r"uses cuda:3, but this machine has 0 GPU\(s\)\. Dispatch inside `with qd\.simulated_gpus\(4\)",
    ):
        qd.dispatch(model, device_map)
    assert _untouched(model)
    with qd.simulated_gpus(4):  # doing as told works
        qd.dispatch(model, device_map)
        assert _misplaced(model, tiny, device_map) == [] and _wrong_hooks(model, device_map) == []
