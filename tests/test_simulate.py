"""Simulated GPUs: torch.cuda answers, moves, memory, threads, restoration, and real models on them."""

from __future__ import annotations

import copy
import re
import threading
from pathlib import Path

import pytest
import torch
from accelerate import dispatch_model

import qwenvl_diag as qd
from qwenvl_diag._compat import TRANSFORMERS_5
from qwenvl_diag.simulate import rules

GiB = 2**30


def _cuda_functions() -> dict:
    return {name: value for name, value in vars(torch.cuda).items() if callable(value)}


def _global_state() -> dict:
    return {
        "cuda": _cuda_functions(),
        "thread_start": threading.Thread.start,
        "function_modes": torch._C._len_torch_function_stack(),
        "dispatch_modes": torch._C._len_torch_dispatch_stack(),
        "default_device": torch.get_default_device(),
        "cpu_rng": torch.get_rng_state(),
        "grad": torch.is_grad_enabled(),
    }


def _same_state(before: dict, after: dict) -> None:
    assert after["cuda"].keys() == before["cuda"].keys()
    changed = [k for k, v in after["cuda"].items() if v is not before["cuda"][k]]
    assert changed == []
    assert after["thread_start"] is before["thread_start"]
    for key in ("function_modes", "dispatch_modes", "default_device", "grad"):
        assert after[key] == before[key], key
    assert torch.equal(after["cpu_rng"], before["cpu_rng"])


def test_torch_cuda_answers_like_a_machine_with_n_gpus():
    with qd.simulated_gpus(4, memory="40GiB") as gpus:
        assert torch.cuda.is_available() and torch.cuda.device_count() == 4
        assert torch.cuda.get_device_properties(3).total_memory == 40 * GiB
        assert torch.cuda.mem_get_info(1) == (40 * GiB, 40 * GiB)
        assert torch.cuda.current_device() == 0
        torch.cuda.set_device(2)
        assert torch.cuda.current_device() == 2
        assert torch.ones(1, device="cuda").device == torch.device("cuda:2")
        assert torch.ones(1).cuda().device == torch.device("cuda:2")
        with torch.cuda.device(1):
            assert torch.zeros(1, device="cuda").device == torch.device("cuda:1")
        assert torch.cuda.current_device() == 2
        assert torch.device(3) == torch.device("cuda:3")
        assert "running" in repr(gpus)
    assert not torch.cuda.is_available()


def test_memory_accounting_follows_live_tensors():
    with qd.simulated_gpus(2, memory="1GiB"):
        assert torch.cuda.memory_allocated(1) == 0
        x = torch.zeros(1024, 1024, device="cuda:1")  # 4 MiB
        view = x[:10]
        assert torch.cuda.memory_allocated(1) == 4 * 2**20  # a view shares its storage
        assert torch.cuda.memory_allocated(0) == 0
        assert torch.cuda.mem_get_info(1)[0] == GiB - 4 * 2**20
        del x, view
        assert torch.cuda.memory_allocated(1) == 0
        assert torch.cuda.max_memory_allocated(1) == 4 * 2**20


def test_moves_copy_data_and_keep_values():
    source = torch.arange(6.0).reshape(2, 3)
    with qd.simulated_gpus(2):
        on_gpu = source.to("cuda:1")
        assert on_gpu.device == torch.device("cuda:1") and on_gpu.is_cuda
        on_gpu.add_(1)  # a real copy: the CPU source is untouched
        assert torch.equal(source, torch.arange(6.0).reshape(2, 3))
        back = on_gpu.cpu()
        assert type(back) is torch.Tensor and back.device.type == "cpu"
        assert torch.equal(back, source + 1)
        assert on_gpu.to(torch.float16).device == torch.device("cuda:1")
        assert on_gpu.to("cuda:1") is on_gpu
        assert on_gpu.to(torch.empty(1, device="cuda:0")).device == torch.device("cuda:0")
        assert on_gpu.tolist() == (source + 1).tolist() and on_gpu.sum().item() == 21.0
        assert repr(on_gpu).startswith("tensor(") and "device='cuda:1'" in repr(on_gpu)
        with pytest.raises(TypeError, match="can't convert cuda:1 device type tensor to numpy"):
            on_gpu.numpy()
        with pytest.raises(RuntimeError, match="invalid device ordinal"):
            source.to("cuda:2")


def test_module_to_keeps_parameter_objects_and_ties():
    embed = torch.nn.Embedding(8, 4)
    head = torch.nn.Linear(4, 8, bias=False)
    head.weight = embed.weight
    model = torch.nn.Sequential(embed, head)
    weight = embed.weight
    with qd.simulated_gpus(1):
        model.to(0)
        assert embed.weight is weight and head.weight is weight  # moved in place, as on CUDA
        assert isinstance(weight, torch.nn.Parameter) and weight.device == torch.device("cuda:0")
        out = model(torch.tensor([1, 2], device="cuda:0"))
        assert out.device == torch.device("cuda:0")
        model.to("cpu")
    assert type(weight) is torch.nn.Parameter and weight.device.type == "cpu"


def test_each_simulated_gpu_has_its_own_seedable_generator():
    cpu_before = torch.get_rng_state()
    with qd.simulated_gpus(2):
        torch.cuda.manual_seed_all(7)
        first = torch.randn(4, device="cuda:0")
        other = torch.randn(4, device="cuda:1")
        torch.cuda.manual_seed_all(7)
        again = torch.randn(4, device="cuda:0")
        assert torch.equal(first.cpu(), again.cpu())
        assert torch.equal(first.cpu(), other.cpu())  # same seed, separate streams
        state = torch.cuda.get_rng_state(0)
        sample = torch.ones(8, device="cuda:0").multinomial(3)
        torch.cuda.set_rng_state(state, 0)
        assert torch.equal(torch.ones(8, device="cuda:0").multinomial(3).cpu(), sample.cpu())
    assert torch.equal(torch.get_rng_state(), cpu_before)


def test_threads_started_inside_see_the_simulated_gpus():
    seen = []

    def work():
        seen.append(torch.ones(2, device="cuda:1").device)

    with qd.simulated_gpus(2):
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    assert seen == [torch.device("cuda:1")]


def test_global_state_is_restored_after_normal_exit_and_after_an_error():
    before = _global_state()
    with qd.simulated_gpus(2):
        torch.ones(3, device="cuda:1") * 2
        torch.randn(3, device="cuda:1").softmax(0).multinomial(2)  # draws from cuda:1's generator
    _same_state(before, _global_state())
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        with qd.simulated_gpus(2):
            torch.ones(3, device="cuda:0") + torch.ones(3, device="cuda:1")
    _same_state(before, _global_state())
    gpus = qd.simulated_gpus(2).start()  # the notebook form
    gpus.stop()
    gpus.stop()  # stopping twice is harmless
    _same_state(before, _global_state())


def test_bad_use_gets_a_clear_error_and_changes_nothing(monkeypatch):
    before = _global_state()
    for count in (0, -1, 2.5, True, 65):
        with pytest.raises(qd.SimulationError, match="number of simulated GPUs"):
            qd.simulated_gpus(count)
    for memory in ("lots", 0, "-3GiB"):
        with pytest.raises(qd.SimulationError, match="memory"):
            qd.simulated_gpus(2, memory=memory)
    with qd.simulated_gpus(2):
        with pytest.raises(qd.SimulationError, match="already running"):
            qd.simulated_gpus(2).start()
        assert torch.cuda.device_count() == 2
    _same_state(before, _global_state())
    # On a machine with real CUDA devices the simulation refuses to shadow them.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(qd.SimulationError, match="2 real CUDA device"):
        qd.simulated_gpus(4).start()
    monkeypatch.undo()
    _same_state(before, _global_state())


def test_generated_wrapper_names_exist_in_the_installed_cuda_library():
    """Every op the rules give a generated device check names a wrapper that torch's CUDA library has."""
    library = Path(torch.__file__).parent / "lib" / "libtorch_cuda.so"
    assert library.is_file(), "the supported stacks install torch's CUDA build, which ships libtorch_cuda.so"
    names = {m.decode() for m in re.findall(rb"(?<=\0)(wrapper_CUDA_[A-Za-z0-9_]+)\0", library.read_bytes())}
    checked = 0
    for op, rule in rules.rule_table().items():
        name, _, overload = op.partition(".")
        packet = getattr(torch.ops.aten, name, None)
        if (
            rule.kind is not rules.Kind.CHECKED
            or packet is None
            or not hasattr(packet, overload or "default")
        ):
            continue
        schema = getattr(packet, overload or "default")._schema
        tensors = [a for a in schema.arguments if "Tensor" in str(a.type) and (a.is_out or not a.kwarg_only)]
        if len(tensors) >= 2:  # only ops with two tensors to compare carry the check's method name
            checked += 1
            assert rule.wrapper in names, op
    assert checked > 400
    assert rules.rule_for(torch.ops.aten.bmm.default).wrapper == "wrapper_CUDA_bmm"
    assert rules.rule_for(torch.ops.aten.index_select.default).wrapper == "wrapper_CUDA__index_select"


def _split_map(model, gpus: int) -> dict:
    """Vision tower first, then the text decoder layers spread over the GPUs, lm_head on the last."""
    names = [n for n, _ in model.named_modules()]
    vision = min((n for n in names if n.endswith("visual")), key=len)
    text = min((n for n in names if n.endswith("embed_tokens")), key=len).rsplit(".", 1)[0]
    layers = len(model.get_submodule(f"{text}.layers"))
    device_map = {vision: 0, f"{text}.embed_tokens": 1 % gpus}
    device_map |= {f"{text}.layers.{i}": (i * gpus) // layers for i in range(layers)}
    device_map |= {f"{text}.norm": gpus - 1, f"{text}.rotary_emb": gpus - 1, "lm_head": gpus - 1}
    covered = tuple(device_map)
    for name, _ in model.named_parameters():
        assert any(name == k or name.startswith(k + ".") for k in covered), name
    return device_map


@pytest.mark.parametrize("gpus", [2, 4])
@pytest.mark.parametrize("build", ["tiny", "twin-7B"])
def test_split_models_give_the_logits_of_plain_cpu(build, gpus):
    """Bit-identical logits; on 4.x only at real tokens: with a padded batch, 4.x runs its
    `attention_mask.device.type == "cuda"` branch (sdpa's _unmask_unattended), as a real GPU does."""
    model, processor = (
        qd.tiny_model("qwen2_5_vl") if build == "tiny" else qd.twin("Qwen/Qwen2.5-VL-7B-Instruct")
    )
    placed = copy.deepcopy(model)
    with qd.simulated_gpus(gpus):
        dispatch_model(placed, _split_map(placed, gpus))
        devices = {p.device for p in placed.parameters()}
        assert devices == {torch.device("cuda", i) for i in range(gpus)}
        for kind in qd.INPUT_KINDS:
            inputs = qd.sample_inputs(processor, kind)
            with torch.no_grad():
                expected = model(**inputs).logits
                got = placed(**inputs).logits
            assert got.device.type == "cpu"  # accelerate returns outputs where the inputs were
            if TRANSFORMERS_5:
                assert torch.equal(got, expected), kind
            else:
                real = inputs["attention_mask"].bool()
                assert torch.equal(got[real], expected[real]), kind


@pytest.mark.parametrize("strategy", ["auto", "balanced", "balanced_low_0", "sequential"])
def test_from_pretrained_places_a_saved_model_on_simulated_gpus(tmp_path, strategy):
    model, processor = qd.tiny_model("qwen2_5_vl")
    model.save_pretrained(tmp_path)
    inputs = qd.sample_inputs(processor, "image")
    with torch.no_grad():
        expected = model(**inputs).logits
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    max_memory = {0: int(size * 0.6), 1: int(size * 0.6), "cpu": 10 * size}
    with qd.simulated_gpus(2):
        loaded = type(model).from_pretrained(tmp_path, device_map=strategy, max_memory=max_memory)
        used = set(loaded.hf_device_map.values())
        assert {0, 1} <= used <= {0, 1, "cpu"}, loaded.hf_device_map
        for name, parameter in loaded.named_parameters():
            key = max((k for k in loaded.hf_device_map if k == "" or name.startswith(k + ".")), key=len)
            device = loaded.hf_device_map[key]
            if device == "cpu":  # offloaded: accelerate keeps a meta placeholder and streams the weight in
                assert parameter.device.type == "meta", name
            else:
                assert parameter.device == torch.device("cuda", device), name
        assert torch.cuda.memory_allocated(0) > 0 and torch.cuda.memory_allocated(1) > 0
        with torch.no_grad():
            got = loaded(**inputs).logits
        assert torch.equal(got, expected)


def test_generate_in_a_thread_with_a_streamer():
    from transformers import TextIteratorStreamer

    model, processor = qd.tiny_model("qwen2_5_vl")
    inputs = qd.sample_inputs(processor, "image")
    reference = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    expected = processor.tokenizer.decode(
        reference[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    with qd.simulated_gpus(2):
        dispatch_model(model, _split_map(model, 2))
        streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = {**inputs, "max_new_tokens": 4, "do_sample": False, "streamer": streamer}
        thread = threading.Thread(target=model.generate, kwargs=kwargs)
        thread.start()
        text = "".join(streamer)
        thread.join()
    assert text == expected


@pytest.mark.parametrize("before", [None, "yes"])
def test_hub_kernels_are_off_while_simulating_and_the_setting_is_put_back(monkeypatch, before):
    """A simulated GPU runs the torch layers, never a compiled kernel fetched from the Hub (transformers
    5.25 kernelizes a model loaded onto a GPU by default); the user's USE_HUB_KERNELS is put back after,
    also when the block raised."""
    import os

    if before is None:
        monkeypatch.delenv("USE_HUB_KERNELS", raising=False)
    else:
        monkeypatch.setenv("USE_HUB_KERNELS", before)
    with pytest.raises(RuntimeError, match="inside"):
        with qd.simulated_gpus(2):
            assert os.environ["USE_HUB_KERNELS"] == "0"
            raise RuntimeError("inside")
    assert os.environ.get("USE_HUB_KERNELS") == before


def test_vmap_returns_its_results_on_the_gpu_of_its_inputs():
    """functorch runs a vmapped function on the inputs' C++ (CPU) tensors; on a GPU its results live on
    the inputs' device, so transformers' vmapped 4D masks (masking_utils, 4.53 on) must read as made there:
    a padded batch on one GPU with the model cards' inputs passes, as it does on CUDA."""
    vmap, func_vmap = torch.vmap, torch.func.vmap
    with qd.simulated_gpus(2):
        positions, keys = torch.arange(4, device="cuda:1"), torch.arange(3, device="cuda:1")
        assert torch.vmap(lambda x: x > 1)(positions).device == torch.device("cuda", 1)
        nested = torch.vmap(torch.vmap(lambda q, k: q >= k, in_dims=(None, 0)), in_dims=(0, None))
        mask = nested(positions, keys)
        assert mask.device == torch.device("cuda", 1) and mask.shape == (4, 3)
        assert torch.equal(mask.cpu(), torch.arange(4)[:, None] >= torch.arange(3)[None, :])
        assert torch.func.vmap(torch.sin)(torch.zeros(2, device="cuda:0")).device == torch.device("cuda", 0)
        assert torch.vmap(torch.sin)(torch.zeros(2)).device == torch.device("cpu")
    assert (torch.vmap, torch.func.vmap) == (vmap, func_vmap)
    scenario = qd.Scenario("tiny/qwen2_5_vl", gpus=1, memory="1GiB", inputs="batch", inputs_on="model")
    assert qd.run(scenario).ok
